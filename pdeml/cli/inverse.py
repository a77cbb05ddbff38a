"""``pdeml inverse``: solve an inverse problem on a built-in test image with a chosen prior.

    pdeml inverse deblur --sigma-blur 1 --noise 0.02 --method tv --lam 0.01
    pdeml inverse ct --angles 24 --noise 0.01 --method lpn --model-dir runs/lpn_ct --rho-factor 1.5
    pdeml inverse cs --ratio 0.25 --method tv
    pdeml inverse pde --time 3e-4 --stride 2 --method tikhonov --lam 1e-3

Images: ``deblur``/``cs``/``pde`` use a crop of scikit-image's bundled ``camera`` (optional
extra ``data``); ``ct`` uses the modified Shepp-Logan phantom. Methods: ``tv`` (PnP-ADMM with
the TV prox), ``lpn`` (PnP-ADMM with an LPN saved by ``pdeml prox train`` or
``benchmarks/inverse.py``), ``lpn-map`` (the same LPN's MAP problem by
:func:`pdeml.inverse.lpn_map`, guaranteed for any rho), ``bm3d`` (optional extra), ``tikhonov``
(CG). ``rho`` is given as a factor of ||A^T A||; for ``lpn`` a factor <= 1 is refused unless
``--no-guarantee`` (the convergence condition). Prints PSNR/SSIM (or ``--json``) and optionally saves a PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pdeml.cli import (
    CLIError,
    add_json,
    add_precision,
    add_seed,
    command_request,
    nonnegative_float,
    positive_float,
    positive_int,
    save_figure_atomic,
    writable_dir,
    write_text_atomic,
)


# Defaults chosen by benchmarks/inverse.py on a validation image (benchmarks/results/inverse/
# inverse.json): rho as a factor of ||A^T A|| per (task, method), and the TV weight per task.
RHO_FACTOR = {
    "deblur": {"tv": 1.0, "lpn": 1.02, "lpn-map": 0.5, "bm3d": 1.0},
    "ct": {"tv": 0.2, "lpn": 1.02, "lpn-map": 0.05, "bm3d": 1.0},
    "cs": {"tv": 0.2, "lpn": 1.02, "lpn-map": 0.05, "bm3d": 1.0},
    "pde": {"tv": 1.0, "lpn": 1.02, "lpn-map": 0.5, "bm3d": 1.0},
}
TV_LAM = {"deblur": 0.003, "ct": 0.001, "cs": 0.03, "pde": 0.001}
TIKHONOV_LAM = 1e-3
ITERS = {"lpn-map": 300}  # L-BFGS iterations; PnP-ADMM: 150
DEFAULT_ITERS = 150


def register(subparsers) -> None:
    p = subparsers.add_parser("inverse", help="inverse problems with learned priors (PnP)")
    sub = p.add_subparsers(dest="inverse_command", metavar="TASK")
    sub.required = True

    def common(q):
        q.add_argument("--method", choices=["tv", "lpn", "lpn-map", "bm3d", "tikhonov"], default="tv",
                       help="tv: PnP-ADMM with the TV prox; lpn: PnP-ADMM with a saved LPN; lpn-map: "
                       "the LPN's MAP problem (any rho); bm3d (extra 'bm3d'); tikhonov (CG) "
                       "(default tv)")
        q.add_argument("--model-dir", default=None,
                       help="saved LPN for --method lpn / lpn-map: a directory (from `pdeml prox "
                       "train` or benchmarks/inverse.py) or the name of a shipped prior "
                       "(lpn_j_natural, lpn_j_ct, lpn_j_ct_sigma0.02)")
        q.add_argument("--lam", type=positive_float, default=None,
                       help="TV weight (tv; default: the benchmark's choice for the task) or "
                       f"Tikhonov weight (tikhonov; default {TIKHONOV_LAM:g})")
        q.add_argument("--regularizer", choices=["identity", "gradient"], default="gradient",
                       help="Tikhonov regulariser (default gradient)")
        q.add_argument("--bm3d-sigma", type=positive_float, default=0.02,
                       help="BM3D noise level (default 0.02)")
        q.add_argument("--rho-factor", type=positive_float, default=None,
                       help="rho / ||A^T A|| (default: the benchmark's choice for the task and "
                       "method, e.g. ct: tv 0.2, lpn 1.02, lpn-map 0.05)")
        q.add_argument("--no-guarantee", action="store_true",
                       help="allow an LPN with rho <= ||A^T A|| (no convergence guarantee)")
        q.add_argument("--iters", type=positive_int, default=None,
                       help=f"iteration cap (default {DEFAULT_ITERS}; 300 for lpn-map)")
        q.add_argument("--size", type=positive_int, default=64, help="image side in pixels, >= 16 (default 64)")
        q.add_argument("--noise", type=nonnegative_float, default=None,
                       help="measurement noise std (default 0.02 deblur, 0.01 otherwise)")
        add_seed(q, what="the measurement noise (and the cs operator)")
        add_json(q)
        q.add_argument("--out", type=Path, default=None,
                       help="write result.json and reconstruction.png (truth | A^T y | "
                       "estimate) into this directory")
        q.add_argument("--png", default=None, help=argparse.SUPPRESS)  # deprecated: --out
        add_precision(q, "float32", "the shipped priors are float32")
        q.set_defaults(func=run)

    d = sub.add_parser("deblur", help="Gaussian deblurring (periodic boundary)")
    d.add_argument("--sigma-blur", type=positive_float, default=1.0, help="blur width in pixels (default 1)")
    common(d)
    c = sub.add_parser("ct", help="sparse-view parallel-beam CT of a Shepp-Logan phantom")
    c.add_argument("--angles", type=positive_int, default=24, help="projection angles (default 24)")
    common(c)
    s = sub.add_parser("cs", help="compressed sensing (random-sign circulant)")
    s.add_argument("--ratio", type=_ratio, default=0.25, help="measurements / pixels in (0, 1] (default 0.25)")
    common(s)
    h = sub.add_parser("pde", help="heat-equation initial condition from later observations")
    h.add_argument("--time", type=positive_float, default=None, help="T (default: kernel width 1.5 px)")
    h.add_argument("--stride", type=positive_int, default=2, help="observe every STRIDE-th pixel (default 2)")
    common(h)


def _ratio(text):
    v = positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return v


def _image(task, size):
    import numpy as np

    from pdeml.inverse import shepp_logan

    if task == "ct":
        return shepp_logan(size)[None]
    try:
        from pdeml.data.images import load_bundled_image
    except ModuleNotFoundError as err:  # pragma: no cover
        raise CLIError(str(err)) from err
    try:
        img = load_bundled_image("camera", dtype=np.float64)
    except ModuleNotFoundError as err:
        raise CLIError(str(err)) from err
    f = max(1, img.shape[-1] // (2 * size))
    img = img[:, : img.shape[1] // f * f, : img.shape[2] // f * f]
    img = img.reshape(1, img.shape[1] // f, f, img.shape[2] // f, f).mean(axis=(2, 4))
    h0 = (img.shape[1] - size) // 2
    w0 = (img.shape[2] - size) // 2
    if h0 < 0 or w0 < 0:
        raise CLIError(f"--size {size} is larger than the test image")
    return img[:, h0 : h0 + size, w0 : w0 + size]


def run(args) -> int:
    import jax
    import jax.numpy as jnp

    from pdeml.inverse import (
        CompressedSensing,
        GaussianBlur,
        HeatObservation,
        Radon,
        convergence_conditions,
        lpn_map,
        measure,
        pnp_admm,
        psnr,
        ssim,
        tikhonov,
    )
    from pdeml.prox import TotalVariationProx

    task = args.inverse_command
    if args.size < 16:
        raise CLIError("--size must be >= 16")
    if args.method in ("lpn", "lpn-map") and args.model_dir is None:
        raise CLIError(f"--method {args.method} needs --model-dir (a saved LPN)")
    out = writable_dir(args.out) if args.out is not None else None
    iters = args.iters or ITERS.get(args.method, DEFAULT_ITERS)
    rho_factor = args.rho_factor or RHO_FACTOR[task].get(args.method, 1.0)
    dtype = jnp.zeros(()).dtype
    x = jnp.asarray(_image(task, args.size), dtype)[None]
    shape = x.shape[1:]
    try:
        if task == "deblur":
            op, noise = GaussianBlur(shape, args.sigma_blur), 0.02
        elif task == "ct":
            op, noise = Radon(shape, args.angles), 0.01
        elif task == "cs":
            op, noise = CompressedSensing(shape, ratio=args.ratio, key=jax.random.key(args.seed)), 0.01
        else:
            T = args.time if args.time is not None else (1.5 / args.size) ** 2 / 2
            op, noise = HeatObservation(shape, time=T, stride=args.stride), 0.01
    except ValueError as err:
        raise CLIError(str(err)) from err
    noise = noise if args.noise is None else args.noise
    y = measure(op, x, noise, key=jax.random.key(args.seed + 1))
    norm = float(op.normest())
    rho = rho_factor * norm
    info = {"task": task, "method": args.method, "noise": noise, "norm_AtA": norm,
            "rho_factor": rho_factor, "iters": iters}
    if args.method == "tikhonov":
        lam = TIKHONOV_LAM if args.lam is None else args.lam
        est = tikhonov(op, y, lam, regularizer=args.regularizer)
        info.update(lam=lam)
    elif args.method == "lpn-map":
        prox = _lpn_from(args, dtype)
        res = lpn_map(op, prox, y, rho, max_steps=iters, rtol=1e-5)
        est = res.x
        info.update(rho=rho, iterations=int(res.iterations), converged=bool(res.converged),
                    convergence_conditions="any rho > 0 (line search on the objective)")
    else:
        if args.method == "tv":
            lam = TV_LAM[task] if args.lam is None else args.lam
            prox = TotalVariationProx(lam / rho, ndim=2, atol=1e-7, max_steps=200)
            info.update(lam=lam)
        elif args.method == "bm3d":
            from pdeml.inverse import BM3DDenoiser

            try:
                prox = BM3DDenoiser(args.bm3d_sigma)
            except ModuleNotFoundError as err:
                raise CLIError(str(err)) from err
        else:
            prox = _lpn_from(args, dtype)
            cond = convergence_conditions(prox, op, rho, norm=norm)
            info["convergence_conditions"] = cond.explain()
            if not cond.holds and not args.no_guarantee:
                raise CLIError(f"convergence conditions violated: {cond.explain()} "
                               "(use --rho-factor > 1 or --no-guarantee)")
        res = pnp_admm(op, prox, y, rho, max_steps=iters, rtol=1e-5)
        est = res.x
        info.update(rho=rho, iterations=int(res.iterations), converged=bool(res.converged))
    info["psnr"] = float(psnr(est, x)[0, 0])
    info["ssim"] = float(ssim(est, x)[0, 0])
    request = command_request(args)
    if args.png:  # deprecated spelling of --out: one PNG at this path
        info["png"] = str(_save_png(Path(args.png), x, op.adjoint(y), est, request=request))
    if out is not None:
        info["png"] = str(_save_png(out / "reconstruction.png", x, op.adjoint(y), est,
                                    request=request))
        info["json"] = str(out / "result.json")
        write_text_atomic(out / "result.json", json.dumps(info, indent=2), request=request)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:24s} {v}")
    return 0


def _lpn_from(args, dtype):
    import jax

    if args.model_dir is None:
        raise CLIError(f"--method {args.method} needs --model-dir (a saved LPN)")
    prox = _load_prior(args.model_dir)
    return jax.tree.map(lambda a: a.astype(dtype) if hasattr(a, "astype") else a, prox)


def _save_png(path, x, aty, est, *, request):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(1, 3, figsize=(9, 3.2))
    for a, img, t in zip(ax, (x, aty, est), ("truth", "A^T y", "estimate")):
        a.imshow(np.asarray(img).reshape(img.shape[-2:]), cmap="gray")
        a.set_title(t)
        a.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path, request=request, dpi=90)
    plt.close(fig)
    return path


def _load_prior(model_dir):
    """An LPN saved by ``pdeml prox train`` or a near-identity prior saved by
    ``benchmarks/inverse.py`` (told apart by the ``kind`` in its ``config.json``)."""
    import json
    from pathlib import Path

    from pdeml.inverse import available_priors, pretrained

    if not Path(model_dir).exists() and model_dir in available_priors():
        return pretrained(model_dir)
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.exists():
        raise CLIError(f"{model_dir} has no config.json: not a saved LPN")
    try:
        kind = json.loads(cfg_path.read_text()).get("want", {}).get("kind")
    except (json.JSONDecodeError, AttributeError) as err:
        raise CLIError(f"{cfg_path} is not a valid config file: {err}") from None
    try:
        if kind == "QuadraticICNN(FullyConvICNN)":
            from pdeml.inverse import load_near_identity_lpn

            prox, _ = load_near_identity_lpn(model_dir)
        else:
            from pdeml.prox.analysis import load_lpn

            prox, _ = load_lpn(model_dir)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError, EOFError) as err:
        # a damaged model.eqx, or parameters of another architecture
        raise CLIError(f"--model-dir {str(model_dir)!r}: cannot load the LPN "
                       f"({type(err).__name__}: {err})") from None
    return prox
