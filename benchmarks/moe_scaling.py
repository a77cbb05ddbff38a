"""Step time of one hard constraint (PI-HC) vs a mixture of experts (PI-HC-MoE), and vs devices.

Issue 3 / METHODS.md section 1 (the paper's scaling figure). Two parts, one run:

* ``points``: DiffusionSorption on the paper grid 1024 x 101; for a total of m sampled points
  (1e2 ... 1e5), PI-HC solves one problem with m points and PI-HC-MoE (K = 4 experts along x,
  the published router) solves 4 problems with m / 4 points each (equal total points). Times:
  ``inference`` = the layer's forward (solve + field), ``training`` = forward + backward
  (``value_and_grad`` of ``mean(u**2)`` w.r.t. the basis through the implicit adjoint; the
  network upstream costs the same for both and is left out). Both use
  ``LevenbergMarquardt(max_steps=--iterations)`` with ``throw=False``: the fixed small
  iteration count mode, so the figure compares the cost per step of the two layers, not how
  many iterations a particular basis needs (iterations done are recorded). Memory: XLA's
  compiled memory analysis (argument + output + temp - alias) per function.
* ``devices``: :class:`pdeml.parallel.ShardedMoE` with K = 8 experts and m = --device-points
  per expert, batch 2, on D = 1, 2, 4, 8 devices (one subprocess per D with
  ``--xla_force_host_platform_device_count=D`` on CPU; the real devices on a GPU machine).
  Faked CPU devices share the machine's cores, so on a 2-core laptop this measures the
  overhead of sharding, not a speed-up; on several GPUs it is the expert-parallel speed-up.

* ``experts``: the mixture against K in {1, 2, 4, 8, 16} at equal total points
  (``--experts-points``, default 2e4) on the same grid and basis, experts vmapped on one device,
  independent (S = 0) and with 4 two-level Schwarz rounds (overlap 0.9, touching rows); times
  and ratios to K = 1.

``--parts`` runs a subset and keeps the other parts of an existing ``moe_scaling.json``.

Measured figures: docs/constraints.md (*Cost*).

The basis is the one of ``benchmarks/constraint_layer.py`` (reference solution + Legendre
fields, orthonormalised and mixed), a stand-in for a trained network's output. Every time is
the median of ``--repeats`` calls after compilation, and is also given as a ratio to the
baseline in the same run (MoE / HC; D devices / 1 device).

Writes ``moe_scaling.json`` and ``moe_scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env, pyplot, read_json, savefig, time_function, write_json  # noqa: E402

DEFAULT_OUT = os.path.join("benchmarks", "results", "moe_scaling")
FULL_POINTS = (100, 1000, 10000, 100000)
QUICK_POINTS = (100, 1000)
DEVICE_COUNTS = (1, 2, 4, 8)


def _timed(fn, args, repeats):
    """``({median_s, times_s, memory}, outputs)`` of ``repeats`` compiled calls after one."""
    rec = time_function(fn, args, repeats, max_seconds=1e12)
    return {k: rec[k] for k in ("median_s", "times_s", "memory")}, rec["outputs"]


def points_part(m_values, repeats, iterations, nx=1024, nt=101, n=16):
    import jax
    import jax.numpy as jnp

    from constraint_layer import make_basis, make_setup
    from pdeml.constraints import HardConstraint, MoEHardConstraint, Partition
    from pdeml.core import LevenbergMarquardt

    setup = make_setup(nx, nt)
    basis, _ = make_basis(setup, n)
    solver = LevenbergMarquardt(max_steps=iterations)
    part = Partition.uniform(setup.problem.grid_shape, (4, 1))
    records = []
    for m in m_values:
        layers = {
            "hc": HardConstraint(setup.problem, num_points=m, solver=solver, throw=False),
            "moe": MoEHardConstraint(setup.problem, part, num_points=m, points="total",
                                     solver=solver, throw=False),
        }
        rec = {"m_total": m, "results": {}}
        for name, layer in layers.items():
            def infer(b, d, key, layer=layer):
                u, info = layer(b, d, key=key)
                return u, info.stats.iterations

            def train(b, d, key, layer=layer):
                def loss(b):
                    u, info = layer(b, d, key=key)
                    return jnp.mean(u**2), info.stats.iterations
                (val, its), g = jax.value_and_grad(loss, has_aux=True)(b)
                return val, its, g

            args = (basis, setup.data, jax.random.key(m))
            r_inf, out_inf = _timed(infer, args, repeats)
            r_tr, _ = _timed(train, args, repeats)
            rec["results"][name] = {
                "inference": r_inf, "training": r_tr,
                "iterations": np.asarray(out_inf[1]).tolist(),
                "points_per_solve": m if name == "hc" else m // 4,
            }
            print(f"  m={m:>6} {name:>3}: inference {r_inf['median_s']:.4f} s, "
                  f"training {r_tr['median_s']:.4f} s, iterations {rec['results'][name]['iterations']}",
                  flush=True)
        rec["ratio_moe_over_hc"] = {
            md: rec["results"]["moe"][md]["median_s"] / rec["results"]["hc"][md]["median_s"]
            for md in ("inference", "training")}
        records.append(rec)
    return records


def experts_part(k_values, sweeps_values, m_total, repeats, iterations, nx=1024, nt=101, n=16):
    """Step time of the mixture against K at equal total points, experts vmapped on one device,
    without (S = 0) and with Schwarz rounds (S > 0; every round costs K more solves)."""
    import jax
    import jax.numpy as jnp

    from constraint_layer import make_basis, make_setup
    from pdeml.constraints import MoEHardConstraint, Partition
    from pdeml.core import LevenbergMarquardt

    setup = make_setup(nx, nt)
    basis, _ = make_basis(setup, n)
    solver = LevenbergMarquardt(max_steps=iterations)
    records = []
    for k in k_values:
        for sweeps in sweeps_values if k > 1 else (0,):
            part = Partition.uniform(setup.problem.grid_shape, (k, 1), overlap=0.9 if k > 1 else 0.0,
                                     boundary_rows="touching")
            layer = MoEHardConstraint(setup.problem, part, num_points=m_total, points="total",
                                      solver=solver, throw=False, sweeps=sweeps, coarse=True)

            def infer(b, d, key, layer=layer):
                return layer(b, d, key=key)[0]

            def train(b, d, key, layer=layer):
                return jax.value_and_grad(lambda b: jnp.mean(layer(b, d, key=key)[0] ** 2))(b)

            args = (basis, setup.data, jax.random.key(k))
            r_inf, _ = _timed(infer, args, repeats)
            r_tr, _ = _timed(train, args, repeats)
            records.append({"K": k, "sweeps": sweeps, "points_per_expert": m_total // k,
                            "inference": r_inf, "training": r_tr})
            print(f"  K={k:>2} S={sweeps}: inference {r_inf['median_s']:.4f} s, training "
                  f"{r_tr['median_s']:.4f} s", flush=True)
    base = records[0]
    for rec in records:
        rec["ratio_to_k1"] = {md: rec[md]["median_s"] / base[md]["median_s"]
                              for md in ("inference", "training")}
    return records


def device_worker(devices: int, m: int, repeats: int, iterations: int) -> dict:
    """One device count (run in a subprocess whose XLA_FLAGS set the device count)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from constraint_layer import make_basis, make_setup
    from pdeml.constraints import MoEHardConstraint, Partition
    from pdeml.core import LevenbergMarquardt
    from pdeml.parallel import ShardedMoE, expert_mesh

    if len(jax.devices()) < devices:
        raise SystemExit(f"asked for {devices} devices, JAX sees {len(jax.devices())}")
    setup = make_setup(512, 51)
    basis, _ = make_basis(setup, 16)
    layer = MoEHardConstraint(setup.problem, Partition.uniform(setup.problem.grid_shape, (8, 1)),
                              num_points=m, solver=LevenbergMarquardt(max_steps=iterations),
                              throw=False)
    sharded = ShardedMoE(layer, expert_mesh(devices, devices=jax.devices()[:devices]))
    b = jnp.stack([basis, basis[..., ::-1]])
    d = jnp.stack([setup.data, setup.data])

    def infer(b, d, key):
        return sharded(b, d, key=key)[0]

    def train(b, d, key):
        return jax.value_and_grad(lambda b: jnp.mean(sharded(b, d, key=key)[0] ** 2))(b)

    args = (b, d, jax.random.key(0))
    r_inf, _ = _timed(infer, args, repeats)
    r_tr, _ = _timed(train, args, repeats)
    return {"devices": devices, "device_kind": jax.devices()[0].device_kind,
            "platform": jax.devices()[0].platform, "inference": r_inf, "training": r_tr}


