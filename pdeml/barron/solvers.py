"""Grid solvers for variational problems on the torus.

- :func:`sobolev_gradient_descent`: the iteration inside the proof of [Barron],
  ``u_{t+1} = u_t - eta (I - Laplacian)^{-1} DE(u_t)``. With ``eta = 1/Lambda`` the energy
  gap contracts by at least ``1 - lambda/Lambda`` per step and the H^1 error by
  ``sqrt(1 - lambda/Lambda)``, independently of the dimension and of the grid.
- :func:`newton_krylov`: Newton's method with the Hessian solved by conjugate gradients
  preconditioned by the same ``(I - Laplacian)^{-1}``: the fast reference solver.

Both return a :class:`Trajectory`, a :class:`~pdeml.core.Solution` whose ``history`` records
the energy, the H^1 error against a reference, the Barron norm of every iterate (the Barron
trajectory), the Sobolev-gradient norm and the step sizes. Both stop on an error bound: by the
lambda-convexity of the energy, ``||u - u_h||_{H^1} <= ||(I - Laplacian)^{-1} DE(u)||_{H^1} /
lambda`` for the discrete solution ``u_h``, and ``converged`` means this bound is at most
``atol + rtol ||u||_{H^1}``.

Reference: Marwah, Lipton, Lu, Risteski, ICML 2023, arXiv:2210.12101 (Theorem 1 and its
proof).
"""

from __future__ import annotations

import math
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from pdeml.core.krylov import cg_solve
from pdeml.core.linesearch import backtracking_line_search
from pdeml.core.solution import RESULTS, Solution, max_steps_option, raise_if_failed, result_code
from pdeml.core.validation import check_positive_int, check_real_number

from .norms import barron_norm
from .problems import VariationalProblem, energy, euler_lagrange, hessian_vector_product
from .spectral import check_grid_sizes, sobolev_inverse, sobolev_norm

__all__ = [
    "Trajectory",
    "GridSolveStats",
    "GridSolveHistory",
    "TRAJECTORY_MESSAGES",
    "default_grid_tolerances",
    "sobolev_gradient_descent",
    "newton_krylov",
    "worst_case_barron_bound",
]


class GridSolveStats(eqx.Module):
    """Diagnostics of :func:`sobolev_gradient_descent` / :func:`newton_krylov` at the last
    iterate.

    Attributes:
        num_steps: steps taken.
        gradient_norm: ``||(I - Laplacian)^{-1} DE(u)||_{H^1}`` (the H^{-1} norm of the
            Euler-Lagrange residual).
        error_bound: ``gradient_norm / lambda``, a bound for ``||u - u_h||_{H^1}`` (``u_h`` the
            discrete solution) by the lambda-convexity of the energy; ``gradient_norm`` itself
            when the stopping test is on it (``tol=``, or ``problem.bounds()`` is ``None``).
        tolerance: ``atol + rtol ||u||_{H^1}``: the stopping test is ``error_bound <=
            tolerance``.
    """

    num_steps: Int[Array, ""]
    gradient_norm: Float[Array, ""]
    error_bound: Float[Array, ""]
    tolerance: Float[Array, ""]


_SERIES = ("energy", "h1_error", "barron_norm", "gradient_norm", "step_size", "inner_iterations")


class GridSolveHistory(eqx.Module):
    """Per-iterate records of a grid solve, each of length ``max_steps + 1``: entry t is
    iterate t, entries after ``num_steps`` are NaN (0 for ``inner_iterations``).

    Calling it with a name, ``history("energy")``, gives the trimmed numpy series of iterates
    ``0..num_steps``.

    Attributes:
        energy: discrete energy of every iterate.
        h1_error: ``||u_t - reference||_{H^1}`` (NaN without a reference).
        barron_norm: ``||u_t||_{B^s}`` (the "Barron trajectory").
        gradient_norm: ``||(I - Laplacian)^{-1} DE(u_t)||_{H^1}``; bounds
            ``lambda * ||u_t - u_h||_{H^1}`` for the discrete solution ``u_h``.
        step_size: the step used to leave iterate t.
        inner_iterations: CG iterations per Newton step (0 for gradient descent).
        num_steps: number of steps taken (where the records end).
    """

    energy: Float[Array, " T"]
    h1_error: Float[Array, " T"]
    barron_norm: Float[Array, " T"]
    gradient_norm: Float[Array, " T"]
    step_size: Float[Array, " T"]
    inner_iterations: Int[Array, " T"]
    num_steps: Int[Array, ""]

    def __call__(self, name: str) -> np.ndarray:
        """The series ``name`` (a field above) for iterates 0..num_steps, as numpy."""
        if name not in _SERIES:
            raise ValueError(f"unknown series {name!r}; expected one of {list(_SERIES)}")
        return np.asarray(getattr(self, name))[: int(self.num_steps) + 1]


