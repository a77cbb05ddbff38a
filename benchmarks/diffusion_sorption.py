"""Soft (PI-SC) vs hard (PI-HC) constraint on 1D diffusion-sorption, laptop scale.

    python benchmarks/diffusion_sorption.py --out benchmarks/results/diffusion_sorption
    python benchmarks/diffusion_sorption.py --nx 1024 --nt 101 --num-points 20000 ...  (paper grid)

Trains both methods with the same FNO, data, physics loss and number of steps (see
:class:`pdeml.experiments.DiffusionSorptionConfig`), evaluates the test relative L2 error
against our BDF2 reference solutions, and writes ``results.json``, ``results.md`` and
``predictions.png`` under ``--out``. Runs resume from their checkpoints if interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RUN_ENV, env, md_table, write_json, write_text  # noqa: E402


def main(argv=None) -> int:
    from pdeml.cli.train import add_config_arguments, config_from_args
    from pdeml.experiments import DiffusionSorptionConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, DiffusionSorptionConfig)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusion_sorption"))
    p.add_argument("--float32", action="store_true")
    args = p.parse_args(argv)
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    from pdeml.experiments import plot_predictions, run_experiment

    base = config_from_args(DiffusionSorptionConfig, args)
    results = {}
    for method in ("soft", "hard"):
        cfg = dataclasses.replace(base, method=method)
        results[method] = run_experiment(cfg, args.out / f"run_{method}")
    png = plot_predictions({m: args.out / f"run_{m}" for m in results}, args.out / "predictions.png")
    env_ = env(*RUN_ENV)
    out = {"environment": env_, "config": dataclasses.asdict(base),
           "results": {m: {"test": r["test"], "seconds": r["seconds"],
                           "final_train_loss": r["final_train_loss"]} for m, r in results.items()},
           "paper": {"soft": 0.8593, "hard": 0.0755, "note": "1024 x 101 grid, 20k points"}}
    write_json(args.out / "results.json", out, indent=2)
    lines = md_table(["method", "test rel. L2 mean", "std", "LM converged", "train time (s)"], [
        [m, f"{100 * r['test']['rel_l2_mean']:.2f}%", f"{100 * r['test']['rel_l2_std']:.2f}%",
         f"{100 * r['test']['lm_converged_fraction']:.0f}%"
         if "lm_converged_fraction" in r["test"] else "-", f"{r['seconds']['train']:.0f}"]
        for m, r in results.items()])
    cfg = base
    lines += ["", f"Grid {cfg.nx} x {cfg.nt}, {cfg.train_samples} train / {cfg.test_samples} test ICs, "
                 f"{cfg.steps} steps, batch {cfg.batch_size}, FNO width {cfg.width} x {cfg.layers} "
                 f"layers, N = {cfg.num_basis}, m = {cfg.num_points}; {env_['backend']}, JAX {env_['jax']}."]
    write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {args.out / 'results.json'}, {args.out / 'results.md'}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
