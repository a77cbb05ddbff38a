"""Robustness of the hard-constraint solve: fraction solved to the truth, false "converged".

Issue 14 items 7 and 8. Two parts.

**Robustness sweep.** problems x m x N x precision x start x back end. For every problem a
*truth* field is known and the basis spans it: the truth plus N - 1 smooth fields,
orthonormalised over the grid and mixed by a random orthogonal N x N matrix (as
``constraint_layer.make_basis``), so every basis function carries part of the truth. Problems:

* ``diffusion-sorption``: :class:`pdeml.pde.DiffusionSorption` on the paper grid 1024 x 101,
  ``constraint_layer.make_setup`` and ``make_basis`` (truth = the stiff reference solver's
  solution, not an exact zero of the finite-difference residual: the least-squares minimiser
  sits 2e-5..3e-4 (rel. L2) from it in float64).
* ``navier-stokes``: :class:`pdeml.pde.NavierStokes2D` (32 x 32 x 32, nu = 1e-3, T = 2); truth =
  :class:`pdeml.pde.NavierStokesSolver` from a periodic Gaussian random field, made an exact
  discrete solution by a forcing equal to its discrete residual; smooth fields = low Fourier
  modes in (x, y) times Legendre polynomials in t.
* ``reaction-diffusion``: :class:`pdeml.testing.ReactionDiffusion1D` (``u_t - kappa u_xx +
  reaction u^3 = f``, 256 x 101) with its ``manufactured`` data (exact discrete solution).
* ``burgers``: viscous Burgers ``u_t + u u_x = nu u_xx + f`` (:class:`ViscousBurgers1D` below,
  through the public :class:`pdeml.pde.PDEProblem` interface; 256 x 101); truth = a fine-step
  method-of-lines solution from ``sin(pi x)``, made exact by the forcing equal to its discrete
  residual (the time-discretisation error, small).

Starts: ``own`` (the layer's, :func:`pdeml.constraints.start.linearised_start`), ``ones`` and
``random`` (standard normal, the same draw for every back end and precision). Back ends:
``native`` (pdeml's structured Levenberg-Marquardt), ``optimistix`` (``optimistix.
LevenbergMarquardt``, QR linear solver) and ``optimistix-cholesky`` (``lineax.Normal(lineax.
Cholesky())``), all with :class:`pdeml.core.LevenbergMarquardt` defaults (100 steps).
``converged`` is pdeml's verdict for every back end (for optimistix: its own success AND pdeml's
stationarity test at the returned point, as ``solve_least_squares`` does; ``own_verdict`` is
optimistix's alone). A case is *solved* when converged and the rel. L2 error of ``u = basis @
w`` to the truth is within 1e-3 (float64) or 1e-2 (float32); *false converged* when converged
but not within it; *representable* when some back end reaches the truth from that start in that
precision. Times are of compiled calls (features, start, solve, ``u``): the median of up to
three calls after a first one (one call when it takes over 2 s). Each precision runs inside
``jax.enable_x64``; truths, bases, points and starts are built in float64 and cast.

**Speed comparison** (``--no-speed`` skips it, ``--speed-only`` runs it alone): native vs
optimistix QR vs Cholesky on diffusion-sorption 1024 x 101 at m = 2e4 and 1e5, N = 16, float64,
from the layer's own start: forward, forward+backward (``value_and_grad`` of ``mean(u**2)`` wrt
the basis; pdeml's implicit adjoint for every back end) and the solve alone. Medians over
rounds that call every compiled function once in turn; ratios ``t_backend / t_native``; max
|u_a - u_b| and the relative gradient difference show that the back ends agree.

A full run takes ~13 minutes on a 2-core CPU; it can be run in parts (``--problems``,
``--precisions``, ``--speed-only``) that ``--append`` merges into one JSON. Writes
``solver_robustness.{json,md,png}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import constraint_layer as cl  # noqa: E402  (make_setup, make_basis, environment)
from _common import (  # noqa: E402
    command,
    legendre_fields,
    md_table,
    mixed_basis,
    pyplot,
    read_json,
    savefig,
    timed_calls,
    write_json,
    write_text,
)

from pdeml.constraints.start import linearised_start  # noqa: E402
from pdeml.core import (  # noqa: E402
    RESULT_MESSAGES,
    STAGNATED,
    SUCCESS,
    LevenbergMarquardt,
    solve_least_squares,
    stop_gradient_arrays,
)
from pdeml.pde import PDEProblem  # noqa: E402
from pdeml.pde.grids import SpaceTimeGrid  # noqa: E402
from pdeml.pde.operators import fd_derivative_at  # noqa: E402

DEFAULT_OUT = os.path.join("benchmarks", "results", "solver_robustness")
BACKENDS = ("native", "optimistix", "optimistix-cholesky")
STARTS = ("own", "ones", "random")
PRECISIONS = ("float64", "float32")
TOLERANCE = {"float64": 1e-3, "float32": 1e-2}
MAX_STEPS = 100
SPEED_CASES = ((20000, 16), (100000, 16))
MODES = ("solve", "fwd", "fwd_bwd")  # speed comparison
RESULT_NAMES = {SUCCESS: "SUCCESS", 1: "MAX_STEPS_REACHED", 2: "NONFINITE",
                STAGNATED: "STAGNATED"}
# one call is enough when it takes longer than this (the timing noise is small against it)
SINGLE_CALL_S = 2.0


# ---- viscous Burgers through the public PDEProblem interface -------------------------------


class BurgersData(NamedTuple):
    """Initial condition ``u0 (nx,)``, forcing ``f (nx, nt)``, boundary values ``(nt - 1,)``."""

    u0: jax.Array
    f: jax.Array
    left: jax.Array
    right: jax.Array


class ViscousBurgers1D(PDEProblem):
    """``u_t + u u_x - nu u_xx - f = 0`` on [0, 1] x [0, T], Dirichlet rows at x = 0 and 1.

    Features ``(u, u_x, u_t, u_xx)``: second-order finite differences (central inside,
    one-sided at the last time level), gathered at the points. The residual is bilinear in the
    features (``u u_x``).
    """

    nu: float = eqx.field(static=True, default=0.03)
    t_max: float = eqx.field(static=True, default=1.0)
    nx: int = eqx.field(static=True, default=256)
    nt: int = eqx.field(static=True, default=101)

    @property
    def grid(self) -> SpaceTimeGrid:
        return SpaceTimeGrid(nx=self.nx, nt=self.nt, x_max=1.0, t_max=self.t_max)

    @property
    def grid_shape(self):
        return (self.nx, self.nt)

    @property
    def num_features(self):
        return 4

    def features_at(self, basis, points):
        g = self.grid
        return jnp.stack([fd_derivative_at(basis, points, axis=ax, order=o, spacing=h)
                          for ax, o, h in ((0, 0, g.dx), (0, 1, g.dx), (1, 1, g.dt), (0, 2, g.dx))])

    def pointwise(self, a, f):
        return a[2] + a[0] * a[1] - self.nu * a[3] - f

    def aux_at(self, data: BurgersData, points):
        return data.f[points[:, 0], points[:, 1]]

    def constraint_rows(self, basis, data: BurgersData):
        rows = jnp.concatenate([basis[:, 0, :], basis[0, 1:, :], basis[-1, 1:, :]])
        return rows, jnp.concatenate([data.u0, data.left, data.right])

    def interior_points(self):
        i, j = np.meshgrid(np.arange(1, self.nx - 1), np.arange(1, self.nt), indexing="ij")
        return jnp.asarray(np.stack([i.ravel(), j.ravel()], axis=1).astype(np.int32))


def burgers_method_of_lines(problem: ViscousBurgers1D, u0: np.ndarray) -> np.ndarray:
    """``(nx, nt)``: classical RK4 in time (step ``0.2 dx^2 / nu``) of the central-difference
    semi-discretisation with zero Dirichlet values, saved at the problem's time levels."""
    dx, save_dt = problem.grid.dx, problem.grid.dt
    sub = max(1, math.ceil(save_dt / (0.2 * dx**2 / problem.nu)))
    h = save_dt / sub

    def rhs(u):
        out = np.zeros_like(u)
        ux = (u[2:] - u[:-2]) / (2 * dx)
        uxx = (u[2:] - 2 * u[1:-1] + u[:-2]) / dx**2
        out[1:-1] = problem.nu * uxx - u[1:-1] * ux
        return out

    u = np.asarray(u0, np.float64).copy()
    out = [u.copy()]
    for _ in range(problem.nt - 1):
        for _ in range(sub):
            k1 = rhs(u)
            k2 = rhs(u + 0.5 * h * k1)
            k3 = rhs(u + 0.5 * h * k2)
            k4 = rhs(u + h * k3)
            u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(u.copy())
    return np.stack(out, axis=1)


