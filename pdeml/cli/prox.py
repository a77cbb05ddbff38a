"""``pdeml prox``: train a learned proximal network and probe the learned prior.

    pdeml prox train --data laplace --out runs/lpn_laplace
    pdeml prox train --data faces --out runs/lpn_faces --stage-steps 500
    pdeml prox eval  --model-dir runs/lpn_faces --noise 0 0.05 0.1 0.2 --blur 0 0.5 1 2

``train`` saves ``config.json`` + ``model.eqx`` in ``--out`` and its checkpoints and metrics in
``--out/run`` (re-running the same command resumes). ``eval`` prints a table (or ``--json``):
for ``laplace``, errors against soft-thresholding and |x|; for images, R on held-out images
under Gaussian noise and blur, and along the interpolation between two of them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pdeml.cli import (
    CLIError,
    add_json,
    add_precision,
    add_seed,
    command_request,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    writable_dir,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("prox", help="learned proximal networks (train / eval)")
    sub = p.add_subparsers(dest="prox_command", metavar="SUBCOMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train an LPN with proximal matching",
                       description="Train a learned proximal network; writes config.json + "
                       "model.eqx to --out and checkpoints + metrics to --out/run (re-running "
                       "the same command resumes).")
    t.add_argument("--data", choices=["laplace", "faces", "digits", "patches"], default="laplace",
                   help="training data: the 1D Laplace prior, or an image set (extra 'data') "
                   "(default laplace)")
    t.add_argument("--model", choices=["dense", "conv", "fully_conv"], default=None,
                   help="potential (default: dense for laplace, conv for faces/digits, fully_conv for patches)")
    t.add_argument("--hidden", type=positive_int, nargs="+", default=None,
                   help="hidden widths / channels (default 50 50 50 50 dense, 16 32 32 images)")
    t.add_argument("--alpha", type=positive_float, default=0.01,
                   help="strong convexity alpha > 0 of alpha/2 ||x||^2 (R is recovered by "
                   "inverting the prox, which needs alpha > 0) (default 0.01)")
    t.add_argument("--beta", type=positive_float, default=None,
                   help="softplus sharpness > 0 (default 10 dense, 100 images)")
    t.add_argument("--nonnegativity", choices=["project", "softplus"], default="softplus",
                   help="how the ICNN's weights stay non-negative (default softplus)")
    t.add_argument("--loss", choices=["pm", "l1", "l2"], default="pm",
                   help="pm = l1 pre-training then proximal matching stages (default pm)")
    t.add_argument("--pretrain-steps", type=nonnegative_int, default=1000,
                   help="l1 pre-training steps for --loss pm, 0 to skip (default 1000)")
    t.add_argument("--stage-steps", type=positive_int, default=1000,
                   help="steps per proximal-matching stage (default 1000)")
    t.add_argument("--gammas", type=positive_float, nargs="+", default=None,
                   help="proximal-matching gammas (default: 0.5..0.1 for laplace, (8,4,2,1) x 0.08 sqrt(n) for images)")
    t.add_argument("--lr", type=positive_float, default=1e-3, help="initial learning rate (1e-3)")
    t.add_argument("--lr-end", type=positive_float, default=1e-4,
                   help="final learning rate, reached by a geometric decay (1e-4)")
    t.add_argument("--sigma", type=positive_float, default=None,
                   help="training noise level > 0 (default 1 laplace, 0.1 images)")
    t.add_argument("--batch", type=positive_int, default=None,
                   help="samples per step (default 2000 laplace, 32 images)")
    t.add_argument("--steps-per-call", type=positive_int, default=100,
                   help="optimiser steps per compiled call (and per log line) (default 100)")
    add_seed(t, what="the initial parameters, the data and the noise")
    t.add_argument("--out", required=True, type=Path,
                   help="output directory (config.json, model.eqx, run/)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(t, "a summary (steps, final loss, files)")
    add_precision(t, "float32", "the priors are trained in float32")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval", help="probe a trained LPN (the learned prior on perturbed inputs)",
                       description="For a laplace model: errors against soft-thresholding and "
                       "|x| on [-3, 3]; for images: R on held-out images under noise and blur, "
                       "and along the segment between two of them.")
    e.add_argument("--model-dir", required=True, type=Path,
                   help="directory written by `pdeml prox train` (config.json + model.eqx)")
    e.add_argument("--noise", type=nonnegative_float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.4],
                   help="Gaussian noise levels (default 0 0.05 0.1 0.2 0.4)")
    e.add_argument("--blur", type=nonnegative_float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0],
                   help="Gaussian blur widths in pixels (default 0 0.5 1 1.5 2)")
    e.add_argument("--n-images", type=positive_int, default=20,
                   help="held-out images to average over, >= 2 (default 20)")
    add_seed(e, what="the noise")
    add_json(e)
    add_precision(e, "float32", "the priors are trained in float32; the model is cast to the "
                  "precision in use")
    e.set_defaults(func=run_eval)


def _load_images(name):
    try:
        from pdeml.data.images import load_image_dataset

        return load_image_dataset(name)
    except ModuleNotFoundError as err:
        raise CLIError(str(err)) from err


def run_train(args) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pdeml.data import sample_laplace
    from pdeml.prox import Schedule, Stage, train_lpn
    from pdeml.prox.analysis import build_lpn, check_lpn_overwrite, save_lpn

    out = writable_dir(args.out)
    request = command_request(args)
    check_lpn_overwrite(out, request)  # before training: another command's model is kept
    if args.data == "laplace":
        kind = args.model or "dense"
        if kind != "dense":
            raise CLIError("--data laplace needs --model dense")
        model_cfg = {"kind": "dense", "in_size": 1, "hidden": args.hidden or [50, 50, 50, 50],
                     "beta": 10.0 if args.beta is None else args.beta}
        batch = args.batch or 2000
        sigma = 1.0 if args.sigma is None else args.sigma
        sampler = lambda k: sample_laplace(k, batch, 1)  # noqa: E731
        gammas = args.gammas or [0.5, 0.4, 0.3, 0.2, 0.1]
        event = 1
    else:
        data = _load_images(args.data)
        train_imgs = jnp.asarray(data["train"], jnp.zeros(()).dtype)
        shape = tuple(train_imgs.shape[1:])
        kind = args.model or ("fully_conv" if args.data == "patches" else "conv")
        hidden = args.hidden or [16, 32, 32]
        if kind == "conv":
            model_cfg = {"kind": "conv", "image_shape": list(shape), "channels": hidden,
                         "strides": [1] + [2] * (len(hidden) - 1), "beta": 100.0 if args.beta is None else args.beta}
        elif kind == "fully_conv":
            model_cfg = {"kind": "fully_conv", "channels": shape[0], "hidden": hidden,
                         "beta": 100.0 if args.beta is None else args.beta}
        else:
            raise CLIError("image data needs --model conv or fully_conv")
        batch = args.batch or 32
        sigma = 0.1 if args.sigma is None else args.sigma
        n_img = train_imgs.shape[0]
        sampler = lambda k: train_imgs[jax.random.randint(k, (batch,), 0, n_img)]  # noqa: E731
        gammas = args.gammas or [m * 0.08 * math.sqrt(int(np.prod(shape))) for m in (8, 4, 2, 1)]
        event = 3
    model_cfg.update(alpha=args.alpha, nonnegativity=args.nonnegativity, seed=args.seed)
    total = args.pretrain_steps + len(gammas) * args.stage_steps
    if args.loss == "pm":
        lrs = np.geomspace(args.lr, args.lr_end, len(gammas) + 1)
        pre = (Stage("l1", args.pretrain_steps, args.lr),) if args.pretrain_steps else ()
        stages = pre + tuple(
            Stage("pm", args.stage_steps, (float(lrs[i]), float(lrs[i + 1])), gamma=float(g))
            for i, g in enumerate(gammas))
    else:
        stages = (Stage(args.loss, total, (args.lr, args.lr_end)),)
    lpn = build_lpn(model_cfg)
    res = train_lpn(lpn, sampler, Schedule(stages), key=jax.random.key(args.seed + 1), sigma=sigma,
                    run_dir=out / "run", steps_per_call=args.steps_per_call,
                    progress=not args.no_progress, log_every=args.steps_per_call)
    config = {"model": model_cfg, "data": args.data, "sigma": sigma, "loss": args.loss,
              "gammas": gammas, "steps": total, "event_ndim": event}
    save_lpn(out, res.model, config, request=request)
    last = [r for r in res.history if r.get("kind") == "train"][-1]
    if args.json:
        print(json.dumps({"steps": total, "final_loss": float(last["loss"]), "out": str(out),
                          "model": str(out / "model.eqx"), "config": str(out / "config.json")}, indent=2))
        return 0
    print(f"trained {total} steps; final loss {last['loss']:.4g}; saved to {out}")
    return 0


def run_eval(args) -> int:
    import jax
    import jax.numpy as jnp

    import equinox as eqx

    from pdeml.prox import evaluate_regularizer, soft_threshold
    from pdeml.prox.analysis import interpolation_profile, load_lpn, perturbation_study

    try:
        lpn, config = load_lpn(args.model_dir)
    except FileNotFoundError as err:
        raise CLIError(str(err)) from None
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, EOFError) as err:
        # a damaged or foreign model.eqx / config.json (the library's message says which)
        raise CLIError(f"--model-dir {str(args.model_dir)!r}: cannot load the LPN "
                       f"({type(err).__name__}: {err})") from None
    if args.n_images < 2 and config["data"] != "laplace":
        raise CLIError(f"--n-images must be >= 2 (the interpolation uses two images), got {args.n_images}")
    # the saved parameters are float32 or float64: run in the precision in use
    dtype = jnp.zeros(()).dtype
    lpn = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, lpn)
    if config["data"] == "laplace":
        x = jnp.linspace(-3, 3, 601, dtype=dtype)[:, None]
        R, info = evaluate_regularizer(lpn, x)
        dev = R - jnp.abs(x[:, 0])
        out = {
            "max_abs_f_minus_soft_threshold": float(jnp.max(jnp.abs(lpn.prox(x) - soft_threshold(x, 1.0)))),
            "max_abs_R_minus_absx_minus_c": float(jnp.max(jnp.abs(dev - dev.mean()))),
            "inversion_all_converged": bool(info.converged.all()),
        }
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            for k, v in out.items():
                print(f"{k:34s} {v}")
        return 0
    imgs = jnp.asarray(_load_images(config["data"])["test"][: args.n_images], dtype)
    key = jax.random.key(args.seed)
    study = perturbation_study(lpn, imgs, noise_levels=args.noise, blur_levels=args.blur, key=key)
    ts = jnp.linspace(0, 1, 11)
    R, gap, conv = interpolation_profile(lpn, imgs[0], imgs[1], ts)
    out = {**study, "interpolation": {"t": ts.tolist(), "R": R.tolist(), "max_above_chord": gap,
                                       "converged": conv}}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"held-out {config['data']} images: {imgs.shape[0]}")
    for name in ("noise", "blur"):
        print(f"{name:>6s} level   mean R       std R     converged")
        for level, m, s, c in out[name]:
            print(f"{level:12.3g} {m:12.5g} {s:10.3g}   {c}")
    print(f"interpolation between two test images: max R above the chord = {gap:.4g} "
          f"({'non-convex' if gap > 0 else 'convex'} along the segment)")
    return 0