class Trajectory(Solution):
    """The :class:`~pdeml.core.Solution` of a grid solve.

    Fields: ``value`` the final iterate (grid field; also ``u``); ``result`` a
    :class:`~pdeml.core.RESULTS` code: ``SUCCESS`` (``stats.error_bound <= stats.tolerance``),
    ``MAX_STEPS_REACHED`` or ``NONFINITE`` (an iterate, or its norm, became NaN/inf; the
    iteration stops at once), messages in ``TRAJECTORY_MESSAGES``; ``stats`` a :class:`GridSolveStats`;
    ``history`` a :class:`GridSolveHistory` (the Barron trajectory and the other per-iterate
    records; ``history("energy")`` trims a series to the iterates taken).

    The records can also be read directly (``energy``, ``h1_error``, ``barron_norm``,
    ``gradient_norm``, ``step_size``, ``inner_iterations``, ``num_steps``).
    """

    u = property(lambda self: self.value, doc="The final iterate (``value``).")
    num_steps = property(lambda self: self.stats.num_steps, doc="Steps taken.")
    energy = property(lambda self: self.history.energy)
    h1_error = property(lambda self: self.history.h1_error)
    barron_norm = property(lambda self: self.history.barron_norm)
    gradient_norm = property(lambda self: self.history.gradient_norm)
    step_size = property(lambda self: self.history.step_size)
    inner_iterations = property(lambda self: self.history.inner_iterations)

    def steps_to(self, name: str, threshold: float) -> int | None:
        """First t with ``history(name)[t] <= threshold`` (None if never)."""
        h = self.history(name)
        hit = np.nonzero(h <= threshold)[0]
        return int(hit[0]) if hit.size else None


TRAJECTORY_MESSAGES = {
    RESULTS.SUCCESS: "converged (error_bound <= atol + rtol ||u||_{H^1})",
    RESULTS.MAX_STEPS_REACHED: "did not pass the stopping test within max_steps (raise "
                               "max_steps, loosen atol/rtol, or check the step size against "
                               "problem.bounds())",
    RESULTS.NONFINITE: "an iterate became NaN/inf or its norm overflowed (the step is too large "
                       "for this problem, or the problem's data is not finite)",
}


def default_grid_tolerances(dtype) -> tuple[float, float]:
    """``(atol, rtol)`` defaults of the grid solvers: ``(1e-10, 1e-10)`` in float64,
    ``(1e-4, 1e-4)`` in float32 (round-off of the residual sits near ``1e-6`` there)."""
    if jnp.finfo(dtype).bits >= 64:
        return 1e-10, 1e-10
    return 1e-4, 1e-4


def _finish(traj: Trajectory, throw: bool, what: str) -> Trajectory:
    if not throw:
        return traj
    return raise_if_failed(traj, what, TRAJECTORY_MESSAGES)


def _stopping_test(problem, dtype, atol, rtol, tol):
    """``(lam, atol, rtol)`` as arrays: the test is ``gn <= lam (atol + rtol ||u||_{H^1})``.

    ``tol`` (deprecated) is the former absolute test ``gn <= tol``.
    """
    if tol is not None:
        if atol is not None or rtol is not None:
            raise TypeError("give the tolerance as atol=/rtol=, not together with tol=")
        warnings.warn("tol= is deprecated; use atol= (and rtol=): the solvers stop when "
                      "gradient_norm / lambda <= atol + rtol ||u||_{H^1}", DeprecationWarning,
                      stacklevel=3)
        check_real_number("tol", tol, minimum=0.0)
        lam, atol, rtol = 1.0, tol, 0.0
    else:
        d_atol, d_rtol = default_grid_tolerances(dtype)
        atol = d_atol if atol is None else atol
        rtol = d_rtol if rtol is None else rtol
        check_real_number("atol", atol, minimum=0.0)
        check_real_number("rtol", rtol, minimum=0.0)
        b = problem.bounds()
        lam = 1.0 if b is None else float(b[0])
    return tuple(jnp.asarray(v, dtype) for v in (lam, atol, rtol))