def devices_part(counts, m, repeats, iterations):
    records = []
    here = os.path.dirname(os.path.abspath(__file__))
    for dcount in counts:
        env = dict(os.environ)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={dcount}").strip()
        cmd = [sys.executable, os.path.abspath(__file__), "--device-worker", str(dcount),
               "--device-points", str(m), "--repeats", str(repeats),
               "--iterations", str(iterations)]
        proc = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"device worker D={dcount} failed:\n{proc.stderr[-3000:]}")
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  D={dcount}: inference {rec['inference']['median_s']:.4f} s, training "
              f"{rec['training']['median_s']:.4f} s ({rec['platform']})", flush=True)
        records.append(rec)
    base = records[0]
    for rec in records:
        rec["ratio_to_1_device"] = {md: rec[md]["median_s"] / base[md]["median_s"]
                                    for md in ("inference", "training")}
    return records


def plot(result, path):
    try:
        plt = pyplot()
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'pdeml[plot]')")
        return
    exp = result.get("experts") or []
    fig, axes = plt.subplots(1, 3 if exp else 2, figsize=(16 if exp else 11, 4))
    pts, dev, modes = result["points"], result["devices"], (("inference", "C0"), ("training", "C1"))
    for name, style in (("hc", "o-"), ("moe", "s--")):
        for md, color in modes:
            axes[0].loglog([r["m_total"] for r in pts],
                           [r["results"][name][md]["median_s"] for r in pts], style, color=color,
                           label=f"{'PI-HC' if name == 'hc' else 'PI-HC-MoE (K=4)'} {md}")
    axes[0].set(xlabel="total sampled points m", ylabel="median time per call [s]",
                title=f"DiffusionSorption 1024x101, N=16, {result['config']['iterations']} LM steps")
    axes[0].grid(True, which="both", alpha=0.3)
    if dev:
        for md, color in modes:
            axes[1].plot([r["devices"] for r in dev], [r[md]["median_s"] for r in dev], "o-",
                         color=color, label=md)
        axes[1].set_xscale("log", base=2)
        axes[1].set(xlabel=f"devices ({dev[0]['platform']})", ylabel="median time per call [s]",
                    title=f"ShardedMoE, K=8, batch 2, {result['config']['device_points']} pts/expert")
        axes[1].grid(True, alpha=0.3)
    if exp:
        for sweeps, style in ((0, "o-"), (4, "s--")):
            rows = [r for r in exp if r["sweeps"] == sweeps or r["K"] == 1]
            for md, color in modes:
                axes[2].plot([r["K"] for r in rows], [r[md]["median_s"] for r in rows], style,
                             color=color, label=f"S={sweeps} {md}")
        axes[2].set_xscale("log", base=2)
        axes[2].set(xlabel="experts K (vmapped, one device)", ylabel="median time per call [s]",
                    title=f"MoE at {exp[0]['points_per_expert']} points in total")
        axes[2].grid(True, alpha=0.3)
    for ax in axes[: 1 + bool(dev)] if not exp else [axes[0], axes[2]] + ([axes[1]] if dev else []):
        ax.legend(fontsize=8)
    savefig(fig, path, 110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="m in {1e2, 1e3} and D in {1, 2}")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=10,
                    help="Levenberg-Marquardt steps per solve (fixed small count, default 10)")
    ap.add_argument("--device-points", type=int, default=2000,
                    help="points per expert in the device part (default 2000)")
    ap.add_argument("--device-worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--parts", default="points,devices,experts",
                    help="parts to run; the others are kept from an existing moe_scaling.json")
    ap.add_argument("--experts-points", type=int, default=20000,
                    help="total points in the experts part (default 20000)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.iterations < 1 or args.device_points < 1:
        ap.error("--repeats, --iterations and --device-points must be >= 1")
    if args.device_worker is not None:
        print(json.dumps(device_worker(args.device_worker, args.device_points, args.repeats,
                                       args.iterations)))
        return 0
    import jax

    jax.config.update("jax_enable_x64", True)  # a benchmark script: its choice, not the library's
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    m_values = QUICK_POINTS if args.quick else FULL_POINTS
    counts = DEVICE_COUNTS[:2] if args.quick else DEVICE_COUNTS
    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    if gpus:
        counts = tuple(c for c in counts if c <= len(gpus))
    parts = args.parts.split(",")
    path = os.path.join(args.out, "moe_scaling.json")
    old = read_json(path) if os.path.exists(path) and set(parts) != {"points", "devices",
                                                                     "experts"} else {}
    pts, dev, exp = old.get("points"), old.get("devices"), old.get("experts")
    if "points" in parts:
        print("points part (HC vs MoE, equal total points)", flush=True)
        pts = points_part(m_values, args.repeats, args.iterations)
    if "devices" in parts:
        print("devices part (ShardedMoE)", flush=True)
        dev = devices_part(counts, args.device_points, args.repeats, args.iterations)
    if "experts" in parts:
        print("experts part (MoE against K, with and without Schwarz rounds)", flush=True)
        exp = experts_part((1, 2) if args.quick else (1, 2, 4, 8, 16), (0, 4),
                           1000 if args.quick else args.experts_points, args.repeats,
                           args.iterations)
    result = {
        "benchmark": "moe_scaling",
        "config": {"iterations": args.iterations, "repeats": args.repeats,
                   "device_points": args.device_points, "quick": args.quick,
                   "dtype": "float64", "points_problem": "DiffusionSorption 1024 x 101, N = 16, "
                   "MoE = Partition.uniform((1024, 101), (4, 1)), points='total'",
                   "devices_problem": "DiffusionSorption 512 x 51, N = 16, K = 8 experts along x, "
                   "batch 2",
                   "experts_problem": "DiffusionSorption 1024 x 101, N = 16, K experts along x, "
                   "overlap 0.9, touching rows, points='total', S in {0, 4}"},
        "environment": env("python", "jax", "machine", "cpus", "backend",
                           load_average_end=list(os.getloadavg())),
        "points": pts,
        "devices": dev,
        "experts": exp,
        "parts_run": parts,
        "total_seconds": time.perf_counter() - t0,
    }
    write_json(path, result)
    plot(result, os.path.join(args.out, "moe_scaling.png"))
    print(f"wrote {path} ({result['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
