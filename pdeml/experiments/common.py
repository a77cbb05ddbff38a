"""Pieces shared by the experiments: the optimiser and restoring a run from its checkpoints."""

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


def restore_run(run_dir, config_cls: type, build_model: Callable):
    """``(config, model, step)`` of the newest good checkpoint in ``run_dir``.

    ``config_cls(**config.json)`` is rebuilt, ``build_model(config, key)`` gives the structure
    the checkpoint is restored into (the same keys as training: ``fold_in(seed, 0)`` for the
    model, ``fold_in(seed, 1)`` for the training key).
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
    step, tree, _ = CheckpointManager(run_dir / "checkpoints").restore(like)
    return config, tree["model"], step