def _status(gn, u, lam, atol, rtol):
    """``(passed, finite, tolerance)``. A diverging iterate whose norm overflows is not finite
    (``rtol * inf`` would pass any test)."""
    norm = sobolev_norm(u)
    tolerance = atol + rtol * norm
    finite = jnp.isfinite(gn) & jnp.isfinite(norm)
    return finite & (gn <= lam * tolerance), finite, tolerance


def _keep_going(i, max_steps, gn, u, test):
    passed, finite, _ = _status(gn, u, *test)
    return (i < max_steps) & finite & ~passed


def _solution(u, rec, inner, i, gn, lam, atol, rtol):
    passed, finite, tolerance = _status(gn, u, lam, atol, rtol)
    stats = GridSolveStats(i, gn, gn / lam, tolerance)
    history = GridSolveHistory(rec["energy"], rec["h1_error"], rec["barron_norm"],
                               rec["gradient_norm"], rec["step_size"], inner, i)
    return Trajectory(value=u, result=result_code(passed, ~finite), stats=stats, history=history)


def _check_options(max_steps, **counts):
    check_positive_int("max_steps", max_steps)
    for name, v in counts.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")


def _prepare(problem: VariationalProblem, u0, reference):
    if not isinstance(problem, VariationalProblem):
        raise TypeError(f"problem must be a VariationalProblem, got {type(problem).__name__}")
    b = problem.bounds()
    if b is not None and not (np.all(np.isfinite(b)) and 0 < b[0] <= b[1]):
        raise ValueError(
            f"problem.bounds() = {tuple(b)} is not (lambda, Lambda) with 0 < lambda <= Lambda: "
            f"the Lagrangian {type(problem.lagrangian).__name__} is not uniformly convex (check "
            "its parameters)"
        )
    if isinstance(u0, int):
        u0 = (u0,) * problem.dim
    if isinstance(u0, tuple):
        u0 = jnp.zeros(u0, jnp.result_type(float))
    u0 = jnp.asarray(u0)
    if not jnp.issubdtype(u0.dtype, jnp.floating):
        raise TypeError(f"u0 must be a real floating-point grid field, got dtype {u0.dtype}")
    if u0.ndim != problem.dim:
        raise ValueError(
            f"u0 must be a grid field with {problem.dim} axes (problem dim), got shape {u0.shape}"
        )
    check_grid_sizes(u0.shape, name="u0")
    if reference is not None and jnp.shape(reference) != u0.shape:
        raise ValueError(f"reference must have the grid shape {u0.shape}, got {jnp.shape(reference)}")
    # keep iterates in the subspace the preconditioner acts on (no Nyquist content)
    u0 = sobolev_inverse(_sobolev_apply(u0))
    return u0


def _in_dtype(problem, u0, reference):
    """The problem's floating-point arrays (source, Lagrangian parameters) and the reference in
    the dtype of the iterates, so that a float32 solve stays float32 with x64 enabled."""
    dtype = u0.dtype
    problem = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, problem)
    if reference is not None:
        reference = jnp.asarray(reference, dtype)
    _, f = problem.on_grid(u0.shape, dtype)
    return problem, jnp.asarray(f, dtype), reference


def _sobolev_apply(u):
    from .spectral import sobolev_multiply

    return sobolev_multiply(u)


def _empty(max_steps, dtype):
    return jnp.full((max_steps + 1,), jnp.nan, dtype)


def _record(rec, i, **vals):
    return {k: rec[k].at[i].set(vals[k]) for k in rec}


