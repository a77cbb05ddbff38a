"""The DiffusionSorption problem: constitutive functions, features, rows, consistency."""

import equinox as eqx
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from pdeml.pde import (
    DiffusionSorption,
    DiffusionSorptionSolver,
    PDEProblem,
    fd_derivative,
)

P = DiffusionSorption(nx=12, nt=7)
_grad_mass = jax.jit(jax.vmap(jax.grad(P.mass)))
_retardation = jax.jit(P.retardation)
_dretardation = jax.jit(jax.vmap(jax.grad(P.retardation)))
_residual_field = eqx.filter_jit(lambda p, u, d: p.residual_field(u, d))
_residual_at = eqx.filter_jit(lambda p, b, w, d, pts: p.residual_at(b, w, d, pts))
_features_at = eqx.filter_jit(lambda p, b, pts: p.features_at(b, pts))
_violation = eqx.filter_jit(lambda p, u, d: p.constraint_violation(u, d))

# Same problem and solver settings as tests/test_pde_solver.py, so the compiled solver is
# shared when both files run in one session.
P64 = DiffusionSorption(nx=64, nt=26)
SOLVER = DiffusionSorptionSolver(x_refine=1, substeps=10)


def test_is_a_pde_problem_with_pdebench_defaults():
    p = DiffusionSorption()
    assert isinstance(p, PDEProblem)
    assert (p.phi, p.rho_s, p.k, p.n_f, p.D) == (0.29, 2880.0, 3.5e-4, 0.874, 5e-4)
    assert (p.length, p.t_max, p.grid_shape) == (1.0, 500.0, (128, 51))
    assert p.grid.dx == pytest.approx(1 / 127) and p.grid.dt == pytest.approx(10.0)


_dretardation = jax.jit(jax.vmap(jax.grad(P.retardation)))


def _fd4(f, u, h):
    return (8 * (f(u + h) - f(u - h)) - (f(u + 2 * h) - f(u - 2 * h))) / (12 * h)


@given(u=st.floats(0.01, 2.0) | st.floats(-0.5, -0.01))
def test_retardation_derivative_rule_matches_finite_differences(u):
    # R carries a hand-written derivative rule (shared sqrt/log/exp); check it against a
    # 4th-order central difference. Step h = 1e-3 |u| keeps the truncation error (~h^4 R^(5))
    # and the rounding error (~eps R / h) below 1e-6 relative outside the sorption layer.
    u = jnp.array([u])
    fd = _fd4(_retardation, u, 1e-3 * jnp.abs(u))
    np.testing.assert_allclose(_dretardation(u), fd, rtol=1e-6, atol=1e-9)


def test_retardation_derivative_rule_inside_the_sorption_layer():
    # |u| ~ delta = 1e-6, where R' ~ 5e6: step h = 1e-9 (h / delta = 1e-3, truncation ~1e-12
    # relative; rounding ~eps R / (h R') ~ 1e-7 relative).
    u = jnp.array([-3e-6, -1e-6, 0.0, 1e-6, 3e-6, 1e-5])
    np.testing.assert_allclose(_dretardation(u), _fd4(_retardation, u, 1e-9), rtol=1e-5)


@given(u=st.floats(-1e6, 1e6))
def test_retardation_is_the_derivative_of_mass_finite_and_bounded(u):
    # R = M' exactly (the solver steps M, the residual uses R), and R is finite and within
    # (1, 1 + c n_f eps^(n_f-1)] for every real u, because the LS solver may try any u.
    u = jnp.array([u, -u, u * 1e-6, 0.0, -1e300, 1e300])
    r = _retardation(u)
    assert bool(jnp.all(jnp.isfinite(r)))
    r_max = 1 + P.sorption_coefficient * P.n_f * P.sorption_eps ** (P.n_f - 1)
    assert bool(jnp.all(r >= 1.0)) and bool(jnp.all(r <= r_max * (1 + 1e-12)))
    g = _grad_mass(u[:4])
    np.testing.assert_allclose(g, r[:4], rtol=1e-12)
    # Second derivatives (exact-Hessian Gauss-Newton) are finite as well.
    assert bool(jnp.all(jnp.isfinite(_dretardation(u))))


def test_retardation_matches_pdebench_away_from_zero():
    # PDEBench: R = 1 + c n_f (u + 1e-6)^(n_f - 1). The smooth positive part differs from u by
    # ~delta^2 / (4 u), so for u >= 1e-3 the relative difference is ~(delta/u)^2 <= 1e-6.
    u = np.geomspace(1e-3, 1.0, 50)
    pdebench = 1 + P.sorption_coefficient * P.n_f * (u + 1e-6) ** (P.n_f - 1)
    np.testing.assert_allclose(_retardation(jnp.asarray(u)), pdebench, rtol=1e-5)


