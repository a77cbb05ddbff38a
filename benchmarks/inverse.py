"""Benchmark: inverse problems with learned priors (LPN) against TV, an MSE denoiser, BM3D and
Tikhonov, on data that needs no download.

Data (see ``docs/inverse.md``):

- natural images: scikit-image's bundled sample images, grey, down-sampled 2x by block means.
  Priors train on patches of :data:`pdeml.data.images.PATCH_TRAIN_IMAGES`; validation (for
  hyper-parameters) and test crops come from the held-out ``camera`` and ``coins``.
- CT: random head-like ellipse phantoms written in code (:func:`pdeml.inverse.random_ellipses`,
  seed 0 for training); validation phantom seed 1; test = the modified Shepp-Logan phantom and
  random phantoms of seed 2.

Priors (the recipes of :mod:`pdeml.inverse.recipes`, trained once and cached, checksummed, in
``--out/priors``; re-runs reuse them): an LPN (l2 then proximal matching), an LPN-J (with the
expansiveness penalty) and a residual CNN with the same parameter budget trained with the MSE
loss, per image domain.

Tasks: deblurring (periodic Gaussian blur sigma_b in {1, 2} x noise {0.02, 0.04}), sparse-view
CT, compressed sensing at 1/4 and 1/16 measurements, and the PDE inverse problem (heat equation
initial condition from noisy, 2x sub-sampled observations of the solution at time T). Each
method is PnP-ADMM with its prox (LPN, CNN, TV, BM3D) or Tikhonov (PDE task); hyper-parameters
(rho, or lambda) are chosen on the validation image from a fixed grid (wide enough that no
method's choice sits on its edge, except the LPN's rho at its lower bound). For the LPN, rho is only
taken from ``rho > ||A^T A||`` (its convergence condition); the others are free. "LPN-J MAP" is
the same prior and objective solved by :func:`pdeml.inverse.lpn_map`, guaranteed for every rho,
so its rho is free too.

Writes ``inverse.json``, ``inverse.md`` and ``inverse.png`` under ``--out``.

Run:  python benchmarks/inverse.py --out benchmarks/results/inverse           (full: ~55 min from
      scratch on a 2-core CPU, ~20 min with the cached priors)
      python benchmarks/inverse.py --quick --out /tmp/inverse_quick           (smoke test)
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env, md_table, pyplot, savefig, write_json, write_text  # noqa: E402

from pdeml.inverse import (  # noqa: E402
    CompressedSensing,
    GaussianBlur,
    HeatObservation,
    Radon,
    lpn_map,
    measure,
    pnp_admm,
    psnr,
    random_ellipses,
    shepp_logan,
    ssim,
    tikhonov,
)
from pdeml.inverse.recipes import (  # noqa: E402
    FREE_RHO_FACTORS,
    LPN_RHO_FACTORS,
    MAP_NOISE,
    MAP_RHO_FACTORS,
    TRAINING_NOISE,
    PriorCache,
    PriorRecipe,
    ct_training_patches,
    natural_test_crops,
    natural_training_patches,
    prior_set,
    rho_grid,
    select_on_validation,
)
from pdeml.prox import TotalVariationProx, evaluate_regularizer  # noqa: E402

# Sized for a 2-core CPU (priors ~37 min, the tasks ~20 min): 32 x 32 test images, 16 x 16 training
# patches. The priors' recipes (architecture, schedules, noise levels): pdeml.inverse.recipes.
FULL = dict(size=32, n_test=4, patch=16, batch=16, lpn_l2=10000, lpn_stage=300,
            cnn_steps=11200, hidden=(32, 32, 32), max_iter=150, tune_iter=150, ct_angles=16,
            bm3d_tasks=("deblur_s1_n0.02",), bm3d_iter=12, n_denoise=48, map_iter=300)
QUICK = dict(size=32, n_test=2, patch=16, batch=8, lpn_l2=20, lpn_stage=5,
             cnn_steps=20, hidden=(8, 8), max_iter=10, tune_iter=10, ct_angles=12,
             bm3d_tasks=("deblur_s1_n0.02",), bm3d_iter=5, n_denoise=8, map_iter=10)
SIGMA_TRAIN = TRAINING_NOISE
SIGMA_MAP = MAP_NOISE
DTYPE = jnp.float32


def recipe_for(cfg, train_sigma=None):
    return PriorRecipe(hidden=tuple(cfg["hidden"]), patch=cfg["patch"], batch=cfg["batch"],
                       l2_steps=cfg["lpn_l2"], pm_stage_steps=cfg["lpn_stage"],
                       cnn_steps=cfg["cnn_steps"], train_sigma=train_sigma, dtype=DTYPE)


# ----------------------------------------------------------------------------- data


def natural_data(cfg):
    """Training patches, the validation crop and the test crops (the held-out crops with the
    most structure, interleaving the two images; the first is validation)."""
    crops = natural_test_crops(cfg["size"])
    natural_data.all_crops = crops  # every held-out crop, for the denoising check
    order = np.argsort(-crops.std(axis=(1, 2, 3)))
    chosen = crops[np.sort(order[: cfg["n_test"] + 1])]
    return natural_training_patches(cfg["patch"]), chosen[:1], chosen[1 : cfg["n_test"] + 1]


def ct_data(cfg):
    s = cfg["size"]
    patches = ct_training_patches(s, 200 if cfg is FULL else 16, cfg["patch"])
    val = random_ellipses(s, 1, seed=1)[:, None]
    test = np.concatenate([shepp_logan(s)[None, None],
                           random_ellipses(s, cfg["n_test"] - 1, seed=2)[:, None]])
    return patches, val, test


# ----------------------------------------------------------------------------- priors


def denoise_eval(priors_d, clean, log, name):
    """PSNR of each prior as a denoiser at its domain's SIGMA_TRAIN on held-out images (not used
    to train)."""
    clean = jnp.asarray(clean, DTYPE)
    sigma = SIGMA_TRAIN[name]
    noisy = clean + sigma * jax.random.normal(jax.random.key(77), clean.shape, DTYPE)
    f = eqx.filter_jit(lambda m, v: m.prox(v))
    out = {"identity": float(psnr(noisy, clean).mean())}
    for k in ("lpn_l2", "lpn", "lpn_j", "cnn"):
        out[k] = float(psnr(f(priors_d[k], noisy), clean).mean())
    log(f"denoising {name} (sigma {sigma}, {clean.shape[0]} held-out images): "
        + ", ".join(f"{k} {v:.2f} dB" for k, v in out.items()))
    return out


# ----------------------------------------------------------------------------- tasks


def make_tasks(cfg, nat, ct):
    s = cfg["size"]
    shape = (1, s, s)
    tasks = []
    for sb in (1, 2):
        for sn in (0.02, 0.04):
            tasks.append(dict(name=f"deblur_s{sb}_n{sn}", op=GaussianBlur(shape, float(sb)),
                              noise=sn, data="natural"))
    tasks.append(dict(name="ct_sparse_view", op=Radon(shape, cfg["ct_angles"]), noise=0.01,
                      data="ct"))
    for frac, lab in ((0.25, "4"), (1 / 16, "16")):
        tasks.append(dict(name=f"cs_1_over_{lab}",
                          op=CompressedSensing(shape, ratio=frac, key=jax.random.key(11)),
                          noise=0.01, data="natural"))
    # heat kernel width sqrt(2 kappa T) = 1.5 pixels on the unit periodic box, 2x sub-sampled
    T = (1.5 / s) ** 2 / 2
    tasks.append(dict(name="pde_heat_ic", op=HeatObservation(shape, time=T, stride=2), noise=0.01,
                      data="natural"))
    return tasks


def _tv(lam):
    return TotalVariationProx(float(lam), ndim=2, atol=1e-7, max_steps=100)


def methods_for(task, priors, cfg):
    norm = task["norm"]
    d = task["data"]
    rho_lpn, rho_free = rho_grid(norm, LPN_RHO_FACTORS), rho_grid(norm, FREE_RHO_FACTORS)
    out = {
        "LPN": [(rho, priors[d]["lpn"], {"rho": rho}) for rho in rho_lpn],
        "LPN-l2": [(rho, priors[d]["lpn_l2"], {"rho": rho}) for rho in rho_lpn],
        "LPN-J": [(rho, priors[d]["lpn_j"], {"rho": rho}) for rho in rho_lpn],
        # the same prior and objective by pdeml.inverse.lpn_map: guaranteed for every rho, so
        # the data weight is free (PnP's rho > ||A^T A|| ties it to the training noise level)
        "LPN-J MAP": [(rho, priors[d]["lpn_j_map"], {"rho": rho})
                      for rho in rho_grid(norm, MAP_RHO_FACTORS)],
        "MSE-CNN": [(rho, priors[d]["cnn"], {"rho": rho}) for rho in rho_free],
        # TV minimises ||Ax - y||^2 / 2 + lam TV(x) (prox weight lam / rho); rho changes only how
        # fast ADMM gets there, which matters at the iteration cap (CT: 18.5 dB at rho = ||A^T A||
        # after 60 iterations, 21.6 at 0.2 ||A^T A||): both are in the grid
        "TV": [(rho, _tv(lam / rho), {"lam": lam, "rho": rho})
               for rho in (0.2 * norm, norm)
               for lam in (1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)],
    }
    if task["name"] in cfg["bm3d_tasks"] and priors.get("bm3d_ok"):
        from pdeml.inverse import BM3DDenoiser

        # BM3D costs ~1 s per 64 x 64 call on this CPU: no tuning, rho = ||A^T A||, fewer
        # iterations (cfg["bm3d_iter"])
        out["BM3D"] = [(norm, BM3DDenoiser(SIGMA_TRAIN[d]), {"rho": norm})]
    return out


def _iteration_cap(method, cfg, tuning=False):
    """Iterations a method gets: L-BFGS for LPN-J MAP, fewer for the slow BM3D, else PnP-ADMM's
    (tuning runs may use fewer)."""
    return {"LPN-J MAP": cfg["map_iter"], "BM3D": cfg["bm3d_iter"]}.get(
        method, cfg["tune_iter"] if tuning else cfg["max_iter"])


def _run(op, prox, y, rho, max_iter, method=None):
    if method == "LPN-J MAP":
        return lpn_map(op, prox, y, rho, max_steps=max_iter, rtol=1e-4)
    # CG warm-started from the previous x: 20 iterations per data step are plenty
    return pnp_admm(op, prox, y, rho, max_steps=max_iter, rtol=1e-4, cg_max_steps=20,
                    track_objective=True)


def _max_relative_increase(hist, scale):
    """Largest increase between consecutive entries of a history (NaN after each sample's last
    iteration), relative to the sample's largest |value|."""
    d = np.diff(hist, axis=0) / scale
    return float(np.nanmax(d)) if np.isfinite(d).any() else 0.0


