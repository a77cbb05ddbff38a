"""Variational problems and the Sobolev-gradient / Newton-Krylov grid solvers."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdeml.barron import (
    CallableLagrangian,
    QuasilinearLagrangian,
    RidgeSum,
    SemilinearLagrangian,
    check_convexity,
    energy,
    estimate_convexity,
    hessian_vector_product,
    make_test_problem,
    manufactured_problem,
    newton_krylov,
    pointwise_residual,
    sobolev_gradient_descent,
)
from pdeml.testing.barron import (
    check_contraction,
    check_energy_decrease,
    check_euler_lagrange_gradient,
    manufactured_problems,
)


@pytest.fixture(scope="module")
def t2():
    # T2 with nu = 1: lambda = 1, Lambda = 2 (the prototype's contraction 0.5 per step)
    return make_test_problem("T2", dim=2, nu=1.0)


def test_euler_lagrange_is_energy_gradient_and_hvp_matches_fd():
    problem = make_test_problem("T3", dim=2, mu=1.0, nu=0.5)
    u = 0.3 * jax.random.normal(jax.random.key(0), (9, 9))
    check_euler_lagrange_gradient(problem, u)
    v = jax.random.normal(jax.random.key(1), (9, 9))
    from pdeml.barron import euler_lagrange

    h = 1e-5  # central differences: O(h^2) truncation ~1e-10 relative, round-off ~1e-16/h
    fd = (euler_lagrange(problem, u + h * v) - euler_lagrange(problem, u - h * v)) / (2 * h)
    hv = hessian_vector_product(problem, u, v)
    assert float(jnp.max(jnp.abs(fd - hv))) < 1e-8 * float(jnp.max(jnp.abs(hv)))


@settings(max_examples=5)
@given(problem=manufactured_problems(3, kinds=("T2",)), x=st.tuples(*[st.floats(0, 1)] * 3))
def test_manufactured_source_makes_residual_vanish(problem, x):
    r = pointwise_residual(problem.lagrangian, problem.solution, jnp.asarray(x), problem.source)
    assert abs(float(r)) < 1e-12


def test_sobolev_descent_converges_to_u_star(t2):
    n = 15  # odd; T2's flux is linear in p so u* solves the discrete problem to round-off
    ref = t2.solution_on_grid(n)
    traj = sobolev_gradient_descent(t2, n, reference=ref, atol=1e-12, rtol=0.0, max_steps=100)
    assert bool(traj.converged)
    assert traj.history("h1_error")[-1] < 1e-10
    check_energy_decrease(traj)
    lam, Lam = t2.bounds()
    e_star = float(energy(t2, ref))
    worst = check_contraction(traj, lam, Lam, optimal_energy=e_star)
    # H^1 error contracts by at most sqrt(1 - lambda/Lambda) ~ 0.707 per step
    err = traj.history("h1_error")
    rate = err[1:][err[:-1] > 1e-9] / err[:-1][err[:-1] > 1e-9]
    assert np.max(rate) <= math.sqrt(1 - lam / Lam) + 1e-9
    assert worst > 0.1  # the bound is not vacuous here: the observed rate is ~0.25-0.5


@settings(max_examples=6)
@given(fraction=st.floats(0.05, 1.0))
def test_energy_non_increasing_for_small_steps(t2, fraction):
    lam, Lam = t2.bounds()
    traj = sobolev_gradient_descent(t2, 9, step=fraction / Lam, atol=1e-9, rtol=0.0, max_steps=40)
    check_energy_decrease(traj)


def test_iterations_independent_of_dimension_and_grid():
    # the prototype's quasilinear + semilinear problem (lambda = 1, Lambda = 2)
    counts = {}
    for dim, n in [(2, 9), (2, 15), (3, 9), (4, 7)]:
        sol = RidgeSum.random(dim, key=jax.random.key(0), scale=0.1)
        problem = manufactured_problem(QuasilinearLagrangian(mu=1.0, nu=1.0), sol, dim)
        traj = sobolev_gradient_descent(problem, n, atol=0.0, rtol=0.0, max_steps=40)
        g = traj.history("gradient_norm")
        # relative reduction of the Sobolev gradient (equivalent to the H^1 error within Lambda/lambda)
        counts[(dim, n)] = traj.steps_to("gradient_norm", 1e-8 * g[0])
    vals = np.array(list(counts.values()))
    assert np.all(vals != None), counts  # noqa: E711
    # theory: at most log(1e-8 * lambda/Lambda) / log(sqrt(1/2)) ~ 55 steps
    assert vals.max() <= 55 and vals.max() - vals.min() <= 2, counts


def test_t1_one_newton_step():
    problem = make_test_problem("T1", dim=3)
    ref = problem.solution_on_grid(7)
    traj = newton_krylov(problem, 7, reference=ref, atol=1e-10, rtol=0.0)
    assert int(traj.num_steps) == 1 and bool(traj.converged)
    assert traj.history("h1_error")[-1] < 1e-11


def test_line_search_without_lambda():
    # T5 has no global Lambda: a fixed step needs one, the line search does not
    problem = make_test_problem("T5", dim=2, gamma=1.0)
    with pytest.raises(ValueError, match="Lambda"):
        sobolev_gradient_descent(problem, 9)
    ref = problem.solution_on_grid(9)
    traj = sobolev_gradient_descent(problem, 9, line_search=True, reference=ref, atol=1e-11, rtol=0.0, max_steps=200)
    assert bool(traj.converged) and traj.history("h1_error")[-1] < 1e-9
    check_energy_decrease(traj)


def test_convexity_estimate():
    est = estimate_convexity(QuasilinearLagrangian(mu=1.0), 2, key=jax.random.key(0))
    assert 0.99 < float(est.lam) <= 1.0 + 1e-12 and 1.9 < float(est.Lam) <= 2.0 + 1e-12
    concave = CallableLagrangian(lambda x, z, p: 0.5 * p @ p + 0.5 * z**2 - jnp.cos(2.0 * z))
    with pytest.raises(ValueError, match="not uniformly convex"):
        check_convexity(concave, 2)


def test_bad_input(t2):
    with pytest.raises(ValueError, match="axes"):
        sobolev_gradient_descent(t2, jnp.zeros((9, 9, 9)))
    with pytest.raises(ValueError, match="reference"):
        sobolev_gradient_descent(t2, 9, reference=jnp.zeros((7, 7)))
    with pytest.raises(ValueError, match="dim"):
        manufactured_problem(SemilinearLagrangian(), RidgeSum.random(3, key=jax.random.key(0)), 2)
    with pytest.raises(ValueError, match="unknown test problem"):
        make_test_problem("T9", dim=2)
    with pytest.warns(UserWarning, match="even grid"):
        traj = sobolev_gradient_descent(t2, 10, reference=t2.solution_on_grid(10), atol=1e-11, rtol=0.0, max_steps=80)
    # handled: with the Nyquist mode projected out the iteration still converges
    assert bool(traj.converged) and traj.history("h1_error")[-1] < 1e-9


def test_grid_solvers_return_a_solution_and_stop_on_the_error_bound(t2):
    from pdeml.barron import GridSolveHistory, GridSolveStats
    from pdeml.core import RESULTS, Solution

    ref = t2.solution_on_grid(9)
    traj = sobolev_gradient_descent(t2, 9, reference=ref, atol=1e-6, rtol=1e-6, max_steps=60)
    assert isinstance(traj, Solution) and isinstance(traj.stats, GridSolveStats)
    assert isinstance(traj.history, GridSolveHistory)
    assert int(traj.result) == RESULTS.SUCCESS and traj.u is traj.value
    # the test: gradient_norm / lambda <= atol + rtol ||u||_{H^1}, and it is a real bound
    lam = t2.bounds()[0]
    assert float(traj.stats.error_bound) == float(traj.stats.gradient_norm) / lam
    assert float(traj.stats.error_bound) <= float(traj.stats.tolerance)
    assert traj.history("h1_error")[-1] <= float(traj.stats.error_bound)
    # one step earlier the test did not hold
    k = int(traj.num_steps)
    assert traj.history("gradient_norm")[k - 1] / lam > float(traj.stats.tolerance) * 0.5
    np.testing.assert_array_equal(traj.energy, traj.history.energy)


def test_tol_is_the_deprecated_absolute_test(t2):
    new = sobolev_gradient_descent(t2, 9, atol=1e-8, rtol=0.0, max_steps=60)  # lambda = 1
    with pytest.warns(DeprecationWarning, match="tol= is deprecated"):
        old = sobolev_gradient_descent(t2, 9, tol=1e-8, max_steps=60)
    assert int(new.num_steps) == int(old.num_steps) and bool(old.converged)
    np.testing.assert_array_equal(new.u, old.u)
    with pytest.raises(TypeError, match="not together with tol="):
        sobolev_gradient_descent(t2, 9, tol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="^rtol must be"):
        newton_krylov(t2, 9, rtol=-1.0)


def test_a_diverging_iterate_is_not_converged(t2):
    # step 50 >> 1/Lambda: the iterates grow until ||u||_{H^1} overflows; rtol * inf must not
    # pass the test
    from pdeml.core import RESULTS

    traj = sobolev_gradient_descent(t2, 9, step=50.0, max_steps=200)
    assert int(traj.result) == RESULTS.NONFINITE and not bool(traj.converged)
