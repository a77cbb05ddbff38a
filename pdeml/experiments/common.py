"""Pieces shared by the experiments: the optimiser, the training step's batch and loss
functions (optionally with carried starts), and the run directory's files (configuration
check, lock, outputs and evaluations written atomically with checksums)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import optax

from pdeml.core.io import (
    DirectoryLock,
    check_overwrite,
    read_json,
    verify_sidecar,
    write_json,
    write_protected,
)


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam with exponential learning-rate decay and global-norm gradient clipping.

    ``config`` has ``learning_rate``, ``steps`` and ``lr_decay`` (the final factor).
    """
    schedule = optax.exponential_decay(config.learning_rate, max(config.steps, 1), config.lr_decay)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def check_carry_start(carry_start, method: str) -> None:
    """``carry_start`` is a bool, and true only for a hard-constraint method."""
    if not isinstance(carry_start, bool):
        raise ValueError(f"carry_start must be True or False, got {carry_start!r}")
    if carry_start and method not in ("hard", "moe"):
        raise ValueError(f"carry_start needs a hard-constraint method ('hard' or 'moe'), got "
                         f"method={method!r}")


def training_functions(u0_train, config) -> tuple[Callable, Callable]:
    """``(batch_fn, loss_fn)`` for :func:`pdeml.train.train` on the training ICs ``u0_train``.

    A batch is ``config.batch_size`` training samples drawn without replacement from the
    step's key. With ``config.carry_start`` the batch also carries the samples' indices and the
    loss is :func:`~pdeml.constraints.models.carried_physics_loss` (train with
    ``state=carried_starts(...)``); otherwise :func:`~pdeml.constraints.batch_physics_loss`.
    """
    from pdeml.constraints.models import batch_physics_loss, carried_physics_loss

    def indices(k):
        return jax.random.choice(k, u0_train.shape[0], (config.batch_size,), replace=False)

    if config.carry_start:
        def batch_fn(step, k):
            idx = indices(k)
            return idx, u0_train[idx]

        def loss_fn(m, batch, k, state):
            return carried_physics_loss(m, batch, k, state,
                                        constraint_weight=config.constraint_weight)
    else:
        def batch_fn(step, k):
            return u0_train[indices(k)]

        def loss_fn(m, batch, k):
            return batch_physics_loss(m, batch, k, constraint_weight=config.constraint_weight)
    return batch_fn, loss_fn


def initial_state(config, model, u0_like, num_samples: int):
    """The carried training state (``None`` without ``config.carry_start``)."""
    from pdeml.constraints.models import carried_starts

    if not getattr(config, "carry_start", False):
        return None
    return carried_starts(model, u0_like, num_samples)


def _merged(stored: dict, defaults: dict) -> dict:
    # Runs written before a field existed hold its default.
    return {**defaults, **stored}


def _config_differences(old: dict, new: dict) -> str:
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: stored {old.get(k)!r}, requested {new.get(k)!r}" for k in diff)


def check_run_config(run_dir, cfg: dict, defaults: dict) -> None:
    """Refuse to reuse ``run_dir`` for another configuration; creates nothing.

    ``cfg`` (the JSON form of the requested configuration) is compared with ``config.json``
    and, when that file is missing, with the configuration stored in the newest readable
    checkpoint's header (so deleting ``config.json`` does not let a run resume under other
    settings). ``defaults`` fills fields that older runs did not record.

    Raises:
        ValueError: the stored configuration differs; the message names the fields.
    """
    from pdeml.train import CheckpointManager
    from pdeml.train.checkpoint import CheckpointError, read_checkpoint_metadata

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    source, stored = None, None
    if cfg_path.exists():
        stored = read_json(cfg_path, what="run configuration", required=False)
        source = str(cfg_path)
    else:
        manager = CheckpointManager(run_dir / "checkpoints")
        for step in manager.steps()[::-1]:
            try:
                meta = read_checkpoint_metadata(manager.path(step))
            except CheckpointError:
                continue
            stored = meta.get("user", {}).get("config")
            source = f"the header of {manager.path(step)}"
            break
    if stored is None:
        return
    old = _merged(stored, defaults)
    if old != cfg:
        raise ValueError(
            f"{run_dir} holds a run with a different configuration ({source}): "
            f"{_config_differences(old, cfg)}; use another --run-dir (or delete it) instead of "
            "mixing runs"
        )