def _objective_at_truth(op, lpn, y, x_rec, truth, rho):
    """Is a bad reconstruction the solver's fault or the prior's? The PnP-ADMM objective
    ``F = ||A x - y||^2 / (2 rho) + R(x)`` (pdeml.inverse.solvers; R from the LPN by convex
    inversion, per image) at the
    reconstruction and at the true image: if the reconstruction is lower, the iteration found
    what the learned MAP problem asks for, and the prior is wrong."""
    truth = jnp.asarray(truth, x_rec.dtype)

    def obj(x):
        r_val, info = evaluate_regularizer(lpn, x, max_steps=200)
        h = jnp.sum((op(x) - y) ** 2, axis=tuple(range(1, y.ndim))) / (2 * rho)
        return h + r_val, bool(info.converged.all())

    o_rec, ok_rec = obj(x_rec)
    o_true, ok_true = obj(truth)
    return {"objective_reconstruction": np.asarray(o_rec).tolist(),
            "objective_truth": np.asarray(o_true).tolist(),
            "reconstruction_lower": np.asarray(o_rec < o_true).tolist(),
            "inversions_converged": ok_rec and ok_true}


def _scores(x, test) -> dict:
    """PSNR and SSIM of the reconstructions ``x`` of ``test``, per image and mean +- std."""
    p = np.asarray(psnr(x, jnp.asarray(test, DTYPE)))
    q = np.asarray(ssim(x, jnp.asarray(test, DTYPE))).reshape(len(test), -1).mean(axis=1)
    return {"psnr": p.tolist(), "ssim": q.tolist(), "psnr_mean": float(p.mean()),
            "psnr_std": float(p.std()), "ssim_mean": float(q.mean()), "ssim_std": float(q.std())}