def test_pointwise_is_finite_for_any_features():
    a = jnp.array([[-1e8, 1e3, -1e3], [0.0, 0.0, 0.0], [1e8, -1e3, 1e3], [1e-7, 1.0, 2.0]])
    phi = jax.jit(jax.vmap(lambda x: P.pointwise(x, None)))(a)
    assert bool(jnp.all(jnp.isfinite(phi)))
    grads = jax.jit(jax.vmap(jax.grad(lambda x: P.pointwise(x, None))))(a)
    assert bool(jnp.all(jnp.isfinite(grads)))
    # Phi = s (u_t - D u_xx / R(u)) with s = t_max by default.
    np.testing.assert_allclose(phi[3], 500 * (1.0 - 5e-4 * 2.0 / P.retardation(1e-7)))


def _basis(n=3, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(P.nx, P.nt, n)))


def test_features_equal_full_field_derivatives_at_interior_points():
    basis = _basis()
    pts = P.interior_points()
    feats = _features_at(P, basis, pts)
    g = P.grid
    full = [basis, fd_derivative(basis, 1, 1, g.dt), fd_derivative(basis, 0, 2, g.dx)]
    expected = jnp.stack([f[pts[:, 0], pts[:, 1]] for f in full])
    assert feats.shape == (3, pts.shape[0], 3)
    np.testing.assert_allclose(feats, expected, rtol=1e-12, atol=1e-9)


@given(w=hnp.arrays(np.float64, (3,), elements=st.floats(-2, 2)))
def test_residual_at_of_basis_equals_residual_field_of_combination(w):
    # u = basis @ w: features are linear in w, so residual_at and residual_field must agree.
    basis = _basis()
    w = jnp.asarray(w)
    data = jnp.full((P.nx,), 0.1)
    pts = P.interior_points()
    np.testing.assert_allclose(
        _residual_at(P, basis, w, data, pts), _residual_field(P, basis @ w, data),
        rtol=1e-10, atol=1e-9,
    )


def test_residual_gradients_match_finite_differences():
    # The layer differentiates residual_at with respect to w (Gauss-Newton) and to the basis
    # (training); compare both directional derivatives with central differences. Step 1e-6
    # and tolerance 1e-6 relative: truncation O(eps^2 * third derivative), rounding
    # O(1e-16 |f| / eps).
    basis = _basis(seed=1) * 0.1 + 0.3  # values near the physical range
    w = jnp.array([0.5, 0.3, 0.2])
    data = jnp.full((P.nx,), 0.1)
    pts = P.interior_points()[::5]
    loss = eqx.filter_jit(lambda b, w: jnp.sum(P.residual_at(b, w, data, pts) ** 2))
    gb, gw = jax.grad(loss, argnums=(0, 1))(basis, w)
    rng = np.random.default_rng(2)
    db = jnp.asarray(rng.normal(size=basis.shape))
    dw = jnp.asarray(rng.normal(size=w.shape))
    eps = 1e-6
    fd_b = (loss(basis + eps * db, w) - loss(basis - eps * db, w)) / (2 * eps)
    fd_w = (loss(basis, w + eps * dw) - loss(basis, w - eps * dw)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(gb, db), fd_b, rtol=1e-6)
    np.testing.assert_allclose(jnp.vdot(gw, dw), fd_w, rtol=1e-6)


def test_residual_on_an_exact_polynomial():
    # u = (1 + x^2)(2 + t/100): the FD stencils are exact for this field (quadratic in x,
    # linear in t), so the residual must equal the exact u_t - D u_xx / R(u), scaled by t_max.
    X, T = np.meshgrid(np.linspace(0, 1, P.nx), np.linspace(0, 500, P.nt), indexing="ij")
    u = (1 + X**2) * (2 + T / 100)
    r = _residual_field(P, jnp.asarray(u), jnp.zeros((P.nx,)))
    pts = np.asarray(P.interior_points())
    x, t = X[pts[:, 0], pts[:, 1]], T[pts[:, 0], pts[:, 1]]
    rx = np.asarray(_retardation(jnp.asarray((1 + x**2) * (2 + t / 100))))
    exact = (1 + x**2) / 100 - P.D * 2 * (2 + t / 100) / rx
    np.testing.assert_allclose(r, P.t_max * exact, rtol=1e-10)


