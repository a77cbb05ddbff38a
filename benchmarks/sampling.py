"""Time per call of drawing the collocation points, before and after issue 14's sampling rule.

On DiffusionSorption(nx=1024, nt=101) (102,200 interior candidates), for m in 1e3, 2e4, 1e5:

* ``before_choice``: the old ``sample_points`` of HardConstraint, ``jax.random.choice(...,
  replace=False)`` (a random permutation: sorts of every candidate) and a gather;
* ``before_moe_top_k``: the old MoEHardConstraint rule on a one-expert partition,
  ``lax.top_k`` over default-dtype uniforms masked by membership;
* ``top_k_float32``: ``lax.top_k`` over float32 keys alone (XLA's CPU top_k is fast only for
  float32 and a small k; it selects the same set as the new rule);
* ``after_hard``: ``HardConstraint.select_points`` (``pdeml.constraints.sampling.uniform_subset``:
  the m largest of iid 30-bit keys, by top_k + a sort of the m indices for m <= c / 32, else by
  bisection for the m-th largest key, no sort);
* ``after_moe_k1``: ``MoEHardConstraint.select_points`` with one expert (the same points);
* ``before/after_moe_k4``: four experts along x, m / 4 points each.

Every time is the median over ``--repeats`` jitted calls with fresh keys, after compilation.
The record also says whether the new indices equal ``lax.top_k``'s set (exact) and whether the
one-expert mixture drew HardConstraint's points.

Usage::

    python benchmarks/sampling.py [--float32] [--repeats 30] [--out benchmarks/results/sampling]

Writes ``sampling.json`` (``sampling_float32.json`` with ``--float32``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env, write_json  # noqa: E402

DEFAULT_OUT = os.path.join("benchmarks", "results", "sampling")
POINTS = (1000, 20000, 100000)


def _median_ms(fn, key, repeats):
    import jax

    jax.block_until_ready(fn(key))  # compile
    times = []
    for i in range(repeats):
        k = jax.random.fold_in(key, i + 1)
        start = time.perf_counter()
        jax.block_until_ready(fn(k))
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def run(repeats: int = 30, nx: int = 1024, nt: int = 101, points=POINTS) -> dict:
    import jax
    import jax.numpy as jnp

    from pdeml.constraints import HardConstraint, MoEHardConstraint, Partition
    from pdeml.constraints.sampling import uniform_subset
    from pdeml.pde import DiffusionSorption

    prob = DiffusionSorption(nx=nx, nt=nt)
    interior = prob.interior_points()
    q = int(interior.shape[0])
    one = Partition.uniform(prob.grid_shape, (1, 1))
    four = Partition.uniform(prob.grid_shape, (4, 1))
    key = jax.random.key(0)
    out = {"grid": [nx, nt], "candidates": q, "x64": bool(jax.config.jax_enable_x64),
           "repeats": repeats, "unit": "ms per call (median)", "cases": []}
    for m in points:
        m = min(int(m), q)

        def before_choice(k, m=m):
            return jnp.take(interior, jax.random.choice(k, q, (m,), replace=False), axis=0)

        def old_rule(k, mask, m):  # the old MoEHardConstraint.select_points
            u = jax.random.uniform(k, mask.shape)
            return interior[jax.lax.top_k(jnp.where(mask, u, -1.0), m)[1]]

        mask1 = one.member_mask_at(interior)
        mask4 = four.member_mask_at(interior)

        def top_k_float32(k, m=m):
            bits = jax.random.bits(k, (q,), jnp.uint32) >> 2
            keys = jax.lax.bitcast_convert_type(bits + jnp.uint32(0x00800000), jnp.float32)
            return interior[jax.lax.top_k(keys, m)[1]]

        hc = HardConstraint(prob, num_points=m)
        moe1 = MoEHardConstraint(prob, one, num_points=m)
        fns = {
            "before_choice": before_choice,
            "before_moe_top_k": lambda k, m=m: old_rule(k, mask1, m),
            "top_k_float32": top_k_float32,
            "after_hard": lambda k: hc.select_points(k),
            "after_moe_k1": lambda k: moe1.select_points(k),
        }
        m4 = m // 4
        if m4 <= min(four.counts_at(interior)):
            moe4 = MoEHardConstraint(prob, four, num_points=m, points="total")
            fns["before_moe_k4"] = lambda k, m4=m4: old_rule(k, mask4, m4)
            fns["after_moe_k4"] = lambda k: moe4.select_points(k)
        rec = {"m": m, "ms": {}}
        for name, fn in fns.items():
            rec["ms"][name] = _median_ms(jax.jit(fn), key, repeats)
            print(f"m={m:>6}  {name:<17} {rec['ms'][name]:8.2f} ms", flush=True)
        rec["speedup_after_hard_vs_choice"] = rec["ms"]["before_choice"] / rec["ms"]["after_hard"]
        # Exactness: the new rule picks lax.top_k's set over the same keys, and the one-expert
        # mixture draws HardConstraint's points.
        idx = uniform_subset(key, m, q)
        keys = (jax.random.bits(key, (q,), jnp.uint32) >> 2).astype(jnp.int32)
        rec["equals_top_k_set"] = bool(jnp.all(idx == jnp.sort(jax.lax.top_k(keys, m)[1])))
        rec["k1_equals_hard"] = bool(jnp.all(moe1.select_points(key)[0] == hc.select_points(key)))
        out["cases"].append(rec)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--float32", action="store_true", help="run with jax_enable_x64 off")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", not args.float32)
    result = run(repeats=args.repeats)
    result["machine"] = env("platform", "processor", "cpus", "jax", "backend")
    path = os.path.join(args.out, "sampling_float32.json" if args.float32 else "sampling.json")
    write_json(path, result)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
