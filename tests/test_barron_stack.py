"""Barron on the shared stack: PeriodicMLP is a pdeml.nets.MLP after the periodic embedding,
Adam / L-BFGS training goes through pdeml.train, and pdeml.barron imports the lower pillars."""

import ast
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdeml.barron import (
    PeriodicMLP,
    PeriodicShallowNetwork,
    RidgeSum,
    SemilinearLagrangian,
    deep_ritz,
    fit_shallow,
    manufactured_problem,
    periodic_embedding,
    pinn,
)
from pdeml.nets import MLP, PointwiseLinear
from pdeml.train import train

BARRON = Path(__file__).resolve().parents[1] / "pdeml" / "barron"


def _pdeml_imports():
    found = set()
    for path in BARRON.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pdeml."):
                found.add(node.module.split(".")[1])
                assert not any(a.name.startswith("_") for a in node.names), (path.name, node.module)
    return found


def test_barron_imports_the_lower_pillars_and_no_private_names():
    assert {"core", "nets", "pde", "train"} <= _pdeml_imports()


def test_periodic_mlp_is_an_mlp_after_the_embedding():
    net = PeriodicMLP.random(3, width=10, depth=2, key=jax.random.key(0))
    assert isinstance(net.mlp, MLP) and net.mlp.activation is jnp.tanh
    assert net.dim == 3 and net.num_parameters == 6 * 10 + 10 + 10 * 10 + 10 + 10 + 1
    x = jax.random.uniform(jax.random.key(1), (16, 3))
    np.testing.assert_allclose(jax.vmap(net)(x), net.mlp(jax.vmap(periodic_embedding)(x))[:, 0])
    # exactly periodic, and zero biases with Glorot-normal weights drawn in (out, in) layout
    np.testing.assert_allclose(jax.vmap(net)(x), jax.vmap(net)(x + jnp.array([[1.0, -2.0, 3.0]])), atol=1e-5)
    keys = jax.random.split(jax.random.key(0), 3)
    for k, layer, (m, n) in zip(keys, net.mlp.layers, [(6, 10), (10, 10), (10, 1)]):
        expected = jax.random.normal(k, (n, m)) * math.sqrt(2.0 / (m + n))
        np.testing.assert_array_equal(layer.weight, expected.T)
        np.testing.assert_array_equal(layer.bias, jnp.zeros(n))
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        PeriodicMLP.random(2, width=4, depth=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="one point"):
        net(jnp.zeros((2, 3)))


def test_mlp_default_init_is_unchanged_and_init_is_checked():
    key = jax.random.key(3)
    default = MLP(3, 2, width=5, depth=1, key=key)
    uniform = MLP(3, 2, width=5, depth=1, init="uniform", key=key)
    for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(uniform)):
        np.testing.assert_array_equal(a, b)
    # torch.nn.Linear's rule, from the layer's (weight, bias) key split
    kw, kb = jax.random.split(jax.random.split(key, 2)[0])
    lim = 1 / math.sqrt(3)
    np.testing.assert_array_equal(default.layers[0].weight, jax.random.uniform(kw, (3, 5), minval=-lim, maxval=lim))
    np.testing.assert_array_equal(default.layers[0].bias, jax.random.uniform(kb, (5,), minval=-lim, maxval=lim))
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        MLP(3, 2, width=5, depth=1, init="xavier", key=key)
    with pytest.raises(ValueError, match="unknown init"):
        PointwiseLinear(3, 2, init="zeros", key=key)


def test_train_runs_optax_lbfgs_with_its_line_search():
    """train hands value, grad and value_fn to optimisers that take extra arguments."""
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    b = jnp.array([1.0, -1.0])

    def loss_fn(w, batch, key):
        return 0.5 * w @ a @ w - b @ w, {}

    res = train(jnp.zeros(2), loss_fn, optax.lbfgs(), lambda s, k: None, steps=10,
                key=jax.random.key(0), progress=False)
    np.testing.assert_allclose(res.model, jnp.linalg.solve(a, b), rtol=1e-5)


@pytest.fixture(scope="module")
def problem():
    sol = RidgeSum(jnp.array([[0.5]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.3]]))
    return manufactured_problem(SemilinearLagrangian(nu=1.0), sol, 2)


def test_adam_and_lbfgs_ritz_through_train(problem):
    net = PeriodicMLP.random(2, width=8, depth=1, key=jax.random.key(0))
    kw = dict(key=jax.random.key(1), max_steps=30, num_points=256, num_eval_points=512)
    adam = deep_ritz(problem, net, optimizer="adam", learning_rate=1e-2, chunk=7, **kw)
    assert adam.loss.shape == (30,) and adam.loss.dtype == net.mlp.layers[0].weight.dtype
    assert float(adam.loss[-1]) < float(adam.loss[0])
    again = deep_ritz(problem, net, optimizer="adam", learning_rate=1e-2, chunk=30, **kw)
    np.testing.assert_allclose(adam.loss, again.loss, rtol=1e-12, atol=1e-12)  # chunking is not a parameter
    lbfgs = deep_ritz(problem, net, optimizer="lbfgs", **kw)
    assert float(lbfgs.relative_l2) < float(adam.relative_l2)
    res = pinn(problem, net, optimizer="lbfgs", **kw)
    assert float(res.loss[-1]) < 1e-2 * float(res.loss[0])


