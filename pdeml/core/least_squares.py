"""Dense Gauss-Newton / Levenberg-Marquardt for small N, exploiting pointwise structure.

The problems solved by the hard-constraint layer have a residual

    r(w) = concat( Phi(T[:, i, :] @ w; aux_i)  for i < m,     (PDE at m sampled points)
                   rows @ w - targets,                         (IC/BC rows, linear)
                   sqrt(ridge) * w )                           (Tikhonov rows)

with features T of shape (K, m, N), N small (16-64) and m large (1e3-1e5). Because every
feature is linear in w, the Jacobian of the PDE block is J = sum_k diag(dPhi/da_k) T_k: one
``vmap(grad(Phi))`` over the points and one contraction, never a Jacobian of a black-box
function. Each Levenberg-Marquardt step forms J^T J (N x N, one GEMM) and solves the damped
normal equations by Cholesky. For a linear Phi the first Gauss-Newton step is exact.

Gradients of the solution w.r.t. the features (and everything upstream: the basis network)
come from :func:`pdeml.core.implicit.implicit_solution` (:class:`ImplicitAdjoint`, with the
exact Hessian of 1/2 ||r||^2 or its Gauss-Newton approximation), or by differentiating the
unrolled iterations (:class:`UnrolledAdjoint`, for checking).

Precision: the normal equations square the condition number of J, so run with
``jax_enable_x64`` for ill-conditioned bases (the diagnostics report cond(J)); the solve runs
in the dtype of the features.

Reference: Negiar et al. 2023; Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PyTree

from pdeml.core.implicit import implicit_solution
from pdeml.core.validation import check_choice

# Result codes reported in SolveStats.result.
SUCCESS = 0
MAX_STEPS_REACHED = 1
NONFINITE = 2
RESULT_MESSAGES = {
    SUCCESS: "converged",
    MAX_STEPS_REACHED: "did not converge within max_steps",
    NONFINITE: "produced a non-finite value (NaN/inf in the residual or step)",
}

BACKENDS = ("native", "jaxopt", "optimistix")


class StructuredLeastSquares(eqx.Module):
    """A least-squares problem with residual = pointwise nonlinearity of linear features.

    Attributes:
        features: ``(K, m, N)`` feature matrices T_k at the m sampled points.
        pointwise: ``Phi(a, aux_i) -> scalar`` for one point, ``a`` of shape ``(K,)``.
        aux: per-point data for ``pointwise`` (pytree with leading axis m) or None.
        rows: ``(p, N)`` linear constraint rows (IC/BC); may have p = 0.
        targets: ``(p,)`` right-hand side of the rows.
        ridge: Tikhonov weight (>= 0) adding ``sqrt(ridge) * w`` rows.
    """

    features: Float[Array, "k m n"]
    pointwise: Callable
    aux: PyTree
    rows: Float[Array, "p n"]
    targets: Float[Array, " p"]
    ridge: Float[Array, ""]
    basis: Float[Array, "*grid n"] | None
    points: Array | None
    feature_map: Callable | None

    def __init__(self, features, pointwise, aux=None, rows=None, targets=None, ridge=0.0, *,
                 basis=None, points=None, feature_map=None):
        if (basis is None) != (feature_map is None):
            raise ValueError("basis and feature_map must be given together (use from_basis)")
        if basis is not None:
            if features is not None:
                raise ValueError("give either features or (basis, feature_map), not both")
            features = feature_map(basis, points)
        features = jnp.asarray(features)
        if features.ndim != 3:
            raise ValueError(
                f"features must have shape (K, m, N), got {features.shape}"
            )
        _, m, n = features.shape
        if m == 0:
            raise ValueError("features has no points (m = 0)")
        if not jnp.issubdtype(features.dtype, jnp.inexact):
            raise TypeError(f"features must be floating point, got {features.dtype}")
        dtype = features.dtype
        if rows is None:
            rows = jnp.zeros((0, n), dtype)
            targets = jnp.zeros((0,), dtype)
        rows = jnp.asarray(rows, dtype)
        if targets is None:
            raise ValueError("targets must be given together with rows")
        targets = jnp.asarray(targets, dtype)
        if rows.ndim != 2 or rows.shape[1] != n:
            raise ValueError(f"rows must have shape (p, {n}) to match features, got {rows.shape}")
        if targets.shape != (rows.shape[0],):
            raise ValueError(
                f"targets must have shape ({rows.shape[0]},) to match rows, got {targets.shape}"
            )
        self.features = features
        self.pointwise = pointwise
        self.aux = aux
        self.rows = rows
        self.targets = targets
        self.ridge = jnp.asarray(ridge, dtype)
        self.basis = basis
        self.points = points
        self.feature_map = feature_map

    @classmethod
    def from_basis(cls, basis, points, feature_map, pointwise, aux=None, rows=None, targets=None,
                   ridge=0.0) -> StructuredLeastSquares:
        """The problem whose features are ``feature_map(basis, points)``, differentiated via the basis.

        ``feature_map(basis, points)`` maps a ``(*grid, N)`` basis to ``(K, m, N)`` features
        (``points``: any pytree of arrays it needs, e.g. the ``(m, ndim)`` collocation
        indices). It must be linear in the basis and act on every basis function alike
        (``feature_map(b)[..., n]`` depends only on ``b[..., n]``, by the same map for every
        n) -- true of derivative operators evaluated at points,
        :meth:`pdeml.pde.PDEProblem.features_at`. The solution is the
        same as with ``features=feature_map(basis, points)``; what changes is the implicit derivative
        in the basis: with ``a = T w`` the tangent of ``J^T r`` along ``db`` needs the features
        of the one field ``db @ w`` plus a contraction of ``db`` with one adjoint field, so
        reverse mode scatters O(m K) scalars instead of the (K, m, N) feature cotangents
        through the stencils (see :meth:`basis_tangent`). Pass ``feature_map`` as a function
        of its inputs (e.g. a bound method of the PDE problem), not a closure over traced
        arrays.
        """
        basis = jnp.asarray(basis)
        if basis.ndim < 2:
            raise ValueError(f"basis must have shape (*grid, N), got {basis.shape}")
        prob = cls(None, pointwise, aux, rows, targets, ridge, basis=basis, points=points,
                   feature_map=feature_map)
        if prob.features.shape[2] != basis.shape[-1]:
            raise ValueError(
                f"feature_map must return (K, m, N) with N = {basis.shape[-1]} (the basis' last "
                f"axis), got {prob.features.shape}"
            )
        return prob

    @property
    def num_basis(self) -> int:
        return self.features.shape[2]

    @property
    def num_points(self) -> int:
        return self.features.shape[1]

    def _features_times(self, v: Float[Array, " n"]) -> Float[Array, "m k"]:
        """``a[i, k] = T_k[i] @ v``: one matrix-vector product per feature (K is small).

        Written as ``(T @ v).T`` rather than an einsum over ``kmn``: XLA's CPU back end lowers
        the einsum to a transposing loop that is ~3x slower than K plain matrix-vector products.
        """
        return (self.features @ v).T

    def _combine_features(self, coeffs: Float[Array, "m k"]) -> Float[Array, "m n"]:
        """``sum_k diag(coeffs[:, k]) T_k``: one elementwise pass over the features."""
        out = coeffs[:, 0, None] * self.features[0]
        for k in range(1, self.features.shape[0]):
            out = out + coeffs[:, k, None] * self.features[k]
        return out

    def pde_residual(self, w: Float[Array, " n"]) -> Float[Array, " m"]:
        """Phi at the sampled points for weights ``w``."""
        return jax.vmap(self.pointwise)(self._features_times(w), self.aux)

    def residual(self, w: Float[Array, " n"]) -> Float[Array, " r"]:
        """The full residual vector (PDE rows, constraint rows, ridge rows)."""
        return jnp.concatenate(
            [self.pde_residual(w), self.rows @ w - self.targets, jnp.sqrt(self.ridge) * w]
        )

    def pde_residual_and_jacobian(self, w):
        """PDE residual (m,) and its Jacobian (m, N) from the pointwise structure."""
        r, dphi, _ = self._pointwise_derivatives(w)
        return r, self._combine_features(dphi)

    def _pointwise_derivatives(self, w, *, second: bool = False):
        """Phi (m,), its gradient (m, K) and, with ``second``, its Hessian (m, K, K) (else None)
        at every point, evaluated at the feature values ``a = T w``."""
        a = self._features_times(w)
        r, dphi = jax.vmap(jax.value_and_grad(self.pointwise))(a, self.aux)
        h = jax.vmap(jax.hessian(self.pointwise))(a, self.aux) if second else None
        return r, dphi, h

    def row_gram(self) -> Float[Array, "n n"]:
        """``rows^T rows + ridge I``: the part of J^T J that does not depend on w."""
        eye = jnp.eye(self.num_basis, dtype=self.rows.dtype)
        return self.rows.T @ self.rows + self.ridge * eye

    def normal_equations(self, w, row_gram=None):
        """Objective 1/2||r||^2, gradient J^T r, Gauss-Newton matrix J^T J and ||Phi||^2.

        ``row_gram``: :meth:`row_gram`, if the caller has it (the solver computes it once).
        The PDE block is one matrix product ``[J r]^T [J r]``, which gives J^T J, J^T r and
        ||Phi||^2 in one pass over J.
        """
        r, jac = self.pde_residual_and_jacobian(w)
        n = self.num_basis
        jr = jnp.concatenate([jac, r[:, None]], axis=1)
        prod = jr.T @ jr
        c = self.rows @ w - self.targets
        if row_gram is None:
            row_gram = self.row_gram()
        gtg = prod[:n, :n] + row_gram
        grad = prod[:n, n] + self.rows.T @ c + self.ridge * w
        pde_sq = prod[n, n]
        obj = 0.5 * (pde_sq + c @ c + self.ridge * (w @ w))
        return obj, grad, gtg, pde_sq

    def hessian(self, w, *, exact: bool = True) -> Float[Array, "n n"]:
        """The Hessian of 1/2||r||^2 at ``w`` (``exact=False``: its Gauss-Newton part J^T J).

        With ``d_i = grad Phi_i`` and ``h_i`` its K x K Hessian at each point, the PDE block is
        ``sum_kl T_k^T diag(d_k d_l + r h_kl) T_l``: K weighted feature combinations and K
        matrix products of the size of J^T J -- never a Hessian of a black-box function of w.
        """
        if not exact:
            return self.normal_equations(w)[2]
        r, dphi, h = self._pointwise_derivatives(w, second=True)
        weights = dphi[:, :, None] * dphi[:, None, :] + r[:, None, None] * h
        pde = sum(
            self.features[k].T @ self._combine_features(weights[:, k, :])
            for k in range(self.features.shape[0])
        )
        return 0.5 * (pde + pde.T) + self.row_gram()

    def optimality(self, w):
        """J(w)^T r(w): zero at a stationary point of 1/2||r||^2."""
        r, jac = self.pde_residual_and_jacobian(w)
        return jac.T @ r + self.rows.T @ (self.rows @ w - self.targets) + self.ridge * w

    def basis_tangent(self, w, dbasis, *, exact: bool = True) -> Float[Array, " n"]:
        """Derivative of the PDE part of ``J^T r`` at ``w`` along ``dbasis`` (features from it).

        With ``a_ik = T_k[i] w``, ``d_ik = dPhi/da_k``, ``h_ikl`` its Hessian and
        ``J_i = sum_k d_ik T_k[i]``, the tangent of ``sum_i J_i r_i`` along ``dT`` is

            sum_i J_i (sum_l d_il da_il) + sum_k T_k^T (r h da)_k + sum_k sum_i d_ik r_i dT_k[i],

        ``da = feature_map(db @ w)``: the features of ONE field. The last term is the
        contraction of ``db`` with the adjoint field ``G = F^T(d r)`` of the scalar feature map
        (it is absent, like the ``h`` term, for the Gauss-Newton optimality, ``exact=False``).
        Every coefficient comes from the primal, so reverse mode transposes this into a few
        scalar fields on the grid and two outer products with ``w`` and the adjoint vector.
        """
        if self.basis is None:
            raise ValueError("basis_tangent needs a problem built with from_basis")
        grid = self.basis.shape[:-1]

        def scalar_map(field):  # (*grid) -> (K, m): the feature map of one basis function
            return self.feature_map(field[..., None], self.points)[..., 0]

        r, dphi, h = self._pointwise_derivatives(w, second=exact)
        da = scalar_map(jnp.tensordot(dbasis, w, axes=1)).T  # (m, K)
        # J^T t = sum_k T_k^T (d_k t): K matrix-vector products, J itself is never formed.
        q = dphi * jnp.sum(dphi * da, axis=1, keepdims=True)
        if exact:
            q = q + r[:, None] * jnp.einsum("ikl,il->ik", h, da)
        out = sum(self.features[k].T @ q[:, k] for k in range(self.features.shape[0]))
        if not exact:
            return out
        template = jax.ShapeDtypeStruct(grid, self.basis.dtype)
        (adj,) = jax.linear_transpose(scalar_map, template)((dphi * r[:, None]).T)
        return out + jnp.tensordot(adj, dbasis, axes=len(grid))

    def gauss_newton_optimality(self, w, w_lin):
        """J(w_lin)^T r(w) with J frozen at ``w_lin`` (the Gauss-Newton linearisation)."""
        _, jac = self.pde_residual_and_jacobian(w_lin)
        jac = lax.stop_gradient(jac)
        return (
            jac.T @ self.pde_residual(w)
            + self.rows.T @ (self.rows @ w - self.targets)
            + self.ridge * w
        )


class SolveStats(eqx.Module):
    """Diagnostics returned by every solve.

    Attributes:
        iterations: number of Levenberg-Marquardt iterations (accepted or rejected steps).
        residual_norm: ||Phi|| (2-norm) over the sampled PDE points at the solution.
        constraint_norm: ||rows @ w - targets|| (IC/BC rows) at the solution.
        gradient_norm: ||J^T r||_inf at the solution.
        converged: whether a convergence test passed.
        condition_number: cond(J) = sqrt(cond(J^T J)) at the solution.
        result: a code, see ``RESULT_MESSAGES``.
    """

    iterations: Int[Array, ""]
    residual_norm: Float[Array, ""]
    constraint_norm: Float[Array, ""]
    gradient_norm: Float[Array, ""]
    converged: Bool[Array, ""]
    condition_number: Float[Array, ""]
    result: Int[Array, ""]


class LeastSquaresSolution(eqx.Module):
    """The weights ``value`` and the solve's ``stats``."""

    value: Float[Array, " n"]
    stats: SolveStats


