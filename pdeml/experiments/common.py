"""Pieces shared by the experiments: the optimiser, the training step's batch and loss
functions (optionally with carried starts), and restoring a run from its checkpoints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax


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


def restore_run(run_dir, config_cls: type, build_model: Callable, u0_like: Callable | None = None):
    """``(config, model, step)`` of the newest good checkpoint in ``run_dir``.

    ``config_cls(**config.json)`` is rebuilt, ``build_model(config, key)`` gives the structure
    the checkpoint is restored into (the same keys as training: ``fold_in(seed, 0)`` for the
    model, ``fold_in(seed, 1)`` for the training key); ``u0_like(config)``, one zero initial
    condition, shapes the carried state of a ``carry_start`` run.
    """
    from pdeml.train import CheckpointManager

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} has no config.json: not a pdeml training run")
    config = config_cls(**json.loads(cfg_path.read_text()))
    key = jax.random.key(config.seed)
    model = build_model(config, jax.random.fold_in(key, 0))
    params = eqx.filter(model, eqx.is_inexact_array)
    like = {"model": model, "opt_state": make_optimizer(config).init(params),
            "key": np.asarray(jax.random.key_data(jax.random.fold_in(key, 1)))}
    if getattr(config, "carry_start", False):
        like["state"] = initial_state(config, model, u0_like(config), config.train_samples)
    step, tree, _ = CheckpointManager(run_dir / "checkpoints").restore(like)
    return config, tree["model"], step