def test_progress_goes_through_the_train_progress_bar(problem, capsys):
    net = PeriodicMLP.random(2, width=4, depth=1, key=jax.random.key(0))
    for optimizer in ("adam", "natural_gradient"):
        deep_ritz(problem, net, key=jax.random.key(1), optimizer=optimizer, max_steps=4, num_points=64,
                  num_eval_points=128, progress=True, chunk=2)
        err = capsys.readouterr().err
        assert f"[ritz/{optimizer}] step 4/4 (100%)" in err and "loss=" in err


def test_fit_shallow_adam_and_lbfgs_through_train():
    sol = RidgeSum(jnp.array([[0.5]]), jnp.array([[1.0, 0.0]]), jnp.array([[0.3]]))
    x = jax.random.uniform(jax.random.key(0), (512, 2))
    y = jax.vmap(sol)(x)
    net = PeriodicShallowNetwork.random(8, 2, key=jax.random.key(1))
    for method in ("adam", "lbfgs"):
        r = fit_shallow(net, x, y, method=method, max_steps=60)
        assert r.loss.shape == (60,) and r.loss.dtype == x.dtype
        assert float(r.loss[-1]) < 0.1 * float(r.loss[0]), method
        assert isinstance(r.model, PeriodicShallowNetwork) and r.model.activation == net.activation


def test_ritz_options_are_validated(problem):
    net = PeriodicMLP.random(2, width=4, depth=1, key=jax.random.key(0))
    for kw, msg in [(dict(max_steps=0), "max_steps must be a positive integer"),
                    (dict(chunk=0), "chunk must be a positive integer"),
                    (dict(num_points=2.5), "num_points must be a positive integer"),
                    (dict(learning_rate=-1.0), "learning_rate must be a finite number > 0"),
                    (dict(damping=float("nan")), "damping must be a finite number"),
                    (dict(gram="fisher"), "unknown gram 'fisher'"),
                    (dict(quadrature="sobol"), "unknown quadrature 'sobol'")]:
        with pytest.raises(ValueError, match=msg):
            deep_ritz(problem, net, key=jax.random.key(0), **kw)
    with pytest.raises(TypeError, match="VariationalProblem"):
        deep_ritz(object(), net, key=jax.random.key(0))


def test_ritz_and_fit_results_are_solutions(problem):
    from pdeml.barron import CosineNetwork, FitResult, RitzResult, RitzStats
    from pdeml.core import RESULTS

    net = PeriodicMLP.random(2, width=4, depth=1, key=jax.random.key(0))
    kw = dict(key=jax.random.key(1), optimizer="adam", num_points=64, num_eval_points=128)
    r = deep_ritz(problem, net, max_steps=3, **kw)
    assert isinstance(r, RitzResult) and isinstance(r.stats, RitzStats) and r.model is r.value
    assert int(r.result) == RESULTS.MAX_STEPS_REACHED and int(r.stats.steps) == 3
    # both bounds hold (lambda = 1) and the test uses the smaller one
    s = r.stats
    assert float(s.h1_error) <= min(float(s.certificate), float(s.residual_bound)) * (1 + 1e-2)
    assert float(s.error_bound) == min(float(s.certificate), float(s.residual_bound))
    with pytest.warns(DeprecationWarning, match="steps= is deprecated"):
        old = deep_ritz(problem, net, steps=3, **kw)
    np.testing.assert_array_equal(old.loss, r.loss)

    # Gauss-Newton stops when stationary; loss keeps its (max_steps,) shape
    true = CosineNetwork(jnp.array([1.0, 0.5]), jnp.array([[1.0, 0.0], [1.0, 2.0]]), jnp.array([0.3, -0.2]))
    x = jax.random.uniform(jax.random.key(0), (128, 2))
    start = CosineNetwork(jnp.array([0.8, 0.6]), true.frequencies + 0.02, jnp.zeros(2))
    fit = fit_shallow(start, x, jax.vmap(true)(x), max_steps=40)
    assert isinstance(fit, FitResult) and bool(fit.converged)
    k = int(fit.stats.iterations)
    assert 1 <= k < 40 and fit.loss.shape == (40,) and bool(jnp.all(jnp.isnan(fit.history.loss[k:])))
    assert float(fit.loss[-1]) == float(fit.history.loss[k - 1])
    assert float(fit.stats.stationarity) <= float(fit.stats.tolerance)
    one = fit_shallow(start, x, jax.vmap(true)(x), max_steps=1)
    assert int(one.result) == RESULTS.MAX_STEPS_REACHED