def run_task(task, val, test, priors, cfg, key, log):
    op = task["op"]
    kv, kt = jax.random.split(key)
    yv = measure(op, jnp.asarray(val, DTYPE), task["noise"], key=kv)
    yt = measure(op, jnp.asarray(test, DTYPE), task["noise"], key=kt)
    task["norm"] = float(op.normest(dtype=jnp.float64))
    rec = {"noise": task["noise"], "norm_AtA": task["norm"], "methods": {}}
    recon = {}
    for mname, grid in methods_for(task, priors, cfg).items():
        t0 = time.perf_counter()
        n_tune, n_max = _iteration_cap(mname, cfg, tuning=True), _iteration_cap(mname, cfg)
        best, scores = select_on_validation(
            grid, lambda c: _run(op, c[1], yv, c[0], n_tune, mname).x, jnp.asarray(val, DTYPE))
        rho, prox, hp = grid[best]
        tune_s = time.perf_counter() - t0
        # timing on the (compiled) validation problem, one image
        t0 = time.perf_counter()
        r = jax.block_until_ready(_run(op, prox, yv, rho, n_max, mname))
        wall = time.perf_counter() - t0
        iters = int(r.iterations)
        # test set, batched
        rt = jax.block_until_ready(_run(op, prox, yt, rho, n_max, mname))
        m = {"hyper": hp, "tuning_psnr": scores, **_scores(rt.x, test),
             "iterations_val": iters, "converged_val": bool(r.converged),
             "seconds_to_convergence_val": wall, "seconds_per_iteration_val": wall / max(iters, 1),
             "test_iterations": int(rt.iterations), "tuning_seconds": tune_s}
        if mname.startswith("LPN"):
            n = int(rt.iterations)
            lag = np.asarray(rt.lagrangian)[:n]
            obj = np.asarray(rt.objective)[:n]
            mapped = mname == "LPN-J MAP"  # monitored: F itself (line search); no Lagrangian
            scale = np.nanmax(np.abs(obj if mapped else lag), axis=0) + 1e-12
            m["guarantee"] = {
                "rho_over_norm": rho / task["norm"], "alpha": priors[task["data"]]["lpn"].alpha,
                "condition": "any rho (line search)" if mapped else "rho > ||A^T A||",
                "lagrangian_max_relative_increase":
                    None if mapped else _max_relative_increase(lag, scale),
                "objective_max_relative_increase": _max_relative_increase(obj, scale)}
            m["test_iterations_per_image"] = np.sum(np.isfinite(np.asarray(rt.objective)),
                                                    axis=0).tolist()
            m["truth_vs_reconstruction"] = _objective_at_truth(op, prox, yt, rt.x, test, rho)
        rec["methods"][mname] = m
        recon[mname] = np.asarray(rt.x[0, 0])
        log(f"  {task['name']:18s} {mname:8s} PSNR {m['psnr_mean']:6.2f} +- {m['psnr_std']:.2f}  "
            f"SSIM {m['ssim_mean']:.3f}  {hp}  {iters} it, {1e3 * m['seconds_per_iteration_val']:.1f} ms/it")
    if task["name"].startswith("pde"):
        t0 = time.perf_counter()
        grid = [(reg, lam) for reg in ("identity", "gradient") for lam in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)]
        best, _ = select_on_validation(grid, lambda c: tikhonov(op, yv, c[1], regularizer=c[0]),
                                       jnp.asarray(val, DTYPE))
        reg, lam = grid[best]
        xt = tikhonov(op, yt, lam, regularizer=reg)
        m = rec["methods"]["Tikhonov"] = {"hyper": {"regularizer": reg, "lam": lam},
                                          **_scores(xt, test),
                                          "seconds_total": time.perf_counter() - t0}
        recon["Tikhonov"] = np.asarray(xt[0, 0])
        log(f"  {task['name']:18s} Tikhonov PSNR {m['psnr_mean']:6.2f} +- {m['psnr_std']:.2f}  "
            f"({reg}, {lam})")
    recon["truth"] = np.asarray(test[0, 0])
    adj = np.asarray(op.adjoint(yt[:1]))[0, 0]
    recon["A^T y"] = adj if adj.shape == recon["truth"].shape else None
    return rec, recon


