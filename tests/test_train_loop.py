"""Tests of pdeml.train.train: resume reproduces the run bit for bit, compiles once, converges."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdeml.train import (
    CheckpointManager,
    NonFiniteLossError,
    read_metrics,
    train,
)

# Shared (module-level) functions so the compiled chunk is reused across tests.
OPT = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-2))


def make_model():
    # "rbg" key: eager parameter init compiles much faster than with threefry (test speed only).
    return eqx.nn.MLP(2, 1, width_size=8, depth=2, activation=jnp.tanh,
                      key=jax.random.key(1, impl="rbg"))


def batch_fn(step, key):
    x = jax.random.uniform(key, (64, 2), minval=-1.0, maxval=1.0)
    y = jnp.sin(jnp.pi * x[:, 0]) * x[:, 1]
    return x, y


def loss_fn(model, batch, key):
    x, y = batch
    pred = jax.vmap(model)(x)[:, 0]
    mse = jnp.mean((pred - y) ** 2)
    return mse, {"rmse": jnp.sqrt(mse)}


def leaves(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


def assert_bitwise_equal(m1, m2):
    for a, b in zip(leaves(m1), leaves(m2), strict=True):
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, b)


class Crash(Exception):
    pass


def crash_at(k):
    def callback(step, model):
        if step == k:
            raise Crash(step)

    return callback


def test_resume_after_crash_is_bitwise_identical(tmp_path):
    key = jax.random.key(0)
    full = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, progress=False)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, run_dir=run,
              checkpoint_every=10, progress=False, callback=crash_at(25))
    # Metrics of updates 20..24 were written after the newest checkpoint (step 20).
    assert CheckpointManager(run / "checkpoints").latest_step() == 20
    assert max(r["step"] for r in read_metrics(run)) == 24
    resumed = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, run_dir=run,
                    checkpoint_every=10, progress=False)
    assert resumed.step == 40
    assert_bitwise_equal(full.model, resumed.model)
    # Every train step logged exactly once, with the same losses as the uninterrupted run.
    steps, losses = resumed.series("loss")
    np.testing.assert_array_equal(steps, np.arange(40))
    np.testing.assert_array_equal(losses, full.series("loss")[1])


SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    import test_train_loop as t
    from pdeml.train import train

    def die(step, model):
        if step == 30:
            os.kill(os.getpid(), signal.SIGKILL)

    train(t.make_model(), t.loss_fn, t.OPT, t.batch_fn, steps=40, key=jax.random.key(0),
          run_dir={run!r}, checkpoint_every=20, progress=False, callback=die)
    """
)


@pytest.mark.slow  # ~4-8 s (a second Python + JAX start-up); the in-process crash test covers it
def test_resume_after_sigkill_subprocess(tmp_path):
    """A real kill -9 (no cleanup, no flush) after metrics past the checkpoint were written."""
    run = str(tmp_path / "run")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = SCRIPT.format(repo=repo, tests=os.path.dirname(os.path.abspath(__file__)), run=run)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    # Killed at step 30: metrics reach step 29, the newest checkpoint is step 20.
    assert max(r["step"] for r in read_metrics(run)) == 29
    assert CheckpointManager(os.path.join(run, "checkpoints")).latest_step() == 20
    key = jax.random.key(0)
    resumed = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, run_dir=run,
                    checkpoint_every=20, progress=False)
    full = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, progress=False)
    assert_bitwise_equal(full.model, resumed.model)
    steps = [r["step"] for r in read_metrics(run, kind="train")]
    assert steps == list(range(40)), "steps 20..29 must be logged once, not twice"


def test_resume_falls_back_when_newest_checkpoint_is_corrupt(tmp_path):
    key = jax.random.key(0)
    run = tmp_path / "run"
    with pytest.raises(Crash):
        train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, run_dir=run,
              checkpoint_every=10, progress=False, callback=crash_at(30))
    newest = CheckpointManager(run / "checkpoints").path(30)
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="ckpt_0000000030.eqx.*checksum"):
        resumed = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, run_dir=run,
                        checkpoint_every=10, progress=False)
    full = train(make_model(), loss_fn, OPT, batch_fn, steps=40, key=key, progress=False)
    assert_bitwise_equal(full.model, resumed.model)
    assert [r["step"] for r in read_metrics(run, kind="train")] == list(range(40))


def test_resume_with_other_key_is_refused(tmp_path):
    train(make_model(), loss_fn, OPT, batch_fn, steps=10, key=jax.random.key(0),
          run_dir=tmp_path, checkpoint_every=10, progress=False)
    with pytest.raises(ValueError, match="different `key`"):
        train(make_model(), loss_fn, OPT, batch_fn, steps=20, key=jax.random.key(5),
              run_dir=tmp_path, checkpoint_every=10, progress=False)


