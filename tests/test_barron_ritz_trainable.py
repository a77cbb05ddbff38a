"""Deep Ritz / PINN with frozen parameters (``trainable=``), exported from pdeml.barron."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from pdeml.barron import (
    CosineNetwork,
    RidgeSum,
    SemilinearLagrangian,
    deep_ritz,
    manufactured_problem,
    pinn,
)


@pytest.fixture
def setup():
    sol = RidgeSum(jnp.array([[0.5]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.3]]))
    problem = manufactured_problem(SemilinearLagrangian(nu=1.0), sol, 2)
    k = jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    net = CosineNetwork(jnp.zeros(4), k, jnp.zeros(4))
    keep_k = eqx.tree_at(lambda m: m.frequencies, jax.tree.map(lambda _: True, net), False)
    return problem, net, keep_k


def test_frozen_integer_frequencies_stay_put_and_solve(setup):
    """With the integer frequencies fixed the network stays periodic and the natural gradient
    solves the problem (measured 3e-16 in float64); trained, the frequencies leave the lattice
    and the error is O(1) (measured 1.4)."""
    problem, net, keep_k = setup
    kw = dict(key=jax.random.key(0), max_steps=10, num_points=256, num_eval_points=512)
    frozen = deep_ritz(problem, net, trainable=keep_k, **kw)
    assert bool(jnp.all(frozen.model.frequencies == net.frequencies))
    assert float(frozen.relative_l2) < 1e-8
    free = deep_ritz(problem, net, **kw)
    assert not bool(jnp.all(free.model.frequencies == net.frequencies))
    assert float(free.relative_l2) > 0.1


def test_pinn_and_adam_respect_the_filter(setup):
    problem, net, keep_k = setup
    r = pinn(problem, net, key=jax.random.key(0), max_steps=20, num_points=128, num_eval_points=256,
             learning_rate=1e-2, trainable=keep_k)
    assert bool(jnp.all(r.model.frequencies == net.frequencies))
    assert not bool(jnp.all(r.model.coefficients == net.coefficients))
    only_c = deep_ritz(problem, net, key=jax.random.key(0), optimizer="adam", max_steps=5,
                       num_points=128, num_eval_points=256,
                       trainable=eqx.tree_at(lambda m: (m.frequencies, m.phases),
                                             jax.tree.map(lambda _: True, net), (False, False)))
    assert bool(jnp.all(only_c.model.phases == net.phases))


def test_a_filter_that_selects_nothing_is_refused(setup):
    problem, net, _ = setup
    with pytest.raises(ValueError, match="selects no parameter"):
        deep_ritz(problem, net, key=jax.random.key(0), max_steps=1, trainable=lambda leaf: False)