class LevenbergMarquardt(eqx.Module):
    """Levenberg-Marquardt with Nielsen's damping update, dense normal equations + Cholesky.

    Convergence: an accepted relative step ``||dw|| <= xtol (||w|| + xtol)``, or the scaled gradient
    ``||J^T r||_inf <= gtol * ||r|| * sqrt(max diag J^T J)`` (the cosine between r and the
    columns of J), or an exactly zero residual. ``None`` tolerances default to
    ``sqrt(eps)`` resp. ``eps**(2/3)`` of the features' dtype.

    Attributes:
        max_steps: iteration cap (``converged`` is False when it is hit).
        xtol, gtol: tolerances as above.
        damping: initial damping relative to ``max diag(J^T J)``.
    """

    max_steps: int = eqx.field(static=True, default=100)
    xtol: float | None = eqx.field(static=True, default=None)
    gtol: float | None = eqx.field(static=True, default=None)
    damping: float = eqx.field(static=True, default=1e-6)

    def __check_init__(self):
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("xtol", "gtol"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if not self.damping >= 0:
            raise ValueError(f"damping must be >= 0, got {self.damping}")

    def tolerances(self, dtype):
        eps = float(jnp.finfo(dtype).eps)
        xtol = self.xtol if self.xtol is not None else eps**0.5
        gtol = self.gtol if self.gtol is not None else eps ** (2 / 3)
        return xtol, gtol


class _State(eqx.Module):
    w: Array
    obj: Array
    grad: Array
    gtg: Array
    pde_sq: Array  # ||Phi||^2 at w (the PDE rows only), for the diagnostics
    row_gram: Array  # rows^T rows + ridge I, computed once
    mu: Array
    nu: Array
    step: Array
    done: Array
    converged: Array
    nonfinite: Array


def _init_state(problem: StructuredLeastSquares, w0, solver: LevenbergMarquardt):
    row_gram = problem.row_gram()
    obj, grad, gtg, pde_sq = problem.normal_equations(w0, row_gram)
    mu = solver.damping * jnp.max(jnp.diag(gtg))
    dt = w0.dtype
    return _State(
        w=w0, obj=obj, grad=grad, gtg=gtg, pde_sq=pde_sq, row_gram=row_gram, mu=mu,
        nu=jnp.asarray(2.0, dt),
        step=jnp.asarray(0), done=jnp.asarray(False), converged=jnp.asarray(False),
        nonfinite=~jnp.isfinite(obj),
    )


def _lm_step(problem: StructuredLeastSquares, solver: LevenbergMarquardt, s: _State) -> _State:
    xtol, gtol = solver.tolerances(s.w.dtype)
    n = s.w.shape[0]
    eye = jnp.eye(n, dtype=s.w.dtype)
    chol = jnp.linalg.cholesky(s.gtg + s.mu * eye)
    dw = -jax.scipy.linalg.cho_solve((chol, True), s.grad)
    w_new = s.w + dw
    obj_new, grad_new, gtg_new, pde_sq_new = problem.normal_equations(w_new, s.row_gram)
    # Predicted decrease of the Gauss-Newton model (Nielsen): 1/2 dw^T (mu dw - grad).
    predicted = 0.5 * dw @ (s.mu * dw - s.grad)
    tiny = jnp.finfo(s.w.dtype).tiny
    gain = (s.obj - obj_new) / jnp.maximum(predicted, tiny)
    finite = jnp.isfinite(obj_new) & jnp.all(jnp.isfinite(dw))
    # Near the solution the objective change drops below its round-off, and comparing
    # objectives would reject good steps (inflating the damping until the step is "small"
    # with w accurate only to ~sqrt(eps)). There, accept a step that reduces the gradient.
    eps = jnp.finfo(s.w.dtype).eps
    below_roundoff = predicted <= 16 * eps * jnp.abs(s.obj)
    grad_down = jnp.max(jnp.abs(grad_new)) < jnp.max(jnp.abs(s.grad))
    accept = finite & ((gain > 0) | (below_roundoff & grad_down))
    mu_accept = s.mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3)
    keep = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
    w = keep(w_new, s.w)
    obj = keep(obj_new, s.obj)
    grad = keep(grad_new, s.grad)
    gtg = keep(gtg_new, s.gtg)
    pde_sq = keep(pde_sq_new, s.pde_sq)
    mu = jnp.where(accept, mu_accept, s.mu * s.nu)
    nu = jnp.where(accept, 2.0, 2.0 * s.nu).astype(s.nu.dtype)

    small_step = jnp.linalg.norm(dw) <= xtol * (jnp.linalg.norm(w) + xtol)
    rnorm = jnp.sqrt(2.0 * obj)
    scale = jnp.sqrt(jnp.max(jnp.diag(gtg)))
    small_grad = jnp.max(jnp.abs(grad)) <= gtol * rnorm * scale
    zero_res = obj <= tiny
    converged = finite & ((accept & small_step) | small_grad | zero_res)
    nonfinite = ~finite & ~jnp.isfinite(s.obj)  # could not recover from a bad start
    step = s.step + 1
    done = converged | nonfinite | (step >= solver.max_steps)
    return _State(w, obj, grad, gtg, pde_sq, s.row_gram, mu, nu, step, done, converged, nonfinite)


