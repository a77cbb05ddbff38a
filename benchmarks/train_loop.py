"""Training-loop speed: one compiled ``lax.scan`` per chunk vs one compiled call per update.

``pdeml.train.train(scan=None)`` picks per-update calls on CPU and ``lax.scan`` elsewhere; this
measures why. Two workloads, the same updates in both modes (``steps`` updates after a warm-up
run that compiles both):

* ``conv_lpn``: the natural-image LPN prior of ``pdeml.inverse.recipes`` (hidden 32^3, batch 16
  of 16 x 16 patches, l2 loss; its gradient is a second derivative of the ICNN);
* ``mlp``: a 2 x 64 tanh MLP regression, batch 256 (dispatch-bound: tiny ops).

Reported: seconds per update in each mode and the ratio scan / per-update (> 1: per-update
calls are faster). Usage::

    python benchmarks/train_loop.py [--steps 300] [--out benchmarks/results/train_loop]

Writes ``train_loop.json`` and ``train_loop.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env, pyplot, savefig, write_json  # noqa: E402

from pdeml.inverse.recipes import TRAINING_NOISE, PriorRecipe, natural_training_patches  # noqa: E402
from pdeml.prox import Schedule, Stage, train_lpn  # noqa: E402
from pdeml.train import train  # noqa: E402


def conv_lpn_run(steps):
    recipe = PriorRecipe()  # the benchmark's full-size natural-image LPN
    patches = natural_training_patches(recipe.patch)
    sigma = TRAINING_NOISE["natural"]
    lpn = recipe.skeleton(patches, sigma)
    sampler = recipe.sampler(patches)
    schedule = Schedule((Stage("l2", steps, recipe.l2_lr),))

    def run(scan):
        return train_lpn(lpn, sampler, schedule, key=jax.random.key(1), sigma=sigma,
                         steps_per_call=50, progress=False, scan=scan).model

    return run


def mlp_run(steps):
    model = eqx.nn.MLP(3, 1, 64, 2, activation=jnp.tanh, key=jax.random.key(0))

    def batch_fn(step, key):
        x = jax.random.normal(key, (256, 3))
        return x, jnp.sin(x.sum(axis=1, keepdims=True))

    def loss_fn(m, batch, key):
        x, y = batch
        return jnp.mean((jax.vmap(m)(x) - y) ** 2), {}

    def run(scan):
        return train(model, loss_fn, optax.adam(1e-3), batch_fn, steps=steps,
                     key=jax.random.key(1), steps_per_call=50, progress=False, scan=scan).model

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="benchmarks/results/train_loop")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {**env("backend", "devices"), "machine": env("platform")["platform"],
               "jax": jax.__version__, "steps": args.steps, "workloads": {}}
    for name, make in (("conv_lpn", conv_lpn_run), ("mlp", mlp_run)):
        run = make(args.steps)
        rec = {}
        for scan in (True, False):
            jax.block_until_ready(run(scan))  # compile
            t0 = time.perf_counter()
            jax.block_until_ready(run(scan))
            rec["scan" if scan else "per_update"] = (time.perf_counter() - t0) / args.steps
        rec["ratio_scan_over_per_update"] = rec["scan"] / rec["per_update"]
        results["workloads"][name] = rec
        print(f"{name}: scan {1e3 * rec['scan']:.2f} ms/update, per-update "
              f"{1e3 * rec['per_update']:.2f} ms/update, ratio {rec['ratio_scan_over_per_update']:.2f}",
              flush=True)
    write_json(out / "train_loop.json", results, indent=2)
    names = list(results["workloads"])
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    xs = np.arange(len(names))
    for off, mode in ((-0.2, "scan"), (0.2, "per_update")):
        ax.bar(xs + off, [1e3 * results["workloads"][n][mode] for n in names], 0.4, label=mode)
    ax.set_xticks(xs, names)
    ax.set(ylabel="ms per update", yscale="log",
           title=f"train(): lax.scan vs per-update calls ({results['backend']})")
    ax.legend()
    savefig(fig, out / "train_loop.png", 120)
    return results


if __name__ == "__main__":
    main()
