"""Dense Gauss-Newton / Levenberg-Marquardt for small N, exploiting pointwise structure.

The problems solved by the hard-constraint layer have a residual

    r(w) = concat( Phi(T[:, i, :] @ w; aux_i)  for i < m,     (PDE at m sampled points)
                   rows @ w - targets,                         (IC/BC rows, linear)
                   sqrt(ridge) * w )                           (Tikhonov rows)

with features T of shape (K, m, N), N small (16-64) and m large (1e3-1e5). Because every
feature is linear in w, the Jacobian of the PDE block is J = sum_k diag(dPhi/da_k) T_k: one
``vmap(grad(Phi))`` over the points and one contraction, never a Jacobian of a black-box
function. Each Levenberg-Marquardt step solves the damped Gauss-Newton system, by Cholesky of
J^T J (one GEMM, float64) or from a QR factorisation of J (float32: no squaring of the
condition number). For a linear Phi the first Gauss-Newton step is exact up to the initial
damping (relative 1e-6); the second makes it exact to round-off.

Gradients of the solution w.r.t. the features (and everything upstream: the basis network)
come from :func:`pdeml.core.implicit.implicit_solution` (:class:`ImplicitAdjoint`, with the
exact Hessian of 1/2 ||r||^2 or its Gauss-Newton approximation), or by differentiating the
unrolled iterations (:class:`UnrolledAdjoint`, for checking).

Convergence means stationarity (a scaled first-order test with a stated rounding floor, see
:class:`LevenbergMarquardt`); a solve that stops on a small step or round-off at a point that
is not stationary reports ``STAGNATED``, and ``throw=True`` raises. The solve runs in the
dtype of the features; cond(J) is reported from the triangular factor in float32, so it does
not saturate at 1/sqrt(eps).

Reference: Negiar et al. 2023; Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int, PyTree

from pdeml.core.implicit import implicit_solution
from pdeml.core.solution import RESULTS, Solution, max_steps_option, raise_if_failed, result_code
from pdeml.core.validation import check_choice


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
    probe: Float[Array, "k m n"] | None

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
        self.probe = None if basis is None else _stencil_probe(basis, points, feature_map)

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
        r, jac, _ = self._pde_block(w)
        return r, jac

    def _pde_block(self, w):
        """``(r, J, terms_sq)``: the residual, its Jacobian and ``sum_i t_i^2`` with
        ``t_i = sum_k |dPhi/da_k| (|a_k| + s_k) + |Phi - sum_k dPhi/da_k a_k|``, the size of the
        terms that cancel in ``Phi`` at point i (what its rounding error is proportional to).
        ``s_k`` (:meth:`_stencil_size`) is the size of the terms that cancel inside the feature
        map itself (a finite-difference stencil), zero for features given directly."""
        a = self._features_times(w)
        r, dphi = jax.vmap(jax.value_and_grad(self.pointwise))(a, self.aux)
        lin = dphi * a
        terms = jnp.sum(jnp.abs(lin), axis=1) + jnp.abs(r - jnp.sum(lin, axis=1))
        if self.basis is not None:
            terms = terms + jnp.sum(jnp.abs(dphi) * self._stencil_size(w), axis=1)
        return r, self._combine_features(dphi), terms @ terms

    def _stencil_size(self, w) -> Float[Array, "m k"]:
        """The size of the terms that cancel when the feature map acts on the field
        ``u = basis @ w`` (e.g. ``u_(i+1) - 2 u_i + u_(i-1)`` over ``dx^2``), per point and
        feature: ``|feature_map(sigma * u)|`` with ``sigma`` a fixed random sign per grid point,
        a one-probe estimate of ``|stencil| |u|`` (signs that do not cancel), evaluated as
        ``|P w|`` with the probe features ``P`` built once with the problem
        (:func:`_stencil_probe`; the feature map is linear). The field, not each basis
        function: cancellation between basis functions earns no slack."""
        w = lax.stop_gradient(w).astype(self.probe.dtype)
        return jnp.abs(self.probe @ w).T.astype(self.features.dtype)

    def residual_size(self, w, terms_sq):
        """The size of the residual's terms: ``sqrt(sum_i t_i^2) + ||rows w|| + ||targets||``."""
        return (jnp.sqrt(terms_sq) + jnp.linalg.norm(self.rows @ w)
                + jnp.linalg.norm(self.targets))

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

    def normal_equations(self, w, row_gram=None, *, with_size: bool = False):
        """Objective 1/2||r||^2, gradient J^T r, Gauss-Newton matrix J^T J and ||Phi||^2.

        ``row_gram``: :meth:`row_gram`, if the caller has it (the solver computes it once).
        The PDE block is one matrix product ``[J r]^T [J r]``, which gives J^T J, J^T r and
        ||Phi||^2 in one pass over J. ``with_size``: also :meth:`residual_size` at ``w``.
        """
        r, jac, terms_sq = self._pde_block(w)
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
        if with_size:
            return obj, grad, gtg, pde_sq, self.residual_size(w, terms_sq)
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

    def row_factor(self):
        """The rows' triangular factor (``rows = Q R``, reduced: ``min(p, N)`` rows), computed
        once per solve: ``R^T R = rows^T rows``, the rows' share of J^T J."""
        return jnp.linalg.qr(self.rows, mode="r")

    def qr_linearisation(self, w, row_factor=None, *, with_size: bool = False):
        """Objective 1/2||r||^2, gradient J^T r, the triangular factor R of J and ||Phi||^2.

        ``R`` is the ``(N, N)`` upper-triangular factor of the whole Jacobian (PDE rows,
        IC/BC rows, ridge rows), ``J = Q R``, so ``J^T J = R^T R`` without forming ``J^T J``
        and the condition number of the linear algebra is cond(J), not cond(J)^2. Two
        factorisations: a QR of the ``(m, N)`` PDE block, then a QR of the small stack of its
        triangle with the rows' triangle and the ridge rows. The gradient is the product
        ``J^T r`` itself, not ``R^T (Q^T r)``: a Householder QR perturbs ``Q^T r`` by about
        eps ||J||, which near a solution (||r|| << ||J||) would swamp the gradient in float32.
        Returns ``(obj, grad, R, pde_sq)`` (and :meth:`residual_size` with ``with_size``).
        """
        r, jac, terms_sq = self._pde_block(w)
        n = self.num_basis
        dtype = jac.dtype
        pde_tri = jnp.linalg.qr(jac, mode="r")
        if row_factor is None:
            row_factor = self.row_factor()
        stack = jnp.concatenate([pde_tri[:n], row_factor,
                                 jnp.sqrt(self.ridge) * jnp.eye(n, dtype=dtype)])
        big_r = jnp.linalg.qr(stack, mode="r")[:n]
        c = self.rows @ w - self.targets
        grad = jac.T @ r + self.rows.T @ c + self.ridge * w
        pde_sq = r @ r
        obj = 0.5 * (pde_sq + c @ c + self.ridge * (w @ w))
        if with_size:
            return obj, grad, big_r, pde_sq, self.residual_size(w, terms_sq)
        return obj, grad, big_r, pde_sq

    def gauss_newton_optimality(self, w, w_lin):
        """J(w_lin)^T r(w) with J frozen at ``w_lin`` (the Gauss-Newton linearisation)."""
        _, jac = self.pde_residual_and_jacobian(w_lin)
        jac = lax.stop_gradient(jac)
        return (
            jac.T @ self.pde_residual(w)
            + self.rows.T @ (self.rows @ w - self.targets)
            + self.ridge * w
        )


