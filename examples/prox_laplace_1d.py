"""The 1D Laplacian experiment of the LPN paper, with numbers.

x ~ Laplace(0, 1), y = x + v, v ~ N(0, 1) (sigma = 1). Each step draws 500 fresh y from a wider
proposal and 32 exact posterior draws x ~ p(x | y) per y
(:func:`pdeml.prox.laplace_posterior_sampler`: the same minimiser as prior samples, with data
in the tails; ``--sampler prior --batch 2000 --x-per-y 1`` draws prior samples instead). The MAP
denoiser is soft-thresholding at 1 and the log-prior is R*(x) = |x| (up to a constant). We
train the published model (1 -> 50 hidden, 4 hidden layers, softplus beta = 10) with

- an l2 loss   (learns the posterior mean E[x | y]: NOT soft-thresholding),
- an l1 loss   (learns the posterior median),
- proximal matching (l1 pre-training, then gamma = 0.5, 0.4, 0.3, 0.2, 0.1 as published and a
  final stage at gamma = 0.05, twice as long and averaged over its last 4000 steps; learning
  rate decaying geometrically 1e-3 -> 1e-4 over the proximal-matching stages:
  :func:`pdeml.prox.laplace_schedule`; see docs/prox.md for the measured alternatives),

and report on x in [-3, 3]: max |f - soft_threshold| and max |R - |x| - c| (c fitted by least
squares, i.e. the mean of R - |x|). It also trains proximal matching with both ways of keeping
the ICNN weights non-negative (``project`` vs ``softplus``) and reports which is better.

Writes ``laplace_1d.json``, ``laplace_1d_curves.npz`` and ``laplace_1d.png`` under ``--out``,
each atomically with a ``.sha256`` sidecar that records this run's options
(:func:`pdeml.core.io.write_protected`): rerunning the same command replaces them, a run with
other options (or a file pdeml did not write) is refused with an error naming the file.

Run:  python examples/prox_laplace_1d.py --out benchmarks/results/prox
Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 5.1 / Fig. 2.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdeml.core.io import check_overwrite, write_protected
from pdeml.data import sample_laplace
from pdeml.prox import laplace_posterior_sampler
from pdeml.nets.icnn import DenseICNN
from pdeml.prox import (
    LPN, Schedule, Stage, evaluate_regularizer, laplace_schedule, soft_threshold, train_lpn,
)


def _evaluate(lpn: LPN, n: int, dtype, atol) -> dict:
    x = jnp.linspace(-3.0, 3.0, n, dtype=dtype)[:, None]
    f = lpn.prox(x)[:, 0]
    st = soft_threshold(x[:, 0], 1.0)
    R, info = jax.jit(lambda m, v: evaluate_regularizer(m, v, max_steps=200, atol=atol, rtol=atol))(lpn, x)
    dev = R - jnp.abs(x[:, 0])
    c = jnp.mean(dev)  # least-squares constant
    ef, eR = jnp.abs(f - st), jnp.abs(dev - c)
    return {
        "max_abs_f_minus_soft_threshold": float(jnp.max(ef)),
        "max_abs_R_minus_absx_minus_c": float(jnp.max(eR)),
        "argmax_x_f_error": float(x[jnp.argmax(ef), 0]),
        "argmax_x_R_error": float(x[jnp.argmax(eR), 0]),
        "c": float(c),
        "inversion_dtype": str(jnp.dtype(dtype)),
        "inversion_all_converged": bool(info.converged.all()),
        "inversion_max_residual": float(info.residual.max()),
        "curves": {"x": np.asarray(x[:, 0]).tolist(), "f": np.asarray(f).tolist(),
                   "R_minus_c": np.asarray(R - c).tolist()},
    }


def evaluate(lpn: LPN, n: int = 601, exact: bool = True) -> dict:
    """Errors against the truth on [-3, 3].

    ``exact=True``: the trained float32 parameters are cast to float64 and f is inverted to a
    residual of 1e-10 (so R carries no solver error); else float32 to the float32 tolerance.
    """
    if not exact:
        return _evaluate(lpn, n, jnp.float32, None)
    with jax.enable_x64(True):
        lpn64 = jax.tree.map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, lpn)
        return _evaluate(lpn64, n, jnp.float64, 1e-10)


def run(args) -> dict:
    key = jax.random.key(args.seed)
    batch = args.batch
    if args.sampler == "posterior":
        sampler = laplace_posterior_sampler(batch, proposal_scale=args.proposal_scale,
                                            x_per_y=args.x_per_y, dtype=jnp.float32)
    else:
        sampler = lambda k: sample_laplace(k, batch, 1, dtype=jnp.float32)  # noqa: E731
    pm = laplace_schedule(pretrain_steps=args.pretrain_steps, stage_steps=args.stage_steps,
                          gammas=tuple(args.gammas), lr_start=args.lr_start, lr_end=args.lr_end)
    total = pm.total_steps
    configs = {
        "l2": (Schedule((Stage("l2", total, (args.lr_start, args.lr_end)),)), "project"),
        "l1": (Schedule((Stage("l1", total, (args.lr_start, args.lr_end)),)), "project"),
        "proximal_matching": (pm, "project"),
        "proximal_matching_softplus": (pm, "softplus"),
    }
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only}
    results = {}
    for name, (schedule, mode) in configs.items():
        psi = DenseICNN(1, tuple(args.hidden), key=key, beta=10.0, alpha=args.alpha,
                        nonnegativity=mode, dtype=jnp.float32)
        t0 = time.perf_counter()
        res = train_lpn(LPN(psi), sampler, schedule, key=jax.random.fold_in(key, 1), sigma=1.0,
                        steps_per_call=args.steps_per_call, progress=not args.quiet,
                        log_every=args.steps_per_call)
        wall = time.perf_counter() - t0
        ev = evaluate(res.model, exact=not args.float32_eval)
        ev.update(train_steps=total, train_seconds=wall, steps_per_second=total / wall,
                  nonnegativity=mode, final_loss=float(res.history[-1]["loss"]))
        results[name] = ev
        print(f"{name:28s} max|f-ST|={ev['max_abs_f_minus_soft_threshold']:.4f} "
              f"max|R-|x|-c|={ev['max_abs_R_minus_absx_minus_c']:.4f} ({wall:.0f}s)", flush=True)
    return results


def plot(results, path, *, request):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = np.asarray(next(iter(results.values()))["curves"]["x"])
    axes[0].plot(x, np.sign(x) * np.maximum(np.abs(x) - 1, 0), "k--", lw=2, label="truth: soft-threshold")
    axes[1].plot(x, np.abs(x), "k--", lw=2, label="truth: |x|")
    for name, style in [("l2", "C0"), ("l1", "C1"), ("proximal_matching", "C3"),
                        ("proximal_matching_softplus", "C2")]:
        if name not in results:
            continue
        c = results[name]["curves"]
        axes[0].plot(x, c["f"], style, label=name)
        axes[1].plot(x, c["R_minus_c"], style, label=name)
    axes[0].set(title="learned prox f(x)", xlabel="x")
    axes[1].set(title="learned regulariser R(x) - c", xlabel="x")
    for a in axes:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    plt.close(fig)
    write_protected(path, buf.getvalue(), request=request, what="--out")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/prox")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=("posterior", "prior"), default="posterior",
                   help="posterior: y from a wider proposal, x ~ p(x | y) exactly (default); "
                        "prior: x ~ Laplace(0, 1), y = x + v")
    p.add_argument("--batch", type=int, default=500, help="y per step")
    p.add_argument("--x-per-y", type=int, default=32,
                   help="posterior draws per y (--sampler posterior)")
    p.add_argument("--proposal-scale", type=float, default=2.0,
                   help="Laplace scale of the proposal for x' in y = x' + v (--sampler posterior)")
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--stage-steps", type=int, default=2500)
    p.add_argument("--lr-start", type=float, default=1e-3)
    p.add_argument("--lr-end", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--gammas", type=float, nargs="+", default=[0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    p.add_argument("--hidden", type=int, nargs="+", default=[50, 50, 50, 50])
    p.add_argument("--float32-eval", action="store_true",
                   help="evaluate R with a float32 inversion (default: float64, exact)")
    p.add_argument("--steps-per-call", type=int, default=500)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--only", nargs="*", help="train only these configurations (quick checks)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "laplace_1d" if not args.only else "laplace_1d_" + "_".join(args.only)
    # what this run computes (its options, not where it writes or how it prints)
    request = {"function": "examples/prox_laplace_1d.py",
               "options": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")}}
    paths = [out / f"{name}.json", out / f"{name}_curves.npz", out / f"{name}.png"]
    for path in paths:  # refuse before training, not after
        check_overwrite(path, what="--out",
                        request=request)
    results = run(args)
    summary = {
        "config": vars(args) | {"model": f"1 -> {' x '.join(map(str, args.hidden))}, softplus beta=10",
                                "sigma": 1.0},
        "device": str(jax.devices()[0]),
        "results": {k: {kk: vv for kk, vv in v.items() if kk != "curves"} for k, v in results.items()},
    }
    pms = [k for k in ("proximal_matching", "proximal_matching_softplus") if k in results]
    if len(pms) == 2:
        better = min(pms, key=lambda k: results[k]["max_abs_R_minus_absx_minus_c"]
                     + results[k]["max_abs_f_minus_soft_threshold"])
        summary["nonnegativity_better"] = results[better]["nonnegativity"]
    write_protected(paths[0], (json.dumps(summary, indent=2) + "\n").encode(), request=request,
                    what="--out")
    buf = io.BytesIO()
    np.savez(buf, **{f"{k}_{c}": np.asarray(v["curves"][c])
                     for k, v in results.items() for c in ("x", "f", "R_minus_c")})
    write_protected(paths[1], buf.getvalue(), request=request, what="--out")
    plot(results, paths[2], request=request)
    print(json.dumps(summary["results"], indent=1))
    return summary


if __name__ == "__main__":
    main()