def _native_while(problem, w0, solver):
    state = _init_state(problem, w0, solver)
    return lax.while_loop(lambda s: ~s.done, lambda s: _lm_step(problem, solver, s), state)


def _native_unrolled(problem, w0, solver):
    """Fixed number of iterations with masking, so reverse mode can differentiate it."""
    state = _init_state(problem, w0, solver)

    def body(s, _):
        new = _lm_step(problem, solver, s)
        return jax.tree.map(lambda a, b: jnp.where(s.done, a, b), s, new), None

    state, _ = lax.scan(body, state, None, length=solver.max_steps)
    return state


class ImplicitAdjoint(eqx.Module):
    """Differentiate the solution by the implicit function theorem.

    Attributes:
        hessian: ``"exact"`` uses the Hessian of 1/2||r||^2 (J^T J + sum r_i Hess r_i) and the
            full derivative of J^T r; ``"gauss_newton"`` freezes J at the solution (drops the
            second-order terms, exact when the residual vanishes or Phi is linear).
    """

    hessian: Literal["exact", "gauss_newton"] = eqx.field(static=True, default="exact")

    def __check_init__(self):
        check_choice("hessian", self.hessian, ("exact", "gauss_newton"))


class UnrolledAdjoint(eqx.Module):
    """Differentiate through ``max_steps`` masked iterations (for checking; costs memory)."""