def _stencil_probe(basis, points, feature_map):
    """``feature_map(sigma * basis)``: the features of the basis with every grid value's sign
    flipped at random (``sigma``: Rademacher signs from a fixed key, one per grid point), for
    :meth:`StructuredLeastSquares._stencil_size`. No gradient flows through it; it is an
    estimate of a rounding scale, so it is kept in float32 (half the memory traffic of the
    features in float64) unless the basis is in a lower precision."""
    basis = lax.stop_gradient(basis)
    signs = jax.random.rademacher(jax.random.key(0), basis.shape[:-1], basis.dtype)
    probe = lax.stop_gradient(feature_map(signs[..., None] * basis, points))
    if jnp.finfo(probe.dtype).bits > 32:
        probe = probe.astype(jnp.float32)
    return probe


# Result codes reported in SolveStats.result (the codes of pdeml.core.RESULTS), and what
# each means for this solver.
SUCCESS = RESULTS.SUCCESS
MAX_STEPS_REACHED = RESULTS.MAX_STEPS_REACHED
NONFINITE = RESULTS.NONFINITE
STAGNATED = RESULTS.STAGNATED
RESULT_MESSAGES = {
    SUCCESS: "converged (the stationarity test holds)",
    MAX_STEPS_REACHED: "did not converge within max_steps (raise max_steps, or start closer: "
                       "layers accept w0=)",
    NONFINITE: "produced a non-finite value (NaN/inf in the residual or step; check the basis "
               "and the data for NaN/inf)",
    STAGNATED: "stopped at a point that is not stationary: no step reduces ||r|| any more "
               "(round-off limited; the basis is too ill-conditioned for this precision -- use "
               "float64, a better-conditioned basis, or loosen rtol)",
}

