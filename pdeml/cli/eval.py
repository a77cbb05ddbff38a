"""``pdeml eval``: evaluate trained runs and plot their predictions.

    pdeml eval runs/hc runs/sc --out compare/

Loads the newest good checkpoint of each run directory, recomputes the test relative L2
error against the reference data (from the cache), writes ``eval.json`` and
``predictions.npz`` into ``eval-<precision>/`` of each run directory (beside the run's own
outputs, never over them), prints a table (or ``--json``) and, with
``--out``, writes ``eval.json`` (all runs) and ``predictions.png`` (one test sample per run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pdeml.cli import (
    CLIError,
    add_json,
    add_precision,
    add_seed,
    command_request,
    nonnegative_int,
    writable_dir,
    write_text_atomic,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate trained runs (test relative L2, plots)")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories from `pdeml train`")
    p.add_argument("--out", type=Path, default=None,
                   help="write eval.json (every run) and predictions.png (one test sample per "
                   "run) into this directory")
    p.add_argument("--plot", type=Path, help=argparse.SUPPRESS)  # deprecated: --out
    p.add_argument("--sample", type=nonnegative_int, default=0, help="test sample to plot (default 0)")
    add_seed(p, default=12345, what="the collocation points the hard-constraint layers sample")
    add_json(p)
    add_precision(p, "float64", "the dense Gauss-Newton solves square the condition number")
    p.set_defaults(func=run)


def _plotter(config_type):
    """The prediction plot of an experiment's configuration class."""
    from pdeml.experiments import NavierStokesConfig
    from pdeml.experiments.diffusion_sorption import plot_predictions as plot_ds
    from pdeml.experiments.navier_stokes_eval import plot_predictions as plot_ns

    return plot_ns if issubclass(config_type, NavierStokesConfig) else plot_ds


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from pdeml.experiments import evaluate_run, load_data, load_run
    from pdeml.experiments.common import write_evaluation
    from pdeml.experiments.config import config_dict

    out = writable_dir(args.out) if args.out is not None else None
    request = command_request(args)
    precision = "float64" if jax.config.jax_enable_x64 else "float32"
    rows, kinds = [], set()
    for d in args.run_dirs:
        if not (d / "config.json").exists():
            raise CLIError(f"{d} is not a training run directory (no config.json)")
        try:
            config, model, step = load_run(d)
        except Exception as e:  # checkpoint errors name the file
            raise CLIError(f"cannot load {d}: {e}") from None
        _, test_set = load_data(config)
        # as the run evaluated itself (its batch, training window, residual diagnostics)
        metrics, preds = evaluate_run(config, model, test_set, key=jax.random.key(args.seed))
        if not 0 <= args.sample < preds.shape[0]:
            raise CLIError(f"--sample must be in [0, {preds.shape[0] - 1}], got {args.sample}")
        # beside the run's own results.json / predictions.npz (eval-<precision>/), never over them
        # a run's evaluation is its own request (this run at this step, precision and seed),
        # whichever other runs this command evaluates beside it
        where = write_evaluation(d, precision, {"step": step, "test": metrics},
                                 {"pred": np.asarray(preds), "ref": np.asarray(test_set.dataset.u),
                                  "u0": np.asarray(test_set.dataset.u0)},
                                 request={"command": "pdeml eval", "run": config_dict(config),
                                          "step": step, "precision": precision,
                                          "seed": args.seed})
        rows.append((str(d), config.method, step, metrics, where))
        kinds.add(type(config))
    summary = {str(n): {"method": m, "step": st, "test": met} for n, m, st, met, _ in rows}
    if out is not None:
        write_text_atomic(out / "eval.json", json.dumps(summary, indent=2), request=request)
    plots = [p for p in (args.plot, out / "predictions.png" if out is not None else None) if p]
    if plots and len(kinds) > 1:
        raise CLIError("the runs are of different experiments "
                       f"({', '.join(sorted(k.__name__ for k in kinds))}); plot them separately")
    plot_predictions = _plotter(next(iter(kinds))) if plots else None
    for target in plots:
        plot_predictions({f"{m} ({Path(n).name})": w for n, m, _, _, w in rows}, target,
                         sample=args.sample, request=request)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{'run':40s} {'method':6s} {'step':>6s} {'rel L2 mean':>12s} {'std':>8s}")
    for name, method, step, m, _ in rows:
        extra = "".join(
            f"  {part}: {100 * m[part]['rel_l2_mean']:.2f}%"
            for part in ("train_window", "extrapolation") if part in m
        )
        print(f"{name:40s} {method:6s} {step:6d} {100 * m['rel_l2_mean']:11.2f}% "
              f"{100 * m['rel_l2_std']:7.2f}%{extra}")
    for target in plots:
        print(f"plot: {target}")
    return 0