def stop_gradient_arrays(tree):
    """``lax.stop_gradient`` on the floating arrays of a pytree, leaving other leaves alone."""
    dynamic, static = eqx.partition(tree, eqx.is_inexact_array)
    return eqx.combine(lax.stop_gradient(dynamic), static)


def _attach_implicit(w_star, problem: StructuredLeastSquares, adjoint: ImplicitAdjoint):
    exact = adjoint.hessian == "exact"
    if exact:
        def optimality(w, prob):
            return prob.optimality(w)
    else:
        # J frozen at the point of evaluation: the rule only evaluates it at w = w*.
        def optimality(w, prob):
            return prob.gauss_newton_optimality(w, lax.stop_gradient(w))

    # d(optimality)/dw in closed form from the structure (J^T J, plus the second-order
    # part for "exact"): one pass over the features instead of N forward-mode passes.
    def jacobian(w, prob):
        return prob.hessian(w, exact=exact)

    tangent = None
    if problem.basis is not None:
        # The features are feature_map(basis): take their derivative through the basis in
        # closed form (basis_tangent), everything else (rows, targets, aux, ridge) by jvp.
        dynamic, _ = eqx.partition(problem, eqx.is_inexact_array)
        spec = jax.tree.map(lambda _: True, dynamic)
        spec = eqx.tree_at(lambda p: (p.features, p.basis), spec, replace=(False, False))

        def tangent(w, prob, dprob):
            dyn, other = eqx.partition(prob, eqx.is_inexact_array)
            rest, fixed = eqx.partition(dyn, spec)
            _, d_rest = jax.jvp(lambda v: optimality(w, eqx.combine(v, fixed, other)), (rest,),
                                (eqx.filter(dprob, spec),))
            return d_rest + prob.basis_tangent(w, dprob.basis, exact=exact)

    return implicit_solution(w_star, problem, optimality, jacobian=jacobian, tangent=tangent)


