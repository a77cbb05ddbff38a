"""Publish benchmark results: the pretrained priors into the package, the figures into the docs.

* Priors: the LPN-J priors trained by ``benchmarks/inverse.py`` are copied into
  ``pdeml/inverse/weights/<name>/`` (``model.eqx`` + ``config.json``) with a ``manifest.json``
  holding each file's SHA-256 (checked by :func:`pdeml.inverse.pretrained` on every load), how
  the prior was trained and the PSNR measured for it in ``benchmarks/results/inverse/inverse.json``.
* Figures: every figure named in :data:`FIGURES` is copied into ``docs/results/`` for the
  Results page (``docs/results.md``).

Run after the benchmarks (it only reads ``benchmarks/results``):

    python benchmarks/publish_results.py            # both
    python benchmarks/publish_results.py --check    # exit 1 if anything published is stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from pdeml.core.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WEIGHTS = ROOT / "pdeml" / "inverse" / "weights"
DOCS_RESULTS = ROOT / "docs" / "results"

# name -> (image domain, training noise sigma, what the benchmark used it for)
PRIORS = {
    "lpn_j_natural": ("natural", 0.02, "PnP-ADMM (LPN-J) and lpn_map (LPN-J MAP) on deblurring, "
                      "compressed sensing and the heat-equation task"),
    "lpn_j_ct": ("ct", 0.004, "PnP-ADMM (LPN-J) on sparse-view CT"),
    "lpn_j_ct_sigma0.02": ("ct", 0.02, "lpn_map (LPN-J MAP) on sparse-view CT"),
}
DOMAIN_DATA = {
    "natural": "16x16 patches (stride 8) of scikit-image's bundled grey sample images, "
               "down-sampled 2x by block means (camera and coins held out for testing)",
    "ct": "16x16 patches (stride 8) of 200 random 32x32 head-like ellipse phantoms "
          "(pdeml.inverse.random_ellipses, seed 0), empty background patches dropped",
}

# figure in benchmarks/results -> name under docs/results
FIGURES = {
    "diffusion_sorption/predictions.png": "diffusion_sorption.png",
    "navier_stokes/predictions.png": "navier_stokes.png",
    "moe/errors.png": "moe_errors.png",
    "moe/predictions.png": "moe_predictions.png",
    "moe_scaling/moe_scaling.png": "moe_scaling.png",
    "moe_k/diffusion-sorption/moe_k.png": "moe_k_diffusion_sorption.png",
    "moe_k/navier-stokes/moe_k.png": "moe_k_navier_stokes.png",
    "constraint_layer/constraint_layer.png": "constraint_layer.png",
    "loss_continuity/loss_continuity.png": "loss_continuity.png",
    "solver_robustness/solver_robustness.png": "solver_robustness.png",
    "train_loop/train_loop.png": "train_loop.png",
    "prox/laplace_1d.png": "prox_laplace_1d.png",
    "prox/lpn.png": "prox_lpn.png",
    "prox/image_prior_digits.png": "prox_image_prior_digits.png",
    "prox/image_prior_faces.png": "prox_image_prior_faces.png",
    "inverse/inverse.png": "inverse.png",
    "barron/a_iterations.png": "barron_iterations.png",
    "barron/b_barron_trajectory.png": "barron_trajectory.png",
    "barron/c_full/c_error_vs_params.png": "barron_error_vs_params.png",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _measured(name: str, inverse: dict) -> dict:
    """The PSNR the benchmark measured with this prior (dB, mean over the test images)."""
    domain, sigma, _ = PRIORS[name]
    own = sigma == inverse["sigma_train"][domain]  # the PnP prior of its domain
    methods = [m for m, ok in (("LPN-J", own), ("LPN-J MAP", sigma == inverse["sigma_map"])) if ok]
    out: dict = {}
    if own:
        den = inverse["priors"][domain]["denoise_psnr"]
        out["denoising"] = {
            "noise_sigma": sigma, "images": inverse["priors"][domain]["denoise_images"],
            "psnr_db": round(den["lpn_j"], 2), "identity_psnr_db": round(den["identity"], 2),
            "mse_cnn_psnr_db": round(den["cnn"], 2)}
    tasks = {}
    for task, t in inverse["tasks"].items():
        if ("ct" if task.startswith("ct") else "natural") != domain:
            continue
        for m in methods:
            if m in t["methods"]:
                r = t["methods"][m]
                tasks.setdefault(task, {})[m] = {
                    "psnr_db": round(r["psnr_mean"], 2), "psnr_std_db": round(r["psnr_std"], 2),
                    "tv_psnr_db": round(t["methods"]["TV"]["psnr_mean"], 2),
                    "noise_sigma": t["noise"], "hyper": r["hyper"]}
    out["tasks"] = tasks
    out["test_images"] = inverse["config"]["n_test"]
    out["image_size"] = inverse["config"]["size"]
    return out


def build_priors() -> dict[str, tuple[bytes, bytes, dict]]:
    """``name -> (model bytes, config bytes, manifest entry)`` from the benchmark results."""
    inverse = json.loads((RESULTS / "inverse" / "inverse.json").read_text())
    out = {}
    for name, (domain, sigma, used) in PRIORS.items():
        src = RESULTS / "inverse" / "priors" / name
        cfg = json.loads((src / "config.json").read_text())
        want = cfg["want"]
        if want["sigma"] != sigma:
            raise ValueError(f"{src}: trained at sigma {want['sigma']}, expected {sigma}")
        config = {"want": want, "train_seconds": round(cfg["train_seconds"], 1)}
        model = (src / "model.eqx").read_bytes()
        config_bytes = (json.dumps(config, indent=2) + "\n").encode()
        entry = {
            "kind": want["kind"],
            "description": f"LPN prior for {'CT' if domain == 'ct' else domain} images "
                           f"(1 channel, values in [0, 1], any size), trained at noise sigma "
                           f"{sigma}",
            "used_for": used,
            "training": {
                "data": DOMAIN_DATA[domain],
                "loss": f"{want['l2_steps']} l2 steps (learning rate {want['l2_lr'][0]} -> "
                        f"{want['l2_lr'][1]}) then proximal matching with gamma "
                        f"{' -> '.join(str(g) for g in want['gammas'])} "
                        f"({want['pm_stage_steps']} steps each), with the expansiveness penalty "
                        f"(weight {want['expansiveness_weight']}) from the first step",
                "batch": want["batch"], "noise_sigma": sigma, "alpha": want["alpha"],
                "seconds": config["train_seconds"], "script": "benchmarks/inverse.py",
            },
            "measured": _measured(name, inverse),
            "sha256": {"model.eqx": hashlib.sha256(model).hexdigest(),
                       "config.json": hashlib.sha256(config_bytes).hexdigest()},
            "bytes": len(model),
        }
        out[name] = (model, config_bytes, entry)
    return out


def publish_priors(check: bool) -> list[str]:
    built = build_priors()
    manifest = (json.dumps({n: e for n, (_, _, e) in built.items()}, indent=2) + "\n").encode()
    files = {WEIGHTS / "manifest.json": manifest}
    for name, (model, config, _) in built.items():
        files[WEIGHTS / name / "model.eqx"] = model
        files[WEIGHTS / name / "config.json"] = config
    return _write(files, check)


def publish_figures(check: bool) -> list[str]:
    files = {DOCS_RESULTS / dst: (RESULTS / src).read_bytes() for src, dst in FIGURES.items()}
    return _write(files, check)


def _write(files: dict[Path, bytes], check: bool) -> list[str]:
    stale = []
    for path, data in files.items():
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not check:
            atomic_write(path, data)  # temporary file, fsync, rename (parents created)
    return stale


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a published file differs from the results")
    ap.add_argument("--only", choices=("priors", "figures"), default=None)
    args = ap.parse_args(argv)
    stale = []
    if args.only in (None, "priors"):
        stale += publish_priors(args.check)
    if args.only in (None, "figures"):
        stale += publish_figures(args.check)
    verb = "stale" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {s}" for s in stale))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
