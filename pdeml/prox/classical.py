"""Classical proximal operators with the same batched interface as :class:`~pdeml.prox.LPN`.

Each is ``prox_R(x) = argmin_z 1/2 ||z - x||^2 + R(z)`` for a convex R:

- :class:`SoftThreshold`: ``R = lam ||z||_1`` (soft-thresholding);
- :class:`L2NormProx`: ``R = lam ||z||_2`` (block soft-thresholding);
- :class:`SquaredL2Prox`: ``R = lam/2 ||z||_2^2`` (shrinkage ``x / (1 + lam)``);
- :class:`BoxProx`: ``R`` = indicator of ``[lower, upper]`` (projection / clipping);
- :class:`TotalVariationProx`: ``R = lam TV(z)``, anisotropic TV of 1D signals or 2D images,
  solved through its dual by FISTA (Beck & Teboulle 2009) to a certified tolerance: the
  duality gap bounds the error, ``||z - z*||^2 <= 2 gap``.

The Moreau identity ``prox_R(x) + prox_{R*}(x) = x`` links SoftThreshold(lam) with
BoxProx(-lam, lam) and L2NormProx(lam) with the projection onto the l2 ball of radius lam
(:meth:`L2NormProx.conjugate`).

References: Parikh & Boyd, "Proximal algorithms" (2014); Chambolle (2004); Beck & Teboulle,
"Fast gradient-based algorithms for constrained total variation image denoising" (2009).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from pdeml.core.solution import max_steps_option, tolerance_option
from pdeml.prox.base import ProximalOperator

__all__ = [
    "SoftThreshold",
    "L2NormProx",
    "L2BallProjection",
    "SquaredL2Prox",
    "BoxProx",
    "TotalVariationProx",
    "soft_threshold",
]


def soft_threshold(x, lam):
    """``sign(x) max(|x| - lam, 0)``, elementwise: the prox of ``lam |.|``."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - lam, 0)


def _check_lam(lam, name="lam"):
    if not isinstance(lam, (int, float)) or not lam >= 0:
        raise ValueError(f"{name} must be a non-negative float, got {lam!r}")
    return float(lam)


def _check_event_ndim(event_ndim):
    if not isinstance(event_ndim, int) or event_ndim < 0:
        raise ValueError(f"event_ndim must be a non-negative int, got {event_ndim!r}")
    return event_ndim


def _event_sum(v, event_ndim):
    return jnp.sum(v, axis=tuple(range(1, 1 + event_ndim)))


class _WeightedProx(ProximalOperator):
    """The prox of ``lam`` times a fixed function of each sample (``event_ndim`` trailing
    axes): the fields, constructor and ``event_ndim`` shared by the weighted classical proxes."""

    lam: float = eqx.field(static=True)
    event_ndim_: int = eqx.field(static=True, default=1)

    def __init__(self, lam: float, event_ndim: int = 1):
        self.lam = _check_lam(lam)
        self.event_ndim_ = _check_event_ndim(event_ndim)

    @property
    def event_ndim(self):
        return self.event_ndim_


class SoftThreshold(_WeightedProx):
    """Prox of ``lam ||z||_1``: soft-thresholding. ``event_ndim`` trailing axes form a sample.

    Example:
        >>> import jax.numpy as jnp
        >>> SoftThreshold(1.0).prox(jnp.array([[-2.0], [0.5], [3.0]])).ravel().tolist()
        [-1.0, 0.0, 2.0]
    """

    def _prox_flat(self, x):
        return soft_threshold(x, jnp.asarray(self.lam, x.dtype))

    def _regularizer_flat(self, x):
        return self.lam * _event_sum(jnp.abs(x), self.event_ndim)

    def conjugate(self) -> "BoxProx":
        """The prox of the conjugate ``R*`` (indicator of ``[-lam, lam]``)."""
        return BoxProx(-self.lam, self.lam, self.event_ndim)


class L2NormProx(_WeightedProx):
    """Prox of ``lam ||z||_2`` over each sample: ``max(1 - lam / ||x||, 0) x``."""

    def _norm(self, x):
        return jnp.sqrt(_event_sum(x * x, self.event_ndim))

    def _prox_flat(self, x):
        n = self._norm(x)
        scale = jnp.maximum(1 - self.lam / jnp.where(n > 0, n, 1), 0)
        return x * scale.reshape((-1,) + (1,) * self.event_ndim)

    def _regularizer_flat(self, x):
        return self.lam * self._norm(x)

    def conjugate(self) -> "L2BallProjection":
        """The prox of the conjugate: projection onto the l2 ball of radius ``lam``."""
        return L2BallProjection(self.lam, self.event_ndim)


