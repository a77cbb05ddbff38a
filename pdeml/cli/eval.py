"""``pdeml eval``: evaluate trained runs and plot their predictions.

    pdeml eval runs/hc runs/sc --plot compare.png

Loads the newest good checkpoint of each run directory, recomputes the test relative L2
error against the reference data (from the cache), prints a table and optionally plots one
test sample for every run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pdeml.cli import CLIError


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate trained runs (test relative L2, plots)")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories from `pdeml train`")
    p.add_argument("--plot", type=Path, help="write a PNG comparing one test sample")
    p.add_argument("--sample", type=int, default=0, help="test sample to plot (default 0)")
    p.add_argument("--float32", action="store_true", help="evaluate in float32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.float32:
        import jax

        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    from pdeml.experiments import evaluate, load_data, load_run, plot_predictions

    rows = []
    for d in args.run_dirs:
        if not (d / "config.json").exists():
            raise CLIError(f"{d} is not a training run directory (no config.json)")
        try:
            config, model, step = load_run(d)
        except Exception as e:  # checkpoint errors name the file
            raise CLIError(f"cannot load {d}: {e}") from None
        _, test_set = load_data(config)
        split = None if getattr(config, "t_train", None) is None else config.train_levels
        metrics, preds = evaluate(model, jnp.asarray(test_set.dataset.u0),
                                  jnp.asarray(test_set.dataset.u), split_level=split)
        if not 0 <= args.sample < preds.shape[0]:
            raise CLIError(f"--sample must be in [0, {preds.shape[0] - 1}], got {args.sample}")
        np.savez(d / "predictions.npz", pred=preds, ref=np.asarray(test_set.dataset.u),
                 u0=np.asarray(test_set.dataset.u0))
        (d / "eval.json").write_text(json.dumps({"step": step, "test": metrics}, indent=2))
        rows.append((str(d), config.method, step, metrics))
    print(f"{'run':40s} {'method':6s} {'step':>6s} {'rel L2 mean':>12s} {'std':>8s}")
    for name, method, step, m in rows:
        extra = "".join(
            f"  {part}: {100 * m[part]['rel_l2_mean']:.2f}%"
            for part in ("train_window", "extrapolation") if part in m
        )
        print(f"{name:40s} {method:6s} {step:6d} {100 * m['rel_l2_mean']:11.2f}% "
              f"{100 * m['rel_l2_std']:7.2f}%{extra}")
    if args.plot:
        out = plot_predictions({f"{m} ({Path(n).name})": Path(n) for n, m, _, _ in rows},
                               args.plot, sample=args.sample)
        print(f"plot: {out}")
    return 0