BACKENDS = ("native", "jaxopt", "optimistix", "optimistix-cholesky")
LINEAR_SOLVERS = ("auto", "qr", "cholesky")

# The rounding floor of the stationarity test, in units of eps * size / sqrt(rows), size =
# StructuredLeastSquares.residual_size: computing r in floating point perturbs each entry by
# about eps times the size of the terms that cancel in it -- sum_k |dPhi/da_k| (|a_k| + s_k)
# plus the constant part, per point, s_k the size of the terms that cancel inside the feature
# map (a stencil's u_(i+1) - 2 u_i + u_(i-1), estimated with random signs) -- and that
# perturbation, uncorrelated with the columns of J, reaches (J^T r)_j with the size ||J_j||
# times its root-mean-square entry. The field u = basis @ w enters, not |basis| |w|: a basis so
# ill-conditioned that w cancels between columns earns no extra slack. 4 (measured): every
# zero-residual robustness case (reaction-diffusion, Burgers, Navier-Stokes, both precisions)
# converges at the truth, and the DS 64 x 26, N = 12 case that crawls is still refused.
_FLOOR = 4.0


class SolveStats(eqx.Module):
    """Diagnostics returned by every solve.

    Attributes:
        iterations: number of Levenberg-Marquardt iterations (accepted or rejected steps).
        residual_norm: ||Phi|| (2-norm) over the sampled PDE points at the solution.
        constraint_norm: ||rows @ w - targets|| (IC/BC rows) at the solution.
        gradient_norm: ||J^T r||_inf at the solution.
        stationarity: ``max_j |(J^T r)_j| / ||J_j||`` divided by ``||r||``: the largest cosine
            between the residual and a column of J (0 at a stationary point).
        converged: whether the stationarity test passed (see :class:`LevenbergMarquardt`).
        condition_number: cond(J), from the singular values of the triangular factor R
            (``linear_solver="qr"``) or sqrt(cond(J^T J)) (``"cholesky"``; saturates near
            1/sqrt(eps)).
        rank_deficient: J is numerically rank deficient in the working precision (its
            smallest singular value is below ``N eps`` times its largest; with Cholesky,
            below ``sqrt(N eps)``): the solution is not unique and the implicit derivative is
            the minimum-norm one.
        result: a code, see ``RESULT_MESSAGES``.
    """

    iterations: Int[Array, ""]
    residual_norm: Float[Array, ""]
    constraint_norm: Float[Array, ""]
    gradient_norm: Float[Array, ""]
    stationarity: Float[Array, ""]
    converged: Bool[Array, ""]
    condition_number: Float[Array, ""]
    rank_deficient: Bool[Array, ""]
    result: Int[Array, ""]


# solve_least_squares returns a Solution: the weights ``value``, ``result`` (= stats.result)
# and ``stats`` (a SolveStats).
LeastSquaresSolution = Solution


