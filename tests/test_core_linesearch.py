"""pdeml.core.backtracking_line_search: Armijo acceptance on problems with known steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.core import armijo_accepts, backtracking_line_search


def _expected_step(phi, phi0, slope, c, shrink, step=1.0, max_steps=30):
    t = step
    for j in range(max_steps + 1):
        v = phi(t)
        if np.isfinite(v) and v <= phi0 + c * t * slope:
            return t, j, True
        if j == max_steps:
            return t, j, False
        t *= shrink


@pytest.mark.parametrize("c", [1e-4, 0.25, 0.5])
def test_quadratic_accepts_the_first_sufficient_step(c):
    # phi(t) = f(x - t g) for f = 1/2 x^T H x; the Armijo condition holds iff
    # t <= 2 (1 - c) |g|^2 / g^T H g
    H = jnp.diag(jnp.array([1.0, 10.0, 100.0]))
    x = jnp.array([1.0, 1.0, 1.0])
    f = lambda x: 0.5 * x @ H @ x  # noqa: E731
    g = H @ x
    slope = -(g @ g)
    ls = backtracking_line_search(lambda t: (f(x - t * g), None), f(x), slope, c=c)
    t_max = 2 * (1 - c) * float(g @ g) / float(g @ H @ g)
    k = int(np.ceil(np.log2(1.0 / t_max)))  # first halving with t <= t_max
    assert bool(ls.accepted) and int(ls.num_backtracks) == k
    assert float(ls.step) == 0.5**k and float(ls.step) <= t_max < 2 * float(ls.step)
    assert float(ls.value) == float(f(x - ls.step * g))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_rosenbrock_steepest_descent(dtype):
    def rosen(z):
        return (1 - z[0]) ** 2 + 100 * (z[1] - z[0] ** 2) ** 2

    z = jnp.array([-1.2, 1.0], dtype)
    g = jax.grad(rosen)(z)
    p = -g
    slope = g @ p
    ls = jax.jit(lambda z: backtracking_line_search(
        lambda t: (rosen(z + t * p), jax.grad(rosen)(z + t * p)), rosen(z), slope))(z)
    t, j, ok = _expected_step(lambda t: float(rosen(z + t * p)), float(rosen(z)), float(slope),
                              1e-4, 0.5)
    assert bool(ls.accepted) and ok and int(ls.num_backtracks) == j and j > 0
    assert ls.step.dtype == dtype and float(ls.step) == t
    np.testing.assert_allclose(ls.aux, jax.grad(rosen)(z + ls.step * p), rtol=1e-5)


def test_first_trial_from_the_caller_and_exhaustion():
    f = lambda t: ((t - 0.1) ** 2, None)  # noqa: E731  decrease only for t < 0.2
    v0, slope = jnp.asarray(0.01), jnp.asarray(-0.2)
    v1, _ = f(jnp.asarray(1.0))
    # the caller accepted the first trial by its own rule: no backtracking
    ls = backtracking_line_search(f, v0, slope, first=(v1, None, jnp.asarray(True)))
    assert int(ls.num_backtracks) == 0 and float(ls.step) == 1.0 and float(ls.value) == v1
    # too few shrinkings: reported, not accepted
    ls = backtracking_line_search(f, v0, slope, max_steps=2)
    assert not bool(ls.accepted) and int(ls.num_backtracks) == 2 and float(ls.step) == 0.25
    ls = backtracking_line_search(f, v0, slope)
    assert bool(ls.accepted) and float(ls.step) == 0.125


def test_nonfinite_trials_are_rejected_and_vmap():
    f = lambda t: (jnp.where(t > 0.3, jnp.nan, -t), None)  # noqa: E731
    ls = backtracking_line_search(f, jnp.asarray(0.0), jnp.asarray(-1.0))
    assert bool(ls.accepted) and float(ls.step) == 0.25
    assert not bool(armijo_accepts(jnp.inf, 0.0, -1.0, 1.0))
    # vmapped: phi(t) = a t^2 / 2 - t accepts t <= 2 (1 - c) / a, each lane on its own
    res = jax.vmap(lambda a: backtracking_line_search(
        lambda t: (0.5 * a * t**2 - t, None), jnp.asarray(0.0), jnp.asarray(-1.0)))(
        jnp.array([1.0, 4.0, 16.0]))
    assert res.step.tolist() == [1.0, 0.25, 0.0625]
    assert res.num_backtracks.tolist() == [0, 2, 4] and bool(jnp.all(res.accepted))
