"""pdeml.core.cg_solve / conjugate_gradient: against dense solves on random SPD systems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.core import CGStats, cg_solve, conjugate_gradient


def _spd(n, seed, dtype, cond=50.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.geomspace(1.0, cond, n)
    A = (Q * eig) @ Q.T
    b = rng.standard_normal(n)
    return jnp.asarray(A, dtype), jnp.asarray(b, dtype), A, b


TOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_dense_solve(dtype, seed):
    A, b, A64, b64 = _spd(12, seed, dtype)
    x, stats = cg_solve(lambda v: A @ v, b, rtol=TOL[dtype], max_steps=100)
    assert isinstance(stats, CGStats)
    assert x.dtype == dtype and bool(stats.converged)
    assert 0 < int(stats.iterations) <= 100
    x_ref = np.linalg.solve(A64, b64)
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=(1e-3 if dtype == jnp.float32 else 1e-9)
                               * np.abs(x_ref).max())
    # the reported residual is the recursive one: close to the true residual, within the rule
    assert float(stats.residual_norm) <= TOL[dtype] * float(jnp.linalg.norm(b))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_preconditioning_reduces_iterations(dtype):
    rng = np.random.default_rng(3)
    n = 30
    d = np.geomspace(1.0, 1e4, n)  # badly scaled diagonal plus a small SPD coupling
    B = rng.standard_normal((n, n)) / n
    A64 = np.diag(d) + B @ B.T
    A, b = jnp.asarray(A64, dtype), jnp.asarray(rng.standard_normal(n), dtype)
    jacobi = jnp.asarray(1.0 / np.diag(A64), dtype)
    x0, s0 = cg_solve(lambda v: A @ v, b, rtol=TOL[dtype], max_steps=500)
    x1, s1 = cg_solve(lambda v: A @ v, b, rtol=TOL[dtype], max_steps=500,
                      preconditioner=lambda r: jacobi * r)
    assert bool(s0.converged) and bool(s1.converged)
    assert int(s1.iterations) < int(s0.iterations)
    x_ref = np.linalg.solve(A64, np.asarray(b, np.float64))
    atol = (1e-3 if dtype == jnp.float32 else 1e-8) * np.abs(x_ref).max()
    np.testing.assert_allclose(x1, x_ref, rtol=0, atol=atol)


def test_max_steps_one_reports_non_convergence():
    A, b, _, _ = _spd(8, 4, jnp.float64)
    x, stats = cg_solve(lambda v: A @ v, b, rtol=1e-10, max_steps=1)
    assert int(stats.iterations) == 1 and not bool(stats.converged)
    assert float(stats.residual_norm) > 1e-10 * float(jnp.linalg.norm(b))
    x, stats = cg_solve(lambda v: A @ v, b, max_steps=0)
    assert int(stats.iterations) == 0 and not bool(stats.converged) and not jnp.any(x)


def test_absolute_tolerance_and_inner_product():
    A, b, _, _ = _spd(10, 5, jnp.float64)
    x, stats = cg_solve(lambda v: A @ v, b, atol=1e-3, rtol=0)
    assert bool(stats.converged) and float(stats.residual_norm) <= 1e-3
    assert float(jnp.linalg.norm(b - A @ x)) < 2e-3
    # a scaled inner product (a grid mean) gives the same iterates with a rescaled norm
    A, b, _, _ = _spd(80, 5, jnp.float64, cond=100.0)
    n = b.shape[0]
    x1, s1 = cg_solve(lambda v: A @ v, b, rtol=1e-3)
    x2, s2 = cg_solve(lambda v: A @ v, b, rtol=1e-3, inner=lambda u, v: jnp.mean(u * v))
    assert int(s1.iterations) == int(s2.iterations) < n
    np.testing.assert_allclose(x1, x2, rtol=1e-4)
    np.testing.assert_allclose(s2.residual_norm * np.sqrt(n), s1.residual_norm, rtol=1e-3)


def test_jit_vmap_and_warm_start():
    A, _, A64, _ = _spd(9, 6, jnp.float64)
    B = jax.random.normal(jax.random.key(0), (5, 9))
    solve = jax.jit(jax.vmap(lambda b: cg_solve(lambda v: A @ v, b, rtol=1e-12)))
    X, stats = solve(B)
    assert stats.iterations.shape == (5,) and bool(jnp.all(stats.converged))
    np.testing.assert_allclose(X, np.linalg.solve(A64, np.asarray(B).T).T, atol=1e-9)
    _, s = cg_solve(lambda v: A @ v, B[0], X[0], rtol=1e-8)
    assert int(s.iterations) == 0 and bool(s.converged)


@pytest.mark.parametrize("precondition", [False, True])
def test_gradients_by_the_implicit_function_theorem(precondition):
    A, b, A64, b64 = _spd(6, 7, jnp.float64)
    P = (lambda r: r / jnp.diag(A)) if precondition else None

    def loss(b, s):
        x, _ = cg_solve(lambda v: s * (A @ v), b, rtol=1e-14, max_steps=200, preconditioner=P)
        return jnp.sum(x**3)

    g_b, g_s = jax.grad(loss, argnums=(0, 1))(b, 1.7)
    x = np.linalg.solve(1.7 * A64, b64)
    w = np.linalg.solve(1.7 * A64, 3 * x**2)  # adjoint solve
    np.testing.assert_allclose(g_b, w, rtol=1e-8)
    np.testing.assert_allclose(g_s, -w @ (A64 @ x), rtol=1e-8)


def test_conjugate_gradient_short_form_is_shared():
    import pdeml.inverse

    assert pdeml.inverse.conjugate_gradient is conjugate_gradient
    A, b, _, _ = _spd(5, 8, jnp.float64)
    x, k = conjugate_gradient(lambda v: A @ v, b, rtol=1e-10, max_steps=50)
    y, stats = cg_solve(lambda v: A @ v, b, rtol=1e-10, max_steps=50)
    assert int(k) == int(stats.iterations) and bool(jnp.all(x == y))
