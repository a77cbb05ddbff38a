"""The hard-constraint layer on a linear test PDE and on diffusion-sorption."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from pdeml.constraints import HardConstraint
from pdeml.core import ImplicitAdjoint, LevenbergMarquardt, UnrolledAdjoint
from pdeml.pde import DiffusionSorption
from pdeml.testing import (
    ReactionDiffusion1D,
    ReactionDiffusionData,
    smooth_fields,
    check_basis_change_invariance,
    check_constraint_satisfied,
    check_implicit_gradients,
    invertible_matrices,
    well_conditioned_matrix,
)

HEAT = ReactionDiffusion1D(nx=16, nt=9)
N = 8


def smooth_basis(problem, n, seed):
    return smooth_fields(problem, n, jax.random.key(seed))


def dense_fd_matrices(problem):
    """Independent dense construction of the discrete operators with NumPy (for closed forms)."""
    nx, nt = problem.grid_shape
    dx, dt = problem.grid.dx, problem.grid.dt
    ex, et = np.eye(nx), np.eye(nt)
    d2 = np.zeros((nx, nx))
    for i in range(1, nx - 1):
        d2[i, i - 1 : i + 2] = [1, -2, 1]
    d2 /= dx**2
    d1t = np.zeros((nt, nt))
    for j in range(1, nt - 1):
        d1t[j, j - 1], d1t[j, j + 1] = -0.5, 0.5
    d1t[-1, -3:] = [0.5, -2.0, 1.5]  # second-order backward difference at the last time
    d1t /= dt
    return np.kron(d2, et), np.kron(ex, d1t)  # acting on u.ravel() (x-major)


def test_linear_pde_matches_closed_form():
    rng = np.random.default_rng(0)
    basis = smooth_basis(HEAT, N, seed=1)
    nx, nt = HEAT.grid_shape
    u0 = jnp.asarray(np.sin(np.pi * np.asarray(HEAT.grid.x())))
    f = jnp.asarray(rng.standard_normal(HEAT.grid_shape))
    left, right = jnp.asarray(rng.standard_normal(nt - 1)), jnp.asarray(rng.standard_normal(nt - 1))
    layer = HardConstraint(HEAT)  # all interior points
    u, info = layer(basis, ReactionDiffusionData(u0, f, left, right))

    # Closed form: the PDE rows (D_t - kappa D_xx) b w = f at interior points and the IC/BC rows
    # b w = g, stacked; w = lstsq(stacked). Built independently from dense Kronecker operators.
    dxx, dt_ = dense_fd_matrices(HEAT)
    b = np.asarray(basis).reshape(-1, N)
    pts = np.asarray(HEAT.interior_points())
    flat = pts[:, 0] * HEAT.nt + pts[:, 1]
    a_pde = (dt_ - HEAT.kappa * dxx)[flat] @ b
    ic_idx = np.arange(nx) * nt
    left_idx = np.arange(1, nt)
    right_idx = (nx - 1) * nt + np.arange(1, nt)
    a_bc = b[np.concatenate([ic_idx, left_idx, right_idx])]
    rhs = np.concatenate([np.asarray(f).ravel()[flat], u0, left, right])
    w = np.linalg.lstsq(np.vstack([a_pde, a_bc]), rhs, rcond=None)[0]
    np.testing.assert_allclose(info.w, w, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(u, (b @ w).reshape(nx, nt), rtol=1e-9, atol=1e-10)
    assert bool(info.stats.converged)


NONLIN = ReactionDiffusion1D(nx=16, nt=9, reaction=2.0)


def test_residual_vanishes_when_basis_spans_a_manufactured_solution():
    x, t = NONLIN.grid.mesh()
    u_star = jnp.sin(jnp.pi * x) * jnp.exp(-t) + 0.5 * x * t
    data = NONLIN.manufactured(u_star)  # u_star solves the discrete nonlinear equations
    # A basis whose span contains u_star: u_star plus 7 smooth fields, mixed by a random matrix.
    basis = jnp.concatenate([u_star[..., None], smooth_basis(NONLIN, N - 1, seed=3)], -1)
    basis = basis @ jnp.asarray(well_conditioned_matrix(N, N, max_condition=5.0, seed=4))
    layer = HardConstraint(NONLIN, num_points=40)
    u, info = layer(basis, data, key=jax.random.key(0))
    # Stated tolerance: the solver stops at a relative step ~sqrt(eps) = 1.5e-8 after quadratic
    # convergence (zero-residual problem), so the residual is at round-off level.
    check_constraint_satisfied(info.stats, tol=1e-9)
    assert float(info.stats.constraint_norm) < 1e-9
    np.testing.assert_allclose(u, u_star, atol=1e-9)
    # u_star solves the PDE at *every* interior point, not only at the 40 sampled ones.
    assert float(jnp.max(jnp.abs(NONLIN.residual_field(u, data)))) < 1e-8


DS = DiffusionSorption(nx=12, nt=6)


def _ds_basis_and_u0():
    x = np.asarray(DS.grid.x())
    u0 = jnp.asarray(0.5 * np.exp(-30 * (x - 0.5) ** 2))
    return 0.3 + smooth_basis(DS, N, seed=5), u0


def test_layer_gradients_match_fd_and_unrolled():
    # Nonlinear problem with a non-zero residual (noisy source), so the exact-Hessian terms
    # matter; gradient w.r.t. the basis checked in forward and reverse mode.
    x, t = NONLIN.grid.mesh()
    data = NONLIN.manufactured(jnp.sin(jnp.pi * x) * jnp.exp(-t))
    noise = jax.random.normal(jax.random.key(3), data.f.shape)
    data = data._replace(f=data.f + 0.3 * noise)
    basis = smooth_basis(NONLIN, N, seed=6)
    pts = HardConstraint(NONLIN, num_points=40).select_points(jax.random.key(1))
    tight = LevenbergMarquardt(max_steps=100, xtol=1e-14, rtol=1e-14)

    def make(adjoint):
        layer = HardConstraint(NONLIN, solver=tight, adjoint=adjoint, throw=False)
        return lambda b: layer(b, data, points=pts)[0]

    direction = jax.random.normal(jax.random.key(4), basis.shape)
    errs = check_implicit_gradients(
        make(ImplicitAdjoint()), basis, direction, unrolled_fn=make(UnrolledAdjoint()),
        eps=1e-4, rtol=1e-6,
    )
    assert errs["unrolled"] < 1e-8


@settings(max_examples=4)
@given(mat=invertible_matrices(N, max_condition=4.0))
def test_basis_change_invariance(mat):
    x, t = NONLIN.grid.mesh()
    data = NONLIN.manufactured(jnp.sin(jnp.pi * x) * jnp.exp(-t))
    data = data._replace(f=data.f + 0.3 * jax.random.normal(jax.random.key(3), data.f.shape))
    basis = smooth_basis(NONLIN, N, seed=7)
    pts = HardConstraint(NONLIN, num_points=40).select_points(jax.random.key(2))
    layer = HardConstraint(NONLIN, solver=LevenbergMarquardt(rtol=1e-13))
    solve_u = eqx.filter_jit(lambda b: layer(b, data, points=pts)[0])
    # u is determined by span(basis); the coordinates change only the solver's stopping point
    # (stationarity test at rtol = 1e-13, times cond(J) ~ 1e2): 1e-8 relative.
    check_basis_change_invariance(solve_u, basis, jnp.asarray(mat), rtol=1e-8)


def test_diffusion_sorption_layer_converges_and_reports():
    basis, u0 = _ds_basis_and_u0()
    # Diffusion-sorption's sorption term is sharply nonlinear near u = 0 and the residual is
    # non-zero, so LM converges linearly here (~100 iterations).
    layer = HardConstraint(DS, num_points=30, throw=False, solver=LevenbergMarquardt(max_steps=300))
    u, info = jax.jit(lambda b, d, k: layer(b, d, key=k))(basis, u0, jax.random.key(0))
    assert bool(info.stats.converged)
    # The returned stats describe the returned w (recomputed independently here).
    lsq = layer.least_squares_problem(basis, u0, info.points)
    r = lsq.pde_residual(info.w)
    np.testing.assert_allclose(info.stats.residual_norm, jnp.linalg.norm(r), rtol=1e-12)
    np.testing.assert_allclose(u, basis @ info.w, rtol=1e-12)
    # First-order optimality holds at the returned weights.
    g = lsq.optimality(info.w)
    assert float(jnp.max(jnp.abs(g))) <= 1e-6 * float(jnp.linalg.norm(lsq.residual(info.w)))


# ---- bad input ---------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    basis, u0 = _ds_basis_and_u0()
    layer = HardConstraint(DS, num_points=20)
    with pytest.raises(ValueError, match=r"basis must have shape \(\*grid, N\)"):
        layer(basis[:, :-1], u0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="pass key="):
        layer(basis, u0)
    with pytest.raises(eqx.EquinoxRuntimeError, match="basis contains NaN"):
        layer(basis.at[3, 2, 1].set(jnp.nan), u0, key=jax.random.key(0))
    q = DS.interior_points().shape[0]
    with pytest.raises(ValueError, match=f"num_points must be an integer in \\[1, {q}\\]"):
        HardConstraint(DS, num_points=q + 1)
    with pytest.raises(ValueError, match="unknown backend 'cvxpy'"):
        HardConstraint(DS, backend="cvxpy")
    with pytest.raises(ValueError, match="initial condition u0"):
        layer(basis, u0[:-1], key=jax.random.key(0))


def test_problems_features_act_columnwise_as_from_basis_requires():
    # StructuredLeastSquares.from_basis (the layers' closed-form basis derivative) is correct
    # only for features linear in the basis and acting on each basis function alike.
    from pdeml.pde import NavierStokes2D
    from pdeml.testing import check_features_act_columnwise

    ns = NavierStokes2D(nx=8, ny=8, nt=5, t_max=1.0, viscosity=1e-2, feature_batch=2)
    for prob in (NONLIN, DS, ns):
        basis = jax.random.normal(jax.random.key(2), (*prob.grid_shape, 5))
        pts = prob.interior_points()[::3]
        assert check_features_act_columnwise(prob.features_at, basis, pts) < 1e-12
    basis = smooth_basis(DS, 4, seed=2)
    pts = DS.interior_points()[::3]
    with pytest.raises(AssertionError, match="each basis function alike"):
        check_features_act_columnwise(lambda b, p: DS.features_at(b[..., ::-1] ** 2, p), basis, pts)
    with pytest.raises(AssertionError, match="each basis function alike"):
        check_features_act_columnwise(  # mixes columns: a cumulative sum over the basis axis
            lambda b, p: DS.features_at(jnp.cumsum(b, axis=-1), p), basis, pts)
