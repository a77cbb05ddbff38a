"""The solver contract: every public iterative solver returns a :class:`pdeml.core.Solution`,
runs under ``jit`` and ``vmap``, reports non-convergence at ``max_steps=1`` with a
:class:`pdeml.core.RESULTS` code, and raises ``equinox.EquinoxRuntimeError`` under
``throw=True`` -- in float32 and float64.

Deep Ritz runs a host loop (compiled chunks, a progress bar) and cannot be traced: it is held
to the same contract outside ``jit`` (``EAGER_CASES``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.core import (
    MAX_STEPS_REACHED,
    NONFINITE,
    RESULTS,
    STAGNATED,
    SUCCESS,
    Solution,
    StructuredLeastSquares,
    conjugate_gradient,
    max_steps_option,
    solve_least_squares,
    tolerance_option,
)
from pdeml.barron import (
    CosineNetwork,
    RidgeSum,
    SemilinearLagrangian,
    deep_ritz,
    fit_shallow,
    make_test_problem,
    manufactured_problem,
    newton_krylov,
    sobolev_gradient_descent,
)
from pdeml.inverse.operators import MatrixOperator
from pdeml.inverse.solvers import lpn_map, pnp_admm, pnp_pgd, tikhonov
from pdeml.nets.icnn import DenseICNN
from pdeml.prox import LPN, SoftThreshold, TotalVariationProx, evaluate_regularizer

DTYPES = (jnp.float32, jnp.float64)


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _lpn(dtype):
    return _cast(LPN(DenseICNN(2, (8,), key=jax.random.key(0), alpha=0.5)), dtype)


# Each case: make(dtype) -> (solve, easy, hard). solve(data, **options) runs the solver on one
# problem's data and returns its Solution; ``easy`` converges with the default options, ``hard``
# does not converge in one step.


def _least_squares(dtype):
    features = jnp.stack([jnp.eye(3, dtype=dtype)])

    def solve(target, **options):
        # Phi(a) = a^3 - target: nonlinear, so one Levenberg-Marquardt step does not converge.
        problem = StructuredLeastSquares(features, lambda a, t: a[0] ** 3 - t, aux=target)
        return solve_least_squares(problem, jnp.full((3,), 3.0, dtype), **options)

    return solve, jnp.asarray([1.0, 2.0, 0.5], dtype), jnp.asarray([1.0, 2.0, 0.5], dtype)


def _lpn_inverse(dtype):
    lpn = _lpn(dtype)
    easy = jnp.asarray([[0.3, -0.2], [1.0, 0.5]], dtype)
    return (lambda x, **options: lpn.inverse(x, **options)), easy, 40.0 * easy


def _evaluate_regularizer(dtype):
    lpn = _lpn(dtype)
    easy = jnp.asarray([[0.3, -0.2], [1.0, 0.5]], dtype)
    return (lambda x, **options: evaluate_regularizer(lpn, x, **options)[1]), easy, 40.0 * easy


def _pnp(solver):
    def make(dtype):
        op = MatrixOperator(jnp.asarray([[1.0, 0.2], [0.0, 0.8]], dtype))

        def solve(y, **options):
            if "tol" not in options:  # the deprecated spelling, tested below
                options.setdefault("rtol", 1e-4)
            return solver(op, SoftThreshold(0.1), y, 2.0, **options)

        y = jnp.asarray([2.0, -0.7], dtype)
        return solve, y, y

    return make


def _lpn_map(dtype):
    lpn = _lpn(dtype)
    op = MatrixOperator(jnp.asarray([[1.0, 0.2], [0.0, 0.8]], dtype))

    def solve(y, **options):
        return lpn_map(op, lpn, y, 0.5, **options)

    y = jnp.asarray([1.0, -0.5], dtype)
    return solve, y, 20.0 * y


def _grid(solver):
    # T2 (semilinear, lambda = 1, Lambda = 2) on a 5 x 5 grid: the smallest odd grid
    def make(dtype):
        problem = make_test_problem("T2", dim=2, nu=1.0)
        t = jnp.linspace(0.0, 1.0, 5, endpoint=False, dtype=dtype)
        u0 = 0.3 * jnp.cos(2 * jnp.pi * t)[:, None] * jnp.sin(2 * jnp.pi * t)[None, :]
        return (lambda u, **options: solver(problem, u, **options)), u0, u0 + 1.0

    return make


def _cosine_target(dtype):
    return CosineNetwork(jnp.asarray([1.0, 0.5], dtype), jnp.asarray([[1.0, 0.0], [1.0, 2.0]], dtype),
                         jnp.asarray([0.3, -0.2], dtype))


def _fit_shallow(dtype):
    # Gauss-Newton from frequencies 0.02 off the target's: a zero-residual fit
    x = jax.random.uniform(jax.random.key(0), (64, 2), dtype)
    target = _cosine_target(dtype)
    start = CosineNetwork(jnp.asarray([0.8, 0.6], dtype), target.frequencies + 0.02,
                          jnp.zeros(2, dtype))
    y = jax.vmap(target)(x)
    return (lambda y, **options: fit_shallow(start, x, y, **options)), y, 2.0 * y


CASES = {
    "solve_least_squares": _least_squares,
    "LPN.inverse": _lpn_inverse,
    "evaluate_regularizer": _evaluate_regularizer,
    "pnp_pgd": _pnp(pnp_pgd),
    "pnp_admm": _pnp(pnp_admm),
    "lpn_map": _lpn_map,
    "sobolev_gradient_descent": _grid(sobolev_gradient_descent),
    "newton_krylov": _grid(newton_krylov),
    "fit_shallow": _fit_shallow,
}


def _deep_ritz(dtype):
    # the frequencies of u* fixed, coefficients and phases trained: natural gradient reaches
    # round-off in a few steps
    sol = RidgeSum(jnp.array([[0.5]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.3]]))
    problem = manufactured_problem(SemilinearLagrangian(nu=1.0), sol, 2)
    k = jnp.asarray([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype)
    net = CosineNetwork(jnp.zeros(3, dtype), k, jnp.zeros(3, dtype))
    keep_k = eqx.tree_at(lambda m: m.frequencies, jax.tree.map(lambda _: True, net), False)

    def solve(key, **options):
        options.setdefault("max_steps", 8)
        return deep_ritz(problem, net, key=key, num_points=128, num_eval_points=256,
                         trainable=keep_k, **options)

    return solve, jax.random.key(0), jax.random.key(0)


EAGER_CASES = {"deep_ritz": _deep_ritz}


def _failing_options(name):
    # A stopping test one step cannot pass (an LPN's inverse far out is nearly linear, so one
    # Newton step meets the float32 default tolerance there).
    tight = {"pnp_pgd": {"atol": 0.0, "rtol": 0.0}, "pnp_admm": {"atol": 0.0, "rtol": 0.0},
             "deep_ritz": {"atol": 0.0, "rtol": 1e-12},
             "LPN.inverse": {"atol": 0.0, "rtol": 1e-12},
             "evaluate_regularizer": {"atol": 0.0, "rtol": 1e-12}}
    return {"max_steps": 1, "throw": False, **tight.get(name, {})}


def _leaves_dtype(tree):
    return {a.dtype for a in jax.tree.leaves(tree) if eqx.is_inexact_array(a)}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_solution_under_jit_and_vmap(name, dtype):
    solve, easy, _ = CASES[name](dtype)
    sol = eqx.filter_jit(lambda d: solve(d, throw=False))(easy)
    assert isinstance(sol, Solution)
    assert sol.result.dtype == jnp.int32
    assert bool(jnp.all(sol.converged)) and bool(jnp.all(sol.result == RESULTS.SUCCESS))
    assert _leaves_dtype(sol.value) == {jnp.dtype(dtype)}

    batch = jnp.stack([easy, 1.1 * easy])
    many = jax.vmap(lambda d: solve(d, throw=False))(batch)
    assert isinstance(many, Solution)
    assert many.result.shape == (2, *sol.result.shape)
    assert bool(jnp.all(many.converged))
    # the first problem of the batch is the one solved alone (up to the round-off of batching)
    for one, alone in zip(jax.tree.leaves(many.value), jax.tree.leaves(sol.value)):
        atol = (1e-3 if dtype == jnp.float32 else 1e-8) * (1 + float(jnp.abs(alone).max()))
        np.testing.assert_allclose(one[0], alone, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(CASES))
def test_max_steps_one_reports_and_throw_raises(name, dtype):
    solve, _, hard = CASES[name](dtype)
    options = _failing_options(name)
    sol = jax.jit(lambda d: solve(d, **options))(hard)
    assert isinstance(sol, Solution)
    assert not bool(jnp.all(sol.converged))
    failed = np.asarray(sol.result)[~np.asarray(sol.converged)]
    assert set(failed.tolist()) <= {int(MAX_STEPS_REACHED), int(STAGNATED)}


    # Under equinox.filter_jit the error is raised as EquinoxRuntimeError (plain jax.jit wraps
    # it in a JaxRuntimeError with the same message).
    options["throw"] = True
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps"):
        jax.block_until_ready(eqx.filter_jit(lambda d: solve(d, **options).value)(hard))
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps"):
        jax.block_until_ready(eqx.filter_jit(jax.vmap(lambda d: solve(d, **options).value))(
            jnp.stack([hard, hard])))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(EAGER_CASES))
def test_eager_solver_contract(name, dtype):
    solve, easy, hard = EAGER_CASES[name](dtype)
    sol = solve(easy, throw=False)
    assert isinstance(sol, Solution) and sol.result.dtype == jnp.int32
    assert bool(sol.converged) and int(sol.result) == RESULTS.SUCCESS
    assert _leaves_dtype(sol.value) == {jnp.dtype(dtype)}

    options = _failing_options(name)
    sol = solve(hard, **options)
    assert int(sol.result) == RESULTS.MAX_STEPS_REACHED and not bool(sol.converged)
    options["throw"] = True
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps"):
        jax.block_until_ready(solve(hard, **options).value)


def test_results_enumeration_keeps_the_codes():
    assert (SUCCESS, MAX_STEPS_REACHED, NONFINITE, STAGNATED) == (0, 1, 2, 3)
    assert [int(c) for c in RESULTS] == [0, 1, 2, 3]
    assert all(RESULTS(c).message for c in range(4))
    sol = Solution(value=jnp.zeros(2), result=jnp.asarray([0, 2], jnp.int32), stats=None)
    assert sol.converged.tolist() == [True, False]


def test_iteration_cap_has_one_spelling():
    with pytest.warns(DeprecationWarning, match="use max_steps="):
        assert max_steps_option(None, 10, max_iter=3) == (3, "max_iter")
    with pytest.raises(TypeError, match="once"):
        max_steps_option(5, 10, max_iter=3)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        max_steps_option(0, 10)
    solve, _, hard = _pnp(pnp_pgd)(jnp.float64)
    new = solve(hard, max_steps=3)
    with pytest.warns(DeprecationWarning):
        old = solve(hard, max_iter=3)
    assert int(new.iterations) == int(old.iterations) == 3
    np.testing.assert_array_equal(new.value, old.value)


def test_lpn_map_diagnostics_have_their_own_names():
    solve, easy, _ = _lpn_map(jnp.float64)
    sol = solve(jnp.stack([easy, 2 * easy]), max_steps=20)
    hist = sol.history
    assert hist.line_search_halvings.dtype == jnp.int32
    k = int(sol.stats.iterations)
    assert np.all(np.isfinite(np.asarray(hist.gradient_norm)[:k]))
    assert sol.stats.sample_result.shape == (2,) and sol.stats.sample_iterations.shape == (2,)
    # the names shared with PnPResult read the same records
    np.testing.assert_array_equal(sol.primal_residual, hist.gradient_norm)
    np.testing.assert_array_equal(sol.cg_iterations, hist.line_search_halvings)
    assert bool(jnp.all(jnp.isnan(sol.lagrangian)))


# ----------------------------------------------------------------------------- atol / rtol
# Every solver with a residual stopping test states it as ``quantity <= atol + rtol * scale``.
# Each case: make(dtype) -> (solve(**options) -> Solution, stated(sol) -> (quantity, scale)),
# the quantity and scale of the stated test at the returned iterate, per sample.


def _stated_pnp(kind):
    def stated(sol):
        k = int(sol.iterations) - 1
        q = sol.primal_residual[k] if kind == "pgd" else jnp.maximum(sol.primal_residual[k],
                                                                     sol.dual_residual[k])
        return q, jnp.linalg.norm(sol.x, axis=-1)

    return stated


def _tol_pnp(solver, kind):
    def make(dtype):
        op = MatrixOperator(jnp.asarray([[1.0, 0.2], [0.0, 0.8]], dtype))
        y = jnp.asarray([[2.0, -0.7], [0.4, 1.5]], dtype)
        def solve(**options):
            options.setdefault("max_steps", 500)
            return solver(op, SoftThreshold(0.1), y, 2.0, **options)

        return solve, _stated_pnp(kind)

    return make


def _tol_lpn_map(dtype):
    lpn = _lpn(dtype)
    op = MatrixOperator(jnp.asarray([[1.0, 0.2], [0.0, 0.8]], dtype))
    y = jnp.asarray([[1.0, -0.5], [0.3, 0.8]], dtype)

    def stated(sol):
        k = np.asarray(sol.stats.sample_iterations) - 1
        gn = np.asarray(sol.history.gradient_norm)[k, np.arange(2)]
        return gn, jnp.linalg.norm(sol.x, axis=-1)

    return (lambda **o: lpn_map(op, lpn, y, 0.5, **o)), stated


TOLERANCE_CASES = {"pnp_pgd": _tol_pnp(pnp_pgd, "pgd"), "pnp_admm": _tol_pnp(pnp_admm, "admm"),
                   "lpn_map": _tol_lpn_map}


def _tolerances(dtype):
    # relative only, absolute only, both
    if dtype == jnp.float32:
        return [(0.0, 1e-4), (1e-3, 0.0), (1e-4, 1e-4)]
    return [(0.0, 1e-10), (1e-9, 0.0), (1e-10, 1e-10)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(TOLERANCE_CASES))
def test_atol_rtol_is_the_stated_test(name, dtype):
    solve, stated = TOLERANCE_CASES[name](dtype)
    for atol, rtol in _tolerances(dtype):
        sol = eqx.filter_jit(lambda a=atol, r=rtol: solve(atol=a, rtol=r))()
        assert bool(jnp.all(sol.converged)), (atol, rtol)
        assert _leaves_dtype(sol.value) == {jnp.dtype(dtype)}
        quantity, scale = stated(sol)
        assert np.all(np.asarray(quantity) <= atol + rtol * np.asarray(scale)), (atol, rtol)
    # with atol = rtol = 0 one iteration does not pass: the tolerances are what stops the solver
    assert not bool(jnp.all(solve(atol=0.0, rtol=0.0, max_steps=1).converged))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(TOLERANCE_CASES))
def test_deprecated_tol_is_rtol_with_atol_zero(name, dtype):
    solve, _ = TOLERANCE_CASES[name](dtype)
    t = 1e-4 if dtype == jnp.float32 else 1e-10
    new = solve(atol=0.0, rtol=t)
    with pytest.warns(DeprecationWarning, match=r"tol= is deprecated.*atol=0, rtol="):
        old = solve(tol=t)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="not together with tol="):
        solve(tol=t, rtol=t)
    with pytest.raises(ValueError, match="^atol must be a float >= 0"):
        solve(atol=-1.0)
    with pytest.raises(ValueError, match="^rtol must be a float >= 0"):
        solve(rtol=float("nan"))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cg_solvers_take_atol_rtol_max_steps(dtype):
    A = jnp.asarray([[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]], dtype)
    b = jnp.asarray([1.0, -2.0, 0.5], dtype)
    rtol = 1e-5 if dtype == jnp.float32 else 1e-12
    x, k = jax.jit(lambda v: conjugate_gradient(lambda u: A @ u, v, rtol=rtol, max_steps=50))(b)
    assert float(jnp.linalg.norm(A @ x - b)) <= 10 * rtol * float(jnp.linalg.norm(b))
    with pytest.warns(DeprecationWarning):
        x_old, k_old = conjugate_gradient(lambda u: A @ u, b, tol=rtol, maxiter=50)
    np.testing.assert_array_equal(x, x_old)
    assert int(k) == int(k_old)

    # tikhonov: CG on the normal equations, ||A^T y - (A^T A + lam I) x|| <= atol + rtol ||A^T y||
    op, y = MatrixOperator(A), jnp.stack([b, 2.0 * b])
    x = jax.jit(lambda v: tikhonov(op, v, 0.3, atol=0.0, rtol=rtol, max_steps=50))(y)
    assert x.dtype == dtype
    res = jnp.linalg.norm(op.adjoint(y) - op.gram(x) - 0.3 * x, axis=-1)
    assert np.all(np.asarray(res) <= 10 * rtol * np.asarray(jnp.linalg.norm(op.adjoint(y), axis=-1)))
    with pytest.warns(DeprecationWarning):
        x_old = tikhonov(op, y, 0.3, tol=rtol, maxiter=50)
    np.testing.assert_array_equal(x, x_old)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_total_variation_prox_takes_atol_rtol_max_steps(dtype):
    x = jnp.asarray([[0.0, 0.1, 2.9, 3.0, 1.0]], dtype)
    new = TotalVariationProx(0.5, atol=1e-6, max_steps=300)
    with pytest.warns(DeprecationWarning, match="gap_tol= is deprecated"):
        old = TotalVariationProx(0.5, gap_tol=1e-6, max_steps=300)
    with pytest.warns(DeprecationWarning, match="max_iter= is deprecated"):
        assert TotalVariationProx(0.5, atol=1e-6, max_iter=300) == old
    assert (old.atol, old.rtol, old.max_steps) == (1e-6, 0.0, 300) == (new.gap_tol, 0.0, new.max_iter)
    np.testing.assert_array_equal(new.prox(x), old.prox(x))
    z = TotalVariationProx(0.5, atol=0.0, rtol=1e-6).prox(x)  # a relative duality gap
    np.testing.assert_allclose(z, new.prox(x), atol=1e-2)
    with pytest.raises(ValueError, match="both be 0"):
        TotalVariationProx(0.5, atol=0.0, rtol=0.0)


def test_tolerance_option_maps_the_old_single_tolerance():
    assert tolerance_option(None, None, (0.0, 1e-5), test="t") == (0.0, 1e-5)
    with pytest.warns(DeprecationWarning, match="the test is t"):
        assert tolerance_option(None, None, (0.0, 1e-5), test="t", tol=1e-3) == (0.0, 1e-3)
    with pytest.warns(DeprecationWarning):
        assert tolerance_option(None, None, (1.0, 0.0), test="t", tol=2.0, tol_is="atol") \
            == (2.0, 0.0)
    with pytest.raises(ValueError, match="^tol must be a float >= 0"):
        tolerance_option(None, None, (0.0, 1e-5), test="t", tol=-1.0)
