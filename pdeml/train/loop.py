"""The optax training loop shared by every pillar: one compiled step, checkpoints, resume.

Determinism contract: the data and randomness of update ``s`` depend only on ``s`` and the
run's ``key`` (``k_s = fold_in(key, s)``; ``batch_fn(s, k_batch)``, ``loss_fn(..., k_loss)``
with ``k_batch, k_loss = split(k_s)``). A run that is interrupted and resumed from a checkpoint
therefore computes exactly the same updates as an uninterrupted one: on the same machine and
build the final parameters agree bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeml.core.io import DirectoryLock
from pdeml.train.checkpoint import CheckpointManager
from pdeml.train.metrics import MetricsWriter, read_metrics, to_scalar
from pdeml.train.progress import ProgressBar

__all__ = ["NonFiniteLossError", "TrainResult", "train"]


class NonFiniteLossError(FloatingPointError):
    """The loss or a gradient became NaN/inf during training.

    Attributes:
        step: the update index (0-based) whose loss or gradient was non-finite.
        model: the model before that update (the last good parameters).
        checkpoint: path of the newest checkpoint on disk (untouched), or ``None``.
    """

    def __init__(self, message: str, *, step: int, model, checkpoint: Path | None):
        super().__init__(message)
        self.step = step
        self.model = model
        self.checkpoint = checkpoint


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model (trainable and frozen parts recombined).
        opt_state: the final optimiser state.
        step: number of updates done (equals ``steps``).
        history: metric records (dicts, see :mod:`pdeml.train.metrics`); with a ``run_dir`` all
            records of the run, including those written before a resume.
        run_dir: the run directory or ``None``.
        state: the final carried state (see ``state=`` of :func:`train`), or ``None``.
    """

    model: Any
    opt_state: Any
    step: int
    history: list[dict]
    run_dir: Path | None
    state: Any = None

    def series(self, name: str = "loss", *, kind: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one logged scalar, e.g. ``result.series("loss")``."""
        recs = [r for r in self.history if r.get("kind") == kind and name in r]
        return (
            np.array([r["step"] for r in recs], dtype=np.int64),
            np.array([r[name] for r in recs], dtype=np.float64),
        )


_RESERVED = frozenset({"step", "kind", "loss", "wall_time"})


def _check_loss_output(out, with_state: bool = False):
    n = 3 if with_state else 2
    if not (isinstance(out, tuple) and len(out) == n and isinstance(out[1], dict)):
        expected = ("loss_fn(model, batch, key, state) must return a tuple (loss, metrics, "
                    "new_state)" if with_state else
                    "loss_fn(model, batch, key) must return a tuple (loss, metrics)")
        raise TypeError(
            f"{expected} with metrics a dict of scalars (possibly empty), got "
            f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, tuple) else "")
        )
    loss, metrics = out[:2]
    if jnp.shape(loss) != ():
        raise ValueError(f"loss_fn must return a scalar loss, got shape {jnp.shape(loss)}")
    for name, v in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"metric names must be strings, got {name!r}")
        if name in _RESERVED:
            raise ValueError(f"metric name {name!r} is reserved by the metrics log ({sorted(_RESERVED)})")
        if jnp.shape(v) != ():
            raise ValueError(f"metric {name!r} must be a scalar, got shape {jnp.shape(v)}")
    return out


def _tree_all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _select(pred, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y) if eqx.is_array(x) else x, a, b)


def _update(carry, step, static, stop, key, loss_fn, optimizer, batch_fn):
    """One optimiser update ``step`` (traced); skipped (masked) at ``step >= stop`` and after a
    non-finite one, so a chunk returns the last good state."""
    params, opt_state, healthy, state = carry
    k_batch, k_loss = jax.random.split(jax.random.fold_in(key, step))
    batch = batch_fn(step, k_batch)

    def objective(p):
        m = eqx.combine(p, static)
        if state is None:
            loss, metrics = _check_loss_output(loss_fn(m, batch, k_loss))
            return loss, (metrics, None)
        loss, metrics, new = _check_loss_output(loss_fn(m, batch, k_loss, state), True)
        if jax.tree_util.tree_structure(new) != jax.tree_util.tree_structure(state):
            raise TypeError("loss_fn must return a new_state with the structure of `state`")
        return loss, (metrics, jax.lax.stop_gradient(new))

    (loss, (metrics, new_state)), grads = eqx.filter_value_and_grad(objective, has_aux=True)(params)
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        # Line-search optimisers (optax.lbfgs) use these; the others ignore them.
        updates, new_opt_state = optimizer.update(
            grads, opt_state, params, value=loss, grad=grads, value_fn=lambda p: objective(p)[0]
        )
    else:
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = eqx.apply_updates(params, updates)
    active = step < stop
    finite = jnp.isfinite(loss) & _tree_all_finite(grads)
    apply = active & healthy & finite
    params = _select(apply, new_params, params)
    opt_state = _select(apply, new_opt_state, opt_state)
    state = _select(apply, new_state, state)
    healthy = healthy & (finite | ~active)
    return (params, opt_state, healthy, state), (loss, metrics, finite)


@eqx.filter_jit
def _scan_chunk(params, static, opt_state, state, start, stop, key, loss_fn, optimizer, batch_fn,
                n_steps):
    """``n_steps`` updates from ``start`` in one compiled ``lax.scan``."""

    def one(carry, i):
        return _update(carry, start + i, static, stop, key, loss_fn, optimizer, batch_fn)

    (params, opt_state, _, state), out = jax.lax.scan(
        one, (params, opt_state, jnp.array(True), state), jnp.arange(n_steps, dtype=jnp.int32)
    )
    return params, opt_state, state, *out


_update_jit = eqx.filter_jit(_update)


def _stepped_chunk(params, static, opt_state, state, start, stop, key, loss_fn, optimizer,
                   batch_fn, n_steps):
    """The same ``n_steps`` updates as :func:`_scan_chunk`, one compiled update per call
    (dispatched asynchronously, no host sync inside the chunk)."""
    carry = (params, opt_state, jnp.array(True), state)
    outs = []
    for i in range(n_steps):
        carry, out = _update_jit(carry, start + i, static, stop, key, loss_fn, optimizer, batch_fn)
        outs.append(out)
    losses, metrics, finite = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
    return carry[0], carry[1], carry[3], losses, metrics, finite


def _use_scan(scan):
    # XLA:CPU runs a while-loop body far slower than the same ops at top level (measured on
    # the convolutional LPN of benchmarks/inverse.py: 3.9x, benchmarks/train_loop.py), so on CPU
    # each update is its own compiled call; accelerators fuse the chunk into one lax.scan.
    if scan is None:
        return jax.default_backend() != "cpu"
    if not isinstance(scan, bool):
        raise TypeError(f"scan must be True, False or None, got {scan!r}")
    return scan


def _payload(model, opt_state, key, state) -> dict:
    """The checkpointed tree (``state`` only when one is carried: older checkpoints load)."""
    tree = {"model": model, "opt_state": opt_state, "key": _key_data(key)}
    if state is not None:
        tree["state"] = state
    return tree


def _key_data(key) -> np.ndarray:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def _differences(stored, requested, prefix=""):
    """``[(field, stored, requested)]`` for the keys of ``requested`` whose values differ from
    those in ``stored`` (nested dicts compared field by field; keys missing in ``stored`` are
    skipped: the checkpoint predates them)."""
    out = []
    for k, v in requested.items():
        if k not in stored:
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(stored[k], dict):
            out += _differences(stored[k], v, name + ".")
        elif stored[k] != v:
            out.append((name, stored[k], v))
    return out


def _check_provenance(run_dir, metadata, stored, step):
    """Refuse to resume a checkpoint whose stored ``metadata`` differs from the requested one."""
    if not metadata or not isinstance(stored, dict):
        return
    import json

    requested = json.loads(json.dumps(metadata))
    diff = _differences(stored, requested)
    if diff:
        fields = "; ".join(f"{name}: checkpoint {a!r}, requested {b!r}" for name, a, b in diff)
        raise ValueError(
            f"run_dir {str(run_dir)!r} holds a checkpoint (step {step}) written with a different "
            f"configuration: {fields}. Resuming would mix two runs: use another run directory, "
            "or the configuration the checkpoint was trained with"
        )


def _check_every(name, value, steps_per_call, default):
    if value is None:
        return steps_per_call * max(1, math.ceil(default / steps_per_call))
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value % steps_per_call:
        raise ValueError(
            f"{name}={value} must be a multiple of steps_per_call={steps_per_call} "
            "(checkpoints and evaluations happen between compiled calls)"
        )
    return value


def train(
    model,
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    batch_fn: Callable,
    *,
    steps: int,
    key,
    run_dir=None,
    steps_per_call: int = 1,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    log_every: int = 1,
    eval_fn: Callable | None = None,
    eval_every: int | None = None,
    filter_spec=eqx.is_inexact_array,
    progress: bool = True,
    desc: str = "train",
    callback: Callable | None = None,
    metadata: dict | None = None,
    scan: bool | None = None,
    state=None,
) -> TrainResult:
    """Train ``model`` with an optax optimiser; checkpoint, log and resume in ``run_dir``.

    Each update ``s`` (0-based) computes ``k_batch, k_loss = split(fold_in(key, s))``,
    ``batch = batch_fn(s, k_batch)``, ``(loss, metrics) = loss_fn(model, batch, k_loss)``, its
    gradient with respect to the trainable leaves, and applies ``optimizer``. ``steps_per_call``
    updates run per host round trip: inside one compiled ``lax.scan`` (``scan=True``) or as
    that many asynchronously dispatched compiled updates (``scan=False``); both compile once.

    Arguments:
        model: an Equinox module (or any pytree).
        loss_fn: ``loss_fn(model, batch, key) -> (loss, metrics)``, ``loss`` a scalar and
            ``metrics`` a dict of scalars (may be empty). Traced under JIT.
        optimizer: an ``optax.GradientTransformation``; put gradient clipping, schedules,
            weight decay in it (``optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))``).
            A ``GradientTransformationExtraArgs`` also receives ``value=`` (the loss),
            ``grad=`` and ``value_fn=`` (the loss of the trainable parameters on this update's
            batch and key), so line-search optimisers such as ``optax.lbfgs()`` work.
        batch_fn: ``batch_fn(step, key) -> batch``, a JAX-traceable *pure function of the
            step* (``step`` is a traced int32 scalar): resuming reproduces the run only if the
            data of update ``s`` depends on nothing else. Close over arrays to index a dataset.
        steps: total number of updates of the run (a resumed run continues up to it).
        key: PRNG key (raw ``uint32[2]`` or typed); stored in checkpoints, and a resume with a
            different key is refused.
        run_dir: directory for ``checkpoints/ckpt_<step>.eqx`` and ``metrics.jsonl``. If it
            holds a checkpoint, training resumes from the newest good one.
        steps_per_call: updates per host round trip (amortises dispatch and host syncs). If
            ``steps`` is not a multiple, a scanned last call computes and discards the surplus.
        checkpoint_every: updates between checkpoints (multiple of ``steps_per_call``;
            default about 1000). A checkpoint is always written at the end.
        keep_checkpoints: how many newest checkpoints to keep (fallback if one is damaged).
        log_every: record the training metrics of every ``log_every``-th update (and the last).
        eval_fn: ``eval_fn(model) -> dict`` of scalars, run on the host at updates
            ``0, eval_every, 2 eval_every, ...`` and at the end; recorded as ``kind: "eval"``.
        eval_every: multiple of ``steps_per_call`` (default: ``checkpoint_every``).
        filter_spec: which leaves are trained, as for :func:`equinox.partition` (a bool pytree
            or a callable); the rest are frozen (no gradient, no optimiser state).
        progress: show a progress bar (tqdm on a TTY, plain lines otherwise).
        desc: the progress bar's label.
        callback: ``callback(step, model)`` on the host after each compiled call (after any
            checkpoint/evaluation at that step); it may raise to stop training.
        metadata: extra JSON-serialisable data stored in every checkpoint header. On resume it
            is compared with the checkpoint's: a field that differs (e.g. ``config.learning_rate``)
            raises ``ValueError`` naming it.
        scan: how a chunk of ``steps_per_call`` updates runs; ``None`` (default): ``lax.scan``
            on accelerators, one compiled call per update on CPU, where XLA runs a scan body
            several times slower (``benchmarks/train_loop.py``). Same updates either way.
        state: an optional pytree of arrays carried from one update to the next outside the
            gradient, e.g. each training sample's last solver solution used as the next warm
            start. With it, ``loss_fn(model, batch, key, state) -> (loss, metrics, new_state)``
            (``new_state`` with the structure of ``state``; it is not differentiated, and it
            is kept unchanged by a skipped or non-finite update). It is part of every
            checkpoint, so a resumed run continues with the same state.

    Returns:
        :class:`TrainResult` with the trained model, optimiser state and history.

    Raises:
        NonFiniteLossError: a loss or gradient became NaN/inf; no checkpoint is written for it,
            so the newest checkpoint is the last good state.
        CheckpointError: ``run_dir`` holds checkpoints and none of them is readable.
        ValueError: resuming with another ``key`` or ``metadata`` than the checkpoint's.
        DirectoryLockedError: another process is training in ``run_dir`` (the directory is
            locked with ``flock`` on ``run_dir/.lock`` while training).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> def loss_fn(w, batch, key):
        ...     x, y = batch
        ...     return jnp.mean((x * w - y) ** 2), {}
        >>> def batch_fn(step, key):
        ...     x = jax.random.normal(key, (32,))
        ...     return x, 3.0 * x
        >>> res = train(jnp.array(0.0), loss_fn, optax.sgd(0.1), batch_fn, steps=200,
        ...             key=jax.random.key(0), progress=False)
        >>> round(float(res.model), 4)
        3.0
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not isinstance(steps_per_call, int) or steps_per_call < 1:
        raise ValueError(f"steps_per_call must be a positive integer, got {steps_per_call!r}")
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError("optimizer must be an optax.GradientTransformation (with init/update)")
    if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == jnp.uint32)):
        raise TypeError("key must be a JAX PRNG key (jax.random.key(...) or jax.random.PRNGKey(...))")
    scanning = _use_scan(scan)
    run_chunk = _scan_chunk if scanning else _stepped_chunk
    checkpoint_every = _check_every("checkpoint_every", checkpoint_every, steps_per_call, 1000)
    eval_every = _check_every("eval_every", eval_every, steps_per_call, checkpoint_every)

    def _run(model, state, run_dir):
        params, static = eqx.partition(model, filter_spec)
        opt_state = optimizer.init(params)
        if state is not None:
            state = jax.tree_util.tree_map(jnp.asarray, state)
        start, elapsed0 = 0, 0.0
        manager = metrics_log = None
        if run_dir is not None:
            run_dir = Path(run_dir)
            manager = CheckpointManager(run_dir / "checkpoints", keep=keep_checkpoints)
            metrics_log = MetricsWriter(run_dir / "metrics.jsonl")
            manager.remove_stale_temporaries()
            if manager.steps():
                start, tree, meta = manager.restore(_payload(model, opt_state, key, state))
                if not np.array_equal(np.asarray(tree["key"]), _key_data(key)):
                    raise ValueError(
                        f"run_dir {str(run_dir)!r} was trained with a different `key`; resuming with "
                        "another key would not reproduce the run (use a new run_dir or the same key)"
                    )
                _check_provenance(run_dir, metadata, meta.get("user"), start)
                if start > steps:
                    raise ValueError(
                        f"run_dir {str(run_dir)!r} holds a checkpoint at step {start} > steps={steps}"
                    )
                model, opt_state, state = tree["model"], tree["opt_state"], tree.get("state")
                params, static = eqx.partition(model, filter_spec)
                elapsed0 = float(meta.get("elapsed_s", 0.0))
            metrics_log.truncate(start)

        history: list[dict] = []
        t0 = time.perf_counter()

        def elapsed():
            return elapsed0 + time.perf_counter() - t0

        def evaluate(step, model):
            if eval_fn is None or not (step % eval_every == 0 or step == steps):
                return
            values = eval_fn(model)
            if not isinstance(values, dict):
                raise TypeError(f"eval_fn(model) must return a dict of scalars, got {type(values).__name__}")
            bad = _RESERVED.intersection(values)
            if bad:
                raise ValueError(f"eval_fn returned reserved metric name(s) {sorted(bad)}")
            rec = {"step": step, "kind": "eval", **{k: to_scalar(v) for k, v in values.items()}}
            rec["wall_time"] = elapsed()
            history.append(rec)
            if metrics_log is not None:
                metrics_log.write(rec)

        def save(step, model, opt_state, state):
            if manager is None:
                return
            metrics_log.sync()
            user = dict(metadata or {})
            manager.save(
                step,
                _payload(model, opt_state, key, state),
                metadata={"elapsed_s": elapsed(), "steps": steps, "steps_per_call": steps_per_call, "user": user},
            )

        evaluate(start, model)
        step = start
        stop = jnp.asarray(steps, dtype=jnp.int32)
        with ProgressBar(steps, initial=start, desc=desc, enabled=progress) as bar:
            while step < steps:
                n = min(steps_per_call, steps - step)
                new_params, new_opt_state, new_state, losses, metrics, finite = run_chunk(
                    params, static, opt_state, state, jnp.asarray(step, dtype=jnp.int32), stop, key,
                    loss_fn, optimizer, batch_fn, steps_per_call if scanning else n,
                )
                losses = np.asarray(losses)[:n]
                finite = np.asarray(finite)[:n]
                metrics = {k: np.asarray(v)[:n] for k, v in metrics.items()}
                n_ok = n if finite.all() else int(np.argmin(finite))
                wall = elapsed()
                recs = []
                for i in range(n_ok + (0 if n_ok == n else 1)):
                    s = step + i
                    if s % log_every == 0 or s == steps - 1 or i == n_ok:
                        rec = {"step": s, "kind": "train", "loss": float(losses[i])}
                        rec.update({k: v[i].item() for k, v in metrics.items()})
                        rec["wall_time"] = wall
                        recs.append(rec)
                history.extend(recs)
                if metrics_log is not None:
                    metrics_log.write_many(recs)
                if n_ok < n:
                    bad = step + n_ok
                    newest = manager.path(manager.latest_step()) if manager and manager.steps() else None
                    raise NonFiniteLossError(
                        f"loss or gradient is not finite at update {bad} (loss={losses[n_ok]}); "
                        f"training stopped, newest checkpoint kept: {newest}",
                        step=bad,
                        model=eqx.combine(new_params, static),
                        checkpoint=newest,
                    )
                params, opt_state, state = new_params, new_opt_state, new_state
                step += n
                bar.update(n, loss=float(losses[-1]))
                if step % checkpoint_every == 0 or step == steps:
                    model = eqx.combine(params, static)
                    save(step, model, opt_state, state)
                if eval_fn is not None or callback is not None:
                    model = eqx.combine(params, static)
                    evaluate(step, model)
                    if callback is not None:
                        callback(step, model)
        if manager is not None and step == start and manager.latest_step() != step:
            save(step, eqx.combine(params, static), opt_state, state)
        if run_dir is not None:
            history = read_metrics(run_dir / "metrics.jsonl")
        return TrainResult(
            model=eqx.combine(params, static), opt_state=opt_state, step=step, history=history,
            run_dir=run_dir, state=state,
        )

    if run_dir is None:
        return _run(model, state, None)
    # One trainer per run directory: a second one would interleave checkpoints and metrics.
    with DirectoryLock(run_dir, what="run directory"):
        return _run(model, state, Path(run_dir))