# ----------------------------------------------------------------------------- report


def _markdown(results):
    c = results["config"]
    lines = ["# Inverse problems: PSNR / SSIM on held-out images (mean +- std)", "",
             f"Sizes: {c['size']}x{c['size']} images, {c['n_test']} test images per task (+1 "
             f"validation image for the hyper-parameters), priors trained on {c['patch']}x"
             f"{c['patch']} patches (batch {c['batch']}): LPN {c['lpn_l2']} l2 steps + 4 x "
             f"{c['lpn_stage']} proximal-matching steps, CNN {c['cnn_steps']} MSE steps; PnP-ADMM "
             f"at most {c['max_iter']} iterations (tol 1e-4); CT {c['ct_angles']} angles; "
             "float32; training noise sigma "
             + ", ".join(f"{k} {v}" for k, v in results["sigma_train"].items()) + ". "
             "LPN = after proximal matching, LPN-l2 = the same network after the l2 stage only. "
             f"LPN-J MAP (lpn_map, any rho) uses LPN-J priors trained at sigma "
             f"{results.get('sigma_map', 'sigma_train')} in both domains.",
             "", "Priors as denoisers (PSNR dB at the training noise, held-out images):", ""]
    lines += md_table(["data", "identity", "LPN-l2", "LPN", "LPN-J", "MSE-CNN",
                       "LPN / CNN parameters"],
                      [[name] + [f"{pr['denoise_psnr'][k]:.2f}"
                                 for k in ("identity", "lpn_l2", "lpn", "lpn_j", "cnn")]
                       + [f"{pr['lpn_parameters']} / {pr['cnn_parameters']}"]
                       for name, pr in results["priors"].items()])
    methods = ["LPN", "LPN-l2", "LPN-J", "LPN-J MAP", "MSE-CNN", "TV", "BM3D", "Tikhonov"]

    def table(methods, cell):
        return md_table(["task"] + methods, [
            [name] + ["-" if rec["methods"].get(m) is None else cell(m, rec["methods"][m])
                      for m in methods] for name, rec in results["tasks"].items()])

    def time_cell(m, r):
        stop = ("" if r["converged_val"] else ", cap" if r["iterations_val"] >= _iteration_cap(m, c)
                else ", line search stopped")
        return (f"{1e3 * r['seconds_per_iteration_val']:.1f} ms / "
                f"{r['seconds_to_convergence_val']:.2f} s ({r['iterations_val']} it{stop})")

    lines += ["", "PSNR dB / SSIM (mean +- std over the test images):", ""]
    lines += table(methods, lambda m, r: f"{r['psnr_mean']:.2f} +- {r['psnr_std']:.2f} / "
                                         f"{r['ssim_mean']:.3f}")
    lines += ["", "Time per iteration / to convergence (one validation image, after compilation, tol "
              "1e-4 relative; PnP-ADMM, and L-BFGS for LPN-J MAP):", ""]
    lines += table(methods[:7], time_cell)
    lines += ["", "LPN convergence condition and monitored quantities (test batch; float32, so "
              "relative increases of a few 1e-7 are round-off):", ""]
    rows = []
    for name, rec in results["tasks"].items():
        for m in ("LPN-J", "LPN-J MAP", "LPN"):
            if m in rec["methods"]:
                g = rec["methods"][m]["guarantee"]
                lag = g["lagrangian_max_relative_increase"]
                rows.append([name, m, g.get("condition", "rho > ||A^T A||"),
                             f"{g['rho_over_norm']:.2f}", g["alpha"],
                             "-" if lag is None else f"{lag:.2e}",
                             f"{g['objective_max_relative_increase']:.2e}",
                             _lower_count(rec["methods"][m])])
    lines += md_table(["task", "LPN", "condition", "rho / norm(A^T A)", "alpha",
                       "max rel. increase of Lagrangian", "of objective", "test images whose "
                       "reconstruction has a lower objective than the truth"], rows)
    lines += ["", "Checks:", ""] + [f"- {k}: {v}" for k, v in results["checks"].items()]
    return "\n".join(lines) + "\n"