@pytest.mark.parametrize("right_bc", ["outflow", "paper"])
def test_constraint_rows_on_an_exact_field(right_bc):
    # u = a(t) + b(t) x + c(t) x^2 is differentiated exactly by the one-sided u_x stencil, so
    # the rows must reproduce the exact IC / Dirichlet / Robin residuals, with the weights.
    p = DiffusionSorption(nx=12, nt=7, ic_weight=2.0, bc_weight=3.0, right_bc=right_bc)
    X, T = p.grid.mesh()
    a, b, c = 1 + T / 500, -0.5 + T / 1000, 0.2
    u = a + b * X + c * X**2
    u0 = jnp.linspace(0.0, 0.1, p.nx)
    viol = _violation(p, u, u0)
    assert viol.shape == (p.nx + 2 * (p.nt - 1),)
    sign = 1.0 if right_bc == "outflow" else -1.0
    ic = 2.0 * (u[:, 0] - u0)
    left = 3.0 * (u[0, 1:] - 1.0)
    ux_right = b[-1, 1:] + 2 * c * 1.0
    right = 3.0 * (u[-1, 1:] + sign * p.D * ux_right)
    np.testing.assert_allclose(viol, jnp.concatenate([ic, left, right]), rtol=1e-10, atol=1e-12)


def test_interior_points_cover_the_open_set_once():
    pts = np.asarray(P.interior_points())
    assert pts.shape == ((P.nx - 2) * (P.nt - 1), 2)
    assert pts[:, 0].min() == 1 and pts[:, 0].max() == P.nx - 2
    assert pts[:, 1].min() == 1 and pts[:, 1].max() == P.nt - 1
    assert len({tuple(q) for q in pts}) == len(pts)


def _linear_operator(p, n, sign):
    # Semi-discrete linearisation M'(u) u_t = A u with the Robin condition u = -sign D u_x
    # eliminated as in the solver (sign = +1: outflow, -1: as printed in the paper).
    h = p.length / (n - 1)
    c = p.D / h**2
    A = np.diag(np.full(n - 1, -2 * c)) + np.diag(np.full(n - 2, c), 1) + np.diag(
        np.full(n - 2, c), -1)
    A[-1, -2] = 2 * c
    A[-1, -1] = -2 * c - sign * 2 / h
    return A


def test_paper_sign_of_the_robin_condition_is_ill_posed_and_refused():
    # With u = +D u_x the boundary injects mass at a rate ~ u / D: the linear operator has an
    # eigenvalue of order +min(1/D, 2/h) per second (about 124/s at h = 1/64: a growth factor
    # e^(6e4) over 500 s); with the outflow form every eigenvalue is negative. The solver
    # therefore refuses right_bc="paper".
    p = DiffusionSorption()
    ev_out = np.linalg.eigvals(_linear_operator(p, 65, +1.0)).real.max()
    ev_paper = np.linalg.eigvals(_linear_operator(p, 65, -1.0)).real.max()
    assert ev_out < 0
    assert ev_paper > 50.0
    with pytest.raises(ValueError, match="ill-posed"):
        DiffusionSorptionSolver()(DiffusionSorption(nx=8, nt=4, right_bc="paper"),
                                  jnp.zeros((8,)))


def test_reference_solution_has_small_residual_and_satisfies_the_rows():
    # Consistency of solver and residual discretisation. The residual is dominated by the
    # time-difference error next to the corner discontinuity (u0 < 1 = u(0, t>0)) in the first
    # time levels; from the 5th level on its RMS is below 2% of the RMS of s R u_t (measured
    # 0.6% on 128 x 51, 0.7% here). The rows hold to the O(h^2) gap between the solver's
    # central and the rows' one-sided u_x at x = L (measured 6e-6).
    p = P64
    u0 = jnp.full((p.nx,), 0.1)
    sol = SOLVER(p, u0)
    assert bool(sol.converged)
    r = np.asarray(_residual_field(p, sol.u, u0)).reshape(p.nx - 2, p.nt - 1)
    feats = _features_at(p, sol.u[..., None], p.interior_points())[:, :, 0]
    term = np.asarray(p.scale * p.retardation(feats[0]) * feats[1]).reshape(r.shape)
    rel = np.sqrt(np.mean(r[:, 4:] ** 2) / np.mean(term[:, 4:] ** 2))
    assert rel < 0.02
    assert float(jnp.abs(_violation(p, sol.u, u0)).max()) < 1e-4


def test_bad_configuration_and_inputs_are_named():
    with pytest.raises(ValueError, match="right_bc"):
        DiffusionSorption(right_bc="neumann")
    with pytest.raises(ValueError, match="phi"):
        DiffusionSorption(phi=1.5)
    with pytest.raises(ValueError, match="D must be positive"):
        DiffusionSorption(D=0.0)
    with pytest.raises(ValueError, match="nx"):
        DiffusionSorption(nx=2)
    with pytest.raises(ValueError, match="basis"):
        P.features_at(jnp.zeros((P.nx, P.nt)), P.interior_points())
    with pytest.raises(ValueError, match="u0"):
        P.constraint_rows(_basis(), jnp.zeros((P.nx + 1,)))