def _measure(problem, u, f, reference, s_order):
    g = euler_lagrange(problem, u, f)
    sg = sobolev_inverse(g)
    gn = jnp.sqrt(jnp.maximum(jnp.mean(g * sg), 0.0))
    e = energy(problem, u, f)
    err = sobolev_norm(u - reference) if reference is not None else jnp.asarray(jnp.nan, u.dtype)
    return g, sg, gn, e, err, barron_norm(u, s_order)


def _resolve_step(problem, step, line_search):
    if step is not None:
        check_real_number("step", step, positive=True)
        return float(step)
    b = problem.bounds()
    if b is None:
        if line_search:
            return 1.0
        raise ValueError(
            "step=None needs the Lagrangian's Lambda (problem.bounds() is None for this problem): "
            "pass step=1/Lambda or line_search=True"
        )
    return 1.0 / b[1]


@eqx.filter_jit
def _sgd_impl(problem, u0, f, reference, *, step, line_search, max_steps, test, barron_s, max_backtracks):
    dtype = u0.dtype
    g, sg, gn, e, err, bn = _measure(problem, u0, f, reference, barron_s)
    rec = {k: _empty(max_steps, dtype) for k in ("energy", "h1_error", "barron_norm", "gradient_norm", "step_size")}
    rec = _record(rec, 0, energy=e, h1_error=err, barron_norm=bn, gradient_norm=gn, step_size=jnp.nan)

    def cond(c):
        i, u, _, _, gn, _, _ = c
        return _keep_going(i, max_steps, gn, u, test)

    def body(c):
        i, u, g, sg, gn, e, rec = c
        eta = step
        if line_search:
            # Armijo backtracking on the energy along the Sobolev direction -sg; the slope is
            # -<g, sg> = -||sg||_{H^1}^2
            slope = -jnp.mean(g * sg)
            eta = backtracking_line_search(lambda t: (energy(problem, u - t * sg, f), None), e,
                                           slope, step=eta, c=0.5, max_steps=max_backtracks).step
        u1 = u - eta * sg
        g1, sg1, gn1, e1, err1, bn1 = _measure(problem, u1, f, reference, barron_s)
        rec = _record(rec, i + 1, energy=e1, h1_error=err1, barron_norm=bn1, gradient_norm=gn1, step_size=jnp.nan)
        rec["step_size"] = rec["step_size"].at[i].set(eta)
        return i + 1, u1, g1, sg1, gn1, e1, rec

    i, u, _, _, gn, _, rec = jax.lax.while_loop(cond, body, (jnp.asarray(0), u0, g, sg, gn, e, rec))
    inner = jnp.zeros((max_steps + 1,), jnp.int32)
    return _solution(u, rec, inner, i, gn, *test)