def manufactured_forcing(problem: PDEProblem, truth: np.ndarray, zero_data) -> np.ndarray:
    """The grid field equal to the discrete residual of ``truth`` (with ``zero_data``, whose
    forcing is zero) at the interior points, zero elsewhere: with it as forcing, ``truth``
    solves the discrete equations exactly (the residual is affine in the forcing)."""
    pts = problem.interior_points()
    res = problem.residual_at(jnp.asarray(truth)[..., None], jnp.ones((1,), jnp.float64),
                              zero_data, pts)
    f = np.zeros(problem.grid_shape)
    f[tuple(np.asarray(pts).T)] = np.asarray(res)
    return f


# ---- problems -------------------------------------------------------------------------------


class Spec(NamedTuple):
    """One problem of the sweep, everything in float64 NumPy (cast per precision)."""

    name: str
    problem: PDEProblem
    data: Any  # pytree of float64 arrays
    truth: np.ndarray  # (*grid)
    basis: Callable[[int], tuple[np.ndarray, np.ndarray]]  # N -> (basis (*grid, N), w_ref)
    description: dict


def _spec(name, p, data, truth, fields, seed, problem, truth_text, basis_text) -> Spec:
    """A :class:`Spec` whose basis is ``truth`` + ``fields``, orthonormalised and mixed."""
    return Spec(name, p, data, truth, lambda nb: mixed_basis(truth, fields, nb, seed),
                {"problem": problem, "truth": truth_text, "basis": basis_text,
                 "interior_points": int(p.interior_points().shape[0])})


def diffusion_sorption_spec(nx: int = 1024, nt: int = 101) -> Spec:
    setup = cl.make_setup(nx, nt, dtype=jnp.float64)

    def basis(n):
        b, w_ref = cl.make_basis(setup, n)
        return np.asarray(b, np.float64), np.asarray(w_ref)

    p = setup.problem
    return Spec("diffusion-sorption", p, np.asarray(setup.data, np.float64), setup.reference,
                basis, {
                    "problem": f"DiffusionSorption(nx={nx}, nt={nt}) (PDEBench constants)",
                    "truth": "DiffusionSorptionSolver reference from constraint_layer.make_setup's "
                             "smooth IC (not an exact zero of the FD residual)",
                    "basis": "constraint_layer.make_basis: truth + tensor Legendre fields, mixed",
                    "interior_points": int(p.interior_points().shape[0])})