def _stats_from(problem: StructuredLeastSquares, w, grad, gtg, pde_sq, iterations,
                converged) -> SolveStats:
    eig = jnp.linalg.eigvalsh(gtg)
    cond = jnp.sqrt(jnp.abs(eig[-1]) / jnp.maximum(jnp.abs(eig[0]), jnp.finfo(w.dtype).tiny))
    finite = jnp.all(jnp.isfinite(w)) & jnp.isfinite(pde_sq)
    converged = converged & finite
    result = jnp.where(converged, SUCCESS, jnp.where(finite, MAX_STEPS_REACHED, NONFINITE))
    return SolveStats(
        iterations=jnp.asarray(iterations, jnp.int32),
        residual_norm=jnp.sqrt(pde_sq),
        constraint_norm=jnp.linalg.norm(problem.rows @ w - problem.targets),
        gradient_norm=jnp.max(jnp.abs(grad)),
        converged=converged,
        condition_number=cond,
        result=result.astype(jnp.int32),
    )


def _stats(problem: StructuredLeastSquares, w, iterations, converged) -> SolveStats:
    """Diagnostics at ``w``, evaluating the problem there (for the external back ends)."""
    _, grad, gtg, pde_sq = problem.normal_equations(w)
    return _stats_from(problem, w, grad, gtg, pde_sq, iterations, converged)