class L2BallProjection(ProximalOperator):
    """Projection onto ``{||z||_2 <= radius}`` (prox of that ball's indicator)."""

    radius: float = eqx.field(static=True)
    event_ndim_: int = eqx.field(static=True, default=1)

    def __init__(self, radius: float, event_ndim: int = 1):
        self.radius = _check_lam(radius, "radius")
        self.event_ndim_ = _check_event_ndim(event_ndim)

    @property
    def event_ndim(self):
        return self.event_ndim_

    def _prox_flat(self, x):
        n = jnp.sqrt(_event_sum(x * x, self.event_ndim))
        scale = jnp.minimum(1, self.radius / jnp.where(n > 0, n, 1))
        return x * scale.reshape((-1,) + (1,) * self.event_ndim)

    def _regularizer_flat(self, x):
        n = jnp.sqrt(_event_sum(x * x, self.event_ndim))
        return jnp.where(n <= self.radius * (1 + 1e-12), 0.0, jnp.inf).astype(x.dtype)


class SquaredL2Prox(_WeightedProx):
    """Prox of ``lam/2 ||z||_2^2``: ``x / (1 + lam)``."""

    def _prox_flat(self, x):
        return x / (1 + self.lam)

    def _regularizer_flat(self, x):
        return 0.5 * self.lam * _event_sum(x * x, self.event_ndim)


class BoxProx(ProximalOperator):
    """Projection onto the box ``[lower, upper]`` (prox of its indicator): clipping."""

    lower: float = eqx.field(static=True)
    upper: float = eqx.field(static=True)
    event_ndim_: int = eqx.field(static=True, default=1)

    def __init__(self, lower: float, upper: float, event_ndim: int = 1):
        if not (isinstance(lower, (int, float)) and isinstance(upper, (int, float))):
            raise TypeError(f"lower and upper must be floats, got {lower!r}, {upper!r}")
        if not lower <= upper:
            raise ValueError(f"lower must be <= upper, got lower={lower}, upper={upper}")
        self.lower, self.upper = float(lower), float(upper)
        self.event_ndim_ = _check_event_ndim(event_ndim)

    @property
    def event_ndim(self):
        return self.event_ndim_

    def _prox_flat(self, x):
        return jnp.clip(x, self.lower, self.upper)

    def _regularizer_flat(self, x):
        inside = jnp.all(
            (x >= self.lower) & (x <= self.upper), axis=tuple(range(1, 1 + self.event_ndim))
        )
        return jnp.where(inside, 0.0, jnp.inf).astype(x.dtype)


def _diffs(z, ndim):
    """Forward differences along each of the last ``ndim`` axes (1 or 2) of one sample."""
    if ndim == 1:
        return (z[1:] - z[:-1],)
    return (z[1:, :] - z[:-1, :], z[:, 1:] - z[:, :-1])


def _diffs_adjoint(us, shape):
    """Adjoint of :func:`_diffs` (a negative divergence)."""
    out = jnp.zeros(shape, us[0].dtype)
    if len(shape) == 1:
        (u,) = us
        return out.at[1:].add(u).at[:-1].add(-u)
    u, v = us
    out = out.at[1:, :].add(u).at[:-1, :].add(-u)
    return out.at[:, 1:].add(v).at[:, :-1].add(-v)


_TV_TEST = "duality gap P(z) - D(u) <= atol + rtol P(z)"