def test_step_compiles_once():
    traces = []

    def counting_loss(model, batch, key):
        traces.append(1)  # runs only while tracing
        return loss_fn(model, batch, key)

    # 11 = 2 full calls of 4 + a masked tail call: still one compilation.
    res = train(make_model(), counting_loss, OPT, batch_fn, steps=11, key=jax.random.key(0),
                steps_per_call=4, progress=False)
    assert res.step == 11
    assert len(traces) == 1
    # A second run (other key, other start step, e.g. an in-process resume) reuses it.
    train(res.model, counting_loss, OPT, batch_fn, steps=5, key=jax.random.key(1),
          steps_per_call=4, progress=False)
    assert len(traces) == 1


@pytest.mark.parametrize("scan", [True, False])
def test_steps_per_call_matches_single_steps(scan):
    key = jax.random.key(3)
    one = train(make_model(), loss_fn, OPT, batch_fn, steps=11, key=key, progress=False)
    many = train(make_model(), loss_fn, OPT, batch_fn, steps=11, key=key, steps_per_call=4,
                 progress=False, scan=scan)
    # Same arithmetic, only the loop structure differs; XLA may fuse the scanned body
    # differently, so allow a few ulps (float64 eps 2.2e-16, 11 Adam steps).
    for a, b in zip(leaves(one.model), leaves(many.model), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(one.series("loss")[1], many.series("loss")[1], rtol=1e-12)
    np.testing.assert_array_equal(many.series("loss")[0], np.arange(11))


def test_linear_regression_converges_to_noise_floor():
    """y = A x + sigma eps: the best achievable mean-squared error is sigma^2 (per output)."""
    sigma = 0.1
    a_true = jnp.array([[1.5, -2.0, 0.5], [0.3, 0.8, -1.2]])

    def reg_batch(step, key):
        kx, ke = jax.random.split(key)
        x = jax.random.normal(kx, (256, 3))
        return x, x @ a_true.T + sigma * jax.random.normal(ke, (256, 2))

    def reg_loss(model, batch, key):
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2), {}

    model = eqx.nn.Linear(3, 2, key=jax.random.key(0, impl="rbg"))
    res = train(model, reg_loss, optax.adam(5e-2), reg_batch, steps=300, key=jax.random.key(1),
                steps_per_call=50, progress=False)
    _, loss = res.series("loss")
    assert loss[0] > 10 * sigma**2
    # At the true parameters a 512-sample minibatch MSE has mean sigma^2 and relative std
    # sqrt(2/512) ~ 0.06; averaged over 50 steps ~0.01. 1.1 sigma^2 leaves room for a small
    # remaining parameter error (contributes ||W - A||_F^2 / 2 to the loss).
    assert loss[-50:].mean() < 1.1 * sigma**2
    np.testing.assert_allclose(res.model.weight, a_true, atol=0.03)


def test_frozen_leaves_do_not_move():
    model = make_model()
    # Freeze the first layer (weight and bias), train the rest.
    spec = jax.tree_util.tree_map(lambda _: False, model)
    spec = eqx.tree_at(lambda m: m.layers[1:], spec, replace=tuple(
        jax.tree_util.tree_map(eqx.is_inexact_array, layer) for layer in model.layers[1:]))
    res = train(model, loss_fn, OPT, batch_fn, steps=5, key=jax.random.key(0),
                filter_spec=spec, progress=False)
    np.testing.assert_array_equal(res.model.layers[0].weight, model.layers[0].weight)
    np.testing.assert_array_equal(res.model.layers[0].bias, model.layers[0].bias)
    assert not np.array_equal(res.model.layers[1].weight, model.layers[1].weight)


def nan_batch(step, key):
    x, y = batch_fn(step, key)
    return x, jnp.where(step >= 15, jnp.nan, 1.0) * y


@pytest.mark.parametrize("scan", [True, False])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, scan):
    key = jax.random.key(0)
    with pytest.raises(NonFiniteLossError, match="update 15") as info:
        train(make_model(), loss_fn, OPT, nan_batch, steps=40, key=key, run_dir=tmp_path,
              checkpoint_every=5, steps_per_call=5, progress=False, scan=scan)
    err = info.value
    assert err.step == 15
    assert err.checkpoint is not None and err.checkpoint.name == "ckpt_0000000015.eqx"
    assert CheckpointManager(tmp_path / "checkpoints").latest_step() == 15
    # The error carries the last good model: 15 clean updates, identical to a clean run of the
    # same compiled chunk stopped at 15 (updates 15..19 of that chunk are masked out).
    clean = train(make_model(), loss_fn, OPT, nan_batch, steps=15, key=key, steps_per_call=5,
                  progress=False, scan=scan)
    assert_bitwise_equal(err.model, clean.model)
    recs = read_metrics(tmp_path, kind="train")
    assert recs[-1]["step"] == 15 and np.isnan(recs[-1]["loss"])


def test_scan_argument_is_checked():
    with pytest.raises(TypeError, match="scan must be True, False or None"):
        train(make_model(), loss_fn, OPT, batch_fn, steps=1, key=jax.random.key(0),
              progress=False, scan="yes")


