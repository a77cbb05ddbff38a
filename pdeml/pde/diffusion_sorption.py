"""The 1D diffusion-sorption problem of PDEBench, as used by [HC-MoE].

Equation (contaminant diffusing through soil with Freundlich sorption), on x in [0, L],
t in [0, T]::

    u_t = D / R(u) * u_xx,
    R(u) = 1 + ((1 - phi) / phi) * rho_s * k * n_f * u^(n_f - 1),
    u(0, t) = 1 (the solubility, ``left_value``),     t > 0
    u(L, t) = -D u_x(L, t)  ("outflow", default)   or   u(L, t) = +D u_x(L, t)  ("paper")
    u(x, 0) = u0(x).

*Residual form.* R(u) is the derivative of the total (dissolved + sorbed, per unit pore
volume) concentration ``M(u) = u + c u^n_f`` with ``c = (1 - phi) rho_s k / phi``, so the
conservation law is ``M(u)_t = D u_xx``. The residual imposed by this module is the equation as
the paper states it::

    Phi(u, u_t, u_xx) = s * ( u_t - D * u_xx / R(u) ),       s = residual_scale (default T)

(``s = T`` makes it the residual in the non-dimensional time t / T, of order one). Dividing by
R rather than multiplying through by it matters for the solver: the stiff factor then
multiplies the tiny ``D u_xx`` instead of ``u_t``, and on the 1024 x 101 grid the
least-squares minimiser is 4-40x closer to the reference solution (rel. L2 7e-5 to 2.5e-4
against 1e-3 to 4e-3 with ``R(u) u_t - D u_xx``, m = 1e3 to 1e5, N = 16 and 64).

*Safe sorption term.* ``u^(n_f - 1)`` is singular at 0 and undefined below, but a
least-squares solver will try any u. PDEBench evaluates ``(u + 1e-6)^(n_f - 1)``; we use the
smooth version ``s(u) = eps + p(u)`` with ``p(u) = (u + sqrt(u^2 + delta^2)) / 2`` (a smooth
positive part, evaluated without cancellation), ``M(u) = u + c s(u)^n_f`` and
``R(u) = M'(u) = 1 + c n_f s(u)^(n_f - 1) p'(u)``. Then R is smooth, finite and
``1 < R(u) <= 1 + c n_f eps^(n_f - 1)`` (about 13.3) for *every* real u, R -> 1 as u -> -inf,
and for u >> delta it equals the PDEBench expression to relative accuracy ~ (delta / u)^2.
Keeping R = M' exactly makes the reference solver (which steps M) and this residual the same
equation.

*Right boundary.* PDEBench's paper (and the [HC-MoE] code) write ``u(1, t) = D u_x(1, t)``.
With D > 0 that Robin condition injects mass proportional to u at x = 1 and the problem is
ill-posed (the linearised operator has an eigenmode growing like exp(t / (D R))); PDEBench's
*simulator* actually imposes the ghost value ``u_ghost = -D u_x``, i.e. ``u = -D u_x`` (the
diffusive outflux equals the concentration). We use that well-posed "outflow" form by
default; ``right_bc="paper"`` gives the constraint rows as printed in the paper (for
comparisons only; the reference solver refuses it). Since D is tiny, both say u(1, t) ~ 0.

*Grid.* Vertex-centred: ``x_i = i L / (nx - 1)``, ``t_j = j T / (nt - 1)``; both boundaries are
grid columns. Residual points are ``1 <= i <= nx - 2``, ``1 <= j <= nt - 1``; u_t uses central
differences inside and the one-sided second-order stencil at ``j = nt - 1``; u_xx the central
stencil. Constraint rows: the initial condition at ``t = 0`` for every x (including both
boundary nodes), ``u(0, t_j) = 1`` and the Robin rows at ``x = L`` (u_x by the one-sided
second-order stencil) for ``j >= 1``.

References: Takamoto et al., "PDEBench", NeurIPS 2022 Datasets and Benchmarks;
[HC-MoE] Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from pdeml.core.validation import check_choice
from pdeml.pde.base import PDEProblem
from pdeml.pde.grids import SpaceTimeGrid
from pdeml.pde.operators import fd_derivative_at

__all__ = ["DiffusionSorption"]

RIGHT_BCS = ("outflow", "paper")


def _retardation_parts(u, c, n_f, eps, delta):
    """R(u) and R'(u) for R = 1 + c n_f (eps + p)^(n_f - 1) p' with the smooth positive part
    p(u) = (u + sqrt(u^2 + delta^2)) / 2, whose derivatives are p' = p / r and
    p'' = p (r - u) / r^3 (r = sqrt(u^2 + delta^2)).

    ``q = r + |u|`` avoids cancellation on both sides: p = q / 2 and r - u = delta^2 / q for
    u >= 0; p = delta^2 / (2 q) and r - u = q for u < 0.
    """
    delta = jnp.asarray(delta, dtype=jnp.result_type(u, float))
    r = jnp.hypot(u, delta)
    q = r + jnp.abs(u)
    positive = u >= 0
    p = jnp.where(positive, 0.5 * q, 0.5 * delta**2 / q)
    r_minus_u = jnp.where(positive, delta**2 / q, q)
    dp = p / r
    d2p = p * r_minus_u / r**3
    s = eps + p
    power = jnp.exp((n_f - 1.0) * jnp.log(s))  # s^(n_f - 1), s >= eps > 0
    value = 1.0 + c * n_f * power * dp
    deriv = c * n_f * power * ((n_f - 1.0) * dp * dp / s + d2p)
    return value, deriv


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4))
def _retardation(u, c, n_f, eps, delta):
    return _retardation_parts(u, c, n_f, eps, delta)[0]


@_retardation.defjvp
def _retardation_jvp(c, n_f, eps, delta, primals, tangents):
    (u,), (du,) = primals, tangents
    value, deriv = _retardation_parts(u, c, n_f, eps, delta)
    return value, deriv * du


class DiffusionSorption(PDEProblem):
    """1D diffusion-sorption with Freundlich isotherm (PDEBench constants by default).

    Problem data ``data`` is the initial condition ``u0`` of shape ``(nx,)``.

    Attributes:
        phi: porosity.
        rho_s: bulk density of the soil.
        k: Freundlich coefficient.
        n_f: Freundlich exponent.
        D: effective diffusion coefficient.
        left_value: Dirichlet value at x = 0 (PDEBench's solubility, 1).
        length: L, the domain is [0, L].
        t_max: T, the time interval is [0, T].
        nx, nt: grid size (vertex-centred, both ends included). The [HC-MoE] paper grid is
            1024 x 101; the default 128 x 51 is a laptop-sized version of the same problem.
        sorption_eps: eps of the safe sorption term (PDEBench's shift 1e-6).
        sorption_smoothing: delta of the smooth positive part.
        right_bc: ``"outflow"`` (u = -D u_x, well-posed, PDEBench simulator) or ``"paper"``
            (u = +D u_x, as printed; constraint rows only).
        ic_weight: weight multiplying the initial-condition rows and targets.
        bc_weight: weight multiplying the boundary rows and targets (both boundaries), relative
            to the (scaled) residual rows.
        residual_scale: factor s of the residual; ``None`` means ``t_max``.

    Example:
        >>> p = DiffusionSorption(nx=16, nt=6)
        >>> p.grid_shape, p.num_features, p.interior_points().shape
        ((16, 6), 3, (70, 2))
    """

    phi: float = eqx.field(static=True, default=0.29)
    rho_s: float = eqx.field(static=True, default=2880.0)
    k: float = eqx.field(static=True, default=3.5e-4)
    n_f: float = eqx.field(static=True, default=0.874)
    D: float = eqx.field(static=True, default=5e-4)
    left_value: float = eqx.field(static=True, default=1.0)
    length: float = eqx.field(static=True, default=1.0)
    t_max: float = eqx.field(static=True, default=500.0)
    nx: int = eqx.field(static=True, default=128)
    nt: int = eqx.field(static=True, default=51)
    sorption_eps: float = eqx.field(static=True, default=1e-6)
    sorption_smoothing: float = eqx.field(static=True, default=1e-6)
    right_bc: str = eqx.field(static=True, default="outflow")
    ic_weight: float = eqx.field(static=True, default=1.0)
    bc_weight: float = eqx.field(static=True, default=1.0)
    residual_scale: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_choice("right_bc", self.right_bc, RIGHT_BCS)
        for name in ("rho_s", "k", "D", "length", "t_max", "sorption_eps", "sorption_smoothing"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 < self.phi < 1:
            raise ValueError(f"phi (porosity) must lie in (0, 1), got {self.phi!r}")
        if not 0 < self.n_f <= 1:
            raise ValueError(f"n_f (Freundlich exponent) must lie in (0, 1], got {self.n_f!r}")
        for name in ("ic_weight", "bc_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.residual_scale is not None and not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be positive or None, got {self.residual_scale}")
        SpaceTimeGrid(nx=self.nx, nt=self.nt, x_max=self.length, t_max=self.t_max)

    # ---- constants and constitutive functions ------------------------------------------

    @property
    def grid(self) -> SpaceTimeGrid:
        """The space-time grid of the learning problem."""
        return SpaceTimeGrid(nx=self.nx, nt=self.nt, x_max=self.length, t_max=self.t_max)

    @property
    def sorption_coefficient(self) -> float:
        """``c = (1 - phi) rho_s k / phi``, so that ``M(u) = u + c u^n_f``."""
        return (1.0 - self.phi) / self.phi * self.rho_s * self.k

    @property
    def scale(self) -> float:
        """The residual scale s actually used (``residual_scale`` or ``t_max``)."""
        return self.t_max if self.residual_scale is None else self.residual_scale

    def _positive_part(self, u):
        """Smooth positive part p(u) = (u + sqrt(u^2 + delta^2)) / 2 and its derivative p/r."""
        delta = jnp.asarray(self.sorption_smoothing, dtype=jnp.result_type(u, float))
        # For u < 0 the sum u + r cancels; use the equal form delta^2 / (2 (r - u)). Each branch
        # sees only its own sign of u, so the branch not taken cannot produce inf/NaN gradients.
        positive = u >= 0
        u_pos = jnp.where(positive, u, 0)
        u_neg = jnp.where(positive, 0, u)
        r_pos = jnp.hypot(u_pos, delta)
        r_neg = jnp.hypot(u_neg, delta)
        p = jnp.where(positive, 0.5 * (u_pos + r_pos), 0.5 * delta**2 / (r_neg - u_neg))
        return p, p / jnp.where(positive, r_pos, r_neg)

    def mass(self, u):
        """Total concentration ``M(u) = u + c s(u)^n_f`` (dissolved + sorbed per pore volume)."""
        p, _ = self._positive_part(u)
        return u + self.sorption_coefficient * (self.sorption_eps + p) ** self.n_f

    def retardation(self, u):
        """Retardation factor ``R(u) = M'(u)``, finite, smooth and in (1, 1 + c n_f eps^(n_f-1)].

        Evaluated at every collocation point in every solver iteration, so it carries its own
        derivative rule (:func:`_retardation_jvp`) sharing the square root, log and exp between
        R and R' instead of differentiating through the branches of the positive part.
        """
        return _retardation(u, self.sorption_coefficient, self.n_f, self.sorption_eps,
                            self.sorption_smoothing)

    # ---- PDEProblem interface ----------------------------------------------------------

    @property
    def grid_shape(self) -> tuple[int, int]:
        return (self.nx, self.nt)

    @property
    def num_features(self) -> int:
        return 3

    def _check_basis(self, basis):
        if basis.ndim != 3 or basis.shape[:2] != (self.nx, self.nt):
            raise ValueError(
                f"basis must have shape (nx, nt, n) = ({self.nx}, {self.nt}, n), got {basis.shape}"
            )

    def features_at(
        self, basis: Float[Array, "nx nt n"], points: Int[Array, "m 2"]
    ) -> Float[Array, "3 m n"]:
        """Features ``(u, u_t, u_xx)`` of every basis function at ``points`` (gathered first)."""
        basis = jnp.asarray(basis)
        self._check_basis(basis)
        g = self.grid
        u = fd_derivative_at(basis, points, axis=0, order=0, spacing=g.dx)
        u_t = fd_derivative_at(basis, points, axis=1, order=1, spacing=g.dt)
        u_xx = fd_derivative_at(basis, points, axis=0, order=2, spacing=g.dx)
        return jnp.stack([u, u_t, u_xx])

    def pointwise(self, a: Float[Array, " 3"], aux) -> Float[Array, ""]:
        """``s * (u_t - D u_xx / R(u))`` for ``a = (u, u_t, u_xx)``."""
        return self.scale * (a[1] - self.D * a[2] / self.retardation(a[0]))

    def aux_at(self, data, points):
        return None

    def constraint_rows(
        self, basis: Float[Array, "nx nt n"], data: Float[Array, " nx"]
    ) -> tuple[Float[Array, "p n"], Float[Array, " p"]]:
        """IC rows (``nx``), Dirichlet rows at x = 0 and Robin rows at x = L (``nt - 1`` each).

        Row order: ``u(x_i, 0) = u0_i`` for ``i = 0..nx-1``; ``u(0, t_j) = left_value`` and then
        ``u(L, t_j) +/- D u_x(L, t_j) = 0`` for ``j = 1..nt-1``. IC rows and targets are multiplied
        by ``ic_weight``, boundary rows and targets by ``bc_weight``.
        """
        basis = jnp.asarray(basis)
        self._check_basis(basis)
        u0 = jnp.asarray(data)
        if u0.shape != (self.nx,):
            raise ValueError(f"data (the initial condition u0) must have shape ({self.nx},), "
                             f"got {u0.shape}")
        dtype = jnp.result_type(basis, u0)
        ic_rows = basis[:, 0, :]
        j = np.arange(1, self.nt)
        right_pts = jnp.asarray(np.stack([np.full_like(j, self.nx - 1), j], axis=1))
        u_right = basis[-1, 1:, :]
        u_x_right = fd_derivative_at(basis, right_pts, axis=0, order=1, spacing=self.grid.dx)
        sign = 1.0 if self.right_bc == "outflow" else -1.0
        robin_rows = u_right + sign * self.D * u_x_right
        rows = jnp.concatenate(
            [self.ic_weight * ic_rows, self.bc_weight * basis[0, 1:, :], self.bc_weight * robin_rows]
        ).astype(dtype)
        targets = jnp.concatenate(
            [
                self.ic_weight * u0,
                jnp.full((self.nt - 1,), self.bc_weight * self.left_value),
                jnp.zeros((self.nt - 1,)),
            ]
        ).astype(dtype)
        return rows, targets

    def interior_points(self) -> Int[Array, "q 2"]:
        """``(i, j)`` for ``1 <= i <= nx - 2`` and ``1 <= j <= nt - 1`` (x-major order)."""
        i, j = np.meshgrid(np.arange(1, self.nx - 1), np.arange(1, self.nt), indexing="ij")
        return jnp.asarray(np.stack([i.ravel(), j.ravel()], axis=1).astype(np.int32))