def write_run_config(run_dir, cfg: dict) -> None:
    """Write ``config.json`` (atomic, with a ``.sha256`` sidecar) unless it is already there."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        write_json(path, cfg)


def run_lock(run_dir):
    """The lock held on ``run_dir`` while a run trains in it (see :class:`pdeml.core.io.DirectoryLock`)."""
    return DirectoryLock(run_dir, what="run directory")


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def check_run_outputs(out_dir, *, request, results_name: str = "results.json") -> None:
    """Raise ``FileExistsError`` if :func:`write_run_outputs` with ``request`` would be refused
    (a ``predictions.npz`` or ``results_name`` in ``out_dir`` that pdeml did not write for this
    request); writes nothing. Runs call it before training, so a refusal costs no work."""
    out_dir = Path(out_dir)
    for name in ("predictions.npz", results_name):
        check_overwrite(out_dir / name, what="run output", request=request)


def write_run_outputs(out_dir, results: dict, arrays: dict, *, request,
                      results_name: str = "results.json"):
    """``results`` as JSON and ``arrays`` as ``predictions.npz`` in ``out_dir``, each written
    atomically with a ``.sha256`` sidecar recording ``request`` (for a run: its
    configuration). Never over a file pdeml did not write for the same request: both files
    are checked before either is written (``FileExistsError``). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    check_run_outputs(out_dir, request=request, results_name=results_name)
    write_protected(out_dir / "predictions.npz", _npz_bytes(arrays), request=request,
                    what="run output")
    write_protected(out_dir / results_name,
                    (json.dumps(results, indent=2) + "\n").encode("utf-8"), request=request,
                    what="run output")
    return out_dir


def evaluation_dir(run_dir, precision: str) -> Path:
    """Where ``pdeml eval`` writes a run's evaluation in ``precision``: ``run_dir/eval-<precision>``
    (beside the run's own ``results.json`` / ``predictions.npz``, which it never touches)."""
    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    return Path(run_dir) / f"eval-{precision}"


def write_evaluation(run_dir, precision: str, report: dict, arrays: dict, *, request) -> Path:
    """Write an evaluation (``eval.json`` + ``predictions.npz``) into
    :func:`evaluation_dir`, recording ``request`` (``pdeml eval``: the run's configuration,
    its step, the precision and the seed); returns that directory. An evaluation made for
    another request is not replaced (``FileExistsError``)."""
    out = evaluation_dir(run_dir, precision)
    return write_run_outputs(out, report, arrays, results_name="eval.json", request=request)


def load_predictions(directory):
    """``predictions.npz`` of a run or evaluation directory as a dict of arrays, verified
    against its ``.sha256`` sidecar when one is present."""
    path = Path(directory) / "predictions.npz"
    verify_sidecar(path, what="predictions file", required=False)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def pyplot():
    """``matplotlib.pyplot`` on the Agg back end (plots need the ``plot`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'pdeml[plot]'") from e
    return plt


def save_figure(fig, out_png, *, dpi: int, request) -> Path:
    """Lay out ``fig``, write it atomically with a ``.sha256`` sidecar recording ``request`` to
    ``out_png`` (parents created) and close it; a file pdeml did not write for the same
    request is never replaced (``FileExistsError``)."""
    import io

    fig.tight_layout()
    out_png = Path(out_png)
    try:
        check_overwrite(out_png, what="figure", request=request)
    except BaseException:
        pyplot().close(fig)
        raise
    out_png.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=out_png.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    # never a half-written figure, never over another request's
    return write_protected(out_png, buf.getvalue(), request=request, what="figure")


def plot_request(function: str, run_dirs: dict, **options) -> dict:
    """The request of a prediction plot called from Python without one: the function, the
    runs (label -> absolute directory) and its options."""
    import os

    return {"function": function, "runs": {str(k): os.path.abspath(v) for k, v in run_dirs.items()},
            "options": options}
