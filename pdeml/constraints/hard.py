"""The hard-constraint layer (PI-HC).

A network outputs N basis functions ``b`` on the whole grid. :class:`HardConstraint` samples
m collocation points, *gathers* the basis there and builds the feature matrices
``T_k = D_k b`` only at those points, assembles the IC/BC rows, solves

    w* = argmin_w 1/2 ||(Phi(T w), rows w - targets, sqrt(ridge) w)||^2

with the structured Levenberg-Marquardt solver of :mod:`pdeml.core`, and returns
``u = b @ w*`` with the solve's diagnostics. Derivatives with respect to the basis (and so the
network) come from the implicit function theorem (:class:`pdeml.core.ImplicitAdjoint`).

Reference: Chalapathi, Du, Krishnapriyan, "Scaling physics-informed hard constraints with
mixture-of-experts", ICLR 2024 (arXiv:2402.13412); Negiar et al. 2023.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from pdeml.constraints.sampling import sample_points
from pdeml.constraints.start import choose_start, linearised_start
from pdeml.core import (
    BACKENDS,
    ImplicitAdjoint,
    LevenbergMarquardt,
    SolveStats,
    StructuredLeastSquares,
    UnrolledAdjoint,
    solve_least_squares,
)
from pdeml.core.validation import (
    check_basis,
    check_choice,
    check_grid_indices,
    error_if_nonfinite_tree,
)
from pdeml.pde.base import PDEProblem


class ConstraintInfo(eqx.Module):
    """What the layer solved: weights ``w`` (N,), solver ``stats`` and the sampled ``points``."""

    w: Float[Array, " n"]
    stats: SolveStats
    points: Int[Array, "m ndim"]


class HardConstraint(eqx.Module):
    """Impose a PDE at sampled collocation points by solving for the basis weights.

    Attributes:
        problem: the :class:`pdeml.pde.PDEProblem` (residual structure, IC/BC rows).
        num_points: collocation points m sampled per call (``None``: every interior point).
        solver: :class:`pdeml.core.LevenbergMarquardt` settings.
        adjoint: :class:`pdeml.core.ImplicitAdjoint` (default) or ``UnrolledAdjoint``.
        backend: one of ``pdeml.core.BACKENDS`` (``"native"``, ``"jaxopt"``, ``"optimistix"``,
            ``"optimistix-cholesky"``).
        ridge: Tikhonov weight on w (>= 0).
        throw: raise if a solve fails; with ``False`` failures are only reported in
            ``info.stats`` (training loops log the converged fraction).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.core import LevenbergMarquardt
        >>> from pdeml.pde import DiffusionSorption
        >>> prob = DiffusionSorption(nx=16, nt=6)
        >>> layer = HardConstraint(prob, num_points=40, solver=LevenbergMarquardt(max_steps=300))
        >>> x, t = prob.grid.mesh()
        >>> basis = jnp.stack([x**k * (1 + t / 500) ** j for k in range(4) for j in range(2)], -1)
        >>> u, info = layer(basis, jnp.full(16, 0.1), key=jax.random.key(0))  # u0 = 0.1
        >>> u.shape, info.w.shape, info.points.shape
        ((16, 6), (8,), (40, 2))
    """

    problem: PDEProblem
    num_points: int | None = eqx.field(static=True, default=None)
    solver: LevenbergMarquardt = LevenbergMarquardt()
    adjoint: ImplicitAdjoint | UnrolledAdjoint = ImplicitAdjoint()
    backend: str = eqx.field(static=True, default="native")
    ridge: float = eqx.field(static=True, default=0.0)
    throw: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_choice("backend", self.backend, BACKENDS)
        if not self.ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        q = self.problem.interior_points().shape[0]
        if self.num_points is not None and not (
            isinstance(self.num_points, int) and 1 <= self.num_points <= q
        ):
            raise ValueError(
                f"num_points must be an integer in [1, {q}] (the interior grid points of the "
                f"problem), got {self.num_points!r}"
            )

    def select_points(self, key=None) -> Int[Array, "m ndim"]:
        """The collocation points for one call: a random subset (needs ``key``) or all.

        The subset is :func:`~pdeml.constraints.sampling.uniform_subset` of the interior points
        (in their order), the rule :class:`~pdeml.constraints.MoEHardConstraint` uses too.
        """
        interior = self.problem.interior_points()
        if self.num_points is None or self.num_points == interior.shape[0]:
            return interior
        if key is None:
            raise ValueError(
                f"HardConstraint samples {self.num_points} of {interior.shape[0]} points: pass "
                "key=... (or points=...)"
            )
        return sample_points(interior, self.num_points, key)

    def least_squares_problem(self, basis, data, points) -> StructuredLeastSquares:
        """The structured least-squares problem for one basis and one problem instance."""
        rows, targets = self.problem.constraint_rows(basis, data)
        aux = self.problem.aux_at(data, points)
        # features gathered at the points first; implicit derivatives through the basis
        return StructuredLeastSquares.from_basis(
            basis, points, self.problem.features_at, self.problem.pointwise, aux, rows, targets,
            self.ridge)

    def __call__(
        self,
        basis: Float[Array, "*grid n"],
        data,
        *,
        key=None,
        points: Int[Array, "m ndim"] | None = None,
        w0: Float[Array, " n"] | None = None,
        use_w0=None,
    ) -> tuple[Float[Array, "*grid"], ConstraintInfo]:
        """Solve for w and return ``(u = basis @ w, info)``.

        Args:
            basis: ``(*grid, N)`` basis functions on the problem's grid.
            data: the problem instance (e.g. the initial condition).
            key: PRNG key for sampling the collocation points.
            points: explicit ``(m, ndim)`` integer collocation points, NumPy or JAX (overrides
                sampling); each must lie on the grid (``ValueError``, or a runtime error
                under ``jit``).
            w0: ``(N,)`` initial weights (e.g. the previous training step's solution);
                default :func:`~pdeml.constraints.start.linearised_start`.
            use_w0: optional boolean scalar (traceable) that selects ``w0`` where true and the
                default start where false, e.g. a training sample whose carried solution does
                not exist yet; needs ``w0``.
        """
        grid = tuple(self.problem.grid_shape)
        basis = check_basis("basis", basis, grid)  # real float (*grid, N), finite
        data = error_if_nonfinite_tree("data (e.g. the initial condition u0)", data)
        if points is None:
            points = self.select_points(key)
        else:
            if jnp.ndim(points) != 2 or jnp.shape(points)[1] != len(grid):
                raise ValueError(f"points must have shape (m, {len(grid)}), got "
                                 f"{jnp.shape(points)}")
            # NumPy or JAX; out-of-grid indices would be clipped silently by the gathers.
            points = check_grid_indices("points", points, grid)
        lsq = self.least_squares_problem(basis, data, points)
        if w0 is not None and jnp.shape(w0) != (jnp.shape(basis)[-1],):
            raise ValueError(f"w0 must have shape (N,) = ({jnp.shape(basis)[-1]},), got "
                             f"{jnp.shape(w0)}")
        w0 = choose_start(w0, use_w0, lambda: linearised_start(self.problem, lsq, data, points))
        sol = solve_least_squares(
            lsq, w0, solver=self.solver, adjoint=self.adjoint, backend=self.backend,
            throw=self.throw,
        )
        u = jnp.einsum("...n,n->...", basis, sol.value)
        return u, ConstraintInfo(w=sol.value, stats=sol.stats, points=points)