def navier_stokes_spec(n: int = 32, nt: int = 32, t_max: float = 2.0, viscosity: float = 1e-3,
                       seed: int = 0) -> Spec:
    from pdeml.pde import GaussianRandomField, NavierStokes2D, NavierStokesData, NavierStokesSolver

    p = NavierStokes2D(nx=n, ny=n, nt=nt, t_max=t_max, viscosity=viscosity)
    w0 = GaussianRandomField().sample(jax.random.key(seed), n, n, dtype=jnp.float64)
    truth = np.asarray(NavierStokesSolver()(p, w0).w, np.float64)
    zero = NavierStokesData(jnp.asarray(truth[..., 0]), jnp.zeros(p.grid_shape))
    data = NavierStokesData(np.asarray(truth[..., 0]), manufactured_forcing(p, truth, zero))
    # Smooth periodic fields: Fourier modes cos/sin(2 pi (kx x + ky y)), |k| small, times
    # Legendre polynomials in t; spatial mode fastest.
    x = np.arange(n) / n
    modes = sorted(((kx, ky) for kx in range(-2, 3) for ky in range(0, 3)
                    if (ky > 0 or kx > 0)), key=lambda k: (k[0] ** 2 + k[1] ** 2, k))
    spatial = []
    for kx, ky in modes:
        phase = 2 * np.pi * (kx * x[:, None] + ky * x[None, :])
        spatial += [np.cos(phase), np.sin(phase)]
    pt = np.polynomial.legendre.legvander(np.linspace(-1, 1, nt), 7)
    fields = np.stack([s[:, :, None] * pt[None, None, :, j] for j in range(pt.shape[1])
                       for s in spatial], axis=-1)
    return _spec("navier-stokes", p, data, truth, fields, seed,
                 f"NavierStokes2D(nx={n}, ny={n}, nt={nt}, t_max={t_max}, viscosity={viscosity})",
                 "NavierStokesSolver from a periodic GRF w0 (seed 0); forcing = its discrete "
                 "residual (exact discrete solution)",
                 "truth + Fourier modes (|k| <= 2) x Legendre in t, orthonormalised, mixed")


def reaction_diffusion_spec(nx: int = 256, nt: int = 101, reaction: float = 5.0,
                            kappa: float = 0.05, seed: int = 0) -> Spec:
    from pdeml.testing import ReactionDiffusion1D

    p = ReactionDiffusion1D(kappa=kappa, reaction=reaction, nx=nx, nt=nt)
    x, t = (np.asarray(v) for v in p.grid.mesh(jnp.float64))
    truth = (np.exp(-t) * np.sin(np.pi * x) + 0.5 * t * np.sin(3 * np.pi * x)
             + 0.2 * x * np.cos(2 * t))
    data = jax.tree.map(np.asarray, p.manufactured(jnp.asarray(truth)))
    return _spec("reaction-diffusion", p, data, truth, legendre_fields(nx, nt, 63), seed,
                 f"ReactionDiffusion1D(kappa={kappa}, reaction={reaction}, nx={nx}, nt={nt})",
                 "exp(-t) sin(pi x) + 0.5 t sin(3 pi x) + 0.2 x cos(2t), manufactured source "
                 "(exact discrete solution)",
                 "truth + tensor Legendre fields, orthonormalised, mixed")


def burgers_spec(nx: int = 256, nt: int = 101, nu: float = 0.03, seed: int = 0) -> Spec:
    p = ViscousBurgers1D(nu=nu, nx=nx, nt=nt)
    truth = burgers_method_of_lines(p, np.sin(np.pi * np.linspace(0.0, 1.0, nx)))
    zero = BurgersData(jnp.asarray(truth[:, 0]), jnp.zeros(p.grid_shape),
                       jnp.asarray(truth[0, 1:]), jnp.asarray(truth[-1, 1:]))
    f = manufactured_forcing(p, truth, zero)
    data = BurgersData(truth[:, 0], f, truth[0, 1:], truth[-1, 1:])
    return _spec("burgers", p, data, truth, legendre_fields(nx, nt, 63), seed,
                 f"ViscousBurgers1D(nu={nu}, nx={nx}, nt={nt}) (defined in this benchmark)",
                 "RK4 method of lines from sin(pi x), zero Dirichlet; forcing = its discrete "
                 f"residual (max abs(f) = {np.max(np.abs(f)):.2e}; exact discrete solution)",
                 "truth + tensor Legendre fields, orthonormalised, mixed")


# Which (m, N) each problem runs: the full grid of the issue for diffusion-sorption, a trimmed
# one for the others (so that the whole run fits in ~20 minutes on a 2-core CPU).
FULL_PLAN = {
    "diffusion-sorption": ((1000, 10000, 20000, 100000), (16, 64)),
    "navier-stokes": ((1000, 10000), (16,)),
    "reaction-diffusion": ((1000, 10000, 20000), (16,)),
    "burgers": ((1000, 10000, 20000), (16,)),
}
QUICK_PLAN = dict.fromkeys(FULL_PLAN, ((200,), (8,)))
BUILDERS = {"diffusion-sorption": diffusion_sorption_spec, "navier-stokes": navier_stokes_spec,
            "reaction-diffusion": reaction_diffusion_spec, "burgers": burgers_spec}
QUICK_SIZES = {
    # 128 x 21: the least-squares minimiser is 2.7e-4 (rel. L2) from the reference
    # (64 x 11: 1.2e-3, beyond the float64 tolerance)
    "diffusion-sorption": dict(nx=128, nt=21),
    "navier-stokes": dict(n=8, nt=6, t_max=0.5),
    "reaction-diffusion": dict(nx=32, nt=11),
    "burgers": dict(nx=32, nt=11),
}


def make_specs(quick: bool, names=tuple(FULL_PLAN)) -> dict[str, Spec]:
    """The problems ``names`` (small grids with ``quick``); call with x64 enabled."""
    return {name: BUILDERS[name](**(QUICK_SIZES[name] if quick else {})) for name in names}


# ---- one solve, any back end ----------------------------------------------------------------