def _state_stats(problem: StructuredLeastSquares, state: _State) -> SolveStats:
    """Diagnostics from the solver's final state: no extra evaluation of the problem."""
    return _stats_from(problem, state.w, state.grad, state.gtg, state.pde_sq, state.step,
                       state.converged)


def solve_least_squares(
    problem: StructuredLeastSquares,
    w0: Float[Array, " n"] | None = None,
    *,
    solver: LevenbergMarquardt = LevenbergMarquardt(),
    adjoint: ImplicitAdjoint | UnrolledAdjoint = ImplicitAdjoint(),
    backend: str = "native",
    throw: bool = True,
) -> LeastSquaresSolution:
    """Solve ``min_w 1/2 ||r(w)||^2`` for a :class:`StructuredLeastSquares` problem.

    Args:
        problem: the structured least-squares problem.
        w0: initial weights (default zeros), shape ``(N,)``.
        solver: iteration settings (max_steps, tolerances, damping), shared by all back ends.
        adjoint: :class:`ImplicitAdjoint` (default) or :class:`UnrolledAdjoint`.
        backend: ``"native"`` (structured LM above), ``"jaxopt"`` or ``"optimistix"``
            (their Levenberg-Marquardt on the same residual; needs the extra of that name;
            only with :class:`ImplicitAdjoint`).
        throw: raise ``equinox.EquinoxRuntimeError`` if the solve fails; with ``False`` the
            failure is only reported in ``stats.converged`` / ``stats.result``.

    Returns:
        :class:`LeastSquaresSolution` with ``value`` (N,) and ``stats``.

    Example:
        >>> import jax.numpy as jnp
        >>> T = jnp.stack([jnp.eye(3)])                  # K=1, m=3, N=3: Phi(a) = a - 1
        >>> prob = StructuredLeastSquares(T, lambda a, aux: a[0] - 1.0)
        >>> sol = solve_least_squares(prob)
        >>> [round(float(v), 6) for v in sol.value], bool(sol.stats.converged)
        ([1.0, 1.0, 1.0], True)
    """
    check_choice("backend", backend, BACKENDS)
    if not isinstance(adjoint, (ImplicitAdjoint, UnrolledAdjoint)):
        raise TypeError(f"adjoint must be ImplicitAdjoint() or UnrolledAdjoint(), got {adjoint!r}")
    n = problem.num_basis
    dtype = problem.features.dtype
    w0 = jnp.zeros((n,), dtype) if w0 is None else jnp.asarray(w0, dtype)
    if w0.shape != (n,):
        raise ValueError(f"w0 must have shape ({n},), got {w0.shape}")

    frozen = stop_gradient_arrays(problem)
    if isinstance(adjoint, UnrolledAdjoint):
        if backend != "native":
            raise ValueError("UnrolledAdjoint is only available with backend='native'")
        state = _native_unrolled(problem, w0, solver)
        w = state.w
        stats = _state_stats(frozen, stop_gradient_arrays(state))
    else:
        if backend == "native":
            state = _native_while(frozen, w0, solver)
            w_star = state.w
            stats = _state_stats(frozen, state)
        else:
            if backend == "jaxopt":
                from pdeml.interop.jaxopt import levenberg_marquardt_jaxopt as external
            else:
                from pdeml.interop.optimistix import levenberg_marquardt_optimistix as external
            w_star, iterations, converged = external(frozen, w0, solver)
            stats = _stats(frozen, w_star, iterations, converged)
        w = _attach_implicit(w_star, problem, adjoint)

    if throw:
        w = eqx.error_if(
            w,
            ~stats.converged,
            "Levenberg-Marquardt failed: it did not converge within max_steps or produced "
            "NaN/inf (check the basis for NaN, its conditioning, or raise max_steps; "
            "pass throw=False to inspect stats)",
        )
    return LeastSquaresSolution(value=w, stats=stats)
