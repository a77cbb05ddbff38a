"""Conjugate gradients for symmetric positive-definite linear systems ``A x = b``.

One implementation, used by every solver of the library that needs an SPD solve (the Newton-CG
inversion of an LPN, the data step of PnP-ADMM and Tikhonov, the Sobolev-preconditioned
Newton-Krylov method of :mod:`pdeml.barron`):

- ``A`` is given matrix-free (``matvec``), on arrays of any shape;
- optional preconditioner ``M ~ A^{-1}`` (SPD, matrix-free) and optional inner product
  (default: the Euclidean one, ``vdot``);
- stopping rule ``||r||_M <= atol + rtol ||b||_M`` on the recursively updated residual
  ``r = b - A x``, where ``||v||_M = sqrt(<v, M v>)`` (the 2-norm without a preconditioner);
  at most ``max_steps`` iterations;
- a report: iterations, the final ``||r||_M`` and whether the rule was met (:class:`CGStats`);
- jit- and vmap-safe (one ``lax.while_loop``, no Python branching on values) and
  differentiable by the implicit function theorem: the solve is wrapped in
  :func:`jax.lax.custom_linear_solve`, so derivatives with respect to ``b`` and to anything
  ``matvec`` closes over cost one more CG solve and the loop is never unrolled.

Non-positive curvature ``<p, A p> <= 0`` (``A`` not SPD, or round-off once the residual is
exactly zero) is not divided by: the step uses 1 in its place, and the stopping rule decides.

Reference: Hestenes & Stiefel (1952); Saad, *Iterative Methods for Sparse Linear Systems*,
Alg. 9.1 (preconditioned CG).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

from pdeml.core.solution import max_steps_option, tolerance_option

__all__ = ["CGStats", "cg_solve", "conjugate_gradient"]


class CGStats(eqx.Module):
    """Convergence report of :func:`cg_solve` (scalars; batched under ``vmap``).

    Attributes:
        iterations: CG iterations run (``<= max_steps``).
        residual_norm: ``||r||_M`` of the recursively updated residual at exit (the 2-norm
            without a preconditioner).
        converged: whether ``residual_norm <= atol + rtol ||b||_M`` (False for NaN/inf).
    """

    iterations: Int[Array, ""]
    residual_norm: Float[Array, ""]
    converged: Bool[Array, ""]


def _vdot(u, v):
    return jnp.vdot(u, v).real


def _is_zero(t) -> bool:
    return isinstance(t, Real) and t == 0


def _threshold(atol, rtol, bnorm):
    """``atol + rtol * bnorm``, leaving out a term whose coefficient is a literal 0."""
    if _is_zero(rtol):
        return atol
    if _is_zero(atol):
        return rtol * bnorm()
    return atol + rtol * bnorm()


def _cg_loop(matvec, b, x0, precond, inner, atol, rtol, max_steps):
    if x0 is None:
        x, r = jnp.zeros_like(b), b
    else:
        x, r = x0, b - matvec(x0)
    z = r if precond is None else precond(r)
    rz = inner(r, z)
    if x0 is None:
        bnorm = lambda: jnp.sqrt(rz)  # noqa: E731  (r = b)
    else:
        bnorm = lambda: jnp.sqrt(inner(b, b if precond is None else precond(b)))  # noqa: E731
    tol = _threshold(atol, rtol, bnorm)

    def cond(s):
        _, _, _, rz, k = s
        return (k < max_steps) & (jnp.sqrt(rz) > tol)

    def body(s):
        x, r, p, rz, k = s
        Ap = matvec(p)
        pAp = inner(p, Ap)
        a = rz / jnp.where(pAp > 0, pAp, 1.0)
        x = x + a * p
        r = r - a * Ap
        z = r if precond is None else precond(r)
        rz_new = inner(r, z)
        p = z + (rz_new / jnp.where(rz > 0, rz, 1.0)) * p
        return x, r, p, rz_new, k + 1

    x, _, _, rz, k = lax.while_loop(cond, body, (x, r, z, rz, jnp.asarray(0, jnp.int32)))
    rnorm = jnp.sqrt(rz)
    return x, CGStats(iterations=k, residual_norm=rnorm, converged=rnorm <= tol)


def cg_solve(
    matvec: Callable[[Array], Array],
    b: Array,
    x0: Array | None = None,
    *,
    rtol: float | Array = 1e-8,
    atol: float | Array = 0.0,
    max_steps: int | Array = 100,
    preconditioner: Callable[[Array], Array] | None = None,
    inner: Callable[[Array, Array], Array] | None = None,
) -> tuple[Array, CGStats]:
    """Solve ``A x = b`` for a symmetric positive-definite linear ``matvec`` by (preconditioned) CG.

    Args:
        matvec: ``v -> A v`` on arrays of ``b``'s shape and dtype (linear, SPD in ``inner``).
        b: right-hand side (any shape).
        x0: start (default 0). A warm start changes the path, not the solution; no gradient
            flows through it.
        rtol, atol: stop when ``||r||_M <= atol + rtol ||b||_M`` (``||.||_M`` as in the module
            docstring). Python floats or traced scalars.
        max_steps: iteration cap (``max_steps=0`` returns ``x0``).
        preconditioner: ``v -> M v`` with ``M`` SPD, approximating ``A^{-1}``.
        inner: inner product ``(u, v) -> scalar`` (default ``Re vdot``), e.g. a grid mean.

    Returns:
        ``(x, stats)`` with :class:`CGStats`. The rule not being met is reported in
        ``stats.converged``, never raised.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x, stats = cg_solve(lambda v: A @ v, jnp.array([1.0, 2.0]), rtol=1e-5)
        >>> bool(stats.converged), int(stats.iterations)
        (True, 2)
        >>> _, stats = cg_solve(lambda v: A @ v, jnp.array([1.0, 2.0]), max_steps=1)
        >>> bool(stats.converged)
        False
    """
    b = jnp.asarray(b)
    if x0 is not None:
        x0 = lax.stop_gradient(jnp.asarray(x0, b.dtype))
    inner = _vdot if inner is None else inner

    def solve(mv, rhs):
        return _cg_loop(mv, rhs, x0, preconditioner, inner, atol, rtol, max_steps)

    def transpose_solve(mv, rhs):  # the cotangent system: same A, no useful warm start
        return _cg_loop(mv, rhs, None, preconditioner, inner, atol, rtol, max_steps)

    return lax.custom_linear_solve(matvec, b, solve, transpose_solve, symmetric=True,
                                   has_aux=True)


def conjugate_gradient(matvec, b, x0=None, *, rtol: float | None = None,
                       atol: float | None = None, max_steps: int | None = None,
                       tol: float | None = None, maxiter: int | None = None):
    """Solve ``M x = b`` for a symmetric positive-definite linear ``matvec`` by CG.

    The short form of :func:`cg_solve` returning the iteration count only: stop at
    ``||r|| <= atol + rtol ||b||`` (defaults ``atol = 0``, ``rtol = 1e-8``), ``max_steps``
    iterations at most (default 100); ``tol`` / ``maxiter`` are the deprecated spellings of
    ``rtol`` (with ``atol = 0``) and ``max_steps`` (they warn).
    Differentiable: wrapped in :func:`jax.lax.custom_linear_solve` (``symmetric=True``), so the
    derivative of the solution with respect to ``b`` and to anything ``matvec`` closes over is
    computed by another CG solve (implicit function theorem), never by unrolling the loop.
    ``x0`` is a warm start (it changes the path, not the solution).

    Returns:
        ``(x, iterations)``.

    Example:
        >>> import jax.numpy as jnp
        >>> M = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> x, k = conjugate_gradient(lambda v: M @ v, jnp.array([1.0, 2.0]))
        >>> bool(jnp.allclose(M @ x, jnp.array([1.0, 2.0]), atol=1e-5))
        True
    """
    max_steps, _ = max_steps_option(max_steps, 100, maxiter=maxiter)
    atol, rtol = tolerance_option(atol, rtol, (0.0, 1e-8), test="||r|| <= atol + rtol ||b||",
                                  tol=tol)
    x, stats = cg_solve(matvec, b, x0, rtol=rtol, atol=atol, max_steps=max_steps)
    return x, stats.iterations