def solve(lsq, w0, backend: str, solver: LevenbergMarquardt):
    """``(w, stats, own_verdict)`` for ``backend`` in :data:`BACKENDS`.

    ``native`` goes through :func:`pdeml.core.solve_least_squares`. Both optimistix variants
    call :func:`pdeml.interop.optimistix.levenberg_marquardt_optimistix` with their
    ``linear_solver`` and then do what ``solve_least_squares`` does with an external back end
    (pdeml's stats and verdict at the returned point, pdeml's implicit adjoint), keeping
    optimistix's own verdict, which ``solve_least_squares`` does not return.
    """
    from pdeml.core.least_squares import external_solution

    if backend == "native":
        sol = solve_least_squares(lsq, w0, solver=solver, backend="native", throw=False)
        return sol.value, sol.stats, sol.stats.converged
    from pdeml.interop.optimistix import BACKEND_LINEAR_SOLVERS, levenberg_marquardt_optimistix

    w_star, iterations, own = levenberg_marquardt_optimistix(
        stop_gradient_arrays(lsq), w0, solver, linear_solver=BACKEND_LINEAR_SOLVERS[backend])
    w, stats = external_solution(lsq, w_star, iterations, own, solver)
    return w, stats, own


def layer_forward(problem: PDEProblem, backend: str, solver: LevenbergMarquardt):
    """``f(basis, data, points, w0, use_own) -> (u, w, stats, own_verdict)``: what
    :class:`~pdeml.constraints.HardConstraint` does (features at the points, IC/BC rows, the
    start, the solve, ``u = basis @ w``), with the start either the layer's own
    (``use_own=True``, computed only then) or ``w0``."""
    from pdeml.constraints import HardConstraint

    layer = HardConstraint(problem, solver=solver, throw=False)

    def fwd(basis, data, points, w0, use_own):
        lsq = layer.least_squares_problem(basis, data, points)
        start = lax.cond(use_own, lambda: linearised_start(problem, lsq, data, points),
                         lambda: w0)
        w, stats, own = solve(lsq, start, backend, solver)
        return jnp.einsum("...n,n->...", basis, w), w, stats, own

    return fwd


def cast(tree, dtype):
    """The floating leaves of ``tree`` as ``dtype`` arrays, the others as arrays."""
    floating = lambda a: np.issubdtype(np.asarray(a).dtype, np.floating)  # noqa: E731
    return jax.tree.map(lambda a: jnp.asarray(a, dtype) if floating(a) else jnp.asarray(a), tree)


def float64_stationarity(spec: Spec, basis64: np.ndarray, points) -> Callable:
    """``w -> max_j |(J^T r)_j| / (||J_j|| ||r||)`` of the problem built in float64 (the
    stationarity measure of :func:`pdeml.core.stationarity_test`), to tell a local minimum
    from a point that only passed the test in its working precision."""
    from pdeml.constraints import HardConstraint
    from pdeml.core import stationarity_test

    with jax.enable_x64(True):
        lsq = HardConstraint(spec.problem).least_squares_problem(
            jnp.asarray(basis64), cast(spec.data, jnp.float64), jnp.asarray(points))

        @jax.jit
        def measure(lsq, w):
            obj, grad, gtg, _ = lsq.normal_equations(w)
            return stationarity_test(lsq, w, obj, grad, gtg, 0.0)[0]

    def evaluate(w):
        with jax.enable_x64(True):
            return float(measure(lsq, jnp.asarray(w, jnp.float64)))

    return evaluate


def _case_record(spec, m, n, precision, start, backend, stats, own, u, stat64, gtol) -> dict:
    tol = TOLERANCE[precision]
    rel = float(np.linalg.norm(u - spec.truth) / np.linalg.norm(spec.truth))
    finite = bool(np.isfinite(rel))
    converged, result = bool(stats.converged), int(stats.result)
    within = finite and rel <= tol
    return {
        "problem": spec.name, "m": m, "n": n, "precision": precision, "start": start,
        "backend": backend, "converged": converged, "result": result,
        "result_name": RESULT_NAMES.get(result, str(result)),
        "result_message": RESULT_MESSAGES.get(result, ""),
        "own_verdict": bool(own), "iterations": int(stats.iterations),
        "stationarity": float(stats.stationarity), "residual_norm": float(stats.residual_norm),
        "constraint_norm": float(stats.constraint_norm),
        "condition_number": float(stats.condition_number),
        "rank_deficient": bool(stats.rank_deficient),
        "rel_l2": rel if finite else None, "tolerance": tol, "within_tolerance": within,
        "solved": converged and within, "false_converged": converged and not within,
        # the stationarity measure at the returned w, evaluated in float64: a false
        # "converged" with it <= 10 gtol is a genuine local minimum away from the truth
        "stationarity_float64": stat64,
        "false_converged_kind": (None if not (converged and not within) else
                                 "local_minimum" if stat64 <= 10 * gtol else "not_stationary"),
    }