def _lower_count(m):
    t = m.get("truth_vs_reconstruction")
    if t is None:
        return "-"
    low = np.ravel(t["reconstruction_lower"])
    return f"{sum(low)} / {len(low)}" + ("" if t["inversions_converged"] else " (inversion not converged)")


def _checks(results):
    """PSNR differences (dB) of the LPN variants to TV, and to the MSE-CNN (deblurring) and
    Tikhonov (the PDE task) where those ran."""
    out = {}
    for name, rec in results["tasks"].items():
        M = rec["methods"]
        refs = ["TV"] + ["MSE-CNN"] * name.startswith("deblur") + ["Tikhonov"] * ("Tikhonov" in M)
        for ref in refs:
            for lpn in ("LPN", "LPN-l2", "LPN-J", "LPN-J MAP"):
                if lpn in M:
                    out[f"{name}: {lpn} - {ref} (dB)"] = round(
                        M[lpn]["psnr_mean"] - M[ref]["psnr_mean"], 3)
    return out


def _plot(recons, path):
    plt = pyplot()
    cols = ["truth", "A^T y", "LPN", "LPN-l2", "LPN-J", "LPN-J MAP", "MSE-CNN", "TV", "BM3D", "Tikhonov"]
    fig, ax = plt.subplots(len(recons), len(cols), figsize=(2.0 * len(cols), 2.0 * len(recons)))
    ax = np.atleast_2d(ax)
    for i, (name, rec) in enumerate(recons.items()):
        for j, c in enumerate(cols):
            a = ax[i, j]
            a.axis("off")
            img, raw = rec.get(c), c == "A^T y"
            if img is not None:
                a.imshow(img if raw else np.clip(img, 0, 1), cmap="gray",
                         vmin=None if raw else 0, vmax=None if raw else 1)
                a.set_title(c if i == 0 else "", fontsize=9)
        ax[i, 0].text(-0.1, 0.5, name, transform=ax[i, 0].transAxes, rotation=90,
                      va="center", ha="right", fontsize=8)
    savefig(fig, path, 90)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/inverse")
    p.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of task names")
    p.add_argument("--no-bm3d", action="store_true")
    p.add_argument("--train-sigma", default=None, metavar="LOW,HIGH",
                   help="train both priors on noise levels drawn from [LOW, HIGH] per sample")
    args = p.parse_args(argv)
    train_sigma = None
    if args.train_sigma:
        try:
            lo, hi = (float(v) for v in args.train_sigma.split(","))
        except ValueError:
            p.error(f"--train-sigma must be LOW,HIGH, got {args.train_sigma!r}")
        if not 0 < lo <= hi:
            p.error(f"--train-sigma needs 0 < LOW <= HIGH, got {args.train_sigma!r}")
        train_sigma = (lo, hi)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    nat_patches, nat_val, nat_test = natural_data(cfg)
    ct_patches, ct_val, ct_test = ct_data(cfg)
    log(f"natural: {nat_patches.shape[0]} training patches, test {nat_test.shape}; "
        f"CT: {ct_patches.shape[0]} training patches, test {ct_test.shape}")
    cache, recipe = PriorCache(out / "priors"), recipe_for(cfg, train_sigma)
    priors = {name: prior_set(cache, name, patches, recipe, SIGMA_TRAIN[name], map_sigma=SIGMA_MAP,
                              log=log)
              for name, patches in (("natural", nat_patches), ("ct", ct_patches))}
    try:
        import bm3d  # noqa: F401

        priors["bm3d_ok"] = not args.no_bm3d
    except ModuleNotFoundError:
        priors["bm3d_ok"] = False
        log("bm3d not installed: BM3D skipped (pip install bm3d)")
    results = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
               "quick": args.quick, "sigma_train": SIGMA_TRAIN, "sigma_map": SIGMA_MAP, "dtype": str(jnp.dtype(DTYPE)),
               **env("platform", "jax", "devices"), "priors": {}, "tasks": {}}
    from pdeml.inverse import count_parameters

    rng = np.random.default_rng(0)
    crops = natural_data.all_crops
    held = {"natural": crops[rng.choice(len(crops), min(cfg["n_denoise"], len(crops)), replace=False)],
            "ct": random_ellipses(cfg["size"], cfg["n_denoise"], seed=3)[:, None]}
    for name in ("natural", "ct"):
        results["priors"][name] = {
            "denoise_psnr": denoise_eval(priors[name], held[name], log, name),
            "denoise_images": int(held[name].shape[0]),
            "lpn_parameters": count_parameters(priors[name]["lpn"]),
            "cnn_parameters": count_parameters(priors[name]["cnn"]),
            "lpn_train_seconds": priors[name]["lpn_config"].get("train_seconds"),
            "lpn_j_map_train_seconds": (priors[name]["lpn_j_map_config"] or {}).get("train_seconds"),
            "cnn_train_seconds": priors[name]["cnn_config"].get("train_seconds"),
        }
    recons = {}
    for i, task in enumerate(make_tasks(cfg, nat_test, ct_test)):
        if args.tasks and task["name"] not in args.tasks:
            continue
        val, test = (nat_val, nat_test) if task["data"] == "natural" else (ct_val, ct_test)
        rec, recon = run_task(task, val, test, priors, cfg, jax.random.key(100 + i), log)
        results["tasks"][task["name"]] = rec
        recons[task["name"]] = recon
        write_json(out / "inverse.json", results)
    results["checks"] = _checks(results)
    results["total_seconds"] = time.perf_counter() - t_start
    write_json(out / "inverse.json", results)
    write_text(out / "inverse.md", _markdown(results))
    _plot(recons, out / "inverse.png")
    log(f"done: {out / 'inverse.json'}")
    for k, v in results["checks"].items():
        print(f"{k:40s} {v:+.3f}")


if __name__ == "__main__":
    main()