class LevenbergMarquardt(eqx.Module):
    """Levenberg-Marquardt with column scaling and Nielsen's damping update.

    Each step solves the damped Gauss-Newton system ``(J^T J + mu D^2) dw = -J^T r`` with
    ``D^2`` the running maximum of ``diag(J^T J)`` (Marquardt's scaling, so the iteration does
    not depend on the scale of the basis functions), either from a QR factorisation of J
    (``linear_solver="qr"``: works with cond(J)) or by Cholesky of the normal equations
    (``"cholesky"``: one GEMM per step, works with cond(J)^2). ``"auto"`` takes QR in float32
    and lower precisions and Cholesky in float64.

    **Convergence means stationarity.** A solve is converged when

        max_j |(J^T r)_j| / ||J_j||  <=  atol  +  rtol ||r||  +  4 eps size / sqrt(M),

    (M rows in r; ``size = sqrt(sum_i t_i^2) + ||rows w|| + ||targets||`` with
    ``t_i = sum_k |dPhi/da_k a_k| + |Phi - sum_k dPhi/da_k a_k|`` at point i, the size of the
    terms that cancel in the residual, :meth:`StructuredLeastSquares.residual_size`), the
    ``rtol`` term the scaled first-order test (the largest cosine between r and a column of J at
    most ``rtol``), ``atol`` an absolute bound on the scaled gradient (0 by default: the test is
    relative to ||r||), the last the rounding floor of J^T r in the working
    precision (each entry of r is computed to about eps times the size of its terms), so that
    a zero-residual problem converges once r reaches round-off. A solve that stops for
    any other reason is not converged and says why in ``stats.result``: the iteration cap
    (``MAX_STEPS_REACHED``), NaN/inf (``NONFINITE``) or ``STAGNATED`` (no step reduces ||r||
    any more: the damping exceeded ``1/eps``). The solver never stops on a small step alone.

    Attributes:
        max_steps: iteration cap.
        rtol: the cosine tolerance above; ``None``: ``sqrt(eps)`` of the dtype (1.5e-8 in
            float64, close to scipy's ``least_squares`` default 1e-8; 3.5e-4 in float32).
        atol: the absolute tolerance above (default 0).
        gtol: deprecated spelling of ``rtol`` (warns; the same test).
        xtol: the relative step tolerance handed to the external back ends' own stopping
            tests (``None``: ``sqrt(eps)``); the native solver does not use it.
        damping: initial damping ``mu`` (relative to the scaled diagonal).
        linear_solver: ``"auto"``, ``"qr"`` or ``"cholesky"`` as above.
    """

    max_steps: int = eqx.field(static=True, default=100)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float = eqx.field(static=True, default=0.0)
    gtol: float | None = eqx.field(static=True, default=None)
    xtol: float | None = eqx.field(static=True, default=None)
    damping: float = eqx.field(static=True, default=1e-6)
    linear_solver: str = eqx.field(static=True, default="auto")

    def __check_init__(self):
        if not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            raise ValueError(f"max_steps must be >= 1 (an integer), got {self.max_steps!r}")
        for name in ("xtol", "gtol"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        for name in ("rtol", "atol"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.gtol is not None:
            if self.rtol is not None:
                raise TypeError("give the tolerance as rtol=, not together with gtol=")
            warnings.warn(f"gtol= is deprecated; use rtol= (gtol={self.gtol:g} is atol=0, "
                          f"rtol={self.gtol:g}): the test is max_j |(J^T r)_j| / ||J_j|| <= "
                          "atol + rtol ||r|| + the rounding floor", DeprecationWarning,
                          stacklevel=4)
        if not self.damping >= 0:
            raise ValueError(f"damping must be >= 0, got {self.damping}")
        check_choice("linear_solver", self.linear_solver, LINEAR_SOLVERS)

    def tolerances(self, dtype):
        """``(xtol, atol, rtol)`` for ``dtype`` (the defaults filled in)."""
        eps = float(jnp.finfo(dtype).eps)
        xtol = self.xtol if self.xtol is not None else eps**0.5
        rtol = self.rtol if self.rtol is not None else self.gtol
        rtol = rtol if rtol is not None else eps**0.5
        return xtol, float(self.atol), rtol

    def uses_qr(self, dtype) -> bool:
        """Whether the steps are solved by QR for features of ``dtype``."""
        if self.linear_solver == "auto":
            return jnp.finfo(dtype).bits < 64
        return self.linear_solver == "qr"


def stationarity_test(problem: StructuredLeastSquares, w, obj, grad, gtg, rtol, size=None,
                      atol=0.0):
    """``(measure, passed)``: the scaled first-order test of :class:`LevenbergMarquardt` with
    tolerances ``atol`` / ``rtol``; ``measure`` is the largest cosine between r and a column of
    J (the scaled gradient over ||r||).

    ``size``: :meth:`StructuredLeastSquares.residual_size` at ``w`` (the solver has it from its
    linearisation); ``None`` evaluates it.
    """
    eps = jnp.finfo(w.dtype).eps
    colnorm = jnp.sqrt(jnp.maximum(jnp.diag(gtg), 0))
    scaled = jnp.where(colnorm > 0, jnp.abs(grad) / jnp.where(colnorm > 0, colnorm, 1), 0)
    worst = jnp.max(scaled)
    rnorm = jnp.sqrt(2.0 * jnp.maximum(obj, 0))
    if size is None:
        size = problem.normal_equations(w, with_size=True)[4]
    rows = problem.num_points + problem.rows.shape[0] + w.shape[0]
    passed = worst <= atol + rtol * rnorm + _FLOOR * eps * size / rows**0.5
    measure = worst / jnp.maximum(rnorm, jnp.finfo(w.dtype).tiny)
    return measure, passed


class _State(eqx.Module):
    w: Array
    obj: Array
    grad: Array
    gtg: Array  # J^T J (from R^T R with QR)
    tri: Array  # R with QR (J = Q R); unused (zeros) with Cholesky
    pde_sq: Array  # ||Phi||^2 at w (the PDE rows only), for the diagnostics
    size: Array  # the size of the residual's terms at w (the stationarity test's floor)
    fixed: PyTree  # what does not depend on w: rows^T rows + ridge I, or the rows' QR
    scale2: Array  # D^2, the running maximum of diag(J^T J)
    mu: Array
    nu: Array
    step: Array
    done: Array
    converged: Array
    stagnated: Array
    nonfinite: Array


def _linearise(problem: StructuredLeastSquares, w, fixed, qr: bool):
    """``(obj, grad, gtg, tri, pde_sq, size)`` at ``w``."""
    if qr:
        obj, grad, tri, pde_sq, size = problem.qr_linearisation(w, fixed, with_size=True)
        return obj, grad, tri.T @ tri, tri, pde_sq, size
    obj, grad, gtg, pde_sq, size = problem.normal_equations(w, fixed, with_size=True)
    return obj, grad, gtg, jnp.zeros_like(gtg), pde_sq, size


def _init_state(problem: StructuredLeastSquares, w0, solver: LevenbergMarquardt):
    qr = solver.uses_qr(w0.dtype)
    fixed = problem.row_factor() if qr else problem.row_gram()
    obj, grad, gtg, tri, pde_sq, size = _linearise(problem, w0, fixed, qr)
    _, atol, rtol = solver.tolerances(w0.dtype)
    finite = jnp.isfinite(obj) & jnp.all(jnp.isfinite(grad))
    converged = finite & stationarity_test(problem, w0, obj, grad, gtg, rtol, size, atol)[1]
    dt = w0.dtype
    return _State(
        w=w0, obj=obj, grad=grad, gtg=gtg, tri=tri, pde_sq=pde_sq, size=size, fixed=fixed,
        scale2=jnp.diag(gtg), mu=jnp.asarray(solver.damping, dt), nu=jnp.asarray(2.0, dt),
        step=jnp.asarray(0), done=converged | ~finite, converged=converged,
        stagnated=jnp.asarray(False), nonfinite=~finite,
    )


def _damped_step(s: _State, qr: bool):
    """Solve ``(J^T J + mu D^2) dw = -J^T r``."""
    dt = s.w.dtype
    tiny = jnp.finfo(dt).tiny
    d2 = jnp.maximum(s.scale2, tiny)
    if qr:
        # min ||R dw + z||^2 + mu ||D dw||^2 in the scaled variable v = D dw: a QR of the
        # (2N, N) stack [R D^-1; sqrt(mu) I]; z = R^-T grad is recovered from R^T z = grad.
        n = s.w.shape[0]
        d_inv = 1.0 / jnp.sqrt(d2)
        z = jax.scipy.linalg.solve_triangular(s.tri.T, s.grad, lower=True)
        stack = jnp.concatenate([s.tri * d_inv[None, :], jnp.sqrt(s.mu) * jnp.eye(n, dtype=dt)])
        q2, r2 = jnp.linalg.qr(stack)
        v = -jax.scipy.linalg.solve_triangular(r2, q2[:n].T @ z, lower=False)
        return d_inv * v
    chol = jnp.linalg.cholesky(s.gtg + s.mu * jnp.diag(d2))
    return -jax.scipy.linalg.cho_solve((chol, True), s.grad)


def _lm_step(problem: StructuredLeastSquares, solver: LevenbergMarquardt, s: _State) -> _State:
    _, atol, rtol = solver.tolerances(s.w.dtype)
    qr = solver.uses_qr(s.w.dtype)
    eps = jnp.finfo(s.w.dtype).eps
    tiny = jnp.finfo(s.w.dtype).tiny
    dw = _damped_step(s, qr)
    w_new = s.w + dw
    obj_new, grad_new, gtg_new, tri_new, pde_sq_new, size_new = _linearise(problem, w_new, s.fixed,
                                                                           qr)
    # Predicted decrease of the damped Gauss-Newton model (Nielsen): 1/2 dw^T (mu D^2 dw - g).
    predicted = 0.5 * dw @ (s.mu * s.scale2 * dw - s.grad)
    gain = (s.obj - obj_new) / jnp.maximum(predicted, tiny)
    finite = (jnp.isfinite(obj_new) & jnp.all(jnp.isfinite(dw))
              & jnp.all(jnp.isfinite(grad_new)))
    # Near the solution the objective change drops below its round-off, and comparing
    # objectives would reject good steps. There, accept a step that reduces the gradient.
    below_roundoff = predicted <= 16 * eps * jnp.abs(s.obj)
    grad_down = jnp.max(jnp.abs(grad_new)) < jnp.max(jnp.abs(s.grad))
    accept = finite & ((gain > 0) | (below_roundoff & grad_down))
    # Nielsen's update on the gain clipped to [0, 1]: a step accepted below round-off with a
    # meaningless (possibly negative) gain must not inflate the damping.
    gain_c = jnp.clip(gain, 0.0, 1.0)
    mu_accept = s.mu * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * gain_c - 1.0) ** 3)
    keep = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
    w = keep(w_new, s.w)
    obj = keep(obj_new, s.obj)
    grad = keep(grad_new, s.grad)
    gtg = keep(gtg_new, s.gtg)
    tri = keep(tri_new, s.tri)
    pde_sq = keep(pde_sq_new, s.pde_sq)
    size = keep(size_new, s.size)
    scale2 = jnp.maximum(s.scale2, jnp.diag(gtg))
    mu = jnp.where(accept, mu_accept, s.mu * s.nu)
    nu = jnp.where(accept, 2.0, 2.0 * s.nu).astype(s.nu.dtype)

    converged = stationarity_test(problem, w, obj, grad, gtg, rtol, size, atol)[1]
    stagnated = ~converged & (mu >= 1.0 / eps)
    nonfinite = ~finite & ~jnp.isfinite(s.obj)  # could not recover from a bad start
    step = s.step + 1
    done = converged | stagnated | nonfinite | (step >= solver.max_steps)
    return _State(w, obj, grad, gtg, tri, pde_sq, size, s.fixed, scale2, mu, nu, step, done,
                  converged, stagnated, nonfinite)


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

    The linear solve with the Hessian uses its pseudo-inverse (singular values below
    ``N eps`` times the largest are dropped): for a full-rank basis this is the usual
    derivative; for a rank-deficient one (say a duplicated basis function) the solution is not
    unique, and the derivative is the minimum-norm one instead of NaN.

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


