"""The mixture-of-experts hard-constraint layer (PI-HC-MoE).

The grid is split into K experts by a :class:`~pdeml.constraints.Partition`. Every expert k
samples its own m collocation points inside its (extended) subdomain, solves its own
structured least-squares problem for its own weights ``w_k`` (shared basis network, the same
N for every expert), and the output blends the experts' fields with the partition of unity:

    u(x) = sum_k phi_k(x) * (b(x) @ w_k).

With a non-overlapping partition ``phi_k`` is the indicator of block k (the published
router, which can jump at seams); with ``overlap > 0`` the blend is smooth (C^2) across seams.
The K solves are independent: they are ``vmap``-ed here (one device) and spread over devices
by :class:`pdeml.parallel.ShardedMoE`. Gradients flow per expert by the implicit function
theorem of :func:`pdeml.core.solve_least_squares`.

**Schwarz coupling** (``sweeps = S > 0``). An expert whose subdomain touches no physical
boundary has no lateral boundary data: its PDE and IC rows do not determine its field, and the
error grows with K (docs/constraints.md, *Why accuracy fell with K*). With ``sweeps = S`` the
layer does S more rounds of solves (overlapping additive Schwarz): in every round expert k
also imposes ``u_k = u`` at its interface points (just outside its extended subdomain, see
:meth:`Partition.interface_points`), where ``u`` is the blended field of the previous round;
there ``phi_k = 0``, so the data comes from the neighbours. Each round is again K independent
solves (warm-started from the previous round's ``w``; across devices it needs one all-reduce
of the blended field), and the derivative flows through every round.

One-level Schwarz moves information by one overlap band per round, so the rounds needed grow
with K. With ``coarse=True`` (the default) the first interface data come instead from a
*coarse global solve*: one least-squares problem over the whole domain with every IC/BC row
and as many points as one expert (every K-th of the experts' points), whose field is globally
consistent; the experts then refine it locally. This is the coarse level of a two-level
Schwarz method: with a fixed basis the error no longer grows with K (in training on
diffusion-sorption it still rises from K = 4 to K = 8; docs/constraints.md). The coarse solve is
only a start: its weights are held constant in the derivative (the rounds' fixed point does
not depend on them), so the gradient is exact up to what the S rounds have not yet forgotten
of the start.

Differences from the published code (see the project's METHODS.md): smooth blending instead of
stitching, per-expert diagnostics (iterations, residuals, converged flag, conditioning) instead
of silently used failures, and an explicit choice of points per expert vs total
(``points="total"`` gives the equal-total-points comparison with a single constraint).

Reference: Chalapathi, Du, Krishnapriyan, "Scaling physics-informed hard constraints with
mixture-of-experts", ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from pdeml.constraints.partition import Partition
from pdeml.constraints.sampling import uniform_subset
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

__all__ = ["MoEConstraintInfo", "MoEHardConstraint", "POINTS_MODES"]

POINTS_MODES = ("per_expert", "total")


class MoEConstraintInfo(eqx.Module):
    """What every expert solved (leading axis K on every field).

    Attributes:
        w: ``(K, N)`` weights.
        stats: :class:`pdeml.core.SolveStats` with ``(K,)`` fields (iterations, residual_norm,
            constraint_norm, gradient_norm, converged, condition_number, result).
        points: ``(K, m, ndim)`` the collocation points of each expert.
        row_mask: ``(K, p)`` which IC/BC rows each expert imposed.
    """

    w: Float[Array, "k n"]
    stats: SolveStats
    points: Int[Array, "k m ndim"]
    row_mask: Bool[Array, "k p"]


def _probe_fields(grid_shape, dtype):
    """Two fixed generic positive fields used to find which rows touch which expert."""
    rng = np.random.default_rng(20240213)
    return jnp.asarray(rng.uniform(0.5, 1.5, (*grid_shape, 2)), dtype)


class MoEHardConstraint(eqx.Module):
    """K hard-constraint experts over a :class:`Partition`, blended by its partition of unity.

    Attributes:
        problem: the :class:`pdeml.pde.PDEProblem`.
        partition: the :class:`Partition` (its ``grid_shape`` must be the problem's).
        num_points: collocation points; per expert (``points="per_expert"``, default) or in
            total over the K experts (``points="total"``: ``num_points // K`` each, the
            equal-total-points comparison with :class:`HardConstraint`). ``None``: every
            interior point of each expert (needs equal counts).
        points: ``"per_expert"`` or ``"total"``, how ``num_points`` is counted.
        solver: :class:`pdeml.core.LevenbergMarquardt` settings, shared by the experts. A small
            ``max_steps`` with ``throw=False`` is the fixed-small-iteration-count mode.
        adjoint: :class:`pdeml.core.ImplicitAdjoint` (default) or ``UnrolledAdjoint``.
        backend: one of ``pdeml.core.BACKENDS`` (``"native"``, ``"jaxopt"``, ``"optimistix"``,
            ``"optimistix-cholesky"``).
        ridge: Tikhonov weight on every ``w_k``.
        throw: raise if any expert's solve fails (``False``: report in ``info.stats``).
        sweeps: rounds of Schwarz coupling after the independent solves (0: the independent
            experts of [HC-MoE]; needs a spatial partition).
        interface_weight: weight of the interface rows ``interface_weight * (b(x) @ w_k -
            u(x))`` (the same role as the PDE's IC/BC row weights).
        coarse: with ``sweeps > 0``, start the rounds from a coarse global solve (``True``)
            instead of the independent expert solves (``False``).
        interface_idx, interface_valid: the partition's
            :meth:`~Partition.interface_points` (``(K, P, ndim)``, ``(K, P)``; P = 0 when
            ``sweeps == 0``).

    ``info.stats`` describes the last round; its ``iterations`` are summed over the rounds, and
    its ``constraint_norm`` includes the interface rows when ``sweeps > 0`` (and the coarse
    solve's iterations are counted in every expert's).

    With K = 1 (``Partition.uniform(grid, (1, ..., 1))``) this is exactly
    :class:`HardConstraint`: the same key samples the same points (one sampling rule,
    :func:`~pdeml.constraints.sampling.uniform_subset`), and the same points give the same
    ``u``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.core import LevenbergMarquardt
        >>> from pdeml.pde import DiffusionSorption
        >>> prob = DiffusionSorption(nx=16, nt=6)
        >>> part = Partition.uniform(prob.grid_shape, (2, 1), overlap=0.5)
        >>> layer = MoEHardConstraint(prob, part, num_points=20, solver=LevenbergMarquardt(max_steps=300))
        >>> x, t = prob.grid.mesh()
        >>> basis = jnp.stack([x**k * (1 + t / 500) ** j for k in range(4) for j in range(2)], -1)
        >>> u, info = layer(basis, jnp.full(16, 0.1), key=jax.random.key(0))  # u0 = 0.1
        >>> u.shape, info.w.shape, info.points.shape, info.stats.converged.shape
        ((16, 6), (2, 8), (2, 20, 2), (2,))
    """

    problem: PDEProblem
    partition: Partition
    num_points: int | None = eqx.field(static=True, default=None)
    points: str = eqx.field(static=True, default="per_expert")
    solver: LevenbergMarquardt = LevenbergMarquardt()
    adjoint: ImplicitAdjoint | UnrolledAdjoint = ImplicitAdjoint()
    backend: str = eqx.field(static=True, default="native")
    ridge: float = eqx.field(static=True, default=0.0)
    throw: bool = eqx.field(static=True, default=True)
    interior_counts: tuple[int, ...] = eqx.field(static=True, default=())
    sweeps: int = eqx.field(static=True, default=0)
    interface_weight: float = eqx.field(static=True, default=1.0)
    coarse: bool = eqx.field(static=True, default=True)
    interface_idx: Int[Array, "k p ndim"] | None = None
    interface_valid: Bool[Array, "k p"] | None = None

    def __init__(self, problem, partition, num_points=None, points="per_expert", *,
                 solver=LevenbergMarquardt(), adjoint=ImplicitAdjoint(), backend="native",
                 ridge=0.0, throw=True, sweeps=0, interface_weight=1.0, coarse=True):
        check_choice("backend", backend, BACKENDS)
        check_choice("points", points, POINTS_MODES)
        if not isinstance(partition, Partition):
            raise TypeError(f"partition must be a pdeml.constraints.Partition, got "
                            f"{type(partition).__name__}")
        if tuple(partition.grid_shape) != tuple(problem.grid_shape):
            raise ValueError(
                f"partition.grid_shape {partition.grid_shape} does not match the problem's grid "
                f"{tuple(problem.grid_shape)}"
            )
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        counts = partition.counts_at(problem.interior_points())
        k = partition.num_experts
        if min(counts) == 0:
            raise ValueError(
                f"expert(s) {[i for i, c in enumerate(counts) if c == 0]} of the partition "
                "contain no interior point of the problem; use fewer experts"
            )
        if num_points is not None:
            if not isinstance(num_points, (int, np.integer)) or num_points < 1:
                raise ValueError(f"num_points must be a positive integer or None, got "
                                 f"{num_points!r}")
            per = num_points // k if points == "total" else num_points
            if per < 1:
                raise ValueError(
                    f"num_points={num_points} in total is fewer than one point for each of the "
                    f"K={k} experts"
                )
            if per > min(counts):
                raise ValueError(
                    f"num_points asks for {per} points per expert, but the smallest expert "
                    f"subdomain has only {min(counts)} interior points (K={k} experts; counts "
                    f"{list(counts)}); use fewer points or fewer experts"
                )
        elif len(set(counts)) > 1:
            raise ValueError(
                f"num_points=None uses every interior point of each expert, but the experts "
                f"have different counts {list(counts)}; pass num_points <= {min(counts)}"
            )
        self.problem = problem
        self.partition = partition
        self.num_points = None if num_points is None else int(num_points)
        self.points = points
        self.solver = solver
        self.adjoint = adjoint
        self.backend = backend
        self.ridge = float(ridge)
        self.throw = throw
        self.interior_counts = counts
        if not (isinstance(sweeps, (int, np.integer)) and not isinstance(sweeps, bool)
                and sweeps >= 0):
            raise ValueError(f"sweeps must be a non-negative integer, got {sweeps!r}")
        if not (isinstance(interface_weight, (int, float)) and interface_weight > 0
                and np.isfinite(interface_weight)):
            raise ValueError(f"interface_weight must be a positive number, got "
                             f"{interface_weight!r}")
        self.sweeps = int(sweeps)
        self.interface_weight = float(interface_weight)
        self.coarse = bool(coarse)
        ndim = len(problem.grid_shape)
        if self.sweeps and k > 1:
            if partition.assignment != "spatial":
                raise ValueError("sweeps > 0 (Schwarz coupling) needs a spatial partition "
                                 "(Partition.uniform); random experts have no interfaces")
            idx, valid = partition.interface_points()
        else:  # one expert has no interface: nothing to couple
            self.sweeps = 0
            idx, valid = np.zeros((k, 0, ndim), np.int32), np.zeros((k, 0), bool)
        self.interface_idx = jnp.asarray(idx)
        self.interface_valid = jnp.asarray(valid)

    @property
    def num_experts(self) -> int:
        return self.partition.num_experts

    @property
    def points_per_expert(self) -> int:
        """The number m of collocation points each expert solves with."""
        if self.num_points is None:
            return self.interior_counts[0]
        if self.points == "total":
            return self.num_points // self.num_experts
        return self.num_points

    # ---- the pieces (also used by pdeml.parallel) -----------------------------------

    def select_points(self, key=None) -> Int[Array, "k m ndim"]:
        """``(K, m, ndim)`` collocation points: m uniform draws without replacement per expert.

        Expert k draws from the interior points inside its subdomain (``partition.members``)
        with :func:`~pdeml.constraints.sampling.uniform_subset` (the points come in grid
        order). Without a key, every expert must use all its points (``num_points=None`` or
        equal).
        """
        interior = self.problem.interior_points()
        mask = self.partition.member_mask_at(interior)  # (K, q)
        m = self.points_per_expert
        if key is None:
            if m != min(self.interior_counts) or len(set(self.interior_counts)) > 1:
                raise ValueError(
                    f"MoEHardConstraint samples {m} points per expert: pass key=... (or points=...)"
                )
            # Every expert uses all its points, in grid order.
            order = jnp.argsort(~mask, axis=1, stable=True)[:, :m]
            return interior[order]
        # The rule of HardConstraint.select_points, restricted to each expert's members: a
        # one-expert mixture samples exactly HardConstraint's points for the same key.
        return interior[uniform_subset(key, m, mask)]

    def row_masks(self, basis, data) -> Bool[Array, "k p"]:
        """``(K, p)``: which IC/BC rows each expert imposes.

        ``boundary_rows="all"``: every row for every expert. ``"touching"``: row r goes to
        expert k if it does not vanish on a field supported on the expert's subdomain. The
        rows are linear in the basis, so this is checked by evaluating them on two fixed
        generic positive fields restricted to each subdomain (an exact cancellation has
        probability zero).
        """
        rows, _ = self.problem.constraint_rows(basis[..., :1], data)
        p = rows.shape[0]
        k = self.num_experts
        if self.partition.boundary_rows == "all" or p == 0:
            return jnp.ones((k, p), bool)
        probes = _probe_fields(self.problem.grid_shape, basis.dtype)

        def touched(member):
            r, _ = self.problem.constraint_rows(probes * member[..., None], data)
            return jnp.any(r != 0, axis=1)

        return jax.lax.stop_gradient(jax.vmap(touched)(self.partition.members.astype(basis.dtype)))

    def least_squares_problem(self, basis, data, points, row_mask,
                              interface=None) -> StructuredLeastSquares:
        """The structured least-squares problem of one expert.

        ``interface``: optional ``(idx (P, ndim), valid (P,), values (P,))``: the rows
        ``interface_weight * (basis[idx] @ w - values)`` where ``valid`` (Schwarz coupling).
        """
        rows, targets = self.problem.constraint_rows(basis, data)
        rows = jnp.where(row_mask[:, None], rows, 0)
        targets = jnp.where(row_mask, targets, 0)
        if interface is not None:
            idx, valid, values = interface
            c = self.interface_weight * valid.astype(rows.dtype)
            rows = jnp.concatenate([rows, c[:, None] * basis[tuple(jnp.moveaxis(idx, -1, 0))]])
            targets = jnp.concatenate([targets, c * values.astype(targets.dtype)])
        aux = self.problem.aux_at(data, points)
        return StructuredLeastSquares.from_basis(
            basis, points, self.problem.features_at, self.problem.pointwise, aux, rows, targets,
            self.ridge)

    def solve_expert(self, basis, data, points, row_mask, w0=None, use_w0=None, *,
                     throw: bool | None = None, interface=None):
        """Solve one expert: ``(w (N,), stats)``. The same steps as :class:`HardConstraint`
        (``interface``: see :meth:`least_squares_problem`)."""
        points = jnp.asarray(points)
        lsq = self.least_squares_problem(basis, data, points, row_mask, interface)
        w0 = choose_start(w0, use_w0,
                          lambda: linearised_start(self.problem, lsq, data, points, row_mask))
        sol = solve_least_squares(
            lsq, w0, solver=self.solver, adjoint=self.adjoint, backend=self.backend,
            throw=self.throw if throw is None else throw,
        )
        return sol.value, sol.stats

    def coarse_points(self, points: Int[Array, "k m ndim"]) -> Int[Array, "mc ndim"]:
        """The coarse solve's points: every K-th of all the experts' points (as many as one
        expert has)."""
        return points.reshape(-1, points.shape[-1])[:: self.num_experts]

    def solve_all(self, basis, data, points, masks, w0=None, use_w0=None, weights=None, *,
                  gather=None, interface=None, all_points=None, throw=None):
        """Every expert's solve, then the Schwarz rounds: ``(u, w (K, N), stats)``.

        ``weights`` ``(K, *grid)`` (default: the partition's), ``interface`` ``(idx, valid)``
        (default: the layer's), ``gather`` (applied to the locally blended field, e.g. a
        ``psum`` over a device axis) and ``all_points`` (every expert's points, for the coarse
        solve; default ``points``) let :class:`pdeml.parallel.ShardedMoE` run this on its
        slice of the experts.
        """
        throw = self.throw if throw is None else throw
        idx, valid = ((self.interface_idx, self.interface_valid) if interface is None
                      else interface)
        gather = (lambda v: v) if gather is None else gather

        def blend(w):
            return gather(self.blend(basis, w, weights))

        def solve(w0, use_w0, iface, last):
            return jax.vmap(
                lambda p, m, w, i: self.solve_expert(basis, data, p, m, w, use_w0,
                                                     throw=throw and last, interface=i),
                in_axes=(0, 0, None if w0 is None else 0, None if iface is None else 0),
            )(points, masks, w0, iface)

        if self.sweeps and self.coarse:
            # The coarse level: one global solve (every IC/BC row), the same on every device.
            pts_c = self.coarse_points(points if all_points is None else all_points)
            rows = jnp.ones(masks.shape[1:], bool)
            # Only the first interface data and start: the rounds' fixed point does not depend
            # on it, so its weights are held constant in the derivative (no implicit
            # derivative of a coarse solve that may have stopped short of stationarity).
            w_c, stats_c = self.solve_expert(lax.stop_gradient(basis), data, pts_c, rows,
                                             throw=False)
            w_c = lax.stop_gradient(w_c)
            w = jnp.broadcast_to(w_c, (points.shape[0], w_c.shape[0]))
            if w0 is not None:  # the caller's start for the first round
                w = w0 if use_w0 is None else jnp.where(use_w0, w0, w)
            u = basis @ w_c
            iterations = jnp.broadcast_to(stats_c.iterations, (points.shape[0],))
        else:
            w, stats = solve(w0, use_w0, None, self.sweeps == 0)
            u = blend(w)
            iterations = stats.iterations
        for s in range(self.sweeps):
            values = u[tuple(jnp.moveaxis(idx, -1, 0))]  # (K, P)
            w, stats = solve(w, None, (idx, valid, values), s == self.sweeps - 1)
            iterations = iterations + stats.iterations
            u = blend(w)
        stats = eqx.tree_at(lambda st: st.iterations, stats, iterations)
        return u, w, stats

    def blend(self, basis, w: Float[Array, "k n"], weights=None) -> Float[Array, "*grid"]:
        """``u = sum_k phi_k * (basis @ w_k)`` (``weights``: the ``phi_k``, default the
        partition's)."""
        weights = self.partition.weights if weights is None else weights
        return jnp.einsum("k...,...n,kn->...", weights.astype(basis.dtype), basis, w)

    def check_inputs(self, basis, points):
        grid = tuple(self.problem.grid_shape)
        if jnp.ndim(basis) != len(grid) + 1 or tuple(jnp.shape(basis)[:-1]) != grid:
            raise ValueError(
                f"basis must have shape (*grid, N) = (*{grid}, N) (use jax.vmap for a batch), "
                f"got {jnp.shape(basis)}"
            )
        if points is not None:
            want = (self.num_experts, None, len(grid))
            shape = jnp.shape(points)
            if len(shape) != 3 or shape[0] != want[0] or shape[2] != want[2]:
                raise ValueError(
                    f"points must have shape (K, m, ndim) = ({want[0]}, m, {want[2]}), got {shape}"
                )

    def __call__(
        self,
        basis: Float[Array, "*grid n"],
        data,
        *,
        key=None,
        points: Int[Array, "k m ndim"] | None = None,
        w0: Float[Array, "k n"] | None = None,
        use_w0=None,
    ) -> tuple[Float[Array, "*grid"], MoEConstraintInfo]:
        """Solve every expert and return ``(u, info)``.

        Args:
            basis: ``(*grid, N)`` basis functions (shared by all experts).
            data: the problem instance (e.g. the initial condition).
            key: PRNG key for sampling the collocation points.
            points: explicit ``(K, m, ndim)`` integer points, NumPy or JAX (overrides
                sampling); each must lie on the grid (``ValueError``, or a runtime error
                under ``jit``).
            w0: ``(K, N)`` initial weights of the experts (default: each expert's
                :func:`~pdeml.constraints.start.linearised_start`).
            use_w0: optional boolean scalar: ``w0`` where true, the default starts where false
                (as in :class:`HardConstraint`).
        """
        self.check_inputs(basis, points)
        basis = check_basis("basis", basis, self.problem.grid_shape)  # real float, finite
        data = error_if_nonfinite_tree("data (e.g. the initial condition u0)", data)
        if points is None:
            points = self.select_points(key)
        else:
            # NumPy points would become non-canonical constants inside the vmapped solve.
            points = check_grid_indices("points", points, self.problem.grid_shape)
        masks = self.row_masks(basis, data)
        if w0 is not None and jnp.shape(w0) != (self.num_experts, jnp.shape(basis)[-1]):
            raise ValueError(f"w0 must have shape (K, N) = ({self.num_experts}, "
                             f"{jnp.shape(basis)[-1]}), got {jnp.shape(w0)}")
        if use_w0 is not None and w0 is None:
            raise ValueError("use_w0 needs w0")
        u, w, stats = self.solve_all(basis, data, points, masks, w0, use_w0)
        return u, MoEConstraintInfo(w=w, stats=stats, points=points, row_mask=masks)
