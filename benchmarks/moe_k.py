"""Test error of the mixture of experts against the number of experts K, with and without
Schwarz coupling, at equal total points and at equal points per expert.

    nice -n 19 python benchmarks/moe_k.py --pde diffusion-sorption --out benchmarks/results/moe_k
    python benchmarks/moe_k.py --quick --out /tmp/moe_k_quick                (smoke test)

Every row trains one model with :func:`pdeml.experiments.run_experiment` (the benchmark
settings of ``benchmarks/moe.py`` for diffusion-sorption and ``benchmarks/navier_stokes.py``
for Navier-Stokes; only the experts, the points and ``sweeps`` change) and evaluates it on the
test initial conditions (data seed 1) and on validation initial conditions (data seed 2, never
used for training or testing).

Two phases, one run:

* **selection** (``--select-sweeps``, model seed 0, equal total points): for every K > 1 and
  every candidate number of Schwarz rounds S, the validation error. The S of the table rows
  is the candidate with the lowest validation error at that K (the test set plays no part).
* **table**: for every K, points mode (``total``: m in total, ``per_expert``: m_e per expert)
  and seed: the independent experts (S = 0, the published mixture) and the coupled ones
  (the selected S; two-level: the rounds start from the coarse global solve, see
  :class:`pdeml.constraints.MoEHardConstraint`).

The experts split space only (diffusion-sorption: 1 x K along x; Navier-Stokes: K = 4 is
2 x 2 and K = 16 is 4 x 4 in space), overlap and IC/BC rows as in the benchmark's main MoE
row. Every row keeps its run directory under ``--runs`` (default ``--out/runs``; resumable). Writes
``moe_k.json``, ``moe_k.md`` and ``moe_k.png`` after every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    RUN_ENV,
    env,
    md_table,
    pyplot,
    read_json,
    savefig,
    write_json,
    write_text,
)

DEFAULT_OUT = os.path.join("benchmarks", "results", "moe_k")

#: Per PDE: the base settings (those of its benchmark), the expert grids for each K (time
#: first), the experts' overlap and IC/BC rows, m in total and m per expert.
SETUPS = {
    "diffusion-sorption": dict(
        base=dict(steps=100),
        experts={1: (1, 1), 2: (1, 2), 4: (1, 4), 8: (1, 8)},
        moe=dict(overlap=0.9, boundary_rows="touching"),
        total=1000, per_expert=250, validation=16),
    "navier-stokes": dict(
        # benchmarks/navier_stokes.py's settings with 300 instead of 600 steps (the table
        # needs ~20 runs on a 2-core CPU) and no finer-grid test.
        base=dict(steps=300, train_samples=128, test_samples=16, tendency_input=True,
                  output="increment", test_refine=1),
        experts={1: (1, 1, 1), 4: (1, 2, 2), 16: (1, 4, 4)},
        moe=dict(overlap=0.5, boundary_rows="all"),
        total=2000, per_expert=500, validation=8),
}
QUICK = {
    "diffusion-sorption": dict(nx=16, nt=8, train_samples=4, test_samples=2, steps=2,
                               batch_size=2, num_basis=4, width=4, modes=2, layers=1, padding=2,
                               max_lm_steps=5),
}


def parse_variant(token: str) -> tuple[int, bool]:
    """``"4"`` -> 4 one-level rounds; ``"4c"`` -> 4 two-level rounds (after the coarse solve)."""
    token = str(token).strip()
    coarse = token.endswith("c")
    sweeps = int(token[:-1] if coarse else token)
    if sweeps < 0 or (coarse and sweeps == 0):
        raise ValueError(f"bad Schwarz variant {token!r}: use S >= 0 or Sc with S >= 1")
    return sweeps, coarse or sweeps == 0  # (S = 0: the option's default, unused)


def variant_label(sweeps: int, coarse: bool) -> str:
    return "0 (independent)" if sweeps == 0 else f"{sweeps} ({'two' if coarse else 'one'}-level)"


def config_for(pde, k, mode, seed, variant, args):
    from pdeml.experiments import REGISTRY

    setup = SETUPS[pde]
    base = dict(setup["base"], **(QUICK.get(pde, {}) if args.quick else {}))
    if args.steps:
        base["steps"] = args.steps
    m = setup[mode] if not args.quick else (40 if mode == "total" else 10)
    sweeps, coarse = parse_variant(variant)
    return REGISTRY[pde](method="moe", experts=setup["experts"][k], points_mode=mode,
                         num_points=m, seed=seed, sweeps=sweeps, coarse=coarse, **setup["moe"],
                         **base)


def run_row(config, run_dir, n_val):
    """``{test, validation, iterations, converged, seconds}`` of one trained row.

    A finished row is read back from ``run_dir/moe_k_row.json`` (checked against the
    configuration) instead of being evaluated again: every evaluation compiles, and one
    process that compiles hundreds of programs runs out of JIT code memory."""
    import jax
    import jax.numpy as jnp

    from pdeml.experiments import evaluate_run, load_run, run_experiment
    from pdeml.experiments.config import config_dict

    cached = Path(run_dir) / "moe_k_row.json"
    if cached.exists():
        row = read_json(cached)
        if row.get("config") == config_dict(config) and row.get("validation_ics") == n_val:
            return row["result"]
    t0 = time.perf_counter()
    res = run_experiment(config, run_dir, progress=False)
    _, model, _ = load_run(run_dir)
    val = config.dataset(num_samples=n_val, seed=config.data_seed + 2,
                         dtype=jnp.result_type(float))
    val_metrics, _ = evaluate_run(config, model, val)
    test = res["test"]
    out = {"test": test["rel_l2_mean"], "test_std": test["rel_l2_std"],
            "validation": val_metrics["rel_l2_mean"],
            "converged": test.get("lm_converged_fraction"),
            "iterations": test.get("lm_iterations_mean"),
            "train_s": _train_seconds(Path(run_dir), res), "seconds": time.perf_counter() - t0}
    write_json(cached, {"config": config_dict(config), "validation_ics": n_val, "result": out})
    jax.clear_caches()
    return out


def _train_seconds(run_dir: Path, res: dict) -> float:
    """The training wall time from the run's metrics (a resumed run's own call is ~0 s)."""
    import json

    walls = [json.loads(line).get("wall_time") for line in
             (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    walls = [w for w in walls if w is not None]
    return float(walls[-1]) if walls else float(res["seconds"]["train"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pde", choices=sorted(SETUPS), default="diffusion-sorption")
    p.add_argument("--experts", default=None, help="comma-separated K (default: the PDE's)")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--modes", default="total,per_expert")
    p.add_argument("--select-sweeps", default="0,2,4,8,1c,2c,4c,8c",
                   help="candidate Schwarz variants, chosen per K on validation ICs: S = S "
                   "one-level rounds, Sc = S two-level rounds (after the coarse solve)")
    p.add_argument("--steps", type=int, default=None, help="override the benchmark's steps")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--runs", default=None, help="run directories (default: --out/runs)")
    args = p.parse_args(argv)
    if args.quick and args.pde != "diffusion-sorption":
        p.error("--quick exists for diffusion-sorption only")
    import jax

    jax.config.update("jax_enable_x64", True)
    setup = SETUPS[args.pde]
    if args.steps:
        setup = dict(setup, base=dict(setup["base"], steps=args.steps))
    ks = [int(k) for k in args.experts.split(",")] if args.experts else list(setup["experts"])
    bad = [k for k in ks if k not in setup["experts"]]
    if bad:
        p.error(f"--experts: K {bad} not available for {args.pde} ({list(setup['experts'])})")
    seeds = [int(s) for s in args.seeds.split(",")]
    modes = args.modes.split(",")
    candidates = args.select_sweeps.split(",")
    for c in candidates:
        try:
            parse_variant(c)
        except ValueError as e:
            p.error(f"--select-sweeps: {e}")
    out = Path(args.out)
    runs = Path(args.runs) if args.runs else out / "runs"
    t_start = time.perf_counter()
    record = {"benchmark": "moe_k", "pde": args.pde, "argv": sys.argv[1:] if argv is None
              else list(argv), "environment": env(*RUN_ENV), "setup": {
                  k: v if not isinstance(v, dict) else {str(a): b for a, b in v.items()}
                  for k, v in setup.items()},
              "selection": [], "rows": []}

    def row(k, mode, seed, variant):
        cfg = config_for(args.pde, k, mode, seed, variant, args)
        name = f"K{k}_{mode}_s{seed}_S{variant}"
        print(f"[moe_k] {args.pde} {name}", flush=True)
        r = run_row(cfg, runs / name, setup["validation"] if not args.quick else 2)
        config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        return {"K": k, "mode": mode, "seed": seed, "variant": str(variant),
                "sweeps": cfg.sweeps, "coarse": cfg.coarse,
                "experts": list(cfg.experts), "points_per_expert": cfg.num_points // k
                if mode == "total" else cfg.num_points, **r,
                "config": {a: (list(b) if isinstance(b, tuple) else b) for a, b in config.items()}}

    # Selection: S per K on the validation ICs (seed 0, equal total points).
    chosen = {1: "0"}
    for k in ks:
        if k == 1:
            continue
        sel = [row(k, "total", 0, s) for s in candidates]
        record["selection"].extend(sel)
        chosen[k] = min(sel, key=lambda r: r["validation"])["variant"]
        record["chosen_sweeps"] = {str(a): b for a, b in chosen.items()}
        write_outputs(out, record, time.perf_counter() - t_start)
    # The table.
    done = {(r["K"], r["mode"], r["seed"], r["variant"]): r for r in record["selection"]}
    for seed in seeds:
        for mode in modes:
            for k in ks:
                for s in sorted({"0", chosen[k]}):
                    key = (k, mode, seed, s)
                    r = done.get(key) or row(*key)
                    done[key] = r
                    record["rows"].append(r)
                    write_outputs(out, record, time.perf_counter() - t_start)
    write_outputs(out, record, time.perf_counter() - t_start, final=True)


def _fmt(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def write_outputs(out: Path, record: dict, seconds: float, final: bool = False) -> None:
    record = dict(record, total_seconds=seconds, complete=final)
    write_json(out / "moe_k.json", record)
    lines = [f"# Mixture of experts against K ({record['pde']}, `benchmarks/moe_k.py`)", ""]
    if not final:
        lines += ["**Partial results** (the run was interrupted or is still going).", ""]
    s = record["setup"]
    lines += [f"Experts along space (K: {s['experts']}), overlap {s['moe']['overlap']}, "
              f"{s['moe']['boundary_rows']} IC/BC rows; points: {s['total']} in total "
              f"(`total`) or {s['per_expert']} per expert (`per_expert`); "
              f"S = Schwarz rounds after the coarse global solve (two-level; 0: independent "
              f"experts, the published mixture). Settings: {s['base']}. "
              f"{record['environment']}; {seconds:.0f} s in all.", ""]
    if record["selection"]:
        lines += ["## Selection of S on validation ICs (seed 0, equal total points)", ""]
        lines += md_table(["K", "S", "validation rel. L2", "test rel. L2 (not used)",
                           "train s"],
                          [[r["K"], variant_label(r["sweeps"], r["coarse"]),
                            _fmt(r["validation"]), _fmt(r["test"]),
                            f"{r['train_s']:.0f}"] for r in record["selection"]])
        lines += ["", f"Chosen: {record.get('chosen_sweeps')}", ""]
    if record["rows"]:
        lines += ["## Test error against K", ""]
        by = {}
        for r in record["rows"]:
            by.setdefault((r["mode"], r["K"], r["variant"]), []).append(r)
        table = []
        for (mode, k, sw), rs in sorted(by.items()):
            tests = [r["test"] for r in rs]
            table.append([mode, k, variant_label(rs[0]["sweeps"], rs[0]["coarse"]),
                          rs[0]["points_per_expert"],
                          ", ".join(f"s{r['seed']} {_fmt(r['test'])}" for r in rs),
                          _fmt(float(np.mean(tests))),
                          _fmt(float(np.mean([r["validation"] for r in rs]))),
                          ", ".join(f"{r['converged']:.2f}" if r["converged"] is not None
                                    else "-" for r in rs),
                          f"{np.mean([r['train_s'] for r in rs]):.0f}"])
        lines += md_table(["points", "K", "S", "points per expert", "test rel. L2 per seed",
                           "mean", "validation mean", "LM converged", "train s"], table)
    write_text(out / "moe_k.md", "\n".join(lines) + "\n")
    if record["rows"]:
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
        for ax, mode in zip(axes, ("total", "per_expert")):
            for sw_kind, style in (("independent", "o--"), ("Schwarz", "s-")):
                pts = {}
                for r in record["rows"]:
                    if r["mode"] == mode and (
                            (r["sweeps"] == 0) == (sw_kind == "independent") or r["K"] == 1):
                        pts.setdefault(r["K"], []).append(r["test"])
                if pts:
                    ks = sorted(pts)
                    ax.plot(ks, [100 * np.mean(pts[k]) for k in ks], style, label=sw_kind)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("experts K")
            ax.set_title(f"{mode.replace('_', ' ')} points")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test rel. L2 (%)")
        axes[0].legend()
        fig.suptitle(record["pde"])
        savefig(fig, out / "moe_k.png", dpi=120)


if __name__ == "__main__":
    main()
