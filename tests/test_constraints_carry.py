"""Carried starts: each training sample's solve starts from its previous solution.

The layer's ``use_w0`` selects between a given start and its own; the experiment runners carry
the per-sample solutions as training state (checkpointed: a resumed run is bit-identical).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.constraints import HardConstraint, MoEHardConstraint, Partition
from pdeml.core import LevenbergMarquardt
from pdeml.experiments import DiffusionSorptionConfig, load_run, run_experiment
from pdeml.testing.problems import ReactionDiffusion1D

TINY = dict(nx=16, nt=6, train_samples=4, test_samples=2, steps=6, batch_size=2, num_basis=4,
            num_points=20, width=8, modes=3, layers=1, padding=2, max_lm_steps=30)


def _layer_case():
    problem = ReactionDiffusion1D(nx=16, nt=9, reaction=2.0)  # nonlinear: LM needs steps
    x, t = problem.grid.mesh()
    truth = jnp.sin(jnp.pi * x) * jnp.exp(-t)
    data = problem.manufactured(truth)
    basis = jnp.stack([truth, x * (1 - x), x * (1 - x) * t, jnp.sin(2 * jnp.pi * x) * t], -1)
    return problem, basis, data


def test_use_w0_selects_between_the_given_and_the_own_start():
    problem, basis, data = _layer_case()
    key = jax.random.key(0)
    w0 = jnp.array([5.0, -3.0, 2.0, 1.0])
    one_step = LevenbergMarquardt(max_steps=1)
    hc = HardConstraint(problem, num_points=10, solver=one_step, throw=False)
    moe = MoEHardConstraint(problem, Partition.uniform(problem.grid_shape, (2, 1)),
                            num_points=16, solver=one_step, throw=False)
    for layer, w0_ in ((hc, w0), (moe, jnp.stack([w0, -w0]))):

        @jax.jit
        def solve(use, layer=layer, w0_=w0_):
            own = layer(basis, data, key=key)[1].w
            given = layer(basis, data, key=key, w0=w0_)[1].w
            chosen = jax.vmap(lambda u: layer(basis, data, key=key, w0=w0_, use_w0=u)[1].w)(use)
            return own, given, chosen

        own, given, chosen = solve(jnp.array([True, False]))
        # one LM step from two different starts ends at two different points
        assert not np.allclose(own, given)
        # (vmap may reorder floating-point sums: equal to rounding)
        np.testing.assert_allclose(chosen[0], given, rtol=1e-10)
        np.testing.assert_allclose(chosen[1], own, rtol=1e-10)
    with pytest.raises(ValueError, match="use_w0 needs w0"):
        hc(basis, data, key=key, use_w0=True)
    with pytest.raises(ValueError, match="use_w0 needs w0"):
        moe(basis, data, key=key, use_w0=True)
    with pytest.raises(ValueError, match="use_w0 must be a boolean scalar"):
        jax.eval_shape(lambda: hc(basis, data, key=key, w0=w0, use_w0=jnp.array([True, False])))


def test_carried_training_resumes_bitwise_and_uses_the_carried_starts(tmp_path):
    from pdeml.experiments import diffusion_sorption as ds
    from pdeml.experiments.common import initial_state, make_optimizer, training_functions
    from pdeml.train import train

    cfg = DiffusionSorptionConfig(method="hard", carry_start=True, cache_dir=str(tmp_path / "cache"),
                           **TINY)
    train_set, _ = ds.load_data(cfg)
    u0 = jnp.asarray(train_set.dataset.u0)
    model = ds.build_model(cfg, jax.random.fold_in(jax.random.key(cfg.seed), 0))
    batch_fn, loss_fn = training_functions(u0, cfg)
    opt = make_optimizer(cfg)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    state = initial_state(cfg, model, u0[0], u0.shape[0])
    assert state["w"].shape == (4, cfg.num_basis) and not bool(jnp.any(state["seen"]))

    def run(run_dir, callback=None):
        return train(model, loss_fn, opt, batch_fn, steps=cfg.steps, key=key, run_dir=run_dir,
                     progress=False, state=state, checkpoint_every=3, callback=callback)

    full = run(None)
    # 4 samples in batches of 2: later batches revisit samples and start from carried w
    steps, carried = full.series("carried")
    assert carried[0] == 0.0 and carried.max() > 0.0
    assert bool(jnp.all(full.state["seen"]))

    class Stop(Exception):
        pass

    def stop_at_3(step, m):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        run(tmp_path / "run", stop_at_3)
    resumed = run(tmp_path / "run")
    for a, b in zip(jax.tree.leaves(eqx.filter(full.model, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(resumed.model, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(resumed.state["w"]), np.asarray(full.state["w"]))


@pytest.mark.slow  # ~1 min: a whole experiment run (train, evaluate, restore) with carry_start
def test_run_experiment_with_carry_start_round_trips(tmp_path):
    cfg = DiffusionSorptionConfig(method="hard", carry_start=True, cache_dir=str(tmp_path / "cache"),
                           **TINY)
    res = run_experiment(cfg, tmp_path / "run", progress=False)
    assert 0 < res["test"]["rel_l2_mean"] < 10
    config, model, step = load_run(tmp_path / "run")  # the checkpoint holds the carried state
    assert config == cfg and step == cfg.steps


def test_carry_start_is_validated():
    with pytest.raises(ValueError, match="carry_start needs a hard-constraint method"):
        DiffusionSorptionConfig(method="soft", carry_start=True, **TINY)
    with pytest.raises(ValueError, match="carry_start must be True or False"):
        DiffusionSorptionConfig(method="hard", carry_start=1, **TINY)
