"""Forward and forward+backward cost of the hard-constraint layer, native vs jaxopt vs optimistix.

Issue 2 / METHODS.md section 1. For m collocation points and N basis functions, times

* ``fwd``: the layer's work for one problem instance: gather the DiffusionSorption features
  ``(u, u_t, u_xx)`` of the basis at the m sampled points and the IC/BC rows
  (:meth:`pdeml.constraints.HardConstraint.least_squares_problem`), solve for w with
  Levenberg-Marquardt on the chosen back end, and return ``u = basis @ w``;
* ``fwd_bwd``: ``jax.value_and_grad`` of the scalar loss ``mean(u**2)`` with respect to the
  basis (implicit adjoint, :class:`pdeml.core.ImplicitAdjoint`, the same for every back end).

The problem (documented in the JSON): :class:`pdeml.pde.DiffusionSorption` on the paper grid
1024 x 101 (102,200 interior points, so m = 1e5 fits) with PDEBench constants; a smooth initial
condition consistent with both boundary conditions; the basis is the reference solution
(:class:`pdeml.pde.DiffusionSorptionSolver`) plus N - 1 tensor-product Legendre fields in
(x, t), orthonormalised over the grid and mixed by a random orthogonal N x N matrix -- a stand-in
for a trained network whose basis can represent the solution. The solve is warm-started at
``w_ref + perturbation * ||w_ref|| * z / ||z||`` (w_ref: the reference solution's coefficients,
z Gaussian) -- the situation in training, where the previous step's weights are a good start.
A ``cold`` case (full run only) calls the layer itself, :class:`~pdeml.constraints.HardConstraint`,
with its own start (the IC/BC rows fitted alone); on this problem that start leads every back end
into the trap near u = 0 (where R(u) jumps from ~13 to 1), so it measures the per-iteration
cost at the iteration cap.

Every back end gets the same :class:`pdeml.core.LevenbergMarquardt` settings (max_steps,
tolerances) and the same start. Times: lowering and compilation are measured separately (AOT
``jit(...).lower(...).compile()``), then one warm-up call and ``--repeats`` timed calls with
``block_until_ready``; the median is reported, and every time also as the ratio to the native
back end in the same run. Memory: XLA's compiled memory analysis of each function
(``total_allocation_bytes`` = argument + output + temp - alias; XLA's CPU
``peak_memory_in_bytes`` leaves the temporaries out) -- a per-function figure -- and the
process's resident-set high-water mark (``ru_maxrss``) after each case, which is cumulative over
the run and so only an upper bound.

Writes ``constraint_layer.json`` and ``constraint_layer.png`` to ``--out``; ``--profile-only``
writes just the profiles of the m = 2e4, N = 16 case (``constraint_layer_profile.json``):
where the native forward spends its time, and the forward solve with optimistix's default
linear solver vs the normal equations + Cholesky.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    env,
    legendre_fields,
    mixed_basis,
    pyplot,
    read_json,
    rss_high_water_bytes,
    savefig,
    time_function,
    write_json,
)

DEFAULT_OUT = os.path.join("benchmarks", "results", "constraint_layer")
BACKENDS = ("native", "jaxopt", "optimistix", "optimistix-cholesky")
MODES = ("fwd", "fwd_bwd")
# (m, N); the acceptance case m = 2e4, N = 16 is listed explicitly.
FULL_CASES = ((1000, 16), (1000, 64), (10000, 16), (10000, 64), (20000, 16), (100000, 16),
              (100000, 64))
QUICK_CASES = ((1000, 16), (20000, 16))
CRITERION_CASE = (20000, 16)
CRITERION_SPEEDUP = 10.0
SMOKE_GRID = (64, 11)  # the smallest grid the smoke test uses


class Setup(NamedTuple):
    """A DiffusionSorption instance with its reference solution (the basis is built from it)."""

    problem: object
    data: jax.Array  # initial condition (nx,)
    reference: np.ndarray  # reference solution (nx, nt), float64
    dtype: object
    reference_seconds: float


def make_setup(nx: int = 1024, nt: int = 101, *, dtype=jnp.float64, substeps: int = 5) -> Setup:
    """DiffusionSorption on an ``nx x nt`` grid, a smooth IC and its reference solution.

    The IC ``u0(x) = a (1 - x) + b + 0.2 sin(pi x) + 0.05 sin(3 pi x)`` with ``a = 1 / (1 + D)``,
    ``b = D a`` satisfies ``u(0) = 1`` and the outflow condition ``u(1) = -D u_x(1)`` exactly and
    stays positive, so the solution is smooth (no initial layer that the time grid cannot
    resolve) and away from the sorption singularity at u = 0.
    """
    from pdeml.pde import DiffusionSorption, DiffusionSorptionSolver

    problem = DiffusionSorption(nx=nx, nt=nt)
    x = np.linspace(0.0, problem.length, nx) / problem.length
    a = problem.left_value / (1.0 + problem.D)
    u0 = a * (1 - x) + problem.D * a + 0.2 * np.sin(np.pi * x) + 0.05 * np.sin(3 * np.pi * x)
    t0 = time.perf_counter()
    ref = DiffusionSorptionSolver(x_refine=1, substeps=substeps)(problem, jnp.asarray(u0, jnp.float64))
    reference = np.asarray(jax.block_until_ready(ref.u), np.float64)
    seconds = time.perf_counter() - t0
    return Setup(problem, jnp.asarray(u0, dtype), reference, jnp.dtype(dtype), seconds)


def make_basis(setup: Setup, n: int, *, seed: int = 0) -> tuple[jax.Array, np.ndarray]:
    """``(basis (nx, nt, N), w_ref (N,))``: reference solution + N - 1 smooth fields, mixed.

    The N - 1 fields are tensor products ``P_i(2x - 1) P_j(2t/T - 1)`` of Legendre polynomials
    (``d = ceil(sqrt(N - 1))`` degrees per axis, the first N - 1 in x-major order). All N are
    orthonormalised over the grid (RMS one) and mixed by a random orthogonal matrix, so every
    basis function carries part of the solution. ``basis @ w_ref`` is the reference solution.
    """
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n (number of basis functions) must be an integer >= 2, got {n!r}")
    nx, nt = setup.reference.shape
    if np.ceil(np.sqrt(n - 1)) > min(nx, nt):
        raise ValueError(f"grid {nx} x {nt} is too small for N = {n} basis functions")
    basis, w_ref = mixed_basis(setup.reference, legendre_fields(nx, nt, n - 1), n, seed)
    return jnp.asarray(basis, setup.dtype), w_ref


def warm_start(w_ref: np.ndarray, perturbation: float, *, seed: int = 1) -> np.ndarray:
    """``w_ref + perturbation * ||w_ref|| * z / ||z||`` with a Gaussian direction z."""
    z = np.random.default_rng(seed).standard_normal(w_ref.shape)
    return w_ref + perturbation * np.linalg.norm(w_ref) * z / np.linalg.norm(z)


def layer_solve(layer, basis, data, points, w0):
    """What :meth:`HardConstraint.__call__` does, but from the given start ``w0``.

    Returns ``(u, stats)``. ``w0 = None`` calls the layer itself (its own IC/BC-fit start).
    """
    from pdeml.core import solve_least_squares

    if w0 is None:
        u, info = layer(basis, data, points=points)
        return u, info.stats
    lsq = layer.least_squares_problem(basis, data, points)
    sol = solve_least_squares(lsq, w0, solver=layer.solver, adjoint=layer.adjoint,
                              backend=layer.backend, throw=layer.throw)
    return jnp.einsum("...n,n->...", basis, sol.value), sol.stats


def _functions(layer, cold: bool):
    def fwd(basis, data, points, w0):
        return layer_solve(layer, basis, data, points, None if cold else w0)

    def fwd_bwd(basis, data, points, w0):
        def loss(basis):
            u, stats = fwd(basis, data, points, w0)
            return jnp.mean(u**2), (u, stats)

        (val, (u, stats)), grad = jax.value_and_grad(loss, has_aux=True)(basis)
        return u, stats, val, grad

    return {"fwd": fwd, "fwd_bwd": fwd_bwd}


def _rel_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def run_case(setup: Setup, m: int, n: int, *, backends=BACKENDS, modes=MODES, repeats: int = 5,
             perturbation: float = 1e-2, start: str = "warm", max_steps: int = 100,
             seed: int = 0, start_seed: int | None = None) -> dict:
    """Measure one (m, N) case on every back end; returns a JSON-serialisable record.

    Args:
        setup: from :func:`make_setup`.
        m: collocation points (sampled without replacement from the interior points).
        n: basis functions.
        backends: back ends to run; ``"native"`` must be first (ratios are against it).
        modes: subset of ``("fwd", "fwd_bwd")``.
        repeats: timed calls per function (median reported).
        perturbation: relative size of the warm-start perturbation.
        start: ``"warm"`` (from :func:`warm_start`) or ``"cold"`` (the layer's own start).
        max_steps: Levenberg-Marquardt iteration cap (the same for all back ends).
        seed: seeds the basis mixing, the points and (by default) the warm start.
        start_seed: seeds the warm-start direction instead (default ``seed + 2``); the
            acceptance case is measured from several starts, since the iteration count of
            every back end depends on the start.

    Returns:
        ``{"m", "n", "start", "perturbation", "results": {backend: {mode: {...}}},
        "agreement": {backend: {...}}, "ratios": {backend: {mode: t / t_native}}}``.
    """
    from pdeml.constraints import HardConstraint, sample_points
    from pdeml.core import LevenbergMarquardt

    if start not in ("warm", "cold"):
        raise ValueError(f"start must be 'warm' or 'cold', got {start!r}")
    if tuple(backends)[0] != "native":
        raise ValueError(f"backends must start with 'native' (the baseline), got {backends!r}")
    if not set(modes) <= set(MODES):
        raise ValueError(f"modes must be a subset of {MODES}, got {modes!r}")
    basis, w_ref = make_basis(setup, n, seed=seed)
    points = sample_points(setup.problem.interior_points(), m, jax.random.key(seed + 1))
    start_seed = seed + 2 if start_seed is None else start_seed
    w0 = jnp.asarray(warm_start(w_ref, perturbation, seed=start_seed), setup.dtype)
    solver = LevenbergMarquardt(max_steps=max_steps)
    results, outputs = {}, {}
    for backend in backends:
        layer = HardConstraint(setup.problem, num_points=m, solver=solver, backend=backend,
                               throw=False)
        fns = _functions(layer, cold=start == "cold")
        results[backend], outputs[backend] = {}, {}
        for mode in modes:
            rec = time_function(fns[mode], (basis, setup.data, points, w0), repeats)
            out = outputs[backend][mode] = rec.pop("outputs")
            stats = out[1]
            rec |= {"iterations": int(stats.iterations), "converged": bool(stats.converged),
                    "residual_norm": float(stats.residual_norm),
                    "gradient_norm": float(stats.gradient_norm),
                    "condition_number": float(stats.condition_number)}
            rec["seconds_per_iteration"] = rec["median_s"] / max(rec["iterations"], 1)
            results[backend][mode] = rec
        results[backend]["rss_high_water_bytes_after"] = rss_high_water_bytes()
    u_nat = np.asarray(outputs["native"][modes[0]][0])
    agreement = {}
    for b in backends[1:]:
        agreement[b] = {"u_max_abs_diff_rel": _rel_diff(outputs[b][modes[0]][0], u_nat)}
        if "fwd_bwd" in modes:
            agreement[b]["grad_max_abs_diff_rel"] = _rel_diff(outputs[b]["fwd_bwd"][3],
                                                              outputs["native"]["fwd_bwd"][3])
    if start == "warm":
        u_ref = setup.reference
        agreement["native_vs_reference_rel_l2"] = float(
            np.linalg.norm(u_nat - u_ref) / np.linalg.norm(u_ref))
    ratios = {b: {md: results[b][md]["median_s"] / results["native"][md]["median_s"]
                  for md in modes} for b in backends}
    return {"m": m, "n": n, "start": start, "perturbation": perturbation if start == "warm" else None,
            "start_seed": start_seed if start == "warm" else None,
            "max_steps": max_steps, "results": results, "agreement": agreement, "ratios": ratios}


def _prepared(setup: Setup, m: int, n: int, seed: int):
    """``(layer, lsq, w0)`` of one case: the problem prebuilt, the warm start of run_case."""
    from pdeml.constraints import HardConstraint, sample_points

    basis, w_ref = make_basis(setup, n, seed=seed)
    points = sample_points(setup.problem.interior_points(), m, jax.random.key(seed + 1))
    w0 = jnp.asarray(warm_start(w_ref, 1e-2, seed=seed + 2), setup.dtype)
    layer = HardConstraint(setup.problem, num_points=m)
    return layer, (basis, setup.data, points), w0


def profile_native(setup: Setup, m: int, n: int, *, repeats: int = 10, seed: int = 0,
                   allocators=("default", "tuned")) -> dict:
    """Where the native forward spends its time, against the one-read bandwidth bound.

    Times (median, compiled, warm) of: building the least-squares problem (feature gather +
    IC/BC rows + stencil probe); one ``normal_equations`` evaluation (residual, Jacobian,
    J^T J, J^T r, the residual's size: the per-iteration work besides an N x N factorisation);
    one full LM step; the stats (incl. the singular values); and ``read_features``, one
    reduction over the ``(K, m, N)`` features -- the time to read them once, the bound for an
    iteration that must read every feature. Each part is timed under every allocator setting
    of ``allocators`` (:func:`pdeml.core.runtime.set_cpu_allocator`), switched in this
    process, so the comparison shares the machine's state; the tuned setting is left on.
    """
    from pdeml.core import LevenbergMarquardt, solve_least_squares
    from pdeml.core.runtime import set_cpu_allocator

    layer, args, w0 = _prepared(setup, m, n, seed)
    build = layer.least_squares_problem

    def solve(steps):
        solver = LevenbergMarquardt(max_steps=steps, rtol=0.0)
        return lambda p, w: solve_least_squares(p, w, solver=solver, backend="native",
                                                throw=False).stats.iterations

    lsq = jax.jit(build)(*args)
    # One LM iteration = (solve capped at 11 steps - solve capped at 1 step) / (the difference
    # of their iteration counts; rtol = 0 so that only the rounding floor stops them early):
    # the loop as the layer runs it.
    # The Gram product alone, on a prebuilt (m, N + 1) matrix [J r]: the arithmetic every
    # normal-equations iteration does, 2 m (N + 1)^2 flops, compute- not bandwidth-bound at
    # N = 64 in float64 on a CPU core.
    jr = jax.random.normal(jax.random.key(seed), (m, n + 1), lsq.features.dtype)
    parts = {
        "read_features": (lambda p: jnp.sum(p.features), (lsq,)),
        "gram_of_prebuilt_jacobian": (lambda a: a.T @ a, (jr,)),
        "jacobian_and_residual": (lambda p, w: p.pde_residual_and_jacobian(w), (lsq, w0)),
        "build_problem": (build, args),
        "normal_equations": (lambda p, w: p.normal_equations(w, with_size=True), (lsq, w0)),
        "solve_1_step": (solve(1), (lsq, w0)),
        "solve_11_steps": (solve(11), (lsq, w0)),
    }
    out = {"m": m, "n": n, "feature_bytes": int(lsq.features.nbytes), "allocators": {}}
    for mode in allocators:
        rec_mode = {"allocator": set_cpu_allocator(mode), "parts": {}}
        its = {}
        for name, (fn, fargs) in parts.items():
            rec = time_function(fn, fargs, repeats)
            its[name] = int(rec["outputs"]) if name.startswith("solve") else None
            rec_mode["parts"][name] = {"median_s": rec["median_s"], "repeats": rec["repeats"]}
        t = {k: v["median_s"] for k, v in rec_mode["parts"].items()}
        steps = its["solve_11_steps"] - its["solve_1_step"]
        rec_mode["iterations_11_vs_1"] = [its["solve_11_steps"], its["solve_1_step"]]
        rec_mode["lm_iteration_s"] = (t["solve_11_steps"] - t["solve_1_step"]) / max(steps, 1)
        rec_mode["lm_iteration_over_read_bound"] = rec_mode["lm_iteration_s"] / t["read_features"]
        # A roofline-style bound: an iteration must read the features once AND do the Gram's
        # arithmetic, so it costs at least the larger of the two.
        bound = max(t["read_features"], t["gram_of_prebuilt_jacobian"])
        rec_mode["lm_iteration_over_roofline_bound"] = rec_mode["lm_iteration_s"] / bound
        out["allocators"][mode] = rec_mode
        print(f"  profile m={m} N={n} allocator={mode}: " + ", ".join(
            f"{k} {1e3 * v:.2f} ms" for k, v in t.items())
            + f"; LM iteration {1e3 * rec_mode['lm_iteration_s']:.2f} ms = "
              f"{rec_mode['lm_iteration_over_read_bound']:.1f}x the one-read bound, "
              f"{rec_mode['lm_iteration_over_roofline_bound']:.1f}x max(read, Gram)", flush=True)
    set_cpu_allocator("tuned")
    return out


def profile_linear_solvers(setup: Setup, m: int, n: int, *, repeats: int = 5,
                           seed: int = 0) -> dict:
    """The forward solve alone (problem prebuilt) with different linear algebra per LM step.

    ``native`` (normal equations J^T J + Cholesky, J from the pointwise structure);
    ``optimistix`` as the back end runs it (``optx.LevenbergMarquardt`` with its default linear
    solver, QR of the damped least-squares operator); ``optimistix_normal_cholesky`` (the same
    optimistix solver and tolerances with ``linear_solver=lineax.Normal(lineax.Cholesky())``,
    i.e. the normal equations like native); ``jaxopt`` as the back end runs it. Separates the
    cost of the Levenberg-Marquardt driver from the cost of its linear solves.
    """
    import lineax as lx
    import optimistix as optx

    from pdeml.core import LevenbergMarquardt, solve_least_squares

    layer, args, w0 = _prepared(setup, m, n, seed)
    lsq = jax.jit(layer.least_squares_problem)(*args)
    solver = LevenbergMarquardt()
    xtol, _, _ = solver.tolerances(setup.dtype)

    def via_backend(backend):
        def fn(p, w):
            sol = solve_least_squares(p, w, solver=solver, backend=backend, throw=False)
            return sol.value, sol.stats.iterations
        return fn

    def optx_normal(p, w):
        lm = optx.LevenbergMarquardt(rtol=xtol, atol=xtol,
                                     linear_solver=lx.Normal(lx.Cholesky()))
        sol = optx.least_squares(lambda v, q: q.residual(v), lm, w, args=p,
                                 max_steps=solver.max_steps, throw=False)
        return sol.value, sol.stats["num_steps"]

    variants = {"native": via_backend("native"), "optimistix": via_backend("optimistix"),
                "optimistix_normal_cholesky": optx_normal, "jaxopt": via_backend("jaxopt")}
    out, w_native = {}, None
    for name, fn in variants.items():
        rec = time_function(fn, (lsq, w0), repeats)
        w, its = rec.pop("outputs")
        w = np.asarray(w)
        w_native = w if w_native is None else w_native
        out[name] = {"median_s": rec["median_s"], "compile_s": rec["compile_s"],
                     "repeats": rec["repeats"], "iterations": int(its),
                     "seconds_per_iteration": rec["median_s"] / max(int(its), 1),
                     "w_max_abs_diff_vs_native": float(np.max(np.abs(w - w_native)))}
    for rec in out.values():
        rec["ratio_to_native"] = rec["median_s"] / out["native"]["median_s"]
    return {"m": m, "n": n, "variants": out}


def environment(note: str = "") -> dict:
    """The machine record of this benchmark and of ``solver_robustness.py``."""
    return env("jax", "jaxlib", "equinox", "optimistix", "jaxopt", "python", "platform",
               "processor", "device", "num_devices", "cpu_count", "cpu_affinity",
               "load_average_1_5_15", "x64", note=note)


def plot(records: list[dict], path: str) -> None:
    plt = pyplot()
    colors = {"native": "tab:blue", "jaxopt": "tab:orange", "optimistix": "tab:green",
              "optimistix-cholesky": "tab:red"}
    styles, markers = {16: "-", 64: "--"}, {16: "o", 64: "s"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    # Per-iteration probes (a small max_steps) are not comparable with full solves, and the
    # acceptance case's extra starts would stack vertically: plot its first start.
    warm = [r for r in records if r["start"] == "warm" and r.get("max_steps", 100) == 100
            and r.get("start_seed") in (None, 2)]
    for ax, mode in zip(axes, MODES):
        for backend in BACKENDS:
            for n in sorted({r["n"] for r in warm}):
                rs = sorted((r for r in warm if r["n"] == n and backend in r["results"]
                             and mode in r["results"][backend]), key=lambda r: r["m"])
                if not rs:
                    continue
                res = [r["results"][backend][mode] for r in rs]
                ax.plot([r["m"] for r in rs], [x["median_s"] for x in res], styles.get(n, ":"),
                        marker=markers.get(n, "x"), color=colors[backend],
                        label=f"{backend}, N={n}")
                for r, x in zip(rs, res):
                    if not x["converged"]:
                        ax.plot(r["m"], x["median_s"], "x", color="red", markersize=10)
        ax.axvline(CRITERION_CASE[0], color="grey", lw=0.6, ls=":")
        ax.set(xscale="log", yscale="log", xlabel="collocation points m",
               title={"fwd": "forward (solve + u = b w)",
                      "fwd_bwd": "forward + backward (grad wrt basis)"}[mode])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("median time per call [s]")
    axes[1].legend(fontsize=8)
    fig.suptitle("Hard-constraint layer, DiffusionSorption 1024x101, warm start "
                 "(red x: not converged)", fontsize=10)
    savefig(fig, path, 120)


def _fmt_table(records: list[dict]) -> str:
    lines = [f"{'case':>22} {'backend':>10} | {'fwd s':>8} {'ratio':>6} {'it':>3} {'conv':>4} | "
             f"{'fwd+bwd s':>9} {'ratio':>6} | {'alloc MB (fwd/bwd)':>18}"]
    for r in records:
        case = f"m={r['m']} N={r['n']} {r['start']}"
        for b, res in r["results"].items():
            f, g = res.get("fwd"), res.get("fwd_bwd")
            mem = "/".join(
                f"{x['memory'].get('total_allocation_bytes', float('nan')) / 2**20:.0f}"
                for x in (f, g) if x is not None)
            lines.append(
                f"{case:>22} {b:>10} | "
                + (f"{f['median_s']:8.3f} {r['ratios'][b]['fwd']:6.2f} {f['iterations']:3d} "
                   f"{'y' if f['converged'] else 'n':>4} | " if f else " " * 27 + "| ")
                + (f"{g['median_s']:9.3f} {r['ratios'][b]['fwd_bwd']:6.2f} | " if g else " " * 18 + "| ")
                + f"{mem:>18}")
    return "\n".join(lines)


def _criterion(records: list[dict]) -> dict | None:
    """Native vs optimistix on the acceptance case, over every warm start measured.

    The speed-up is the ratio of the *total* time of the solves from all starts (sum of the
    per-start medians), so a start on which one back end needs many iterations counts with
    its real weight; the per-start ratios and iteration counts are listed too.
    """
    crit = [r for r in records if (r["m"], r["n"]) == CRITERION_CASE and r["start"] == "warm"
            and {"native", "optimistix"} <= set(r["results"])]
    if not crit:
        return None
    total = {b: {md: sum(r["results"][b][md]["median_s"] for r in crit) for md in MODES}
             for b in ("native", "optimistix")}
    out = {
        "case": {"m": CRITERION_CASE[0], "n": CRITERION_CASE[1], "start": "warm"},
        "starts": [r.get("start_seed") for r in crit],
        "required_speedup": CRITERION_SPEEDUP,
        "speedup_native_vs_optimistix": {
            md: total["optimistix"][md] / total["native"][md] for md in MODES},
        "speedup_per_start": [{md: r["ratios"]["optimistix"][md] for md in MODES} for r in crit],
        "iterations_per_start": [
            {b: r["results"][b]["fwd"]["iterations"] for b in r["results"]} for r in crit],
        "seconds_per_iteration_fwd": {
            b: sum(r["results"][b]["fwd"]["median_s"] for r in crit)
            / max(1, sum(r["results"][b]["fwd"]["iterations"] for r in crit))
            for b in crit[0]["results"]},
    }
    out["passed"] = all(v >= CRITERION_SPEEDUP for v in out["speedup_native_vs_optimistix"].values())
    return out


def _start_seeds(count: int, case) -> list:
    """Warm-start seeds: for the acceptance case 2 (the single start used before) onwards."""
    return list(range(2, 2 + count)) if tuple(case) == CRITERION_CASE else [None]


def _print_criterion(criterion: dict) -> None:
    s = criterion["speedup_native_vs_optimistix"]
    print("=" * 78)
    print(f"ACCEPTANCE m={CRITERION_CASE[0]}, N={CRITERION_CASE[1]} over "
          f"{len(criterion['starts'])} warm starts: native is {s['fwd']:.1f}x (fwd) and "
          f"{s['fwd_bwd']:.1f}x (fwd+bwd) faster than optimistix; required >= "
          f"{CRITERION_SPEEDUP:.0f}x: {'PASS' if criterion['passed'] else 'FAIL'}")
    print(f"iterations per start {criterion['iterations_per_start']}")
    print("=" * 78)


def _result(args, cases, setup, env_start, records, profiles, t_start, *, complete) -> dict:
    return {
        "benchmark": "constraint_layer",
        "complete": complete,
        "config": {
            "problem": "DiffusionSorption (PDEBench constants), grid 1024 x 101, "
                       "102200 interior points; m points sampled without replacement",
            "initial_condition": "a(1-x) + D a + 0.2 sin(pi x) + 0.05 sin(3 pi x), a = 1/(1+D)",
            "basis": "reference solution + (N-1) tensor Legendre fields in (x, t), orthonormalised "
                     "over the grid, mixed by a random orthogonal matrix",
            "start": "warm: w_ref + perturbation*||w_ref||*z/||z||; cold: HardConstraint's own "
                     "IC/BC-fit start (layer called as is)",
            "loss_for_backward": "mean(u**2), gradient w.r.t. the basis (implicit adjoint, exact "
                                 "Hessian, the same for every back end)",
            "solver": "pdeml.core.LevenbergMarquardt(max_steps=100), default tolerances "
                      "(xtol = sqrt(eps), gtol = eps**(2/3)) for every back end",
            "timing": "AOT compile excluded (reported), 1 warm-up call, median of repeats "
                      "(fewer, >= 1, when repeats would take > 60 s), block_until_ready",
            "memory": "jax.jit(f).lower(...).compile().memory_analysis() per function: "
                      "total_allocation_bytes = argument + output + temp - alias (XLA's CPU "
                      "peak_memory_in_bytes omits temp, kept for reference); "
                      "rss_high_water_bytes_after is the process ru_maxrss after each back end "
                      "(cumulative over the run, an upper bound)",
            "dtype": args.dtype,
            "repeats": args.repeats,
            "perturbation": args.perturbation,
            "quick": args.quick,
            "cases": [list(c) for c in cases],
            "reference_solution_seconds": setup.reference_seconds,
        },
        "environment": env_start | {"load_average_1_5_15_now": list(os.getloadavg())},
        "criterion": _criterion(records),
        **profiles,
        "records": records,
        "total_seconds": time.perf_counter() - t_start,
    }


def parse_pairs(ap, option: str, text: str | None):
    """``"1000:16,20000:16"`` -> ``((1000, 16), (20000, 16))`` (``None`` stays ``None``)."""
    try:
        return None if text is None else tuple(
            tuple(int(v) for v in c.split(":")) for c in text.split(","))
    except ValueError:
        ap.error(f"{option} must look like 1000:16,20000:16, got {text!r}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset (smoke run)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--perturbation", type=float, default=1e-2,
                    help="relative warm-start perturbation of the reference weights")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    ap.add_argument("--cases", default=None,
                    help="comma-separated m:N pairs instead of the default set, e.g. 100000:64")
    ap.add_argument("--backends", default=",".join(BACKENDS),
                    help="comma-separated back ends, native first (default: all three)")
    ap.add_argument("--max-steps", type=int, default=100,
                    help="Levenberg-Marquardt iteration cap for every back end (default 100); "
                         "a small cap gives a per-iteration probe of slow back ends")
    ap.add_argument("--starts", type=int, default=5,
                    help="warm starts (perturbation directions) for the m=2e4, N=16 acceptance "
                         "case (default 5); the speed-up is over their total time")
    ap.add_argument("--append", action="store_true",
                    help="add the records to an existing constraint_layer.json in --out "
                         "(tagged with this run's options) instead of replacing it")
    ap.add_argument("--profile-only", action="store_true",
                    help="only the profiles (writes constraint_layer_profile.json): the native "
                         "forward's parts and one LM iteration against the one-read bound at "
                         "--profile-cases under both allocator settings, and optimistix's "
                         "linear solvers at m=2e4, N=16")
    ap.add_argument("--profile-cases", default="20000:16,100000:16,100000:64",
                    help="m:N pairs for the native profile (default 20000:16,100000:16,100000:64)")
    ap.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                    help="glibc malloc setting for the run (pdeml.core.runtime."
                         "set_cpu_allocator; default tuned, as the pdeml command uses)")
    args = ap.parse_args(argv)
    for name in ("repeats", "max_steps", "starts"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.perturbation >= 0:
        ap.error("--perturbation must be >= 0")
    backends = tuple(b.strip() for b in args.backends.split(","))
    if backends[0] != "native" or not set(backends) <= set(BACKENDS):
        ap.error(f"--backends must start with native and be among {BACKENDS}, got {args.backends}")
    custom = parse_pairs(ap, "--cases", args.cases)
    profile_cases = parse_pairs(ap, "--profile-cases", args.profile_cases)
    if args.dtype == "float64":
        # A benchmark script, not library code: choosing the precision here is its job.
        jax.config.update("jax_enable_x64", True)
    os.makedirs(args.out, exist_ok=True)
    from pdeml.core.runtime import set_cpu_allocator

    allocator = set_cpu_allocator(args.allocator)
    env_start = environment(args.note) | {"allocator": allocator}
    setup = make_setup(dtype=jnp.dtype(args.dtype))
    print(f"reference solution: {setup.reference_seconds:.1f} s", flush=True)
    path = os.path.join(args.out, "constraint_layer.json")
    if custom is not None or args.append:
        cases = custom if custom is not None else (QUICK_CASES if args.quick else FULL_CASES)
        # A fresh file gets the same self-describing header as a full run (config, machine).
        result = read_json(path) if args.append else _result(
            args, cases, setup, env_start, [], {}, time.perf_counter(), complete=False)
        options = {"backends": list(backends), "max_steps": args.max_steps,
                   "repeats": args.repeats, "environment": environment(args.note)}
        for m, n in cases:
            for start_seed in _start_seeds(args.starts, (m, n)):
                print(f"--- m={m} N={n} warm (start {start_seed}), back ends {backends}, "
                      f"max_steps={args.max_steps}", flush=True)
                rec = run_case(setup, m, n, backends=backends, repeats=args.repeats,
                               perturbation=args.perturbation, max_steps=args.max_steps,
                               start_seed=start_seed)
                result["records"].append(rec | {"run_options": options})
                print(_fmt_table([rec]), flush=True)
                result["criterion"] = _criterion(result["records"])
                write_json(path, result)
        if result.get("criterion"):
            _print_criterion(result["criterion"])
        plot(result["records"], os.path.join(args.out, "constraint_layer.png"))
    elif args.profile_only:
        prof = {"benchmark": "constraint_layer (profiles)", "environment": env_start,
                "config": {"dtype": args.dtype, "case": list(CRITERION_CASE),
                           "profile_cases": [list(c) for c in profile_cases]},
                "profile_native": [profile_native(setup, m, n) for m, n in profile_cases],
                "profile_linear_solvers": profile_linear_solvers(setup, *CRITERION_CASE,
                                                                 repeats=args.repeats)}
        prof["environment"]["load_average_1_5_15_end"] = list(os.getloadavg())
        path = os.path.join(args.out, "constraint_layer_profile.json")
        write_json(path, prof)
        for name, rec in prof["profile_linear_solvers"]["variants"].items():
            print(f"{name:>28}: {rec['median_s']:.4f} s, {rec['iterations']} it, "
                  f"{1e3 * rec['seconds_per_iteration']:.2f} ms/it, x{rec['ratio_to_native']:.1f}")
    else:
        cases = QUICK_CASES if args.quick else FULL_CASES
        records, profiles = [], {}
        t_start = time.perf_counter()
        # The expensive m = 1e5 cases run last and the JSON is rewritten after every step, so
        # an interrupted run still leaves everything measured so far.
        plan = [("warm", c, s) for c in cases if c[0] <= CRITERION_CASE[0]
                for s in _start_seeds(args.starts, c)]
        plan += [] if args.quick else [("cold", CRITERION_CASE, None)]
        plan += [("profile", CRITERION_CASE, None)]
        plan += [("warm", c, None) for c in cases if c[0] > CRITERION_CASE[0]]
        for step, (m, n), start_seed in plan:
            print(f"--- m={m} N={n} {step}" + (f" (start {start_seed})" if start_seed else ""),
                  flush=True)
            if step == "profile":
                profiles["profile_native"] = profile_native(setup, m, n)
                profiles["profile_linear_solvers"] = profile_linear_solvers(
                    setup, m, n, repeats=args.repeats)
            else:
                records.append(run_case(setup, m, n, repeats=args.repeats, start=step,
                                        perturbation=args.perturbation, start_seed=start_seed))
                print(_fmt_table(records[-1:]), flush=True)
            result = _result(args, cases, setup, env_start, records, profiles, t_start,
                             complete=(step, (m, n), start_seed) == plan[-1])
            write_json(path, result)
        plot(records, os.path.join(args.out, "constraint_layer.png"))
        print(_fmt_table(records))
        _print_criterion(result["criterion"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
