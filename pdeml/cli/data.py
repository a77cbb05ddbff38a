"""``pdeml data``: generate (or fetch from the cache) reference datasets.

    pdeml data diffusion-sorption --samples 64 --nx 128 --nt 51 --seed 0
    pdeml data diffusion-sorption --samples 8 --nx 1024 --nt 101 --out ds_paper.npz
    pdeml data navier-stokes --samples 16 --nx 64 --ny 64 --nt 64 --seed 0

Datasets are computed in float64 (the command enables JAX's x64 mode unless ``--float32`` is
given) and written with the checksummed, atomic cache of :mod:`pdeml.pde.cache`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from pdeml.cli import CLIError, add_json, add_precision


def register(subparsers) -> None:
    """Add ``data`` and its sub-commands to the ``pdeml`` parser."""
    data = subparsers.add_parser("data", help="generate / inspect reference datasets")
    problems = data.add_subparsers(dest="problem", metavar="PROBLEM")
    problems.required = True
    ds = problems.add_parser(
        "diffusion-sorption",
        help="PDEBench 1D diffusion-sorption (random initial conditions, BDF2 reference solver)",
        description="Generate random initial conditions and reference solutions of 1D "
        "diffusion-sorption on an nx x nt grid (or load them from the cache).",
    )
    ds.add_argument("--samples", type=int, default=16, help="number of samples (default 16)")
    ds.add_argument("--nx", type=int, default=128, help="spatial nodes incl. both ends (128)")
    ds.add_argument("--nt", type=int, default=51, help="time levels incl. t = 0 (51)")
    ds.add_argument("--seed", type=int, default=0, help="seed of the initial conditions (0)")
    ds.add_argument("--ic", choices=["pdebench", "fourier"], default="pdebench",
                    help="initial-condition family (default: pdebench, constant U(0, 0.2))")
    ds.add_argument("--x-refine", type=int, default=2,
                    help="solver grid refinement in x relative to nx (default 2)")
    ds.add_argument("--substeps", type=int, default=10,
                    help="BDF2 steps per output time interval (default 10)")
    ds.add_argument("--batch-size", type=int, default=32,
                    help="initial conditions solved per vmapped call (default 32)")
    add_precision(ds, "float64", "the reference solvers are validated to round-off in float64")
    add_json(ds, "a summary (shape, range, file, checksum)")
    where = ds.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path,
                       help="write to this .npz file, or into this existing directory")
    where.add_argument("--cache-dir", type=Path,
                       help="cache directory (default $PDEML_CACHE_DIR or ~/.cache/pdeml)")
    ds.set_defaults(func=run_diffusion_sorption)

    ns = problems.add_parser(
        "navier-stokes",
        help="2D periodic Navier-Stokes, vorticity form ([HC-MoE]: nu 1e-4, T 5, GRF ICs)",
        description="Generate Gaussian-random-field initial vorticities and pseudo-spectral "
        "reference solutions of 2D Navier-Stokes on an nx x ny x nt grid (or load them from "
        "the cache). Defaults are the [HC-MoE] settings.",
    )
    ns.add_argument("--samples", type=int, default=16, help="number of samples (default 16)")
    ns.add_argument("--nx", type=int, default=64, help="grid points in x (periodic; 64)")
    ns.add_argument("--ny", type=int, default=64, help="grid points in y (periodic; 64)")
    ns.add_argument("--nt", type=int, default=64, help="time levels incl. t = 0 and T (64)")
    ns.add_argument("--t-max", type=float, default=5.0, help="time horizon T (default 5)")
    ns.add_argument("--viscosity", type=float, default=1e-4, help="viscosity nu (1e-4)")
    ns.add_argument("--forcing", choices=["none", "li2021"], default="none",
                    help="forcing: none ([HC-MoE]) or li2021 (0.1 (sin + cos) 2pi(x + y))")
    ns.add_argument("--ic", choices=["periodic", "li2021"], default="periodic",
                    help="GRF family: periodic kernel ([HC-MoE], default) or li2021")
    ns.add_argument("--length-scale", type=float, default=0.8,
                    help="length scale of the periodic GRF kernel (default 0.8)")
    ns.add_argument("--ic-std", type=float, default=None,
                    help="GRF prefactor sigma (default 1 for periodic, 7^1.5 for li2021)")
    ns.add_argument("--seed", type=int, default=0, help="seed of the initial conditions (0)")
    ns.add_argument("--dt", type=float, default=None,
                    help="largest solver time step (default 0.64 / (max(nx, ny) * refine), "
                    "i.e. 0.01 at 64^2)")
    ns.add_argument("--refine", type=int, default=1,
                    help="solver grid refinement in x and y relative to nx, ny (default 1)")
    ns.add_argument("--batch-size", type=int, default=8,
                    help="initial conditions solved per vmapped call (default 8)")
    add_precision(ns, "float64", "the reference solvers are validated to round-off in float64")
    add_json(ns, "a summary (shape, range, file, checksum)")
    where = ns.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path,
                       help="write to this .npz file, or into this existing directory")
    where.add_argument("--cache-dir", type=Path,
                       help="cache directory (default $PDEML_CACHE_DIR or ~/.cache/pdeml)")
    ns.set_defaults(func=run_navier_stokes)


def _check(args: argparse.Namespace, checks=None) -> None:
    if checks is None:
        checks = [
            ("--samples", args.samples, 1),
            ("--nx", args.nx, 4),
            ("--nt", args.nt, 3),
            ("--seed", args.seed, 0),
            ("--x-refine", args.x_refine, 1),
            ("--substeps", args.substeps, 1),
            ("--batch-size", args.batch_size, 1),
        ]
    for flag, value, least in checks:
        if value < least:
            raise CLIError(f"{flag} must be an integer >= {least}, got {value}")
    if args.out is not None:
        if args.out.is_dir():
            name = f"{args.problem.replace('-', '_')}_{args.samples}samples_seed{args.seed}.npz"
            args.out = args.out / name
        elif args.out.suffix != ".npz":
            raise CLIError(f"--out must name a .npz file or an existing directory, got {str(args.out)!r}")
    if args.cache_dir is not None and args.cache_dir.exists() and not args.cache_dir.is_dir():
        raise CLIError(f"--cache-dir {str(args.cache_dir)!r} exists and is not a directory")


def _print_json(result, elapsed: float) -> int:
    import json

    ds = result.dataset
    print(json.dumps({"from_cache": bool(result.from_cache), "seconds": elapsed,
                      "u0_shape": list(ds.u0.shape), "u_shape": list(ds.u.shape),
                      "u_min": float(ds.u.min()), "u_max": float(ds.u.max()),
                      "file": str(result.path), "sha256": result.checksum}, indent=2))
    return 0


def run_diffusion_sorption(args: argparse.Namespace) -> int:
    """Generate or load the dataset described by ``args`` and print a summary."""
    _check(args)
    import jax

    if not args.float32 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from pdeml.pde import DiffusionSorption, DiffusionSorptionSolver, load_or_generate

    dtype = jnp.float32 if args.float32 else jnp.float64
    problem = DiffusionSorption(nx=args.nx, nt=args.nt)
    solver = DiffusionSorptionSolver(x_refine=args.x_refine, substeps=args.substeps)
    print(
        f"diffusion-sorption: {args.samples} samples, grid {args.nx} x {args.nt} "
        f"(solver: {(args.nx - 1) * args.x_refine + 1} nodes, {args.substeps} BDF2 steps per "
        f"output step), {jnp.dtype(dtype).name}, ic={args.ic}, seed={args.seed}",
        flush=True, file=sys.stderr if args.json else sys.stdout,
    )
    start = time.perf_counter()
    try:
        result = load_or_generate(
            problem, args.samples, args.seed, solver=solver, ic_kind=args.ic, dtype=dtype,
            cache_dir=args.cache_dir, path=args.out, batch_size=args.batch_size, progress=True,
        )
    except (RuntimeError, OSError) as e:
        raise CLIError(str(e)) from e
    elapsed = time.perf_counter() - start
    ds = result.dataset
    if args.json:
        return _print_json(result, elapsed)
    print(f"  {'loaded from cache' if result.from_cache else 'generated'} in {elapsed:.2f} s")
    if not result.from_cache:
        print(f"  solver wall time {ds.metadata['result']['wall_time_s']:.2f} s "
              f"(incl. compilation), max Newton iterations "
              f"{ds.metadata['result']['newton_iterations_max']}")
    print(f"  u0 {tuple(ds.u0.shape)}, u {tuple(ds.u.shape)}, "
          f"range [{float(ds.u.min()):.4g}, {float(ds.u.max()):.4g}]")
    print(f"  file   {result.path}")
    print(f"  sha256 {result.checksum}")
    return 0


def run_navier_stokes(args: argparse.Namespace) -> int:
    """Generate or load the Navier-Stokes dataset described by ``args`` and print a summary."""
    _check(args, [
        ("--samples", args.samples, 1),
        ("--nx", args.nx, 4),
        ("--ny", args.ny, 4),
        ("--nt", args.nt, 3),
        ("--seed", args.seed, 0),
        ("--refine", args.refine, 1),
        ("--batch-size", args.batch_size, 1),
    ])
    for flag, value in (("--t-max", args.t_max), ("--dt", args.dt),
                        ("--length-scale", args.length_scale)):
        if value is not None and not value > 0:
            raise CLIError(f"{flag} must be positive, got {value}")
    if not args.viscosity >= 0:
        raise CLIError(f"--viscosity must be >= 0, got {args.viscosity}")
    if args.ic_std is not None and not args.ic_std > 0:
        raise CLIError(f"--ic-std must be positive, got {args.ic_std}")
    import jax

    if not args.float32 and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from pdeml.pde import (
        GaussianRandomField,
        NavierStokes2D,
        NavierStokesSolver,
        navier_stokes_dataset,
    )

    dtype = jnp.float32 if args.float32 else jnp.float64
    problem = NavierStokes2D(nx=args.nx, ny=args.ny, nt=args.nt, t_max=args.t_max,
                             viscosity=args.viscosity, forcing=args.forcing)
    solver = NavierStokesSolver(dt=args.dt, refine=args.refine)
    grf = GaussianRandomField(kind=args.ic, length_scale=args.length_scale, std=args.ic_std)
    steps = math.ceil(problem.dt / solver.time_step(problem) * (1 - 1e-12)) * (args.nt - 1)
    print(
        f"navier-stokes: {args.samples} samples, grid {args.nx} x {args.ny} x {args.nt}, "
        f"T = {args.t_max}, nu = {args.viscosity}, forcing {args.forcing} (solver: "
        f"{args.nx * args.refine} x {args.ny * args.refine} modes, ~{steps} CN/Heun steps), "
        f"{jnp.dtype(dtype).name}, ic={args.ic}, seed={args.seed}",
        flush=True, file=sys.stderr if args.json else sys.stdout,
    )
    start = time.perf_counter()
    try:
        result = navier_stokes_dataset(
            problem, args.samples, args.seed, solver=solver, grf=grf, dtype=dtype,
            cache_dir=args.cache_dir, path=args.out, batch_size=args.batch_size, progress=True,
        )
    except (RuntimeError, OSError) as e:
        raise CLIError(str(e)) from e
    elapsed = time.perf_counter() - start
    ds = result.dataset
    if args.json:
        return _print_json(result, elapsed)
    print(f"  {'loaded from cache' if result.from_cache else 'generated'} in {elapsed:.2f} s")
    if not result.from_cache:
        res = ds.metadata["result"]
        print(f"  solver wall time {res['wall_time_s']:.2f} s (incl. compilation), "
              f"{res['steps_per_sample']} steps per sample, max CFL {res['cfl_max']:.3f}")
    print(f"  u0 {tuple(ds.u0.shape)}, u {tuple(ds.u.shape)}, "
          f"range [{float(ds.u.min()):.4g}, {float(ds.u.max()):.4g}]")
    print(f"  file   {result.path}")
    print(f"  sha256 {result.checksum}")
    return 0
