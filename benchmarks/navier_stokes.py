"""Soft (PI-SC) vs hard (PI-HC) vs mixture-of-experts (PI-HC-MoE) constraint on 2D
Navier-Stokes, laptop scale, tested on the training grid and on a grid twice as fine.

    python benchmarks/navier_stokes.py --out benchmarks/results/navier_stokes
    python benchmarks/navier_stokes.py --methods soft,hard --steps 50          (quicker)
    python benchmarks/navier_stokes.py --nx 64 --ny 64 --nt 64 --t-max 5 --num-basis 64 \\
        --num-points 20000 --layers 8 --width 64 ...                          (paper setting)

Every method gets the same FNO, data, physics loss, optimiser and number of steps (see
:class:`pdeml.experiments.navier_stokes.NSConfig`); the test relative L2 error is measured
against our pseudo-spectral references on the training grid and on the ``--test-refine`` times
finer grid (same initial conditions, references solved on that grid). Writes
``results.json``, ``results.md``, ``predictions.png`` (training grid) and
``predictions_fine.png`` under ``--out``; the runs (``run_<method>/``) resume from their
checkpoints if interrupted. Float64 by default (``--float32`` to change): the constraint layer
solves Gauss-Newton normal equations, which square the condition number of the basis.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RUN_ENV, env, write_json, write_text  # noqa: E402

#: Benchmark sizing, network input/output and the MoE configuration of its ``moe`` rows, all
#: chosen on *validation* initial conditions (data seed 2, 8 ICs; neither training nor test).
#: With the plain input (w0, x, y, t) and direct output no method beat the persistence
#: baseline w = w0 (soft 33.52% = persistence, PI-HC 32.83%, MoE 34.68% at 300 steps, 8
#: training ICs). The input channel t F(w0) (F the PDE's right-hand side of w0, computed by
#: the spectral operator: data-free), the increment output (soft w = w0 + (t/T) g; hard basis
#: (w0, (t/T) g_1..g_15)) and 128 training ICs (8: validation residual 10-70x the training
#: loss) fix that: validation PI-HC 10.9%, soft 11.1% (persistence 33.9%, Taylor 22.6%).
#: MoE on validation (600 steps): 4 x 4 experts in space, overlap 0.5 (periodic blending),
#: 500 points per expert 8.6%; the paper's 2 x 2 block-wise router with PI-HC's 2000 per expert
#: 13.4%. ``--moe-num-points`` is m *per expert* for the ``moe`` row (500 x 16 = 8000 in
#: total, 4x PI-HC's, the paper's direction); ``moe_equal`` gives the same experts PI-HC's
#: 2000 in total (125 each). See docs/pde.md.
BENCH_DEFAULTS = dict(steps=600, train_samples=128, test_samples=16, tendency_input=True,
                      output="increment", experts="1x4x4", overlap=0.5,
                      points_mode="per_expert")
BENCH_MOE_NUM_POINTS = 500
BENCH_METHODS = "soft,hard,moe,moe_equal"

#: Published test relative L2 errors on Navier-Stokes at 256^2 (paper; trained at 64^2 x 64).
PAPER = {"soft": 0.1808, "hard": 0.1175, "moe": 0.0830,
         "note": "[HC-MoE] Table: trained on 64 x 64 x 64, tested at 256^2, T = 5, N = 64, "
                 "20k points per expert, 2 x 2 experts"}


BASELINE_LABELS = {"persistence": "baseline: persistence w = w0",
                   "taylor": "baseline: Taylor w0 + t F(w0)"}


#: The configuration of each table row on top of the shared (PI-HC) settings.
ROW_SETTINGS = {
    "soft": lambda args, base: {"method": "soft"},
    "hard": lambda args, base: {"method": "hard"},
    "moe": lambda args, base: {"method": "moe", "num_points": args.moe_num_points,
                               "points_mode": "per_expert"},
    "moe_equal": lambda args, base: {"method": "moe", "num_points": base.num_points,
                                     "points_mode": "total"},
}


def _train_times(run_dir: Path) -> tuple[float | None, float | None]:
    """From metrics.jsonl: the mean seconds per update after the first (compiling) one, and
    the wall time of the whole training (to the last logged step; right also when this
    invocation only resumed a finished run)."""
    recs = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines() if s]
    recs = [r for r in recs if r.get("kind") == "train"]
    per_step = (None if len(recs) < 2 or recs[-1]["step"] == recs[0]["step"] else
                (recs[-1]["wall_time"] - recs[0]["wall_time"]) / (recs[-1]["step"] - recs[0]["step"]))
    return per_step, recs[-1]["wall_time"] if recs else None


def _pct(m, key="rel_l2_mean"):
    return f"{100 * m[key]:.2f}%"


def main(argv=None) -> int:
    from pdeml.cli.train import add_config_arguments, config_from_args
    from pdeml.experiments import NavierStokesConfig

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p, NavierStokesConfig)
    p.set_defaults(**BENCH_DEFAULTS)
    p.add_argument("--methods", default=BENCH_METHODS,
                   help="comma-separated methods to compare: soft, hard, moe (m = "
                   "--moe-num-points per expert) and moe_equal (the same experts with "
                   f"PI-HC's --num-points in total) (default {BENCH_METHODS})")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/navier_stokes"))
    p.add_argument("--float32", action="store_true", help="float32 (default float64)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--moe-num-points", type=int, default=BENCH_MOE_NUM_POINTS,
                   help="collocation points of the moe method (per expert with --points-mode "
                   f"per_expert; default {BENCH_MOE_NUM_POINTS}); soft/hard use --num-points")
    args = p.parse_args(argv)
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    from pdeml.experiments.navier_stokes import (
        evaluate_baselines,
        fine_test_data,
        load_data,
        plot_predictions,
        run_experiment,
    )

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    # The shared settings (validated as PI-HC: the mixture's m is --moe-num-points).
    base = config_from_args(NavierStokesConfig, args, method="hard")
    start = time.perf_counter()
    results, runs, configs = {}, {}, {}
    for method in methods:
        if method not in ROW_SETTINGS:
            p.error(f"unknown method {method!r}; expected some of {list(ROW_SETTINGS)}")
        extra = ROW_SETTINGS[method](args, base)
        cfg = dataclasses.replace(base, **extra)
        configs[method] = json.loads(json.dumps(dataclasses.asdict(cfg)))
        runs[method] = args.out / f"run_{method}"
        results[method] = run_experiment(cfg, runs[method], progress=not args.no_progress)
        (results[method]["seconds_per_step"],
         results[method]["train_seconds_logged"]) = _train_times(runs[method])
    total = time.perf_counter() - start
    # Trivial baselines on the same test ICs (and the finer grid): every learned method must
    # beat them. From the data, so they are independent of the runs.
    train_set, test_set = load_data(base)
    baselines = {"test": evaluate_baselines(base.problem, test_set.dataset.u0,
                                            test_set.dataset.u)}
    if base.test_refine > 1:
        fine_set = fine_test_data(base, test_set)
        baselines["test_fine"] = evaluate_baselines(
            base.problem_at(base.test_refine), fine_set.dataset.u0, fine_set.dataset.u)
    pngs = [plot_predictions(runs, args.out / "predictions.png")]
    if base.test_refine > 1:
        pngs.append(plot_predictions(runs, args.out / "predictions_fine.png", fine=True))

    env_ = env(*RUN_ENV, cpu_count_note="shared 2-core CPU")
    keep = ("test", "test_fine", "seconds", "seconds_per_step", "train_seconds_logged",
            "final_train_loss",
            "dataset_checksums")
    out = {"environment": env_, "config": json.loads(json.dumps(dataclasses.asdict(base))),
           "method_configs": configs,
           "methods": methods, "wall_time_s": total,
           "results": {m: {k: r[k] for k in keep} for m, r in results.items()},
           "baselines": baselines,
           "paper": PAPER}
    write_json(args.out / "results.json", out, indent=2)

    cfg = base
    fine = f"{cfg.nx * cfg.test_refine}x{cfg.ny * cfg.test_refine}"
    lines = [f"| method | rel. L2, {cfg.nx}x{cfg.ny} (train grid) | rel. L2, {fine} | "
             "LM converged (train grid / fine) | LM iterations | train s | s/step | paper (256^2) |",
             "|---|---|---|---|---|---|---|---|"]
    for b in baselines["test"]:
        t, f = baselines["test"][b], baselines.get("test_fine", {}).get(b)
        fine_s = f"{_pct(f)} +/- {_pct(f, 'rel_l2_std')}" if f else "-"
        lines.append(f"| {BASELINE_LABELS[b]} | {_pct(t)} +/- {_pct(t, 'rel_l2_std')} | "
                     f"{fine_s} | - | - | 0 | - | - |")
    for m, r in results.items():
        t, f = r["test"], r["test_fine"]
        fine_s = f"{_pct(f)} +/- {_pct(f, 'rel_l2_std')}" if f else "-"
        if "lm_converged_fraction" in t:
            conv = f"{100 * t['lm_converged_fraction']:.0f}%"
            conv += f" / {100 * f['lm_converged_fraction']:.0f}%" if f else ""
            iters = f"{t['lm_iterations_mean']:.1f}"
        else:
            conv = iters = "-"
        sps = r["seconds_per_step"]
        lines.append(f"| {m} | {_pct(t)} +/- {_pct(t, 'rel_l2_std')} | {fine_s} | {conv} | "
                     f"{iters} | {r['train_seconds_logged'] or r['seconds']['train']:.0f} | "
                     f"{'-' if sps is None else f'{sps:.2f}'} | "
                     f"{f'{100 * PAPER[m]:.2f}%' if m in PAPER else '-'} |")
    moe = (f", MoE {cfg.experts[0]}x{cfg.experts[1]}x{cfg.experts[2]} (K_t x K_x x K_y) experts, "
           f"overlap {cfg.overlap} (periodic blending in x, y), m = {args.moe_num_points} "
           f"per expert (moe_equal: m = {cfg.num_points} in total, PI-HC's)"
           if any(m.startswith("moe") for m in methods) else "")
    out_form = ("increment (soft w = w0 + (t/T) g, hard/moe basis (w0, (t/T) g_1..g_{N-1}))"
                if cfg.output == "increment" else "direct")
    lines += [
        "",
        f"Grid {cfg.nx} x {cfg.ny} x {cfg.nt} (x, y, t), T = {cfg.t_max}, nu = {cfg.viscosity}; "
        f"{cfg.train_samples} train / {cfg.test_samples} test GRF initial conditions; "
        f"{cfg.steps} Adam steps (lr {cfg.learning_rate}, decay to {cfg.lr_decay}x), batch "
        f"{cfg.batch_size}; FNO width {cfg.width}, {cfg.layers} layers, {cfg.modes} modes, "
        f"input (w0{', t F(w0)' if cfg.tendency_input else ''}, x, y, t) for every method "
        f"(F: the PDE's right-hand side from w0, no data), output {out_form}; "
        f"N = {cfg.num_basis} basis functions, m = {cfg.num_points} points{moe}. Baselines: "
        "persistence w(t) = w0, first-order Taylor w0 + t F(w0) (no training). Errors are mean "
        f"+/- std over the test initial conditions of the relative L2 error of the whole "
        f"(x, y, t) vorticity field. {'float64' if env_['x64'] else 'float32'}, "
        f"{env_['backend']}, JAX {env_['jax']}; wall time of this invocation {total:.0f} s on a "
        "shared CPU (runs found finished are only evaluated; train s is from metrics.jsonl; "
        "s/step excludes the first, compiling, step).",
    ]
    write_text(args.out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written:", args.out / "results.json", args.out / "results.md", *pngs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