def _min_norm_solve(matrix, rhs):
    """``pinv(matrix) @ rhs`` with the cut-off ``N eps``: linear in ``rhs`` (transposable)."""
    n = matrix.shape[0]
    rtol = n * jnp.finfo(matrix.dtype).eps
    return jnp.linalg.pinv(matrix, rtol=rtol) @ rhs


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
        spec = eqx.tree_at(lambda p: (p.features, p.basis, p.probe), spec,
                           replace=(False, False, False))

        def tangent(w, prob, dprob):
            dyn, other = eqx.partition(prob, eqx.is_inexact_array)
            rest, fixed = eqx.partition(dyn, spec)
            _, d_rest = jax.jvp(lambda v: optimality(w, eqx.combine(v, fixed, other)), (rest,),
                                (eqx.filter(dprob, spec),))
            return d_rest + prob.basis_tangent(w, dprob.basis, exact=exact)

    return implicit_solution(w_star, problem, optimality, jacobian=jacobian, tangent=tangent,
                             linear_solve=_min_norm_solve)


def _singular_values(gtg, tri, qr: bool):
    """Singular values of J, largest first: from R (QR) or sqrt of the eigenvalues of J^T J."""
    if qr:
        return jnp.linalg.svd(tri, compute_uv=False)
    return jnp.sqrt(jnp.abs(jnp.linalg.eigvalsh(gtg)))[::-1]


