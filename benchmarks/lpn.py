"""Benchmark: LPN training throughput and regulariser evaluation (our inversion vs fixed Adam).

In one run, for a dense 1D LPN (the Laplace experiment's model, 601 points) and a
convolutional image LPN (LFW faces 25x25 if scikit-image is installed, else random images):

1. training steps per second with :func:`pdeml.prox.train_lpn` (``lax.scan`` over
   ``steps_per_call`` steps; the first compiled call, which includes compilation, is excluded);
2. regulariser evaluation R(x) = <x, y> - psi(y) - ||x||^2/2 with y = f^{-1}(x):
   - ours: batched jitted Newton-CG (also with float32 Hessian-vector products,
     ``newton_cg_mixed``) and L-BFGS to ``||f(y) - x|| <= 1e-6`` (float64),
   - published: a fixed number (1000, 2000) of Adam steps from y = 0, lr 1e-2, on
     psi(y) - <x, y> (the LPN authors' ``invert`` runs Adam the same way),
   reporting wall time (ahead-of-time compiled, so no timed call includes compilation; median
   of ``--repeats`` runs for ours, one run for Adam), max residual, max |R - R_ref| against a
   tight reference solve, and the speed ratio Adam / ours. ``time_to_1e-5`` is the time of
   each method's run if its max residual is below 1e-5, else ``null`` (never reached);
   ``speedup_<ours>_vs_adam_<n>`` = Adam's run time / our time to 1e-5.

Models are trained in float32 (as one would) and cast to float64 for the evaluation.

Writes ``lpn.json`` and ``lpn.png`` under ``--out``.

Run:  python benchmarks/lpn.py --out benchmarks/results/prox
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # residuals of 1e-5 and below need float64

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import command, pyplot, savefig, timed_calls, write_json  # noqa: E402

from pdeml.data import sample_laplace  # noqa: E402
from pdeml.nets.icnn import ConvICNN, DenseICNN  # noqa: E402
from pdeml.prox import (  # noqa: E402
    LPN,
    Schedule,
    Stage,
    evaluate_regularizer,
    invert_adam,
    train_lpn,
)


def _compiled(fn, model, x):
    """``fn(model, x)`` compiled ahead of time (so no timed call includes compilation and no
    warm-up run is needed, which matters for the slow fixed-Adam baseline)."""
    params, static = eqx.partition(model, eqx.is_array)
    c = jax.jit(lambda p, v: fn(eqx.combine(p, static), v)).lower(params, x).compile()
    return lambda: c(params, x)


def _timed(fn, repeats):
    out, times = timed_calls(fn, max(1, repeats))
    return out, statistics.median(times)


def training_throughput(lpn, sampler, *, steps, steps_per_call, sigma, key):
    stamps = []
    schedule = Schedule((Stage("l1", steps, 1e-3),))
    res = train_lpn(lpn, sampler, schedule, key=key, sigma=sigma, steps_per_call=steps_per_call,
                    progress=False, callback=lambda step, model: stamps.append(time.perf_counter()),
                    log_every=steps_per_call)
    # first call = compile + run; throughput from the later calls only
    dt = stamps[-1] - stamps[0]
    return res.model, (len(stamps) - 1) * steps_per_call / dt


def _to64(model):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model)


OURS = {
    "newton_cg": {"method": "newton_cg"},
    "newton_cg_mixed": {"method": "newton_cg", "hvp_dtype": jnp.float32},
    "lbfgs": {"method": "lbfgs"},
}


def regularizer_benchmark(lpn, x, *, repeats, adam_steps=(1000, 2000), adam_repeats=1):
    ref_R, ref = evaluate_regularizer(lpn, x, atol=1e-12, rtol=1e-12, max_steps=500)
    rows = {}
    for name, opts in OURS.items():
        f = _compiled(lambda m, v, opts=opts: evaluate_regularizer(m, v, atol=1e-6, rtol=0.0, max_steps=500, **opts), lpn, x)
        (R, info), t = _timed(f, repeats)
        rows[name] = {
            "seconds": t,
            "max_residual": float(info.residual.max()),
            "all_converged": bool(info.converged.all()),
            "max_iterations": int(info.iterations.max()),
            "max_abs_R_error": float(jnp.max(jnp.abs(R - ref_R))),
        }
    axes = tuple(range(1, x.ndim))
    for steps in adam_steps:
        g = _compiled(lambda m, v, steps=steps: invert_adam(m.potential, v, steps=steps, learning_rate=1e-2), lpn, x)
        info, t = _timed(g, adam_repeats)
        R = jnp.sum(x * info.y, axis=axes) - lpn.psi(info.y) - 0.5 * jnp.sum(x * x, axis=axes)
        rows[f"adam_{steps}"] = {
            "seconds": t,
            "max_residual": float(info.residual.max()),
            "all_converged": bool(jnp.all(info.residual <= 1e-6)),
            "max_iterations": steps,
            "max_abs_R_error": float(jnp.max(jnp.abs(R - ref_R))),
        }
    for r in rows.values():
        r["time_to_1e-5"] = r["seconds"] if r["max_residual"] < 1e-5 else None
    # the criterion: our time to a residual below 1e-5 vs the fixed-Adam run's time
    # (Adam's own run never certifies 1e-5 on these models; see time_to_1e-5)
    for k in rows:
        if k.startswith("adam"):
            for ours in OURS:
                t = rows[ours]["time_to_1e-5"]
                rows[k][f"speedup_{ours}_vs_this"] = None if t is None else rows[k]["seconds"] / t
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description="LPN training and regulariser-evaluation benchmark")
    p.add_argument("--out", default="benchmarks/results/prox")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(0)
    spc = 50 if not args.quick else 5
    steps = args.train_steps if not args.quick else 15
    adam_steps = (1000, 2000) if not args.quick else (50,)
    report = {"device": str(jax.devices()[0]),
              "dtype": "training float32; regulariser evaluation float64 (parameters cast)",
              "command": command("lpn.py", argv),
              "cases": {}}

    # dense 1D: the Laplace experiment's architecture
    dense = LPN(DenseICNN(1, (50, 50, 50, 50), key=key, beta=10.0, alpha=0.01, dtype=jnp.float32))
    model, sps = training_throughput(dense, lambda k: sample_laplace(k, 2000, 1, dtype=jnp.float32),
                                     steps=steps, steps_per_call=spc, sigma=1.0, key=key)
    model = _to64(model)
    x = jnp.linspace(-3, 3, 601 if not args.quick else 21)[:, None]
    report["cases"]["dense_1d"] = {
        "model": "DenseICNN 1 -> 50x4, beta 10, alpha 0.01; batch 2000 (train), 601 points (R)",
        "train_steps_per_second": sps,
        "regularizer": regularizer_benchmark(model, x, repeats=args.repeats, adam_steps=adam_steps),
    }

    # convolutional image LPN
    try:
        from pdeml.data.images import load_image_dataset

        data = load_image_dataset("faces")
        train_imgs, test_imgs, source = jnp.asarray(data["train"], jnp.float32), jnp.asarray(data["test"], jnp.float64), "lfw faces 25x25"
    except ModuleNotFoundError:
        imgs = jax.random.uniform(key, (100, 1, 25, 25))
        train_imgs, test_imgs, source = imgs[:80].astype(jnp.float32), imgs[80:], "uniform random 25x25"
    channels = (16, 32, 32) if not args.quick else (4, 4, 4)
    conv = LPN(ConvICNN((1, 25, 25), channels, (1, 2, 2), key=key, beta=100.0, alpha=0.01, dtype=jnp.float32))
    sampler = lambda k: train_imgs[jax.random.randint(k, (32,), 0, train_imgs.shape[0])]  # noqa: E731
    model, sps = training_throughput(conv, sampler, steps=steps, steps_per_call=spc, sigma=0.1, key=key)
    model = _to64(model)
    noisy = test_imgs + 0.1 * jax.random.normal(jax.random.key(1), test_imgs.shape)
    report["cases"]["conv_faces"] = {
        "model": f"ConvICNN (1,25,25) channels {channels} strides (1,2,2), beta 100, alpha 0.01; "
                 f"batch 32 (train), {test_imgs.shape[0]} noisy test images (R); data: {source}",
        "train_steps_per_second": sps,
        "regularizer": regularizer_benchmark(model, noisy, repeats=args.repeats, adam_steps=adam_steps),
    }
    write_json(out / "lpn.json", report, indent=2)
    print(json.dumps(report, indent=1))
    try:
        _plot(report, out / "lpn.png")
    except ModuleNotFoundError:
        pass
    return report


def _plot(report, path):
    fig, axes = pyplot().subplots(1, len(report["cases"]), figsize=(5.5 * len(report["cases"]), 4))
    for ax, (name, case) in zip(np.atleast_1d(axes), report["cases"].items()):
        rows = case["regularizer"]
        for k, r in rows.items():
            ax.scatter(r["seconds"], max(r["max_residual"], 1e-16), s=50, label=k)
        ax.axhline(1e-5, color="k", ls="--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="wall time (s)", ylabel="max residual ||f(y) - x||",
               title=f"{name}: R evaluation")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    savefig(fig, path, 110)


if __name__ == "__main__":
    main()
