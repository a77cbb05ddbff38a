"""jaxopt's Levenberg-Marquardt as an alternative back end (``pip install pdeml[jaxopt]``).

jaxopt is no longer maintained and warns on import; that one warning is filtered here and
nowhere else. Only the forward solve comes from jaxopt: derivatives always come from
:func:`pdeml.core.implicit.implicit_solution`, so the back ends differ only in how w* is found.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp


def _import_jaxopt():
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="JAXopt is no longer maintained", category=DeprecationWarning
            )
            import jaxopt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend='jaxopt' needs jaxopt: pip install 'pdeml[jaxopt]'"
        ) from e
    return jaxopt


def levenberg_marquardt_jaxopt(problem, w0, solver):
    """Solve ``problem`` (a StructuredLeastSquares) with ``jaxopt.LevenbergMarquardt``.

    Returns ``(w, iterations, converged)``. jaxopt stops on the gradient norm ``tol``.
    Its step acceptance compares objective values, so the gradient stalls near
    ``sqrt(eps) * ||J^T r(w0)||`` (measured: 1.8e-10 in float64); we therefore pass
    ``tol = sqrt(eps) * max(1, ||J^T r(w0)||)``. Whether the point it returns is converged in
    pdeml's sense (stationary) is decided by :func:`pdeml.core.solve_least_squares`.
    """
    jaxopt = _import_jaxopt()
    _, _, gtol = solver.tolerances(w0.dtype)
    xtol = float(jnp.finfo(w0.dtype).eps) ** 0.5
    tol = xtol * jnp.maximum(1.0, jnp.linalg.norm(problem.optimality(w0)))
    lm = jaxopt.LevenbergMarquardt(
        residual_fun=lambda w: problem.residual(w),
        maxiter=solver.max_steps,
        tol=tol,
        xtol=xtol,
        gtol=gtol,
        implicit_diff=False,
        jit=True,
    )
    w, state = lm.run(w0)
    converged = (state.error <= tol) & jnp.all(jnp.isfinite(w))
    return w, state.iter_num, converged
