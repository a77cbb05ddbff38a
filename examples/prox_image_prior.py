"""An image prior learned by proximal matching on bundled images, and what it says.

Default (``--data digits``): trains a convolutional LPN on the training split of scikit-learn's
bundled digits (8 x 8 grey, the MNIST-like set the paper's qualitative findings are about;
split documented in :mod:`pdeml.data.images`); ``--data faces`` uses the 80 training faces of
scikit-image's bundled LFW subset (25 x 25). Noise sigma = 0.1, l1 pre-training then proximal
matching with gamma = (8, 4, 2, 1) x 0.08 sqrt(n), 1000 steps per stage by default. Then, on the
first ``--n-test`` held-out images, it measures the learned regulariser R

- under Gaussian noise of increasing level, and under Gaussian blur of increasing width
  (the paper: R increases monotonically with both),
- along the segment between two held-out images (the paper: R is non-convex there; reported
  both as the largest rise above the chord and as the smallest second difference),

and writes ``image_prior_<data>.json`` (table) and ``image_prior_<data>.png`` under ``--out``,
each atomically with a ``.sha256`` sidecar that records this run's options
(:func:`pdeml.core.io.write_protected`): rerunning the same command replaces them, a run with
other options (or a file pdeml did not write) is refused with an error naming the file.
Needs the optional extra ``data`` (scikit-image, scikit-learn).

Run:  python examples/prox_image_prior.py --out benchmarks/results/prox
Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 5.3.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pdeml.cli.prox import run_train
from pdeml.core.io import check_overwrite, request_fingerprint, write_protected
from pdeml.data.images import load_image_dataset
from pdeml.prox.analysis import interpolation_profile, load_lpn, perturbation_study


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/prox")
    p.add_argument("--data", default="digits", choices=["faces", "digits"])
    p.add_argument("--pretrain-steps", type=int, default=1000)
    p.add_argument("--stage-steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, nargs="+", default=[16, 32, 32])
    p.add_argument("--model-dir", default=None,
                   help="where the model goes (default: a temporary directory named by the "
                   "options, so a rerun resumes and other options train afresh)")
    p.add_argument("--alpha", type=float, default=0.01, help="strong convexity of psi")
    p.add_argument("--n-test", type=int, default=64,
                   help="evaluate on the first N held-out images only (0: all)")
    p.add_argument("--max-iter", type=int, default=50, help="Newton-CG iterations per R evaluation")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # what this run computes (its options, not where it writes)
    request = {"function": "examples/prox_image_prior.py",
               "options": {k: v for k, v in vars(args).items() if k not in ("out", "model_dir")}}
    paths = [out / f"image_prior_{args.data}.json", out / f"image_prior_{args.data}.png"]
    for path in paths:  # refuse before training, not after
        check_overwrite(path, what="--out",
                        request=request)
    model_dir = args.model_dir or str(Path(tempfile.gettempdir()) / (
        f"pdeml_image_prior_{args.data}_{request_fingerprint(request)[:12]}"))
    t0 = time.perf_counter()
    run_train(argparse.Namespace(
        data=args.data, model="conv", hidden=args.hidden, alpha=args.alpha, beta=100.0,
        nonnegativity="project", loss="pm", pretrain_steps=args.pretrain_steps,
        stage_steps=args.stage_steps, gammas=None, lr=1e-3, lr_end=1e-4, sigma=0.1, batch=32,
        steps_per_call=100, seed=0, out=model_dir, no_progress=True, json=False))
    train_s = time.perf_counter() - t0
    lpn, config = load_lpn(model_dir)
    test = jnp.asarray(load_image_dataset(args.data)["test"], jnp.float32)[: args.n_test or None]
    noise = [0.0, 0.025, 0.05, 0.1, 0.2, 0.3]
    blur = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    study = perturbation_study(lpn, test, noise_levels=noise, blur_levels=blur, key=jax.random.key(7),
                               max_steps=args.max_iter)
    ts = jnp.linspace(0, 1, 21)
    profiles = []
    for i, j in [(0, 1), (2, 3), (4, 5)]:
        R, gap, conv = interpolation_profile(lpn, test[i], test[j], ts, max_steps=args.max_iter)
        d2 = R[:-2] + R[2:] - 2 * R[1:-1]  # second differences: < 0 somewhere = non-convex
        profiles.append({"pair": [i, j], "R": R.tolist(), "max_above_chord": gap,
                         "min_second_difference": float(d2.min()), "converged": conv})
    noise_means = [m for _, m, _, _ in study["noise"]]
    blur_means = [m for _, m, _, _ in study["blur"]]
    summary = {
        "data": f"{args.data}: {test.shape[0]} held-out images {tuple(test.shape[1:])}",
        "model": config["model"],
        "train_steps": config["steps"],
        "train_seconds": train_s,
        "command": "python examples/prox_image_prior.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "noise": [dict(zip(("sigma", "mean_R", "std_R", "converged"), r)) for r in study["noise"]],
        "blur": [dict(zip(("sigma_b", "mean_R", "std_R", "converged"), r)) for r in study["blur"]],
        "R_monotone_in_noise": bool(np.all(np.diff(noise_means) > 0)),
        "R_monotone_in_blur": bool(np.all(np.diff(blur_means) > 0)),
        "interpolation": {"t": ts.tolist(), "profiles": profiles,
                          "nonconvex_pairs": sum(p["max_above_chord"] > 0 for p in profiles),
                          "nonconvex_pairs_second_difference": sum(p["min_second_difference"] < 0 for p in profiles)},
    }
    write_protected(paths[0], (json.dumps(summary, indent=2) + "\n").encode(), request=request,
                    what="--out")
    _plot(summary, test, lpn, paths[1], request=request)
    print(json.dumps({k: v for k, v in summary.items() if k != "interpolation"}, indent=1))
    print("interpolation max above chord:", [p["max_above_chord"] for p in profiles])


def _plot(summary, test, lpn, path, *, request):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    n = summary["noise"]
    ax[0].errorbar([r["sigma"] for r in n], [r["mean_R"] for r in n], [r["std_R"] for r in n], marker="o")
    ax[0].set(title="R vs Gaussian noise", xlabel="noise sigma", ylabel="R (held-out mean)")
    b = summary["blur"]
    ax[1].errorbar([r["sigma_b"] for r in b], [r["mean_R"] for r in b], [r["std_R"] for r in b], marker="o", color="C1")
    ax[1].set(title="R vs Gaussian blur", xlabel="blur sigma (pixels)")
    t = summary["interpolation"]["t"]
    for prof in summary["interpolation"]["profiles"]:
        R = np.asarray(prof["R"])
        ax[2].plot(t, R, marker=".", label=f"pair {prof['pair']}")
        ax[2].plot([0, 1], [R[0], R[-1]], "k:", lw=0.8)
    ax[2].set(title="R along (1-t) a + t b (dotted: chord)", xlabel="t")
    ax[2].legend(fontsize=7)
    noisy = test[:1] + 0.1 * jax.random.normal(jax.random.key(0), test[:1].shape)
    den = lpn.prox(noisy)
    strip = np.concatenate([np.asarray(test[0, 0]), np.asarray(noisy[0, 0]), np.asarray(den[0, 0])], axis=1)
    ax[3].imshow(np.clip(strip, 0, 1), cmap="gray")
    ax[3].set(title="clean | noisy (0.1) | LPN prox")
    ax[3].axis("off")
    for a in ax[:3]:
        a.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    write_protected(path, buf.getvalue(), request=request, what="--out")


if __name__ == "__main__":
    main()
