"""PnP solvers: lasso against a brute-force solution, LPN descent under the stated conditions,
the exact R at prox outputs, differentiable CG, Tikhonov, bad input."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdeml.inverse import (
    GaussianBlur,
    MatrixOperator,
    conjugate_gradient,
    convergence_conditions,
    lpn_map,
    pnp_admm,
    pnp_pgd,
    tikhonov,
)
from pdeml.nets.icnn import DenseICNN
from pdeml.prox import LPN, SoftThreshold, SquaredL2Prox, TotalVariationProx


def _lasso_brute_force(A, y, lam):
    """Exact minimiser of 1/2 ||A x - y||^2 + lam ||x||_1 by enumerating supports and signs and
    keeping the KKT points (tiny n only)."""
    n = A.shape[1]
    best, best_val = None, np.inf
    for S in itertools.product([0, 1], repeat=n):
        idx = [i for i in range(n) if S[i]]
        for sg in itertools.product([-1.0, 1.0], repeat=len(idx)):
            x = np.zeros(n)
            if idx:
                As = A[:, idx]
                x[idx] = np.linalg.solve(As.T @ As, As.T @ y - lam * np.array(sg))
                if np.any(np.sign(x[idx]) != np.array(sg)):
                    continue
            g = A.T @ (A @ x - y)
            if all(abs(g[i]) <= lam + 1e-12 for i in range(n) if not S[i]):
                val = 0.5 * np.sum((A @ x - y) ** 2) + lam * np.abs(x).sum()
                if val < best_val:
                    best, best_val = x, val
    return best


@settings(max_examples=5)
@given(seed=st.integers(0, 2**31 - 1), lam=st.floats(0.05, 0.5))
def test_pnp_with_soft_threshold_solves_the_lasso(seed, lam):
    rng = np.random.default_rng(seed)
    A, y = rng.normal(size=(5, 4)), rng.normal(size=5)
    exact = _lasso_brute_force(A, y, lam)
    op = MatrixOperator(jnp.asarray(A))
    L = float(op.normest(iters=5000, rtol=1e-14))
    rho = 1.5 * L
    # F = ||Ax - y||^2 / (2 rho) + (lam / rho) ||x||_1 = lasso / rho: same minimiser
    prox = SoftThreshold(lam / rho)
    pgd = pnp_pgd(op, prox, jnp.asarray(y), rho, max_steps=20000, rtol=1e-15)
    admm = pnp_admm(op, prox, jnp.asarray(y), rho, max_steps=20000, rtol=1e-13)
    # the lasso here is strongly convex (A has full column rank) so both converge linearly;
    # 1e-8 leaves a wide margin over their stopping tests
    np.testing.assert_allclose(pgd.x, exact, atol=1e-8)
    np.testing.assert_allclose(admm.x, exact, atol=1e-8)
    # convex case: PGD's objective never increases (rounding only)
    obj = np.asarray(pgd.objective)[: int(pgd.iterations)]
    assert np.all(np.diff(obj) <= 1e-13)


def test_admm_ridge_matches_closed_form_and_history_layout():
    rng = np.random.default_rng(0)
    A, y = rng.normal(size=(6, 4)), rng.normal(size=(3, 6))
    rho, lam = 2.0, 0.7
    op = MatrixOperator(jnp.asarray(A))
    res = pnp_admm(op, SquaredL2Prox(lam), jnp.asarray(y), rho, max_steps=3000, rtol=1e-13)
    # minimiser of ||Ax - y||^2 / (2 rho) + lam/2 ||x||^2
    exact = np.linalg.solve(A.T @ A / rho + lam * np.eye(4), A.T @ y.T / rho).T
    np.testing.assert_allclose(res.x, exact, atol=1e-9)
    k = int(res.iterations)
    assert bool(res.converged) and res.primal_residual.shape == (3000, 3)
    assert np.all(np.isfinite(res.primal_residual[:k])) and np.all(np.isnan(res.primal_residual[k:]))
    assert int(res.cg_iterations[0, 0]) >= 1


def _small_lpn(alpha=0.5, seed=0):
    return LPN(DenseICNN(6, (16, 16), key=jax.random.key(seed), beta=10.0, alpha=alpha))


@pytest.mark.slow
def test_lpn_regularizer_at_prox_output_matches_inversion():
    lpn = _small_lpn()
    op = MatrixOperator(jax.random.normal(jax.random.key(1), (4, 6)))
    y = jax.random.normal(jax.random.key(2), (2, 4))
    res = pnp_pgd(op, lpn, y, 10.0, max_steps=3)
    # recompute F(x_3) with R from LPN.regularizer (Newton-CG inversion, tolerance 1e-10)
    x = res.x
    F = jnp.sum((op(x) - y) ** 2, axis=-1) / 20.0 + lpn.regularizer(x)
    np.testing.assert_allclose(res.objective[2], F, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1])
def test_lpn_pnp_descent_under_the_conditions(seed):
    """PGD: F(x_k) non-increasing for rho >= ||A^T A||. ADMM: the augmented Lagrangian is
    non-increasing for rho > ||A^T A|| (see pdeml.inverse.solvers for the argument)."""
    lpn = _small_lpn(seed=seed)
    op = MatrixOperator(jax.random.normal(jax.random.key(10 + seed), (4, 6)))
    y = jax.random.normal(jax.random.key(20 + seed), (3, 4))
    norm = float(op.normest(iters=5000, rtol=1e-14))
    rho = 1.01 * norm
    cond = convergence_conditions(lpn, op, rho, norm=norm)
    assert cond.holds, cond.explain()
    pgd = pnp_pgd(op, lpn, y, rho, max_steps=300, rtol=0.0)
    obj = np.asarray(pgd.objective)[: int(pgd.iterations)]  # it may reach an exact fixed point
    # allowed increase: rounding of F (values O(1..10)) in float64
    assert np.all(np.diff(obj, axis=0) <= 1e-11), np.diff(obj, axis=0).max()
    assert obj[-1].max() < obj[0].min() or np.all(obj[-1] < obj[0])
    admm = pnp_admm(op, lpn, y, rho, max_steps=300, rtol=0.0, cg_tol=1e-13)
    lag = np.asarray(admm.lagrangian)[: int(admm.iterations)]
    # CG solves to 1e-13 relative: the Lagrangian is exact to ~1e-11
    assert np.all(np.diff(lag, axis=0) <= 1e-10), np.diff(lag, axis=0).max()
    # both reach the same stationary point of F (non-convex: compare the residuals, not x)
    assert float(admm.primal_residual[int(admm.iterations) - 1].max()) < 1e-6
    assert float(pgd.primal_residual[int(pgd.iterations) - 1].max()) < 1e-6


def _quadratic_lpn(alpha, n):
    """All hidden weights zero: psi = alpha/2 ||x||^2 + const, so R = (1/alpha - 1)/2 ||x||^2."""
    psi = DenseICNN(n, (8, 8), key=jax.random.key(12), alpha=alpha, nonnegativity="project")
    psi = eqx.tree_at(lambda m: (m.W0, m.Ax, m.a_out), psi,
                      (jnp.zeros_like(psi.W0), tuple(jnp.zeros_like(a) for a in psi.Ax),
                       jnp.zeros_like(psi.a_out)))
    return LPN(psi)


@pytest.mark.parametrize("rho_over_norm", [0.01, 0.3, 3.0])
def test_lpn_map_matches_closed_form_for_a_quadratic_prior(rho_over_norm):
    """With R = (1/alpha - 1)/2 ||x||^2, F is a strictly convex quadratic: its minimiser is
    (A^T A / rho + (1/alpha - 1) I)^{-1} A^T y / rho, for rho far below ||A^T A|| too (where
    PnP-ADMM / PGD have no guarantee)."""
    alpha = 0.3
    lpn = _quadratic_lpn(alpha, 6)
    A = jax.random.normal(jax.random.key(3), (4, 6))
    op = MatrixOperator(A)
    y = jax.random.normal(jax.random.key(4), (2, 4))
    rho = rho_over_norm * float(op.normest(iters=5000, rtol=1e-14))
    res = lpn_map(op, lpn, y, rho, max_steps=500, rtol=1e-12)
    assert bool(res.converged)
    H = A.T @ A / rho + (1 / alpha - 1) * jnp.eye(6)
    x_star = jnp.linalg.solve(H, (y @ A).T / rho).T
    np.testing.assert_allclose(res.x, x_star, atol=1e-9)
    obj = np.asarray(res.objective)[: int(res.iterations)]
    assert np.all(np.diff(obj, axis=0)[np.isfinite(np.diff(obj, axis=0))] <= 1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_lpn_map_descends_to_a_stationary_point_at_any_rho(seed):
    """A random (non-convex R) LPN at rho = 0.05 ||A^T A||, where PnP has no guarantee:
    F(x_k) is non-increasing and the end point is stationary, grad F = A^T (A x - y) / rho +
    f^{-1}(x) - x = 0 with f^{-1} from an independent Newton-CG inversion."""
    lpn = _small_lpn(alpha=0.3, seed=seed)
    op = MatrixOperator(jax.random.normal(jax.random.key(10 + seed), (4, 6)))
    y = jax.random.normal(jax.random.key(20 + seed), (3, 4))
    rho = 0.05 * float(op.normest(iters=5000, rtol=1e-14))
    assert not convergence_conditions(lpn, op, rho).holds
    res = lpn_map(op, lpn, y, rho, max_steps=1000, rtol=1e-10)
    assert bool(res.converged)
    obj = np.asarray(res.objective)
    d = np.diff(obj, axis=0)
    assert np.all(d[np.isfinite(d)] <= 1e-12), np.nanmax(d)
    x = res.x
    grad = op.adjoint(op(x) - y) / rho + lpn.inverse(x).y - x
    assert float(jnp.abs(grad).max()) < 1e-8
    # the objective it reports is F at x (R from the inversion)
    n = np.argmax(~np.isfinite(obj), axis=0) - 1  # last finite entry per sample
    F = jnp.sum((op(x) - y) ** 2, axis=-1) / (2 * rho) + lpn.regularizer(x)
    np.testing.assert_allclose(obj[n, np.arange(3)], F, rtol=1e-9, atol=1e-9)


def test_lpn_map_has_the_fixed_points_of_pnp_admm():
    """At rho > ||A^T A|| PnP-ADMM converges (guaranteed) to a stationary point of the same F;
    started there, lpn_map stops at once (its stationarity test already holds)."""
    lpn = _small_lpn(alpha=0.3, seed=2)
    op = MatrixOperator(jax.random.normal(jax.random.key(5), (4, 6)))
    y = jax.random.normal(jax.random.key(6), (2, 4))
    rho = 1.5 * float(op.normest(iters=5000, rtol=1e-14))
    admm = pnp_admm(op, lpn, y, rho, max_steps=3000, rtol=1e-12, cg_tol=1e-13)
    w = lpn.inverse(admm.x).y  # the prox input whose output is the ADMM solution
    res = lpn_map(op, lpn, y, rho, x0=w, rtol=1e-8)
    assert bool(res.converged) and int(res.iterations) == 0
    np.testing.assert_allclose(res.x, admm.x, atol=1e-10)


def test_lpn_map_bad_inputs():
    lpn = _small_lpn()
    op = MatrixOperator(jnp.eye(6))
    y = jnp.ones((6,))
    with pytest.raises(TypeError, match="needs an LPN"):
        lpn_map(op, SoftThreshold(0.1), y, 1.0)
    with pytest.raises(ValueError, match="rho must be a finite float > 0"):
        lpn_map(op, lpn, y, 0.0)
    with pytest.raises(ValueError, match="memory must be a positive int"):
        lpn_map(op, lpn, y, 1.0, memory=0)
    with pytest.raises(ValueError, match="trailing shape"):
        lpn_map(op, lpn, jnp.ones((5,)), 1.0)
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf"):
        lpn_map(op, lpn, y.at[0].set(jnp.nan), 1.0)


def test_conjugate_gradient_is_differentiable_and_warm_started():
    M = jnp.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]])
    b = jnp.array([1.0, -2.0, 0.5])

    def loss(b, s):
        x, _ = conjugate_gradient(lambda v: s * (M @ v), b, rtol=1e-14)
        return jnp.sum(x**2)

    g_b, g_s = jax.grad(loss, argnums=(0, 1))(b, 1.3)
    # closed form: x = (sM)^{-1} b; d/db = 2 (sM)^{-1} x; d/ds = -2 x . (x / s)
    x = np.linalg.solve(1.3 * np.asarray(M), np.asarray(b))
    np.testing.assert_allclose(g_b, 2 * np.linalg.solve(1.3 * np.asarray(M), x), rtol=1e-10)
    np.testing.assert_allclose(g_s, -2 * x @ x / 1.3, rtol=1e-10)
    x_exact, k0 = conjugate_gradient(lambda v: M @ v, b, rtol=1e-12)
    _, k1 = conjugate_gradient(lambda v: M @ v, b, x_exact, rtol=1e-12)
    assert int(k1) == 0 < int(k0)


def test_admm_is_forward_differentiable_in_the_measurements():
    """The outer loop is a while_loop (early stopping): forward mode works (reverse mode through
    the outer loop does not; the CG data step is reverse-differentiable, tested above)."""
    op = MatrixOperator(jax.random.normal(jax.random.key(0), (5, 3)))
    y = jax.random.normal(jax.random.key(1), (5,))
    prox = SquaredL2Prox(0.3)

    def f(y):
        return jnp.sum(pnp_admm(op, prox, y, 2.0, max_steps=400, rtol=1e-14,
                                track_objective=False).x ** 2)

    e = jnp.zeros(5).at[2].set(1.0)
    _, jv = jax.jvp(f, (y,), (e,))
    fd = (f(y + 1e-6 * e) - f(y - 1e-6 * e)) / 2e-6
    # central differences with h = 1e-6 on an O(1) smooth function: error ~1e-10 relative
    assert float(jv) == pytest.approx(float(fd), rel=1e-6)


def test_tikhonov_matches_dense_solution():
    rng = np.random.default_rng(3)
    A, y = rng.normal(size=(7, 5)), rng.normal(size=7)
    x = tikhonov(MatrixOperator(jnp.asarray(A)), jnp.asarray(y), 0.2)
    np.testing.assert_allclose(x, np.linalg.solve(A.T @ A + 0.2 * np.eye(5), A.T @ y), atol=1e-9)
    op = GaussianBlur((6, 6), 1.0)
    yb = jax.random.normal(jax.random.key(0), (6, 6))
    xg = tikhonov(op, yb, 0.1, regularizer="gradient")
    # normal equations: (A^T A + lam D^T D) x = A^T y
    Dx = [jnp.roll(xg, -1, a) - xg for a in (0, 1)]
    DtDx = sum(jnp.roll(d, 1, a) - d for a, d in zip((0, 1), Dx))
    np.testing.assert_allclose(op.gram(xg) + 0.1 * DtDx, op.adjoint(yb), atol=1e-9)


@pytest.mark.slow
def test_tv_pnp_runs_batched_on_images():
    op = GaussianBlur((1, 12, 12), 1.0)
    x = jnp.zeros((2, 1, 12, 12)).at[:, :, 3:8, 4:9].set(1.0)
    y = op(x)
    res = pnp_admm(op, TotalVariationProx(0.002, ndim=2, atol=1e-10, max_steps=500), y, 1.0,
                   max_steps=150, rtol=1e-6)
    # TV deblurring of a noiseless piecewise-constant image: close to the truth
    assert float(jnp.abs(res.x - x).mean()) < 0.05
    assert np.all(np.isfinite(np.asarray(res.objective[: int(res.iterations)])))


def test_bad_inputs():
    op = MatrixOperator(jnp.eye(3))
    y = jnp.ones(3)
    prox = SoftThreshold(0.1)
    for solver in (pnp_pgd, pnp_admm):
        with pytest.raises(ValueError, match="rho"):
            solver(op, prox, y, 0.0)
        with pytest.raises(ValueError, match="rho"):
            solver(op, prox, y, -1.0)
        with pytest.raises(ValueError, match="trailing shape"):
            solver(op, prox, jnp.ones(4), 1.0)
        with pytest.raises(ValueError, match="x0"):
            solver(op, prox, y, 1.0, x0=jnp.ones(2))
        with pytest.raises(TypeError, match="prox"):
            solver(op, lambda v: v, y, 1.0)
        with pytest.raises(TypeError, match="op"):
            solver(jnp.eye(3), prox, y, 1.0)
        with pytest.raises(ValueError, match="max_steps"):
            solver(op, prox, y, 1.0, max_steps=0)
        with pytest.raises(Exception, match="NaN"):
            solver(op, prox, y.at[1].set(jnp.nan), 1.0)
        with pytest.raises(Exception, match="rho"):  # traced rho: checked at run time
            jax.block_until_ready(eqx.filter_jit(lambda r: solver(op, prox, y, r).x)(jnp.asarray(-1.0)))
    with pytest.raises(ValueError, match="lam"):
        tikhonov(op, y, 0.0)
    with pytest.raises(ValueError, match="regularizer"):
        tikhonov(op, y, 1.0, regularizer="l1")


def test_convergence_conditions_explain_violations():
    op = MatrixOperator(2.0 * jnp.eye(3))  # ||A^T A|| = 4
    lpn = LPN(DenseICNN(3, (8,), key=jax.random.key(0), alpha=0.5))
    assert convergence_conditions(lpn, op, 4.5).holds
    c = convergence_conditions(lpn, op, 3.0)
    assert not c.holds and "rho must exceed" in c.explain()
    c = convergence_conditions(LPN(DenseICNN(3, (8,), key=jax.random.key(0), alpha=1.5)), op, 5.0)
    assert not c.holds and "alpha" in c.explain()
    c = convergence_conditions(LPN(DenseICNN(3, (8,), key=jax.random.key(0), alpha=0.0)), op, 5.0)
    assert not c.holds and "alpha" in c.explain()
    assert "not an LPN" in convergence_conditions(SoftThreshold(0.1), op, 5.0).explain()