def run_cell(spec: Spec, m: int, n: int, precision: str, backends=BACKENDS, starts=STARTS,
             seed: int = 0) -> list[dict]:
    """All starts x back ends for one (problem, m, N, precision); call inside the precision's
    ``jax.enable_x64`` context."""
    from pdeml.constraints import sample_points

    dtype = jnp.dtype(precision)
    solver = LevenbergMarquardt(max_steps=MAX_STEPS)
    with jax.enable_x64(True):  # built in float64, then cast; the same points in both precisions
        basis64, _ = spec.basis(n)
        points = np.asarray(sample_points(spec.problem.interior_points(), m,
                                          jax.random.key(seed + 1)))
    basis, data, points = jnp.asarray(basis64, dtype), cast(spec.data, dtype), jnp.asarray(points)
    start_w = {"own": np.zeros(n), "ones": np.ones(n),
               "random": np.random.default_rng(1000 + n).standard_normal(n)}
    gtol = float(np.finfo(precision).eps) ** 0.5  # the default gtol of the precision
    stationarity64 = float64_stationarity(spec, basis64, points)
    out = []
    for backend in backends:
        fwd = layer_forward(spec.problem, backend, solver)
        args0 = (basis, data, points, jnp.asarray(start_w["ones"], dtype), jnp.asarray(True))
        t0 = time.perf_counter()
        compiled = jax.jit(fwd).lower(*args0).compile()
        compile_s = time.perf_counter() - t0
        for start in starts:
            args = (basis, data, points, jnp.asarray(start_w[start], dtype),
                    jnp.asarray(start == "own"))
            (u, w, stats, own), (first_s,) = timed_calls(lambda: compiled(*args), 1)
            # the median of up to three further calls (none when the first took > SINGLE_CALL_S)
            wall_s, repeats = first_s, 1
            if first_s <= SINGLE_CALL_S:
                _, times = timed_calls(lambda: compiled(*args), max(1, min(
                    3, int(3 * SINGLE_CALL_S / max(first_s, 1e-9)))))
                wall_s, repeats = statistics.median(times), len(times)
            rec = _case_record(spec, m, n, precision, start, backend, stats, own,
                               np.asarray(u, np.float64),
                               stationarity64(np.asarray(w, np.float64)), gtol)
            rec |= {"wall_s": wall_s, "timing_calls": repeats, "first_call_s": first_s,
                    "compile_s": compile_s}
            out.append(rec)
            verdict = ("SOLVED" if rec["solved"] else
                       f"FALSE-CONV ({rec['false_converged_kind']})" if rec["false_converged"]
                       else "")
            rel = np.nan if rec["rel_l2"] is None else rec["rel_l2"]
            print(f"{spec.name:>18} m={m:<6} N={n:<2} {precision} {start:>6} {backend:>19}: "
                  f"conv={'y' if rec['converged'] else 'n'} ({rec['result_name']}, own "
                  f"{'y' if own else 'n'}) it={rec['iterations']:3d} relL2={rel:.2e} "
                  f"{verdict} {wall_s:.3f}s", flush=True)
    return out


# ---- summary --------------------------------------------------------------------------------


def mark_representable(cases: list[dict]) -> None:
    """``representable``: some back end reaches the truth (rel. L2 within tolerance) from the
    same start in the same precision, on the same (problem, m, N)."""
    key = lambda c: (c["problem"], c["m"], c["n"], c["precision"], c["start"])  # noqa: E731
    reach = {}
    for c in cases:
        reach[key(c)] = reach.get(key(c), False) or c["within_tolerance"]
    for c in cases:
        c["representable"] = reach[key(c)]


def summarise(cases: list[dict]) -> dict:
    def count(sel, test):
        return sum(bool(test(c)) for c in sel)

    def table(rows):
        out = {}
        for b, p in itertools.product(BACKENDS, PRECISIONS):
            sel = [c for c in rows if c["backend"] == b and c["precision"] == p]
            if sel:
                out.setdefault(b, {})[p] = {
                    "cases": len(sel),
                    "solved": count(sel, lambda c: c["solved"]),
                    "fraction_solved": count(sel, lambda c: c["solved"]) / len(sel),
                    "false_converged": count(sel, lambda c: c["false_converged"]),
                    "false_converged_local_minimum": count(
                        sel, lambda c: c["false_converged_kind"] == "local_minimum"),
                    "false_converged_not_stationary": count(
                        sel, lambda c: c["false_converged_kind"] == "not_stationary"),
                    "within_tolerance": count(sel, lambda c: c["within_tolerance"]),
                    "converged": count(sel, lambda c: c["converged"]),
                    # reached the truth but pdeml's test did not accept the point
                    "at_truth_not_converged": count(
                        sel, lambda c: c["within_tolerance"] and not c["converged"]),
                    "median_iterations": statistics.median(c["iterations"] for c in sel),
                    "total_wall_s": sum(c["wall_s"] for c in sel),
                }
        return out

    rep = [c for c in cases if c["representable"]]
    return {"all": table(cases), "representable": table(rep),
            "representable_per_problem": {name: table([c for c in rep if c["problem"] == name])
                                          for name in dict.fromkeys(c["problem"] for c in cases)}}


# ---- speed comparison -----------------------------------------------------------------------


