"""Barron-norm PDE approximators: measurements for METHODS §3 / issue 6.

(a) Sobolev-descent iterations to H^1 error 1e-8 against Lambda/lambda (T2, d = 2) and
    against d = 2..5 (the prototype problem), next to (Lambda/lambda) log(1/eps);
(b) the Barron trajectory of the iterates against the worst-case bound of the proof;
(c) relative L2 error against parameter count on ridge-sum solutions, d in {2, 4, 6, 8}:
    orthogonal-greedy cosine networks vs isotropic random features (fits of u*), and Deep
    Ritz (natural gradient, Adam) and the residual-loss PINN (solves of T2) where measured.

Usage: python benchmarks/barron.py [--quick] [--out benchmarks/results/barron]
Writes barron.json and a_iterations.png, b_barron_trajectory.png, c_error_vs_params.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from pdeml.barron import (  # noqa: E402
    PeriodicMLP,
    QuasilinearLagrangian,
    RidgeSum,
    SemilinearLagrangian,
    barron_norm,
    deep_ritz,
    manufactured_problem,
    newton_krylov,
    orthogonal_greedy,
    pinn,
    random_features_fit,
    relative_l2_error,
    sobolev_gradient_descent,
    worst_case_barron_bound,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import savefig, write_json  # noqa: E402

EPS = 1e-8


def iterations_to(problem, n, eps=EPS, max_steps=400):
    ref = newton_krylov(problem, n, atol=1e-13, rtol=0.0).u
    traj = sobolev_gradient_descent(problem, n, reference=ref, atol=0.0, rtol=0.0, max_steps=max_steps)
    return traj.steps_to("h1_error", eps), traj


def part_a(quick):
    out = {"vs_condition": [], "vs_dim": []}
    nus = [0.5, 1.0, 3.0] if quick else [0.5, 1.0, 3.0, 7.0, 15.0]
    sol2 = RidgeSum.random(2, key=jax.random.key(0), scale=0.5)
    for nu in nus:
        p = manufactured_problem(SemilinearLagrangian(nu=nu), sol2, 2)
        lam, Lam = p.bounds()
        it, _ = iterations_to(p, 15)
        out["vs_condition"].append({"nu": nu, "kappa": Lam / lam, "iterations": it, "theory": Lam / lam * math.log(1 / EPS)})
    dims = [(2, 15), (3, 9)] if quick else [(2, 15), (3, 11), (4, 9), (5, 7)]
    for d, n in dims:
        sol = RidgeSum.random(d, key=jax.random.key(0), scale=0.1)
        p = manufactured_problem(QuasilinearLagrangian(mu=1.0, nu=1.0), sol, d)
        it, traj = iterations_to(p, n)
        err = traj.history("h1_error")
        rate = float(np.median(err[1:10] / err[:9]))
        out["vs_dim"].append({"dim": d, "n": n, "iterations": it, "h1_error_0": float(err[0]), "median_rate": rate, "theory": 2 * math.log(1 / EPS)})
    return out


def part_b(quick):
    sol = RidgeSum.random(2, key=jax.random.key(0), scale=0.1)
    p = manufactured_problem(QuasilinearLagrangian(mu=1.0, nu=1.0), sol, 2)
    n = 15
    ref = newton_krylov(p, n, atol=1e-13, rtol=0.0).u
    traj = sobolev_gradient_descent(p, n, reference=ref, atol=1e-12, rtol=0.0, max_steps=60)
    lam, Lam = p.bounds()
    _, f = p.on_grid(n)
    growth, expo = p.lagrangian.barron_growth()
    b = traj.history("barron_norm")
    bound = worst_case_barron_bound(b[0], float(barron_norm(f)), 1.0 / Lam, len(b) - 1, growth=growth, exponent=expo)
    return {"barron_norm": b.tolist(), "h1_error": traj.history("h1_error").tolist(), "worst_case_bound": bound.tolist(),
            "barron_norm_reference": float(barron_norm(ref)), "barron_norm_u_star_exact": float(sol.barron_norm())}


# width 16 / depth 1 (161 parameters at d = 4) cannot represent the 3-coordinate ridges: a direct
# Levenberg-Marquardt fit of u* stalls at relative L2 0.035, so the Ritz runs use a deeper net
RITZ_NET = dict(width=20, depth=2)  # 621 parameters at d = 4


def part_c(quick):
    """Error against parameter count on ridge sums, d in {2, 4, 6, 8} (quick: {2, 4}).

    Fits of u* (3 ridges x 2 harmonics, 6 frequencies, Barron norm independent of d):
    orthogonal-greedy cosine networks (learned integer inner weights) against random Fourier
    features with fixed isotropic frequencies, least squares on 4096 uniform samples, errors on
    8192 fresh ones. Solves of T2 (lambda = 1, Lambda = 2) with u* = 2 ridges x 1 harmonic:
    Deep Ritz on a tanh PeriodicMLP (energy natural gradient with line search, and Adam) and the
    residual-loss PINN (Adam), all on randomly shifted rank-1 lattices (a fresh shift per step).
    """
    rows = []
    dims = [2, 4] if quick else [2, 4, 6, 8]
    widths = [2, 4, 6, 12] if quick else [2, 4, 6, 8, 12]
    rf_widths = [2, 6, 12, 48] if quick else [2, 6, 12, 48, 192, 768]
    m = 2048 if quick else 4096
    for d in dims:
        sol = RidgeSum.random(d, key=jax.random.key(1))  # 3 ridges x 2 harmonics = 6 frequencies
        x = jax.random.uniform(jax.random.key(2), (m, d))
        y = jax.vmap(sol)(x)
        xt = jax.random.uniform(jax.random.key(3), (8192, d))
        bnorm = float(sol.barron_norm(0.0))
        for w in widths:
            t = time.perf_counter()
            net = orthogonal_greedy(x, y, w)
            rows.append({"dim": d, "method": "cosine net (greedy)", "solution": "fit", "width": w, "params": net.num_parameters,
                         "rel_l2": float(relative_l2_error(net, sol, xt)), "seconds": time.perf_counter() - t})
        for w in rf_widths:
            t = time.perf_counter()
            rf = random_features_fit(x, y, w, key=jax.random.key(4))
            rows.append({"dim": d, "method": "random features", "solution": "fit", "width": w, "params": rf.num_parameters,
                         "rel_l2": float(relative_l2_error(rf, sol, xt)), "seconds": time.perf_counter() - t})
        rows.append({"dim": d, "method": "Barron bound B/sqrt(n) (B^0 norm)", "solution": "fit", "barron_norm_B0": bnorm})
    # Deep Ritz / PINN on T2; budgets chosen so that the full run fits ~20 min on 2 shared cores
    for d in dims:
        sol = RidgeSum.random(d, key=jax.random.key(1), num_ridges=2, harmonics=1, scale=0.5)
        p = manufactured_problem(SemilinearLagrangian(nu=1.0), sol, d)
        net = PeriodicMLP.random(d, key=jax.random.key(2), **RITZ_NET)
        ng_steps = 30 if quick else {2: 100, 4: 150}.get(d, 50)
        ng_points = 2048 if quick else {2: 4096, 4: 8192}.get(d, 2048)
        adam_steps = 300 if quick else 2000
        for name, fn, kw in [
            ("Deep Ritz (natural gradient)", deep_ritz, dict(optimizer="natural_gradient", max_steps=ng_steps, num_points=ng_points, damping=1e-6, resample=True)),
            ("Deep Ritz (Adam)", deep_ritz, dict(optimizer="adam", max_steps=adam_steps, num_points=1024, learning_rate=1e-3, resample=True)),
            ("PINN (Adam)", pinn, dict(optimizer="adam", max_steps=adam_steps // 2, num_points=1024, quadrature="lattice", learning_rate=1e-3)),
        ]:
            t = time.perf_counter()
            r = fn(p, net, key=jax.random.key(3), **kw)
            rows.append({"dim": d, "method": name, "solution": "T2", "params": net.num_parameters, **RITZ_NET,
                         "rel_l2": float(r.relative_l2), "h1_error": float(r.h1_error), "certificate": float(r.certificate),
                         "error_bound": float(r.stats.error_bound), "converged": bool(r.converged),
                         "seconds": time.perf_counter() - t, **kw})
            print(rows[-1], flush=True)
    return rows


def plots(res, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "a" in res:
        _plot_a(plt, res["a"], out)
    if "b" in res:
        _plot_b(plt, res["b"], out)
    if "c" in res:
        _plot_c(plt, res["c"], out)


def _plot_a(plt, a, out):
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    k = [r["kappa"] for r in a["vs_condition"]]
    ax[0].plot(k, [r["iterations"] for r in a["vs_condition"]], "o-", label="measured")
    ax[0].plot(k, [r["theory"] for r in a["vs_condition"]], "k--", label="(Lambda/lambda) log(1/eps)")
    ax[0].set(xlabel="Lambda/lambda", ylabel="iterations to H1 error 1e-8", title="T2, d=2", xscale="log", yscale="log")
    ax[0].legend()
    ds = [r["dim"] for r in a["vs_dim"]]
    ax[1].plot(ds, [r["iterations"] for r in a["vs_dim"]], "o-", label="measured")
    ax[1].plot(ds, [r["theory"] for r in a["vs_dim"]], "k--", label="(Lambda/lambda) log(1/eps)")
    ax[1].set(xlabel="d", ylabel="iterations", title="quasilinear+semilinear, Lambda/lambda=2", ylim=(0, None))
    ax[1].legend()
    savefig(fig, os.path.join(out, "a_iterations.png"), 90)


def _plot_b(plt, b, out):
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.semilogy(b["barron_norm"], label="||u_t||_B (measured)")
    ax.semilogy(b["worst_case_bound"], "k--", label="worst-case bound")
    ax.axhline(b["barron_norm_reference"], color="g", ls=":", label="||u_h||_B (discrete solution)")
    ax.set(xlabel="iteration t", ylabel="Barron norm (s=1)")
    ax.legend()
    savefig(fig, os.path.join(out, "b_barron_trajectory.png"), 90)


def _plot_c(plt, c, out):
    dims = sorted({r["dim"] for r in c})
    fig, axs = plt.subplots(1, len(dims), figsize=(4 * len(dims), 3.6), squeeze=False)
    for ax, d in zip(axs[0], dims):
        for meth, st in [("cosine net (greedy)", "o-"), ("random features", "s-")]:
            rr = [r for r in c if r["dim"] == d and r["method"] == meth]
            ax.loglog([r["params"] for r in rr], [max(r["rel_l2"], 1e-16) for r in rr], st, label=meth)
        for r in c:
            if r["dim"] == d and ("Ritz" in r["method"] or "PINN" in r["method"]):
                ax.loglog([r["params"]], [r["rel_l2"]], "^", label=r["method"])
        ax.set(title=f"d={d}", xlabel="parameters", ylabel="relative L2")
        ax.legend(fontsize=6)
    savefig(fig, os.path.join(out, "c_error_vs_params.png"), 90)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/barron")
    ap.add_argument("--parts", default="abc", help="which measurements: any of a, b, c")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    res = {"meta": {"quick": args.quick, "jax": jax.__version__, "backend": jax.default_backend(), "machine": platform.machine()}}
    for part, fn in [("a", part_a), ("b", part_b), ("c", part_c)]:
        if part in args.parts:
            t = time.perf_counter()
            res[part] = fn(args.quick)
            res["meta"][f"seconds_{part}"] = time.perf_counter() - t
            print(part, json.dumps(res[part])[:2000], flush=True)
    write_json(os.path.join(args.out, "barron.json"), res, indent=1)
    plots(res, args.out)


if __name__ == "__main__":
    main()
