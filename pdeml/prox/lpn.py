"""Learned proximal networks: f = grad psi for an input-convex potential psi.

By Gribonval & Nikolova (2020), the gradient of a convex function is exactly the proximal
operator of some (possibly nonconvex) function R. With psi strongly convex (alpha > 0) f is
invertible and, for y = f^{-1}(x),

    R(x) = <x, y> - psi(y) - 1/2 ||x||^2          (up to an additive constant)
    grad R(x) = y - x

Reference: Fang, Buchanan & Sulam, "What's in a prior? Learned proximal networks for inverse
problems", ICLR 2024, arXiv:2310.14344.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from pdeml.core.solution import max_steps_option, raise_if_failed
from pdeml.core.validation import error_if_nonfinite
from pdeml.prox.base import ProximalOperator, check_floating, split_batch
from pdeml.prox.inversion import (
    InversionResult,
    default_tolerance,
    inversion_messages,
    invert_potential,
)

__all__ = ["LPN", "ScaledLPN", "evaluate_regularizer"]


class LPN(ProximalOperator):
    """A learned proximal network ``prox(x) = grad psi(x)`` around an ICNN potential ``psi``.

    Args:
        potential: an ICNN from :mod:`pdeml.nets.icnn` (``DenseICNN``, ``ConvICNN``,
            ``FullyConvICNN``) or any equinox module mapping one sample to a convex scalar and
            exposing ``event_ndim``, ``check_event_shape`` and ``alpha``.

    All methods take ``x`` with any leading batch axes followed by one sample's shape.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.nets.icnn import DenseICNN
        >>> lpn = LPN(DenseICNN(1, (16, 16), key=jax.random.key(0), alpha=0.1))
        >>> x = jnp.linspace(-1.0, 1.0, 5)[:, None]
        >>> lpn.prox(x).shape, lpn.regularizer(x).shape
        ((5, 1), (5,))

    Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344).
    """

    potential: eqx.Module

    @property
    def event_ndim(self) -> int:
        return self.potential.event_ndim

    @property
    def alpha(self) -> float:
        return self.potential.alpha

    def _flatten(self, x, name="x"):
        check_floating(name, x)
        batch, event = split_batch(x, self.event_ndim, name)
        self.potential.check_event_shape(event, name)
        x = error_if_nonfinite(name, jnp.asarray(x))
        return x.reshape((-1, *event)), batch, event

    def psi(self, x) -> Float[Array, "..."]:
        """The convex potential ``psi(x)``, one value per sample."""
        xf, batch, _ = self._flatten(x)
        return jax.vmap(self.potential)(xf).reshape(batch)

    def _prox_flat(self, xf):
        return jax.vmap(jax.grad(self.potential))(xf)

    def inverse(
        self,
        x,
        *,
        method: str = "newton_cg",
        atol: float | None = None,
        rtol: float | None = None,
        max_steps: int | None = None,
        y0=None,
        hvp_dtype=None,
        throw: bool = False,
        max_iter: int | None = None,
    ) -> InversionResult:
        """``y = f^{-1}(x)``: solves ``min_y psi(y) - <x, y>`` per sample (batched).

        Args:
            x: points, shape ``(*batch, *event)``.
            method: ``"newton_cg"`` (Hessian-vector products) or ``"lbfgs"``.
            atol, rtol: stop when ``||f(y) - x|| <= atol + rtol ||x||`` (defaults depend on
                the dtype: 1e-10 for float64, 1e-4 for float32).
            max_steps: maximum outer iterations (default 100; ``max_iter``: its deprecated
                spelling).
            y0: optional starting point (default ``x``).
            hvp_dtype: Newton-CG in mixed precision: CG on Hessian-vector products in this
                dtype (e.g. ``jnp.float32`` for float64 ``x``); the residual test stays in
                ``x``'s precision (see :func:`~pdeml.prox.invert_potential`).
            throw: raise ``equinox.EquinoxRuntimeError`` (at run time, also under jit) if any
                sample did not converge; with ``False`` (default) the failure is reported in
                ``converged`` / ``result``.

        Returns:
            :class:`~pdeml.prox.InversionResult`, a :class:`~pdeml.core.Solution`: ``value``
            (also ``y``), ``result`` and ``converged`` (batch-shaped), ``stats.residual`` and
            ``stats.iterations`` (also ``residual``, ``iterations``).

        Raises ``ValueError`` if ``alpha == 0`` (psi must be strongly convex for f to be
        invertible everywhere).
        """
        if not self.alpha > 0:
            raise ValueError(
                "inverse needs a strongly convex potential: alpha must be > 0, got "
                f"{self.alpha}"
            )
        max_steps, cap = max_steps_option(max_steps, 100, max_iter=max_iter)
        xf, batch, event = self._flatten(x)
        y0f = None if y0 is None else self._start(y0, x, xf)
        r = invert_potential(
            self.potential, xf, y0=y0f, method=method, atol=atol, rtol=rtol, max_steps=max_steps,
            hvp_dtype=hvp_dtype,
        ).reshape(batch, event)
        if throw:
            r = raise_if_failed(r, "LPN.inverse", inversion_messages(cap))
        return r

    def _start(self, y0, x, xf, name="y0"):
        """``y0`` flattened like ``xf``: same shape as ``x`` and a floating dtype (cast to x's)."""
        check_floating(name, y0)
        if jnp.shape(y0) != jnp.shape(x):
            raise ValueError(f"{name} must have the shape of x, {jnp.shape(x)}, got "
                             f"{jnp.shape(y0)}")
        return error_if_nonfinite(name, jnp.asarray(y0, xf.dtype)).reshape(xf.shape)

    def regularizer(self, x, *, throw: bool = True, **inverse_options) -> Float[Array, "..."]:
        """``R(x) = <x, y> - psi(y) - 1/2 ||x||^2`` with ``y = f^{-1}(x)``, per sample.

        Differentiable with a custom rule: ``grad_x R = y - x`` and, by the envelope theorem,
        ``grad_theta R = -grad_theta psi_theta(y)``; the solver is never differentiated.
        ``inverse_options`` go to :meth:`inverse`.

        R is only as accurate as the inversion, so by default (``throw=True``) a sample whose
        inversion did not converge raises ``equinox.EquinoxRuntimeError`` (at run time, also
        under jit) saying why; with ``throw=False`` the values are returned unchecked. Use
        :func:`evaluate_regularizer` to get the solver diagnostics with R.
        """
        return evaluate_regularizer(self, x, throw=throw, **inverse_options)[0]


def evaluate_regularizer(lpn: LPN, x, *, throw: bool = False,
                         **inverse_options) -> tuple[Array, InversionResult]:
    """``(R(x), inversion result)`` for an :class:`LPN`; ``R`` has the custom gradient of
    :meth:`LPN.regularizer` w.r.t. both ``x`` and the LPN's parameters.

    The inversion's convergence is reported in the result, a :class:`~pdeml.core.Solution`
    (``converged``, ``result``); with ``throw=True`` a failed sample raises instead (when ``R``
    or the inverse ``info.value`` is computed).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.nets.icnn import DenseICNN
        >>> lpn = LPN(DenseICNN(1, (8,), key=jax.random.key(0), alpha=0.5))
        >>> R, info = evaluate_regularizer(lpn, jnp.ones((3, 1)))
        >>> bool(info.converged.all())
        True
    """
    if not isinstance(lpn, LPN):
        raise TypeError(f"lpn must be an LPN, got {type(lpn).__name__}")
    # Run the solve on constant inputs; gradients come from the closed-form rule below.
    stopped = jax.lax.stop_gradient
    info = lpn.inverse(stopped(jnp.asarray(x)), **inverse_options)
    y = stopped(info.y)
    params, static = eqx.partition(lpn, eqx.is_inexact_array)

    @jax.custom_vjp
    def reg(params, x, y):
        model = eqx.combine(params, static)
        return _reg_value(model, x, y)

    def fwd(params, x, y):
        return reg(params, x, y), (params, x, y)

    def bwd(res, ct):
        params, x, y = res
        axes = tuple(range(ct.ndim, x.ndim))
        ctx = jnp.expand_dims(ct, axes)
        dx = ctx * (y - x)

        def psi_of(p):
            return jnp.sum(ct * eqx.combine(p, static).psi(y))

        dparams = jax.grad(psi_of)(params)
        dparams = jax.tree.map(lambda g: -g, dparams)
        return dparams, dx, jnp.zeros_like(y)

    reg.defvjp(fwd, bwd)
    R = reg(params, jnp.asarray(x), y)
    if throw:
        cap = "max_iter" if inverse_options.get("max_iter") is not None else "max_steps"
        what = "LPN.regularizer (inverting the LPN)"
        R = info.check(R, what, cap)
        info = raise_if_failed(info, what, inversion_messages(cap))
    return R, info


def _reg_value(lpn: LPN, x, y):
    axes = tuple(range(x.ndim - lpn.event_ndim, x.ndim))
    return jnp.sum(x * y, axis=axes) - lpn.psi(y) - 0.5 * jnp.sum(x * x, axis=axes)


class _WeightedPotential(eqx.Module):
    """``phi(w) = c ||w||^2 / 2 + (1 - c) psi(w)`` for one sample (strongly convex)."""

    potential: eqx.Module
    weight: Array

    def __call__(self, w):
        c = self.weight.astype(w.dtype)
        return 0.5 * c * jnp.sum(w * w) + (1 - c) * self.potential(w)


class ScaledLPN(ProximalOperator):
    """The proximal operator of ``weight * R`` for an :class:`LPN` with regulariser ``R``,
    ``0 < weight <= 1``: exact, by a strongly convex inner solve.

    An LPN gives ``prox_R`` at the unit step it was trained for. ``prox_{cR}(v)`` for
    ``0 < c <= 1`` is still a global minimiser of a strongly convex problem: since
    ``R = psi^* - ||.||^2 / 2`` (psi strongly convex, so f = grad psi is onto),
    ``c R + ||.||^2 / 2 = c psi^* + (1 - c) ||.||^2 / 2`` is convex. Its optimality condition
    ``v - z = c grad R(z)`` with ``z = f(w)`` and ``grad R(f(w)) = w - f(w)`` reads

        c w + (1 - c) f(w) = v,        i.e.  grad phi(w) = v,   phi = c ||w||^2 / 2 + (1 - c) psi,

    a strongly convex problem in ``w`` (Hessian ``c I + (1 - c) Hess psi >= (c + (1 - c) alpha) I``),
    solved by the Newton-CG of :func:`~pdeml.prox.invert_potential`; then ``z = f(w)`` and, exactly
    (no second inversion), ``c R(z) = c (<z, w> - psi(w) - ||z||^2 / 2)``.

    Why: with a prior trained at noise ``sigma_t``, ``R ~ sigma_t^2 (-log p)`` and ``c R`` is the
    same prior at noise ``sqrt(c) sigma_t``. In PnP (:mod:`pdeml.inverse.solvers`) the objective
    ``||Ax - y||^2 / (2 rho) + c R(x)`` has the data weighting of ``rho c`` for the unit prior
    while the convergence condition stays ``rho > ||A^T A||``: any weighting is reachable with the
    guarantee kept, at the price of the inner solve.

    Args:
        lpn: the :class:`LPN` (its potential must be strongly convex, ``alpha > 0``).
        weight: ``c`` in ``(0, 1]``; ``1`` gives ``lpn.prox`` (the inner solve stops at once).
        atol, rtol: inner tolerance ``||grad phi(w) - v|| <= atol + rtol ||v||`` (defaults from
            :func:`~pdeml.prox.inversion.default_tolerance`: 1e-4 each in float32, 1e-10 in
            float64).
        max_steps: Newton iterations per call (default 50; ``max_iter``: its deprecated
            spelling).
        throw: :meth:`prox` and :meth:`regularizer` raise ``equinox.EquinoxRuntimeError`` (at
            run time, also under jit) when the inner solve of a sample did not converge
            (default); with ``False`` they return unchecked values. :meth:`solve` always
            returns the inner solve's diagnostics.
    """

    lpn: LPN
    weight: Array
    atol: float | None = eqx.field(static=True, default=None)
    rtol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=50)
    throw: bool = eqx.field(static=True, default=True)

    def __init__(self, lpn: LPN, weight, *, atol: float | None = None, rtol: float | None = None,
                 max_steps: int | None = None, throw: bool = True, max_iter: int | None = None):
        if not isinstance(lpn, LPN):
            raise TypeError(f"lpn must be an LPN, got {type(lpn).__name__}")
        if not lpn.alpha > 0:
            raise ValueError(f"ScaledLPN needs a strongly convex potential (alpha > 0), got "
                             f"alpha = {lpn.alpha}")
        if isinstance(weight, (int, float)) and not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1] (c R + ||.||^2/2 is convex only then), "
                             f"got {weight!r}")
        self.lpn = lpn
        self.weight = jnp.asarray(weight)  # float64 under x64: c enters the inner equation
        max_steps, _ = max_steps_option(max_steps, 50, max_iter=max_iter)
        self.atol, self.rtol, self.max_steps, self.throw = atol, rtol, max_steps, bool(throw)

    # the sample shape and the strong convexity are those of the LPN
    event_ndim = property(lambda self: self.lpn.event_ndim)
    alpha = property(lambda self: self.lpn.alpha)

    @property
    def max_iter(self) -> int:
        """Deprecated spelling of :attr:`max_steps`."""
        return self.max_steps

    def _tolerance(self, dtype):
        atol, rtol = default_tolerance(dtype)
        return (atol if self.atol is None else self.atol), (rtol if self.rtol is None else self.rtol)

    def solve(self, v, w0=None, *, throw: bool = False):
        """``(z, c R(z), w, info)``: the prox ``z`` of ``v``, the weighted regulariser at it,
        the inner variable ``w`` with ``z = f(w)`` (pass it back as ``w0`` to warm-start the next
        call) and the :class:`~pdeml.prox.InversionResult` of the inner solve (``converged``,
        ``result``); ``throw=True`` raises if a sample's inner solve failed."""
        vf, batch, event = self.lpn._flatten(v, "v")
        w0f = vf if w0 is None else self.lpn._start(w0, v, vf, "w0")
        weight = eqx.error_if(self.weight, ~((self.weight > 0) & (self.weight <= 1)),
                              "ScaledLPN weight must be in (0, 1]")
        atol, rtol = self._tolerance(vf.dtype)
        info = invert_potential(_WeightedPotential(self.lpn.potential, weight), vf, y0=w0f,
                                atol=atol, rtol=rtol, max_steps=self.max_steps)
        w = jax.lax.stop_gradient(info.y)
        z = self.lpn._prox_flat(w)
        cR = weight.astype(vf.dtype) * _reg_value(self.lpn, z, w)  # exact: w = f^{-1}(z)
        info = eqx.tree_at(lambda r: r.value, info, w).reshape(batch, event)
        z = z.reshape((*batch, *event))
        if throw:
            z = info.check(z, "ScaledLPN (the inner solve of prox_{weight R})")
        return z, cR.reshape(batch), info.y, info

    def prox(self, x):
        """``prox_{weight R}(x)`` for every sample (leading batch axes allowed); raises if the
        inner solve did not converge, unless ``throw=False`` was given to the constructor."""
        return self.solve(x, throw=self.throw)[0]

    def regularizer(self, x, **inverse_options):
        """``weight * R(x)`` per sample (:meth:`LPN.regularizer`, one convex inversion; checked
        unless ``throw=False`` was given to the constructor)."""
        inverse_options.setdefault("throw", self.throw)
        return self.weight.astype(jnp.result_type(x)) * self.lpn.regularizer(x, **inverse_options)
