"""optimistix's Levenberg-Marquardt as an alternative back end (``pip install pdeml[optimistix]``).

Only the forward solve comes from optimistix; derivatives come from
:func:`pdeml.core.implicit.implicit_solution` like every other back end.

optimistix solves each damped Gauss-Newton step with a lineax linear solver. Two are offered:

* ``"qr"`` (optimistix's default, ``lineax.QR()``): a QR factorisation of the damped
  least-squares operator ``[J; sqrt(mu) I]`` (works with cond(J));
* ``"cholesky"`` (``lineax.Normal(lineax.Cholesky())``): Cholesky of the normal equations
  ``J^T J + mu I`` (one Gram matrix per step; works with cond(J)^2, so it loses accuracy
  sooner in float32).

Choose with ``linear_solver=`` of :func:`levenberg_marquardt_optimistix`, or by back-end name:
``"optimistix"`` (QR) and ``"optimistix-cholesky"`` (see :data:`BACKEND_LINEAR_SOLVERS` and
:func:`backend_solver`).
"""

from __future__ import annotations

import functools

#: lineax linear solvers for the damped Gauss-Newton steps, by name.
LINEAR_SOLVERS = ("qr", "cholesky")

#: Back-end names served by this module and the linear solver each one uses.
BACKEND_LINEAR_SOLVERS = {"optimistix": "qr", "optimistix-cholesky": "cholesky"}


def _import_optimistix():
    try:
        import optimistix
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='optimistix' needs optimistix: pip install 'pdeml[optimistix]'"
        ) from e
    return optimistix


def _check_linear_solver(linear_solver: str) -> None:
    if linear_solver not in LINEAR_SOLVERS:
        raise ValueError(
            f"linear_solver must be one of {LINEAR_SOLVERS}, got {linear_solver!r}"
        )


def lineax_solver(linear_solver: str = "qr"):
    """The lineax solver for ``linear_solver`` (``"qr"`` or ``"cholesky"``)."""
    _check_linear_solver(linear_solver)
    import lineax as lx

    if linear_solver == "qr":
        return lx.QR()
    return lx.Normal(lx.Cholesky())


def levenberg_marquardt_optimistix(problem, w0, solver, *, linear_solver: str = "qr"):
    """Solve ``problem`` with ``optimistix.LevenbergMarquardt``; returns (w, iterations, converged).

    ``iterations`` and ``converged`` are optimistix's own: its step count and whether it
    stopped successfully (its Cauchy termination: the step and the change of the objective
    both below ``atol + rtol * |value|``; we pass the solver's ``xtol`` for ``rtol`` and
    ``atol``). Whether the point is stationary in pdeml's sense is decided by
    :func:`pdeml.core.solve_least_squares`.

    Args:
        problem: a :class:`pdeml.core.StructuredLeastSquares`.
        w0: ``(N,)`` start.
        solver: :class:`pdeml.core.LevenbergMarquardt` (``max_steps`` and ``xtol`` are used).
        linear_solver: ``"qr"`` (default, optimistix's own default) or ``"cholesky"``
            (normal equations), see the module docstring.
    """
    _check_linear_solver(linear_solver)
    optx = _import_optimistix()
    xtol, _, _ = solver.tolerances(w0.dtype)
    lm = optx.LevenbergMarquardt(rtol=xtol, atol=xtol, linear_solver=lineax_solver(linear_solver))
    sol = optx.least_squares(
        lambda w, args: problem.residual(w),
        lm,
        w0,
        max_steps=solver.max_steps,
        throw=False,
    )
    converged = sol.result == optx.RESULTS.successful
    return sol.value, sol.stats["num_steps"], converged


def backend_solver(backend: str):
    """The forward solve of the back end named ``backend``: :func:`levenberg_marquardt_optimistix`
    with that back end's linear solver (:data:`BACKEND_LINEAR_SOLVERS`)."""
    if backend not in BACKEND_LINEAR_SOLVERS:
        raise ValueError(
            f"backend must be one of {tuple(BACKEND_LINEAR_SOLVERS)}, got {backend!r}"
        )
    return functools.partial(levenberg_marquardt_optimistix,
                             linear_solver=BACKEND_LINEAR_SOLVERS[backend])
