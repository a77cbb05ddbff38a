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
import json
import platform
from pathlib import Path

import jax


def main(argv=None) -> int:
    from pdeml.cli.train import add_experiment_arguments, config_from_args

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_experiment_arguments(p)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/diffusion_sorption"))
    p.add_argument("--float32", action="store_true")
    args = p.parse_args(argv)
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    from pdeml.experiments import plot_predictions, run_experiment

    base = config_from_args(args)
    results = {}
    for method in ("soft", "hard"):
        cfg = dataclasses.replace(base, method=method)
        results[method] = run_experiment(cfg, args.out / f"run_{method}")
    png = plot_predictions({m: args.out / f"run_{m}" for m in results}, args.out / "predictions.png")
    env = {"jax": jax.__version__, "backend": jax.default_backend(),
           "devices": [str(d) for d in jax.devices()], "machine": platform.machine(),
           "x64": bool(jax.config.jax_enable_x64)}
    out = {"environment": env, "config": dataclasses.asdict(base),
           "results": {m: {"test": r["test"], "seconds": r["seconds"],
                           "final_train_loss": r["final_train_loss"]} for m, r in results.items()},
           "paper": {"soft": 0.8593, "hard": 0.0755, "note": "1024 x 101 grid, 20k points"}}
    (args.out / "results.json").write_text(json.dumps(out, indent=2))
    lines = ["| method | test rel. L2 mean | std | LM converged | train time (s) |",
             "|---|---|---|---|---|"]
    for m, r in results.items():
        t = r["test"]
        conv = f"{100 * t['lm_converged_fraction']:.0f}%" if "lm_converged_fraction" in t else "-"
        lines.append(f"| {m} | {100 * t['rel_l2_mean']:.2f}% | {100 * t['rel_l2_std']:.2f}% | "
                     f"{conv} | {r['seconds']['train']:.0f} |")
    cfg = base
    lines.append("")
    lines.append(f"Grid {cfg.nx} x {cfg.nt}, {cfg.train_samples} train / {cfg.test_samples} test ICs, "
                 f"{cfg.steps} steps, batch {cfg.batch_size}, FNO width {cfg.width} x {cfg.layers} "
                 f"layers, N = {cfg.num_basis}, m = {cfg.num_points}; {env['backend']}, JAX {env['jax']}.")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {args.out / 'results.json'}, {args.out / 'results.md'}, {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