def _rank_deficient(sv, qr: bool):
    """J numerically rank deficient, from its singular values ``sv`` (largest first): the
    smallest <= N eps (QR) or sqrt(N eps) (from J^T J) times the largest."""
    eps = jnp.finfo(sv.dtype).eps
    cutoff = sv.shape[0] * eps if qr else (sv.shape[0] * eps) ** 0.5
    return sv[-1] <= cutoff * sv[0]


def _stats_from(problem: StructuredLeastSquares, w, obj, grad, gtg, tri, pde_sq, size,
                iterations, converged, stagnated, qr: bool, rtol) -> SolveStats:
    dt = w.dtype
    sv = _singular_values(gtg, tri, qr)
    cond = sv[0] / jnp.maximum(sv[-1], jnp.finfo(dt).tiny)
    measure, _ = stationarity_test(problem, w, obj, grad, gtg, rtol, size)
    finite = jnp.all(jnp.isfinite(w)) & jnp.isfinite(pde_sq) & jnp.all(jnp.isfinite(grad))
    converged = converged & finite
    result = result_code(converged, ~finite, stagnated)
    return SolveStats(
        iterations=jnp.asarray(iterations, jnp.int32),
        residual_norm=jnp.sqrt(pde_sq),
        constraint_norm=jnp.linalg.norm(problem.rows @ w - problem.targets),
        gradient_norm=jnp.max(jnp.abs(grad)),
        stationarity=measure,
        converged=converged,
        condition_number=cond,
        rank_deficient=_rank_deficient(sv, qr),
        result=result,
    )


