"""``pdeml train``: train a model on a PDE problem (soft, hard or mixture-of-experts constraint).

    pdeml train diffusion-sorption --method hard --steps 300 --out runs/hc
    pdeml train diffusion-sorption --method soft --steps 300 --out runs/sc
    pdeml train diffusion-sorption --method moe --experts 1x2 --overlap 0.9 \
        --boundary-rows touching --out runs/moe      # the measured best (docs/constraints.md)
    pdeml train navier-stokes --method hard --steps 200 --run-dir runs/ns_hc

Runs are resumable: start the same command again after an interruption and it continues from
the newest checkpoint in ``--out`` (``--run-dir`` is the older spelling). Training runs in
float64 unless ``--float32`` is given (the dense Gauss-Newton solves square the condition
number of the basis).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pdeml.cli import CLIError, add_json, add_precision, writable_dir


def add_experiment_arguments(p: argparse.ArgumentParser) -> None:
    """The options of :class:`pdeml.experiments.ExperimentConfig`, with its defaults."""
    from pdeml.experiments import ExperimentConfig

    d = ExperimentConfig()
    p.add_argument("--method", choices=["soft", "hard", "moe"], default=d.method,
                   help="soft constraint (PI-SC), hard constraint (PI-HC) or mixture of hard-"
                   f"constraint experts (PI-HC-MoE) (default {d.method})")
    p.add_argument("--nx", type=int, default=d.nx, help=f"grid points in x ({d.nx}; paper 1024)")
    p.add_argument("--nt", type=int, default=d.nt, help=f"time levels ({d.nt}; paper 101)")
    p.add_argument("--train-samples", type=int, default=d.train_samples,
                   help=f"training initial conditions ({d.train_samples})")
    p.add_argument("--test-samples", type=int, default=d.test_samples,
                   help=f"test initial conditions ({d.test_samples})")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"initial conditions per step ({d.batch_size})")
    p.add_argument("--lr", type=float, default=d.learning_rate,
                   help=f"Adam learning rate ({d.learning_rate})")
    p.add_argument("--num-basis", type=int, default=d.num_basis,
                   help=f"basis functions N for --method hard/moe ({d.num_basis})")
    p.add_argument("--num-points", type=int, default=d.num_points,
                   help=f"collocation points m for --method hard/moe ({d.num_points}; paper "
                   "20000)")
    p.add_argument("--experts", type=str, default="x".join(map(str, d.experts)),
                   help="--method moe: experts K_t x K_x along t and x (default "
                   f"{d.experts[0]}x{d.experts[1]}, the paper's 4 along x; measured best at "
                   "laptop scale: --experts 1x2 --overlap 0.9 --boundary-rows touching, see "
                   "docs/constraints.md)")
    p.add_argument("--overlap", type=float, default=d.overlap,
                   help="--method moe: width of the smooth blending band at expert seams as a "
                   f"fraction of an expert's width, in [0, 1) (default {d.overlap}: block-wise)")
    p.add_argument("--assignment", choices=["spatial", "random"], default=d.assignment,
                   help="--method moe: spatial blocks or a random point-to-expert assignment "
                   f"(ablation) (default {d.assignment})")
    p.add_argument("--boundary-rows", choices=["all", "touching"], default=d.boundary_rows,
                   help="--method moe: IC/BC rows for every expert or only the experts they "
                   f"touch (default {d.boundary_rows})")
    p.add_argument("--points-mode", choices=["per_expert", "total"], default=d.points_mode,
                   help="--method moe: --num-points per expert or in total over the experts "
                   f"(default {d.points_mode})")
    p.add_argument("--t-train", type=float, default=d.t_train,
                   help="extrapolation: impose the PDE only for t <= T_TRAIN (training and the "
                   "constraint layers) and report the test error on t > T_TRAIN separately "
                   f"(the paper: 400 of t_max {d.t_max:g}; default: the whole interval)")
    p.add_argument("--width", type=int, default=d.width, help=f"FNO width ({d.width}; paper 64)")
    p.add_argument("--modes", type=int, default=d.modes, help=f"FNO modes ({d.modes})")
    p.add_argument("--layers", type=int, default=d.layers, help=f"FNO layers ({d.layers}; paper 5)")
    p.add_argument("--max-lm-steps", type=int, default=d.max_lm_steps,
                   help=f"Levenberg-Marquardt iteration cap ({d.max_lm_steps})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"model/training seed ({d.seed})")
    p.add_argument("--data-seed", type=int, default=d.data_seed,
                   help=f"seed of the training data; test data uses seed+1 ({d.data_seed})")
    p.add_argument("--cache-dir", type=str, default=None,
                   help="dataset cache (default $PDEML_CACHE_DIR or ~/.cache/pdeml)")


def config_from_args(args: argparse.Namespace):
    from pdeml.experiments import ExperimentConfig

    try:
        return ExperimentConfig(
            method=args.method, nx=args.nx, nt=args.nt, train_samples=args.train_samples,
            test_samples=args.test_samples, steps=args.steps, batch_size=args.batch_size,
            learning_rate=args.lr, num_basis=args.num_basis, num_points=args.num_points,
            width=args.width, modes=args.modes, layers=args.layers,
            max_lm_steps=args.max_lm_steps, seed=args.seed, data_seed=args.data_seed,
            cache_dir=args.cache_dir, experts=args.experts, overlap=args.overlap,
            assignment=args.assignment, boundary_rows=args.boundary_rows,
            points_mode=args.points_mode, t_train=args.t_train,
        )
    except ValueError as e:
        raise CLIError(str(e)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model")
    problems = p.add_subparsers(dest="problem", metavar="PROBLEM")
    problems.required = True
    ds = problems.add_parser(
        "diffusion-sorption",
        help="1D diffusion-sorption (PDEBench), soft vs hard vs mixture-of-experts constraint",
        description="Data-free physics-loss training of an FNO on diffusion-sorption with a "
        "soft (residual loss), hard (least-squares layer) or mixture-of-experts hard "
        "constraint (one least-squares layer per subdomain); evaluates the test "
        "relative L2 error against our reference solver and writes results.json.",
    )
    add_experiment_arguments(ds)
    ds.add_argument("--out", "--run-dir", dest="run_dir", type=Path, required=True,
                    help="run directory for checkpoints, metrics.jsonl and results.json "
                    "(--run-dir is the older spelling)")
    ds.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(ds, "results.json")
    add_precision(ds, "float64", "the dense Gauss-Newton solves square the condition number")
    ds.set_defaults(func=run)

    from pdeml.experiments.navier_stokes import add_train_parser as add_navier_stokes

    add_navier_stokes(problems)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    writable_dir(args.run_dir, "--out")
    from pdeml.experiments import run_experiment

    try:
        results = run_experiment(config, args.run_dir, progress=not args.no_progress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    t = results["test"]
    line = (f"{config.method}: test relative L2 = {100 * t['rel_l2_mean']:.2f}% "
            f"+/- {100 * t['rel_l2_std']:.2f}% over {len(t['rel_l2_per_sample'])} test ICs")
    if "lm_converged_fraction" in t:
        line += (f"; LM converged {100 * t['lm_converged_fraction']:.0f}%, "
                 f"{t['lm_iterations_mean']:.1f} iterations on average")
    print(line)
    if "extrapolation" in t:
        print(f"  t <= {config.t_train:g} (trained window): "
              f"{100 * t['train_window']['rel_l2_mean']:.2f}%; t > {config.t_train:g} "
              f"(extrapolation): {100 * t['extrapolation']['rel_l2_mean']:.2f}% "
              f"+/- {100 * t['extrapolation']['rel_l2_std']:.2f}%")
    if "lm_iterations_per_expert" in t:
        per = ", ".join(f"{v:.1f}" for v in t["lm_iterations_per_expert"])
        print(f"experts {config.experts[0]}x{config.experts[1]} (K_t x K_x): mean LM iterations "
              f"per expert [{per}]")
    print(f"results: {args.run_dir / 'results.json'}  ({dataclasses.asdict(config)['steps']} steps, "
          f"{results['seconds']['train']:.1f} s training)")
    return 0