def sobolev_gradient_descent(
    problem: VariationalProblem,
    u0,
    *,
    step: float | None = None,
    line_search: bool = False,
    max_steps: int = 200,
    atol: float | None = None,
    rtol: float | None = None,
    reference: Float[Array, "*grid"] | None = None,
    barron_s: float = 1.0,
    max_backtracks: int = 30,
    throw: bool = False,
    tol: float | None = None,
) -> Trajectory:
    """Sobolev (H^1-preconditioned) gradient descent on the torus: the algorithm of [Barron].

    ``u_{t+1} = u_t - eta (I - Laplacian)^{-1} DE(u_t)`` with ``DE = -div(d_p L) + d_z L - f``
    evaluated spectrally.

    Args:
        problem: the :class:`~pdeml.barron.VariationalProblem`.
        u0: initial grid field, or a grid shape (int or tuple) meaning zeros. Odd sizes are
            recommended; even sizes warn and the Nyquist mode is projected out.
        step: ``eta``; default ``1 / Lambda`` from ``problem.bounds()``. With ``line_search``
            it is the initial trial step of an Armijo backtracking on the energy.
        line_search: use backtracking instead of a fixed step.
        max_steps: iteration cap.
        atol, rtol: stop when the H^1 error bound ``||(I - Laplacian)^{-1} DE(u)||_{H^1} /
            lambda`` (``lambda`` from ``problem.bounds()``; 1 when it is ``None``) is at most
            ``atol + rtol ||u||_{H^1}``: then ``||u - u_h||_{H^1}`` is within that tolerance of
            the discrete solution ``u_h``. Defaults: :func:`default_grid_tolerances` of the dtype
            (1e-10 in float64, 1e-4 in float32).
        tol: deprecated (warns): the former absolute test ``||(I - Laplacian)^{-1}
            DE(u)||_{H^1} <= tol``.
        reference: a grid field to measure the H^1 error against (e.g. ``u*`` on the grid).
        barron_s: order s of the recorded Barron norm.
        throw: raise ``equinox.EquinoxRuntimeError`` if the solve did not converge; with
            ``False`` (default: a fixed step budget is a normal use) the outcome is reported in
            ``converged`` / ``result``.

    Returns:
        :class:`Trajectory`, a :class:`~pdeml.core.Solution`: ``value`` (also ``u``) the last
        iterate, ``result``, ``stats`` (:class:`GridSolveStats`) and ``history``
        (:class:`GridSolveHistory`: energy, H^1 error, Barron norm, gradient norm and step of
        every iterate).

    Example:
        >>> from pdeml.barron import make_test_problem
        >>> problem = make_test_problem("T2", dim=2, nu=1.0)
        >>> ref = problem.solution_on_grid(15)
        >>> traj = sobolev_gradient_descent(problem, 15, reference=ref, atol=1e-5, rtol=0.0)
        >>> bool(traj.converged) and float(traj.history("h1_error")[-1]) < 1e-4
        True

        In float64 (``jax_enable_x64``) ``atol=1e-10`` reaches an H^1 error below 1e-9.
    """
    u0 = _prepare(problem, u0, reference)
    _check_options(max_steps, max_backtracks=max_backtracks)
    test = _stopping_test(problem, u0.dtype, atol, rtol, tol)
    eta = _resolve_step(problem, step, line_search)
    problem, f, reference = _in_dtype(problem, u0, reference)
    # step and the tolerances travel as arrays so that new values do not recompile
    traj = _sgd_impl(problem, u0, f, reference, step=jnp.asarray(eta, u0.dtype), line_search=line_search,
                     max_steps=max_steps, test=test, barron_s=barron_s,
                     max_backtracks=max_backtracks)
    return _finish(traj, throw, "sobolev_gradient_descent")


def _mean_dot(a, b):
    return jnp.mean(a * b)


@eqx.filter_jit
def _newton_impl(problem, u0, f, reference, *, max_steps, test, cg_tol, cg_max_steps, barron_s, damped, max_backtracks):
    dtype = u0.dtype
    g, sg, gn, e, err, bn = _measure(problem, u0, f, reference, barron_s)
    rec = {k: _empty(max_steps, dtype) for k in ("energy", "h1_error", "barron_norm", "gradient_norm", "step_size")}
    rec = _record(rec, 0, energy=e, h1_error=err, barron_norm=bn, gradient_norm=gn, step_size=jnp.nan)
    inner = jnp.zeros((max_steps + 1,), jnp.int32)

    def cond(c):
        return _keep_going(c[0], max_steps, c[4], c[1], test)

    def body(c):
        i, u, g, sg, gn, e, rec, inner = c
        # CG in the grid mean inner product, preconditioned by (I - Laplacian)^{-1}; the
        # tolerance is relative in the preconditioned norm
        delta, cg = cg_solve(lambda v: hessian_vector_product(problem, u, v, f), -g, rtol=cg_tol,
                             max_steps=cg_max_steps, preconditioner=sobolev_inverse, inner=_mean_dot)
        k = cg.iterations
        eta = jnp.asarray(1.0, dtype)
        if damped:
            slope = jnp.mean(g * delta)  # negative for a descent direction
            eta = backtracking_line_search(lambda t: (energy(problem, u + t * delta, f), None), e,
                                           slope, step=eta, c=0.25, max_steps=max_backtracks).step
        u1 = u + eta * delta
        g1, sg1, gn1, e1, err1, bn1 = _measure(problem, u1, f, reference, barron_s)
        rec = _record(rec, i + 1, energy=e1, h1_error=err1, barron_norm=bn1, gradient_norm=gn1, step_size=jnp.nan)
        rec["step_size"] = rec["step_size"].at[i].set(eta)
        inner = inner.at[i].set(k)
        return i + 1, u1, g1, sg1, gn1, e1, rec, inner

    i, u, _, _, gn, _, rec, inner = jax.lax.while_loop(cond, body, (jnp.asarray(0), u0, g, sg, gn, e, rec, inner))
    return _solution(u, rec, inner, i, gn, *test)