class TotalVariationProx(ProximalOperator):
    """Prox of ``lam TV(z)``, anisotropic TV (sum of |forward differences|), 1D or 2D samples.

    Solved per sample through the dual ``min_{|u|_inf <= lam} 1/2 ||x - D^T u||^2`` with FISTA
    (step ``1/||D D^T||``, bounded by 4 in 1D and 8 in 2D) until the duality gap passes the
    stopping test ``P(z) - D(u) <= atol + rtol P(z)`` (``P(z) = 1/2 ||z - x||^2 + lam TV(z)``
    the primal objective at ``z = x - D^T u``, ``D`` the dual one; the gap bounds
    ``||z - z*||^2 <= 2 gap``) or ``max_steps`` iterations are reached.

    Args:
        lam: weight >= 0.
        ndim: 1 (signals, one trailing axis) or 2 (images, two trailing axes).
        atol, rtol: the duality-gap test above (defaults ``atol = 1e-12``, ``rtol = 0``).
        max_steps: FISTA iteration cap (default 20000).
        gap_tol, max_iter: deprecated spellings (warn) of ``atol`` (with ``rtol = 0``) and
            ``max_steps``.

    Example:
        >>> import jax.numpy as jnp
        >>> z = TotalVariationProx(0.5).prox(jnp.array([[0.0, 0.0, 3.0, 3.0]]))
        >>> [round(float(v), 6) for v in z[0]]
        [0.25, 0.25, 2.75, 2.75]

    Reference: Beck & Teboulle (2009), FGP on the dual of the TV denoising problem.
    """

    lam: float = eqx.field(static=True)
    ndim: int = eqx.field(static=True, default=1)
    atol: float = eqx.field(static=True, default=1e-12)
    rtol: float = eqx.field(static=True, default=0.0)
    max_steps: int = eqx.field(static=True, default=20000)

    def __init__(self, lam: float, ndim: int = 1, *, atol: float | None = None,
                 rtol: float | None = None, max_steps: int | None = None,
                 gap_tol: float | None = None, max_iter: int | None = None):
        self.lam = _check_lam(lam)
        if ndim not in (1, 2):
            raise ValueError(f"ndim must be 1 (signals) or 2 (images), got {ndim!r}")
        # equinox's constructor adds frames between the caller and this __init__
        atol, rtol = tolerance_option(atol, rtol, (1e-12, 0.0), test=_TV_TEST, tol=gap_tol,
                                      tol_is="atol", tol_name="gap_tol", stacklevel=5)
        if not atol + rtol > 0:
            raise ValueError(f"atol and rtol must not both be 0, got {atol}, {rtol}")
        max_steps, _ = max_steps_option(max_steps, 20000, max_iter=max_iter, stacklevel=5)
        self.ndim, self.atol, self.rtol, self.max_steps = ndim, atol, rtol, max_steps

    gap_tol = property(lambda self: self.atol, doc="Deprecated spelling of :attr:`atol`.")
    max_iter = property(lambda self: self.max_steps,
                        doc="Deprecated spelling of :attr:`max_steps`.")

    @property
    def event_ndim(self):
        return self.ndim

    def _tv(self, z):
        return sum(jnp.sum(jnp.abs(d)) for d in _diffs(z, self.ndim))

    def _solve_single(self, x):
        lam = jnp.asarray(self.lam, x.dtype)
        step = 1.0 / (4.0 if self.ndim == 1 else 8.0)
        u0 = tuple(jnp.zeros_like(d) for d in _diffs(x, self.ndim))

        def primal_of(u):
            return x - _diffs_adjoint(u, x.shape)

        def gap(u):
            z = primal_of(u)
            p = 0.5 * jnp.sum((z - x) ** 2) + lam * self._tv(z)
            d = 0.5 * jnp.sum(x * x) - 0.5 * jnp.sum(z * z)
            return p - d, p

        def body(s):
            u, w, t, k, _ = s
            z = primal_of(w)
            g = _diffs(z, self.ndim)  # = -grad of the dual objective at w
            u_new = tuple(jnp.clip(wi + step * gi, -lam, lam) for wi, gi in zip(w, g))
            t_new = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
            w_new = tuple(un + ((t - 1) / t_new) * (un - uo) for un, uo in zip(u_new, u))
            return u_new, w_new, t_new, k + 1, gap(u_new)

        def cond(s):
            g, p = s[4]
            tolerance = self.atol if self.rtol == 0 else self.atol + self.rtol * p
            return (g > tolerance) & (s[3] < self.max_steps)

        init = (u0, u0, jnp.asarray(1.0, x.dtype), jnp.asarray(0), gap(u0))
        u, *_ = lax.while_loop(cond, body, init)
        return primal_of(u)

    def _prox_flat(self, x):
        return jax.vmap(self._solve_single)(x)

    def _regularizer_flat(self, x):
        return self.lam * jax.vmap(self._tv)(x)