def test_eval_fn_and_history_records(tmp_path):
    val_batch = batch_fn(0, jax.random.key(99))

    @eqx.filter_jit
    def eval_fn(model):
        return {"val": loss_fn(model, val_batch, None)[0]}

    res = train(make_model(), loss_fn, OPT, batch_fn, steps=12, key=jax.random.key(0),
                run_dir=tmp_path, steps_per_call=4, eval_every=4, log_every=5, eval_fn=eval_fn,
                progress=False)
    assert [r["step"] for r in res.history if r["kind"] == "train"] == [0, 5, 10, 11]
    assert [r["step"] for r in res.history if r["kind"] == "eval"] == [0, 4, 8, 12]
    assert all(set(r) >= {"loss", "rmse", "wall_time"} for r in res.history if r["kind"] == "train")
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == res.history


def test_bad_options_raise_clear_errors():
    m = make_model()
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="checkpoint_every=10 must be a multiple of steps_per_call=4"):
        train(m, loss_fn, OPT, batch_fn, steps=8, key=k, steps_per_call=4, checkpoint_every=10)
    with pytest.raises(ValueError, match="steps must be"):
        train(m, loss_fn, OPT, batch_fn, steps=-1, key=k)
    with pytest.raises(TypeError, match="key must be"):
        train(m, loss_fn, OPT, batch_fn, steps=1, key=0)
    with pytest.raises(ValueError, match="metric name 'loss' is reserved"):
        train(m, lambda mo, b, kk: (loss_fn(mo, b, kk)[0], {"loss": 0.0}), OPT, batch_fn,
              steps=1, key=k, progress=False)
    with pytest.raises(TypeError, match=r"tuple \(loss, metrics\)"):
        train(m, lambda mo, b, kk: loss_fn(mo, b, kk)[0], OPT, batch_fn, steps=1, key=k,
              progress=False)


# ---- carried state (e.g. per-sample warm starts of an inner solver) ---------------------------


def stateful_loss_fn(model, batch, key, state):
    """The loss of :func:`loss_fn`; the state counts the updates and tracks the running mean of
    the predictions (a stand-in for per-sample solver warm starts)."""
    x, _ = batch
    loss, metrics = loss_fn(model, batch, key)
    pred = jax.vmap(model)(x)[:, 0]
    new = {"count": state["count"] + 1, "mean": 0.9 * state["mean"] + 0.1 * jnp.mean(pred)}
    return loss, {**metrics, "carried": state["mean"]}, new


def initial_state():
    return {"count": jnp.asarray(0, jnp.int32), "mean": jnp.asarray(0.0)}


@pytest.mark.parametrize("scan", [False, True])
def test_carried_state_is_threaded_and_resumed_bitwise(tmp_path, scan):
    key = jax.random.key(3)
    full = train(make_model(), stateful_loss_fn, OPT, batch_fn, steps=30, key=key,
                 progress=False, state=initial_state(), scan=scan, steps_per_call=5)
    assert int(full.state["count"]) == 30
    # the state is the exact recurrence of the logged metric
    steps, carried = full.series("carried")
    np.testing.assert_array_equal(steps, np.arange(30))
    assert carried[0] == 0.0 and carried[1] != 0.0
    run = tmp_path / "run"
    with pytest.raises(Crash):
        train(make_model(), stateful_loss_fn, OPT, batch_fn, steps=30, key=key, run_dir=run,
              checkpoint_every=10, progress=False, callback=crash_at(15), state=initial_state(),
              scan=scan, steps_per_call=5)
    resumed = train(make_model(), stateful_loss_fn, OPT, batch_fn, steps=30, key=key,
                    run_dir=run, checkpoint_every=10, progress=False, state=initial_state(),
                    scan=scan, steps_per_call=5)
    assert_bitwise_equal(full.model, resumed.model)
    assert int(resumed.state["count"]) == 30
    np.testing.assert_array_equal(np.asarray(resumed.state["mean"]), np.asarray(full.state["mean"]))
    np.testing.assert_array_equal(resumed.series("carried")[1], carried)


def test_carried_state_is_kept_on_a_non_finite_update():
    def bad_loss(model, batch, key, state):
        loss, metrics, new = stateful_loss_fn(model, batch, key, state)
        return jnp.where(state["count"] >= 3, jnp.nan, loss), metrics, new

    with pytest.raises(NonFiniteLossError) as err:
        train(make_model(), bad_loss, OPT, batch_fn, steps=10, key=jax.random.key(0),
              progress=False, state=initial_state())
    assert err.value.step == 3


def test_carried_state_contract_errors():
    with pytest.raises(TypeError, match=r"\(loss, metrics, new_state\)"):
        train(make_model(), lambda m, b, k, s: loss_fn(m, b, k), OPT, batch_fn, steps=1,
              key=jax.random.key(0), progress=False, state=initial_state())
    with pytest.raises(TypeError, match="structure of `state`"):
        train(make_model(), lambda m, b, k, s: (*loss_fn(m, b, k), {"count": s["count"]}), OPT,
              batch_fn, steps=1, key=jax.random.key(0), progress=False, state=initial_state())
