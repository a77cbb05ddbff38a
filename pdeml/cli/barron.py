"""``pdeml barron solve|norm|fit|ritz``: Barron-norm PDE approximators from the command line."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pdeml.cli import (
    CLIError,
    add_precision,
    add_seed,
    command_request,
    nonnegative_float,
    positive_float,
    positive_int,
    positive_int_list,
    save_figure_atomic,
    writable_dir,
    write_text_atomic,
)

# Default stopping tolerance of `barron solve` on the H^1 error bound (the preconditioned gradient
# norm over lambda; the solvers' atol with rtol = 0), by precision: float32 round-off leaves the gradient norm near 1e-6 on the test problems, so 1e-10 is unreachable
# there (measured: T2, d = 2, n = 15 reaches 1e-5 by step 22 and stalls).
DEFAULT_TOL = {"float64": 1e-10, "float32": 1e-5}
# The smallest tolerance accepted, by precision (a few hundred ulps of an O(1) field).
MIN_TOL = {"float64": 1e-13, "float32": 1e-6}


def _problem(args):
    import jax

    from pdeml.barron import TEST_PROBLEMS, make_test_problem

    if args.problem not in TEST_PROBLEMS:
        raise CLIError(f"--problem must be one of {list(TEST_PROBLEMS)}, got {args.problem!r}")
    if args.dim < 1:
        raise CLIError(f"--dim must be >= 1, got {args.dim}")
    return make_test_problem(args.problem, args.dim, key=jax.random.key(args.seed))


def _save(args, payload, fig=None, *, summary=None):
    """Write ``result.json`` (and ``plot.png``) under ``--out``, honour the deprecated ``--json
    PATH`` / ``--plot PATH`` spellings, then print JSON (``--json``) or a short summary."""
    out = writable_dir(args.out) if args.out is not None else None
    request = command_request(args)
    if out is not None:
        write_text_atomic(out / "result.json", json.dumps(payload, indent=1), request=request)
    if isinstance(args.json, str):  # deprecated: --json PATH
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.json, json.dumps(payload, indent=1), request=request)
    if fig is not None:
        if out is not None:
            save_figure_atomic(fig, out / "plot.png", request=request, dpi=90)
        if args.plot:  # deprecated: --plot PATH
            save_figure_atomic(fig, args.plot, request=request, dpi=90)
    if args.json is True:
        print(json.dumps(payload, indent=1))
        return
    for key, value in (summary or {k: v for k, v in payload.items() if not isinstance(v, list)}).items():
        print(f"{key:28s} {value}")
    if out is not None:
        print(f"{'written':28s} {out / 'result.json'}" + (f", {out / 'plot.png'}" if fig is not None else ""))


def _solve(args):
    from pdeml.barron import newton_krylov, sobolev_gradient_descent

    import jax.numpy as jnp

    problem = _problem(args)
    if args.n < 3:
        raise CLIError(f"--n must be >= 3, got {args.n}")
    precision = "float64" if jnp.zeros(()).dtype == jnp.float64 else "float32"
    tol = DEFAULT_TOL[precision] if args.tol is None else args.tol
    if tol < MIN_TOL[precision]:
        raise CLIError(f"--tol {tol:g} is below what {precision} can reach (>= {MIN_TOL[precision]:g}); "
                       + ("use --x64" if precision == "float32" else "give a larger --tol"))
    ref = problem.solution_on_grid(args.n)
    try:
        if args.solver == "sobolev":
            traj = sobolev_gradient_descent(problem, args.n, reference=ref, atol=tol, rtol=0.0, max_steps=args.max_steps, line_search=args.line_search)
        else:
            traj = newton_krylov(problem, args.n, reference=ref, atol=tol, rtol=0.0, max_steps=args.max_steps)
    except ValueError as e:
        raise CLIError(str(e)) from e
    h1 = traj.history("h1_error")
    payload = {"problem": args.problem, "dim": args.dim, "n": args.n, "solver": args.solver, "precision": precision,
               "tol": tol, "converged": bool(traj.converged), "steps": int(traj.num_steps),
               "h1_error_final": float(h1[-1]), "barron_norm_final": float(traj.history("barron_norm")[-1]),
               "h1_error": h1.tolist(), "energy": traj.history("energy").tolist(),
               "barron_norm": traj.history("barron_norm").tolist()}
    fig = None
    if args.plot or args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        fig, ax = plt.subplots(1, 4, figsize=(15, 3.5))
        u = np.asarray(traj.u)
        sl = (slice(None), slice(None)) + (0,) * (u.ndim - 2) if u.ndim >= 2 else None
        if u.ndim >= 2:
            im = ax[0].imshow(u[sl].T, origin="lower", extent=(0, 1, 0, 1))
            fig.colorbar(im, ax=ax[0])
            im = ax[1].imshow((u - np.asarray(ref))[sl].T, origin="lower", extent=(0, 1, 0, 1))
            fig.colorbar(im, ax=ax[1])
        else:
            ax[0].plot(u)
            ax[1].plot(u - np.asarray(ref))
        ax[0].set_title("solution (slice)")
        ax[1].set_title("error vs u* (slice)")
        ax[2].semilogy(traj.history("h1_error"))
        ax[2].set_title("H1 error")
        ax[3].plot(traj.history("barron_norm"))
        ax[3].set_title("Barron trajectory")
        fig.tight_layout()
    _save(args, payload, fig)
    if not traj.converged:
        print(f"not converged to --tol {tol:g} in {args.max_steps} steps (exit code 1)")
    return 0 if traj.converged else 1


def _norm(args):
    import jax

    from pdeml.barron import barron_norm_convergence

    problem = _problem(args)
    sizes = tuple(args.sizes)
    try:
        conv = barron_norm_convergence(problem.solution, args.dim, sizes, s=args.s)
    except ValueError as e:
        raise CLIError(str(e)) from e
    exact = float(problem.solution.barron_norm(args.s))
    _save(args, {"sizes": list(sizes), "fft_estimates": conv.values.tolist(), "relative_changes": conv.relative_changes.tolist(),
                 "converged": conv.converged, "exact": exact})
    del jax
    return 0


def _fit(args):
    import jax

    from pdeml.barron import RidgeSum, maurey_sample, merge_frequencies, orthogonal_greedy, random_features_fit, relative_l2_error

    if args.dim < 1:
        raise CLIError(f"--dim must be >= 1, got {args.dim}")
    sol = RidgeSum.random(args.dim, key=jax.random.key(args.seed))
    x = jax.random.uniform(jax.random.key(args.seed + 1), (args.points, args.dim))
    y = jax.vmap(sol)(x)
    xt = jax.random.uniform(jax.random.key(args.seed + 2), (8192, args.dim))
    b0 = float(sol.barron_norm(0.0))
    target = merge_frequencies(sol.to_cosine_network())
    rows = []
    for w in args.widths:
        if args.method == "greedy":
            net = orthogonal_greedy(x, y, w)
        elif args.method == "random":
            net = random_features_fit(x, y, w, key=jax.random.key(args.seed + 3))
        elif args.method == "maurey":
            net = maurey_sample(target, w, key=jax.random.key(args.seed + 3))
        else:
            raise CLIError(f"--method must be greedy, random or maurey, got {args.method!r}")
        rows.append({"width": w, "params": net.num_parameters, "rel_l2": float(relative_l2_error(net, sol, xt))})
    unorm = float(jax.numpy.sqrt(jax.numpy.mean(jax.vmap(sol)(xt) ** 2)))
    payload = {"dim": args.dim, "method": args.method, "barron_norm_B0": b0, "rows": rows,
               "bound_2B_over_sqrt_n_relative": [2 * b0 / math.sqrt(r["width"]) / unorm for r in rows]}
    fig = None
    if args.plot or args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ws = [r["width"] for r in rows]
        ax.loglog(ws, [max(r["rel_l2"], 1e-16) for r in rows], "o-", label=args.method)
        ax.loglog(ws, payload["bound_2B_over_sqrt_n_relative"], "k--", label="2B/sqrt(n)")
        ax.set(xlabel="width n", ylabel="relative L2 error")
        ax.legend()
    _save(args, payload, fig)
    return 0


def _ritz(args):
    import jax

    from pdeml.barron import PeriodicMLP
    from pdeml.barron.ritz import deep_ritz, pinn

    problem = _problem(args)
    net = PeriodicMLP.random(args.dim, width=args.width, depth=args.depth, key=jax.random.key(args.seed))
    try:
        if args.optimizer == "pinn":
            r = pinn(problem, net, key=jax.random.key(args.seed + 1), max_steps=args.steps, num_points=args.points, progress=not args.no_progress)
        else:
            r = deep_ritz(problem, net, key=jax.random.key(args.seed + 1), optimizer=args.optimizer, max_steps=args.steps,
                          num_points=args.points, progress=not args.no_progress, learning_rate=args.learning_rate)
    except ValueError as e:
        raise CLIError(str(e)) from e
    payload = {"problem": args.problem, "dim": args.dim, "optimizer": args.optimizer, "params": net.num_parameters,
               "relative_l2": float(r.relative_l2), "h1_error": float(r.h1_error), "energy_gap": float(r.energy_gap),
               "certificate": float(r.certificate), "error_bound": float(r.stats.error_bound),
               "converged": bool(r.converged), "loss": [float(v) for v in r.loss]}
    fig = None
    if args.plot or args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(payload["loss"])
        ax.set(xlabel="step", ylabel="loss", title=args.optimizer)
    _save(args, payload, fig)
    return 0


def register(subparsers) -> None:
    top = subparsers.add_parser("barron", help="Barron-norm PDE approximators")
    sub = top.add_subparsers(dest="barron_command", metavar="ACTION")
    sub.required = True

    def common(p, problem=True, precision="float32", why=""):
        if problem:
            p.add_argument("--problem", choices=["T1", "T2", "T3", "T4", "T5"], default="T2",
                           help="test problem with a manufactured solution: T1 linear, T2 "
                           "semilinear, T3 quasilinear, T4 p-Laplacian, T5 polynomial (default T2)")
        p.add_argument("--dim", type=positive_int, default=2, help="dimension d of the torus (default 2)")
        add_seed(p, what="the manufactured solution (and the sampled points)")
        p.add_argument("--out", type=Path, default=None,
                       help="write result.json and plot.png into this directory")
        p.add_argument("--json", nargs="?", const=True, default=None, metavar="PATH",
                       help="print the result as JSON on stdout instead of a summary "
                       "(--json PATH, which wrote a file, is deprecated: use --out)")
        p.add_argument("--plot", default=None, help=argparse.SUPPRESS)  # deprecated: --out
        add_precision(p, precision, why)

    p = sub.add_parser("solve", help="Sobolev descent / Newton-Krylov on a periodic grid")
    common(p, precision="float64", why="the default tolerance 1e-10 needs it")
    p.add_argument("--n", type=positive_int, default=15, help="grid points per axis, >= 3, odd recommended (default 15)")
    p.add_argument("--solver", choices=["sobolev", "newton"], default="sobolev",
                   help="Sobolev gradient descent (the paper's algorithm) or Newton-Krylov (default sobolev)")
    p.add_argument("--line-search", action="store_true", help="Armijo backtracking instead of the step 1/Lambda")
    p.add_argument("--tol", type=positive_float, default=None,
                   help="stop when the H^1 error bound (preconditioned gradient norm / lambda) is below TOL (default "
                   f"{DEFAULT_TOL['float64']:g} in float64, {DEFAULT_TOL['float32']:g} in float32)")
    p.add_argument("--max-steps", type=positive_int, default=200, help="iteration cap (default 200)")
    p.set_defaults(func=_solve)

    p = sub.add_parser("norm", help="Barron norm of a test solution: FFT estimates vs exact")
    common(p, precision="float64", why="FFT estimates are compared with the exact norm")
    p.add_argument("--sizes", type=positive_int_list, default=[5, 9, 17],
                   help="comma-separated grid sizes per axis (default 5,9,17)")
    p.add_argument("--s", type=nonnegative_float, default=1.0, help="order s of the Barron norm (default 1)")
    p.set_defaults(func=_norm)

    p = sub.add_parser("fit", help="approximate a ridge-sum function: error vs width against 2B/sqrt(n)")
    common(p, problem=False, why="least-squares fits of shallow networks")
    p.add_argument("--method", choices=["greedy", "random", "maurey"], default="greedy",
                   help="orthogonal greedy, random features or Maurey sampling (default greedy)")
    p.add_argument("--widths", type=positive_int_list, default=[2, 4, 8, 16],
                   help="comma-separated network widths (default 2,4,8,16)")
    p.add_argument("--points", type=positive_int, default=4096, help="training points (default 4096)")
    p.set_defaults(func=_fit)

    p = sub.add_parser("ritz", help="Deep Ritz (or --optimizer pinn) on a test problem")
    common(p, why="network training")
    p.add_argument("--optimizer", choices=["adam", "lbfgs", "natural_gradient", "pinn"], default="natural_gradient",
                   help="Deep Ritz optimiser, or pinn for a residual loss (default natural_gradient)")
    p.add_argument("--steps", type=positive_int, default=100, help="optimiser steps (default 100)")
    p.add_argument("--points", type=positive_int, default=2048, help="sampled points per step (default 2048)")
    p.add_argument("--width", type=positive_int, default=16, help="hidden width (default 16)")
    p.add_argument("--depth", type=positive_int, default=1, help="hidden layers (default 1)")
    p.add_argument("--learning-rate", type=positive_float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_ritz)