def speed_comparison(spec: Spec, cases=SPEED_CASES, rounds: int = 15, seed: int = 0) -> list[dict]:
    """Native vs optimistix QR vs Cholesky, float64, the layer's own start; call with x64 on.

    Every function is compiled first; then ``rounds`` rounds call each function once in turn,
    so that load from other processes falls on all of them alike. Medians (and minima) over
    the rounds. ``shared`` times what every back end does besides the solve: the features at
    the points, the IC/BC rows, the layer's start and ``u = basis @ w0``.
    """
    from pdeml.constraints import HardConstraint, sample_points

    solver = LevenbergMarquardt(max_steps=MAX_STEPS)
    start = lambda lsq, data, points: linearised_start(spec.problem, lsq, data, points)  # noqa
    out = []
    for m, n in cases:
        basis = jnp.asarray(spec.basis(n)[0], jnp.float64)
        data = cast(spec.data, jnp.float64)
        points = sample_points(spec.problem.interior_points(), m, jax.random.key(seed + 1))
        args = (basis, data, points)
        layer = HardConstraint(spec.problem, solver=solver, throw=False)

        def shared(basis, data, points):
            w0 = start(layer.least_squares_problem(basis, data, points), data, points)
            return jnp.einsum("...n,n->...", basis, w0)

        # the solve alone: the problem and the layer's start prebuilt, the same for all
        lsq = jax.jit(layer.least_squares_problem)(*args)
        solve_args = (lsq, jax.jit(start)(lsq, data, points))
        fns = {("shared", "fwd"): (shared, args)}
        for backend in BACKENDS:
            fwd = layer_forward(spec.problem, backend, solver)
            run = (lambda b, data, points, fwd=fwd:
                   fwd(b, data, points, jnp.zeros(n), jnp.asarray(True)))

            def f_fwd(basis, data, points, run=run):
                u, _, stats, own = run(basis, data, points)
                return u, stats, own

            def f_bwd(basis, data, points, f_fwd=f_fwd):
                def loss(b):
                    out = f_fwd(b, data, points)
                    return jnp.mean(out[0] ** 2), out
                (val, aux), grad = jax.value_and_grad(loss, has_aux=True)(basis)
                return aux, val, grad

            fns[(backend, "solve")] = (lambda lsq, w0, backend=backend:
                                       solve(lsq, w0, backend, solver)), solve_args
            fns[(backend, "fwd")] = f_fwd, args
            fns[(backend, "fwd_bwd")] = f_bwd, args
        compiled, compile_s, outputs, times = {}, {}, {}, {}
        for key, (fn, fargs) in fns.items():
            t0 = time.perf_counter()
            compiled[key] = jax.jit(fn).lower(*fargs).compile()
            compile_s[key] = time.perf_counter() - t0
            outputs[key] = jax.block_until_ready(compiled[key](*fargs))  # warm-up
            times[key] = []
        for _ in range(rounds):
            for key, (_, fargs) in fns.items():
                times[key] += timed_calls(lambda: compiled[key](*fargs), 1)[1]
        t = times[("shared", "fwd")]
        res = {"shared": {"fwd": {"median_s": statistics.median(t), "min_s": min(t),
                                  "times_s": t}}}
        for backend in BACKENDS:
            res[backend] = {}
            for mode in MODES:
                o = outputs[(backend, mode)]
                stats, own = o[0][1:] if mode == "fwd_bwd" else o[1:3]
                t = times[(backend, mode)]
                res[backend][mode] = {
                    "median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                    "repeats": len(t), "compile_s": compile_s[(backend, mode)],
                    "iterations": int(stats.iterations), "converged": bool(stats.converged),
                    "own_verdict": bool(own), "result": int(stats.result),
                    "stationarity": float(stats.stationarity),
                }
            u = np.asarray(outputs[(backend, "fwd")][0])
            res[backend]["rel_l2_to_truth"] = float(np.linalg.norm(u - spec.truth)
                                                    / np.linalg.norm(spec.truth))
            r = res[backend]
            print(f"speed m={m} N={n} {backend:>19}: solve {r['solve']['median_s']:.4f} s, fwd "
                  f"{r['fwd']['median_s']:.4f} s ({r['fwd']['iterations']} it), fwd+bwd "
                  f"{r['fwd_bwd']['median_s']:.4f} s", flush=True)
        print(f"speed m={m} N={n} shared (features, rows, start, u): "
              f"{res['shared']['fwd']['median_s']:.4f} s", flush=True)
        u_nat = np.asarray(outputs[("native", "fwd")][0])
        g_nat = np.asarray(outputs[("native", "fwd_bwd")][2])
        agreement, ratios = {}, {}
        for backend in BACKENDS:
            u = np.asarray(outputs[(backend, "fwd")][0])
            g = np.asarray(outputs[(backend, "fwd_bwd")][2])
            agreement[backend] = {
                "u_max_abs_diff_vs_native": float(np.max(np.abs(u - u_nat))),
                "u_max_abs": float(np.max(np.abs(u_nat))),
                "grad_max_abs_diff_rel_vs_native": float(np.max(np.abs(g - g_nat))
                                                         / np.max(np.abs(g_nat))),
            }
            ratios[backend] = {md: res[backend][md]["median_s"] / res["native"][md]["median_s"]
                               for md in MODES}
        best = {md: min(BACKENDS[1:], key=lambda b: res[b][md]["median_s"]) for md in MODES}
        out.append({"problem": spec.name, "m": m, "n": n, "precision": "float64", "start": "own",
                    "rounds": rounds, "results": res, "agreement": agreement,
                    "ratio_backend_over_native": ratios, "best_optimistix": best,
                    "speedup_vs_best_optimistix": {md: ratios[best[md]][md] for md in MODES}})
    return out


# ---- output ---------------------------------------------------------------------------------


def plot(summary: dict, path: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    width = 0.38
    colors = {"float64": "tab:blue", "float32": "tab:orange"}
    for ax, part in zip(axes, ("all", "representable")):
        tab = summary[part]
        for k, p in enumerate(PRECISIONS):
            cells = [(i + (k - 0.5) * width, tab[b][p]) for i, b in enumerate(BACKENDS)
                     if p in tab.get(b, {})]
            bars = ax.bar([x for x, _ in cells], [s["fraction_solved"] for _, s in cells], width,
                          color=colors[p], label=p)
            for bar, (_, s) in zip(bars, cells):
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                        f"{s['solved']}/{s['cases']}\nfc {s['false_converged']}",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(BACKENDS)))
        ax.set_xticklabels(BACKENDS, fontsize=8)
        ax.set(ylim=(0, 1.2), title=f"{part} cases")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("fraction solved to the truth")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("Hard-constraint solve robustness (solved/cases, fc = false converged)",
                 fontsize=10)
    savefig(fig, path, 120)


def _summary_md(tab: dict) -> list[str]:
    return md_table(
        ["back end", "precision", "cases", "solved", "fraction solved",
         "false converged (local min. / not stationary)", "converged",
         "at the truth, not converged", "median iterations"],
        [[b, p, s["cases"], s["solved"], f"{s['fraction_solved']:.2f}",
          f"{s['false_converged']} ({s['false_converged_local_minimum']} / "
          f"{s['false_converged_not_stationary']})", s["converged"],
          s["at_truth_not_converged"], f"{s['median_iterations']:g}"]
         for b, per in tab.items() for p, s in per.items()])