def _stats(problem: StructuredLeastSquares, w, iterations, converged, solver) -> SolveStats:
    """Diagnostics at ``w``, evaluating the problem there (for the external back ends).

    ``converged`` is the back end's own verdict; it counts only if pdeml's stationarity test
    holds at ``w`` too (otherwise the result is ``STAGNATED``).
    """
    qr = solver.uses_qr(w.dtype)
    fixed = problem.row_factor() if qr else problem.row_gram()
    obj, grad, gtg, tri, pde_sq, size = _linearise(problem, w, fixed, qr)
    _, atol, rtol = solver.tolerances(w.dtype)
    stationary = stationarity_test(problem, w, obj, grad, gtg, rtol, size, atol)[1]
    return _stats_from(problem, w, obj, grad, gtg, tri, pde_sq, size, iterations,
                       converged & stationary, converged & ~stationary, qr, rtol)


def _state_stats(problem: StructuredLeastSquares, state: _State, solver) -> SolveStats:
    """Diagnostics from the solver's final state: no extra evaluation of the problem."""
    _, _, rtol = solver.tolerances(state.w.dtype)
    return _stats_from(problem, state.w, state.obj, state.grad, state.gtg, state.tri,
                       state.pde_sq, state.size, state.step, state.converged, state.stagnated,
                       solver.uses_qr(state.w.dtype), rtol)