def newton_krylov(
    problem: VariationalProblem,
    u0,
    *,
    max_steps: int = 30,
    atol: float | None = None,
    rtol: float | None = None,
    cg_tol: float = 1e-12,
    cg_max_steps: int | None = None,
    damped: bool = True,
    reference: Float[Array, "*grid"] | None = None,
    barron_s: float = 1.0,
    max_backtracks: int = 30,
    throw: bool = False,
    tol: float | None = None,
    cg_maxiter: int | None = None,
) -> Trajectory:
    """Newton's method with Sobolev-preconditioned conjugate gradients (the fast reference).

    Each step solves ``D^2E(u) delta = -DE(u)`` by CG preconditioned with
    ``(I - Laplacian)^{-1}`` (the preconditioned Hessian has condition number at most
    ``Lambda / lambda``, so CG needs a d- and N-independent number of iterations), then
    backtracks on the energy when ``damped``. A linear problem (T1) is solved in one step.

    Args: as :func:`sobolev_gradient_descent` (including ``atol``, ``rtol``, ``throw``), plus
    ``cg_tol`` (each CG solve stops at ``||r||_M <= cg_tol ||b||_M``, relative in the
    preconditioned norm), ``cg_max_steps`` (the CG iteration cap, default 200; ``cg_maxiter``:
    its deprecated spelling) and ``damped``.

    Returns:
        :class:`Trajectory` (``inner_iterations`` holds the CG counts).

    Example:
        >>> from pdeml.barron import make_test_problem
        >>> problem = make_test_problem("T1", dim=2)
        >>> traj = newton_krylov(problem, 9, reference=problem.solution_on_grid(9))
        >>> int(traj.num_steps), float(traj.history("h1_error")[-1]) < 1e-4  # linear: one step
        (1, True)
    """
    u0 = _prepare(problem, u0, reference)
    cg_max_steps, _ = max_steps_option(cg_max_steps, 200, cg_maxiter=cg_maxiter)
    _check_options(max_steps, max_backtracks=max_backtracks)
    test = _stopping_test(problem, u0.dtype, atol, rtol, tol)
    check_real_number("cg_tol", cg_tol, positive=True)
    problem, f, reference = _in_dtype(problem, u0, reference)
    traj = _newton_impl(problem, u0, f, reference, max_steps=max_steps, test=test, cg_tol=jnp.asarray(cg_tol, u0.dtype),
                        cg_max_steps=cg_max_steps, barron_s=barron_s, damped=damped, max_backtracks=max_backtracks)
    return _finish(traj, throw, "newton_krylov")


def worst_case_barron_bound(
    initial_norm: float, source_norm: float, step: float, num_steps: int, *, growth: float, exponent: float = 1.0
) -> np.ndarray:
    """The worst-case Barron-norm recursion of the proof of [Barron] Theorem 1.

    ``b_{t+1} = b_t + eta (B_L max(b_t, 1)^p + ||f||_B)``: the update adds
    ``eta (I - Laplacian)^{-1}(-div d_p L + d_z L - f)``; the multiplier of
    ``(I - Laplacian)^{-1} div`` has modulus <= 1/2 (times two terms), and the Lagrangian's
    derivatives map Barron norm b to at most ``B_L b^p`` (``growth``, ``exponent``, see
    :meth:`~pdeml.barron.Lagrangian.barron_growth`). Returns ``b_0..b_T`` as numpy; it grows
    geometrically (p = 1) or doubly exponentially (p > 1), which is why the proof's final
    bound is polynomial in d but exponential in log(1/eps).
    """
    if num_steps < 0 or step <= 0 or growth <= 0:
        raise ValueError("num_steps must be >= 0, step and growth positive")
    b = [float(initial_norm)]
    for _ in range(num_steps):
        b.append(b[-1] + step * (growth * max(b[-1], 1.0) ** exponent + source_norm))
        if not math.isfinite(b[-1]):
            b[-1] = math.inf
    return np.asarray(b)