def _e(x, spec):
    return format(x, spec) if x is not None else str(x)


def markdown(result: dict) -> str:
    cfg, env, summary = result["config"], result["environment"], result["summary"]
    yn = lambda v: "y" if v else "n"  # noqa: E731
    lines = ["# Solver robustness (`benchmarks/solver_robustness.py`)", "",
             f"{'Quick smoke run' if cfg['quick'] else 'Full run'} on {env['device']} "
             f"({env['cpu_count']} CPUs), jax {env['jax']}, optimistix {env['optimistix']}; "
             f"{result['total_seconds']:.0f} s in {len(result['runs'])} part(s):", ""]
    lines += [f"* `{r['command']}` ({r.get('seconds', 0):.0f} s, load average at the end "
              f"{', '.join(f'{v:.1f}' for v in r.get('load_average_1_5_15_end', []))})"
              for r in result["runs"]]
    lines += ["", "A case is (problem, m, N, precision, start, back end). **solved**: pdeml's "
              "`converged` and rel. L2 of u to the truth <= 1e-3 (float64) / 1e-2 (float32). "
              "**false converged**: `converged` but not within that tolerance. "
              "**representable**: at least one back end reaches the truth (rel. L2 within the "
              "tolerance, converged or not) from the same start, in the same precision, on the "
              "same (problem, m, N). `converged` is pdeml's verdict for every back end "
              "(optimistix: its own success AND pdeml's stationarity test); optimistix's own "
              "verdict is in the JSON (`own_verdict`). A false converged case is a **local "
              "minimum** when the stationarity measure at the returned w, re-evaluated in float64, "
              "is <= 10 sqrt(eps) of the working precision (a genuine stationary point away from "
              "the truth), else **not stationary** (the test passed only in the working "
              "precision). **at the truth, not converged**: within the tolerance but not "
              "`converged` (pdeml's test rejected the point: STAGNATED or MAX_STEPS_REACHED).",
              "", "## What ran", ""]
    lines += md_table(["problem", "setup", "m", "N"], [
        [name, f"{p['description']['problem']}; truth: {p['description']['truth']}",
         ", ".join(map(str, p["m_values"])), ", ".join(map(str, p["n_values"]))]
        for name, p in result["problems"].items()])
    lines += ["", f"Precisions {', '.join(PRECISIONS)}; starts {', '.join(STARTS)} (own = the "
              "layer's linearised start, ones, random = standard normal); back ends "
              f"{', '.join(BACKENDS)}; LevenbergMarquardt(max_steps={MAX_STEPS}) defaults.", ""]
    lines += ["## Summary: all cases", ""] + _summary_md(summary["all"])
    lines += ["", "## Summary: representable cases", ""] + _summary_md(summary["representable"])
    lines += ["", "## Representable cases per problem", ""] + md_table(
        ["problem", "back end", "precision", "solved / cases", "false converged"],
        [[name, b, p, f"{s['solved']}/{s['cases']}", s["false_converged"]]
         for name, tab in summary["representable_per_problem"].items()
         for b, per in tab.items() for p, s in per.items()])
    bad = [c for c in result["cases"] if c["false_converged"]]
    if bad:
        lines += ["", "## False converged cases", ""] + md_table(
            ["problem", "m", "N", "precision", "start", "back end", "result", "it",
             "stationarity", "in float64", "kind", "residual", "IC/BC violation", "rel. L2"],
            [[c["problem"], c["m"], c["n"], c["precision"], c["start"], c["backend"],
              c["result_name"], c["iterations"], f"{c['stationarity']:.1e}",
              f"{c['stationarity_float64']:.1e}", c["false_converged_kind"],
              f"{c['residual_norm']:.2e}", f"{c['constraint_norm']:.2e}", _e(c["rel_l2"], ".2e")]
             for c in bad])
    lines += ["", "## All cases", ""] + md_table(
        ["problem", "m", "N", "precision", "start", "back end", "converged (result)",
         "own verdict", "it", "rel. L2", "solved", "time s"],
        [[c["problem"], c["m"], c["n"], c["precision"], c["start"], c["backend"],
          f"{yn(c['converged'])} ({c['result_name']})", yn(c["own_verdict"]), c["iterations"],
          "nan" if c["rel_l2"] is None else f"{c['rel_l2']:.1e}",
          "y" if c["solved"] else ("FALSE" if c["false_converged"] else "n"), f"{c['wall_s']:.3f}"]
         for c in result["cases"]])
    if result.get("speed"):
        lines += ["", "## Speed: native vs optimistix (QR and normal-equations Cholesky)", "",
                  "diffusion-sorption 1024 x 101, float64, the layer's own start for every back "
                  "end; fwd = features + start + solve + u, fwd+bwd = `value_and_grad` of "
                  "mean(u**2) wrt the basis (pdeml's implicit adjoint for all). Medians over "
                  "rounds that call every compiled function once in turn; ratio = t_backend / "
                  "t_native. solve = the Levenberg-Marquardt solve alone (problem and start "
                  "prebuilt); `shared` is what every back end does besides the solve (features, "
                  "IC/BC rows, the start, u).", ""]
        rows = []
        for r in result["speed"]:
            if "shared" in r["results"]:
                rows.append(f"| {r['m']} | {r['n']} | shared | | | "
                            f"{r['results']['shared']['fwd']['median_s']:.4f} | | | | | | |")
            for b in BACKENDS:
                x, a = r["results"][b], r["agreement"][b]
                rt = r["ratio_backend_over_native"][b]
                rows.append([r["m"], r["n"], b, f"{x['solve']['median_s']:.4f} "
                             f"({x['solve']['iterations']}"
                             f"{'' if x['solve']['converged'] else ', not conv.'})",
                             f"{rt['solve']:.1f}", f"{x['fwd']['median_s']:.4f}", f"{rt['fwd']:.1f}",
                             f"{x['fwd_bwd']['median_s']:.4f}", f"{rt['fwd_bwd']:.1f}",
                             f"{a['u_max_abs_diff_vs_native']:.1e}",
                             f"{a['grad_max_abs_diff_rel_vs_native']:.1e}",
                             f"{x['rel_l2_to_truth']:.1e}"])
        lines += md_table(["m", "N", "back end", "solve s (it)", "solve ratio", "fwd s",
                           "fwd ratio", "fwd+bwd s", "fwd+bwd ratio", "max abs(u - u_native)",
                           "grad rel. diff", "rel. L2 to truth"], rows)
        lines.append("")
        for r in result["speed"]:
            s, b = r["speedup_vs_best_optimistix"], r["best_optimistix"]
            lines.append(f"* m = {r['m']}, N = {r['n']}: native is {s['solve']:.1f}x faster than "
                         f"the best optimistix setting in the solve alone ({b['solve']}), "
                         f"{s['fwd']:.1f}x forward ({b['fwd']}) and {s['fwd_bwd']:.1f}x "
                         f"forward+backward ({b['fwd_bwd']}).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids, one (m, N) per problem")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--problems", default=None,
                    help="comma-separated subset of " + ",".join(FULL_PLAN))
    ap.add_argument("--precisions", default=",".join(PRECISIONS),
                    help="comma-separated subset of " + ",".join(PRECISIONS))
    ap.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    ap.add_argument("--speed-only", action="store_true", help="only the speed comparison")
    ap.add_argument("--append", action="store_true",
                    help="add to the solver_robustness.json in --out (a full run in parts)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the Markdown and the plot from the JSON in --out")
    ap.add_argument("--note", default="")
    ap.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                    help="glibc malloc setting for the run (pdeml.core.runtime."
                         "set_cpu_allocator; default tuned, as the pdeml command uses)")
    args = ap.parse_args(argv)
    json_path = os.path.join(args.out, "solver_robustness.json")
    png, md = (os.path.join(args.out, f"solver_robustness.{x}") for x in ("png", "md"))
    if args.render:
        result = read_json(json_path)
        if result["cases"]:
            plot(result["summary"], png)
        write_text(md, markdown(result))
        return 0
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    names = list(plan) if args.problems is None else [p.strip() for p in args.problems.split(",")]
    if bad := [p for p in names if p not in plan]:
        ap.error(f"unknown problems {bad}; choose from {list(plan)}")
    precisions = [p.strip() for p in args.precisions.split(",")]
    if not precisions or not set(precisions) <= set(PRECISIONS):
        ap.error(f"--precisions must be among {PRECISIONS}, got {args.precisions!r}")
    speed = not args.no_speed and not args.quick
    if args.speed_only:
        names = []
        if args.quick or args.no_speed:
            ap.error("--speed-only excludes --quick and --no-speed")
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    from pdeml.core.runtime import set_cpu_allocator

    allocator = set_cpu_allocator(args.allocator)
    with jax.enable_x64(True):
        env = cl.environment(args.note)
        env.pop("x64", None)
        env["allocator"] = allocator
        specs = make_specs(args.quick, names + (["diffusion-sorption"] if speed and
                                                "diffusion-sorption" not in names else []))
    if args.append and os.path.exists(json_path):
        result = read_json(json_path)
        if result["config"]["quick"] != args.quick:
            ap.error("--append: the existing JSON was written with a different --quick")
    else:
        result = {
            "benchmark": "solver_robustness",
            "config": {
                "quick": args.quick, "max_steps": MAX_STEPS, "tolerance": TOLERANCE,
                "backends": list(BACKENDS), "starts": list(STARTS),
                "precisions": list(PRECISIONS),
                "timing": "compiled (AOT); median of up to 3 calls after a first call, 1 call "
                          f"when it takes > {SINGLE_CALL_S} s",
                "representable": "some back end reaches the truth from the same start, same "
                                 "precision, same (problem, m, N)",
            },
            "environment": env, "runs": [], "problems": {}, "cases": [], "summary": None,
            "speed": None,
        }
    if args.speed_only:  # replaces the speed comparison of an earlier part
        result["runs"] = [r for r in result["runs"] if "--speed-only" not in r["command"]]
    run = {"command": command("solver_robustness.py", argv), "environment": env}
    result["runs"].append(run)

    def write():
        run["seconds"] = time.perf_counter() - t_start
        run["load_average_1_5_15_end"] = list(os.getloadavg())
        result["total_seconds"] = sum(r.get("seconds", 0.0) for r in result["runs"])
        write_json(json_path, result)

    for name in names:
        ms, ns = plan[name]
        result["problems"][name] = {"description": specs[name].description,
                                    "m_values": list(ms), "n_values": list(ns)}
        for precision in precisions:
            # a rerun of a part replaces its cases
            result["cases"] = [c for c in result["cases"]
                               if (c["problem"], c["precision"]) != (name, precision)]
            with jax.enable_x64(precision == "float64"):
                for m, n in itertools.product(ms, ns):
                    result["cases"] += run_cell(specs[name], m, n, precision)
                    mark_representable(result["cases"])
                    result["summary"] = summarise(result["cases"])
                    write()
    if speed:
        with jax.enable_x64(True):
            result["speed"] = speed_comparison(specs["diffusion-sorption"])
        write()
    if result["cases"]:
        mark_representable(result["cases"])
        result["summary"] = summarise(result["cases"])
        plot(result["summary"], png)
    write()
    write_text(md, markdown(result))
    if result["summary"]:
        print("\n".join(_summary_md(result["summary"]["all"])))
        print("\n".join(_summary_md(result["summary"]["representable"])))
    print(f"wrote {json_path} ({run['seconds']:.0f} s this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