def solve_least_squares(
    problem: StructuredLeastSquares,
    w0: Float[Array, " n"] | None = None,
    *,
    solver: LevenbergMarquardt = LevenbergMarquardt(),
    adjoint: ImplicitAdjoint | UnrolledAdjoint = ImplicitAdjoint(),
    backend: str = "native",
    max_steps: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    throw: bool = True,
) -> Solution:
    """Solve ``min_w 1/2 ||r(w)||^2`` for a :class:`StructuredLeastSquares` problem.

    Args:
        problem: the structured least-squares problem.
        w0: initial weights (default zeros), shape ``(N,)``.
        solver: iteration settings (max_steps, tolerances, damping), shared by all back ends.
        adjoint: :class:`ImplicitAdjoint` (default) or :class:`UnrolledAdjoint`.
        backend: ``"native"`` (structured LM above), ``"jaxopt"``, ``"optimistix"`` (its LM
            with its default QR steps) or ``"optimistix-cholesky"`` (normal equations) on the
            same residual; needs the extra of that name; only with :class:`ImplicitAdjoint`.
        max_steps: the iteration cap (default: ``solver.max_steps``).
        atol, rtol: the tolerances of the stationarity test (default: ``solver``'s;
            :class:`LevenbergMarquardt` states the test).
        throw: raise ``equinox.EquinoxRuntimeError`` if the solve fails; with ``False`` the
            failure is only reported in ``result`` / ``stats.result``.

    Returns:
        :class:`~pdeml.core.Solution` with ``value`` (N,), ``result`` (a
        :class:`~pdeml.core.RESULTS` code, equal to ``stats.result``) and ``stats``
        (:class:`SolveStats`); ``history`` is ``None``.

    Example:
        >>> import jax.numpy as jnp
        >>> T = jnp.stack([jnp.eye(3)])                  # K=1, m=3, N=3: Phi(a) = a - 1
        >>> prob = StructuredLeastSquares(T, lambda a, aux: a[0] - 1.0)
        >>> sol = solve_least_squares(prob)
        >>> [round(float(v), 5) for v in sol.value], bool(sol.converged)
        ([1.0, 1.0, 1.0], True)
    """
    check_choice("backend", backend, BACKENDS)
    if not isinstance(adjoint, (ImplicitAdjoint, UnrolledAdjoint)):
        raise TypeError(f"adjoint must be ImplicitAdjoint() or UnrolledAdjoint(), got {adjoint!r}")
    if max_steps is not None:
        max_steps, _ = max_steps_option(max_steps, solver.max_steps)
        solver = dataclasses.replace(solver, max_steps=max_steps)
    if atol is not None or rtol is not None:
        changes = {"atol": solver.atol if atol is None else atol,
                   "rtol": solver.rtol if rtol is None else rtol}
        if solver.gtol is not None and rtol is None:
            changes["rtol"] = solver.gtol
        with warnings.catch_warnings():  # the caller's solver already warned about its gtol=
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = dataclasses.replace(solver, gtol=None, **changes)
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
        stats = _state_stats(frozen, stop_gradient_arrays(state), solver)
    else:
        if backend == "native":
            state = _native_while(frozen, w0, solver)
            w_star = state.w
            stats = _state_stats(frozen, state, solver)
        else:
            if backend == "jaxopt":
                from pdeml.interop.jaxopt import levenberg_marquardt_jaxopt as external
            else:
                from pdeml.interop.optimistix import backend_solver

                external = backend_solver(backend)
            w_star, iterations, converged = external(frozen, w0, solver)
            stats = _stats(frozen, w_star, iterations, converged, solver)
        w = _attach_implicit(w_star, problem, adjoint)

    sol = Solution(value=w, result=stats.result, stats=stats)
    if throw:
        sol = raise_if_failed(sol, "Levenberg-Marquardt failed", RESULT_MESSAGES)
    return sol


def external_solution(problem: StructuredLeastSquares, w_star, iterations, converged,
                      solver: LevenbergMarquardt = LevenbergMarquardt()):
    """``(w, stats)`` for a point ``w_star`` that another solver returned for ``problem``: what
    :func:`solve_least_squares` does after an external back end, for callers that run the back
    end themselves (e.g. to keep its own verdict). ``stats`` are pdeml's diagnostics at
    ``w_star`` (``converged``, the back end's verdict, counts only where pdeml's stationarity
    test holds too); ``w`` is ``w_star`` with the implicit adjoint attached.

    Example:
        >>> import jax.numpy as jnp
        >>> prob = StructuredLeastSquares(jnp.stack([jnp.eye(2)]), lambda a, aux: a[0] - 1.0)
        >>> w, stats = external_solution(prob, jnp.ones(2), 3, jnp.asarray(True))
        >>> bool(stats.converged), int(stats.iterations)
        (True, 3)
    """
    stats = _stats(stop_gradient_arrays(problem), w_star, iterations, converged, solver)
    return _attach_implicit(w_star, problem, ImplicitAdjoint()), stats
