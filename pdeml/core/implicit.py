"""Implicit differentiation, written once.

Given a solution ``x*`` of an optimality condition ``g(x, theta) = 0`` computed by any
solver (whose own operations are *not* differentiated), :func:`implicit_solution` returns
``x*`` carrying the derivative given by the implicit function theorem::

    dx*/dtheta = -(dg/dx)^{-1} dg/dtheta.

The rule is a ``jax.custom_jvp`` whose tangent is linear in ``dtheta`` and uses a linear
solve, so JAX can also *transpose* it: forward mode (``jax.jvp``, ``jax.jacfwd``) and
reverse mode (``jax.grad``, ``jax.vjp``) both work, as do ``vmap`` of ``grad`` and ``grad``
of ``vmap``. Memory is independent of how many iterations the solver took.

The Jacobian ``dg/dx`` is formed densely (``x`` is small: the N basis weights) and
factorised once per derivative evaluation: by ``jax.jacfwd`` of ``g`` (n forward passes), or
by a closed form the caller passes as ``jacobian`` (the least-squares solver passes the
structured Hessian, one pass over its data). Likewise the derivative of ``g`` in ``theta`` is
``jax.jvp`` of ``g`` unless the caller passes a closed-form ``tangent`` (the least-squares
solver does when its features are a linear map of a basis, see
:meth:`pdeml.core.StructuredLeastSquares.from_basis`). The closed forms are called inside the
derivative rule on the primal inputs, so higher derivatives remain correct as long as they are
themselves differentiable.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PyTree


def implicit_solution(
    x_star: Float[Array, " n"],
    theta: PyTree,
    optimality: Callable[[Float[Array, " n"], PyTree], Float[Array, " n"]],
    *,
    jacobian: Callable[[Float[Array, " n"], PyTree], Float[Array, "n n"]] | None = None,
    tangent: Callable[[Float[Array, " n"], PyTree, PyTree], Float[Array, " n"]] | None = None,
    linear_solve: Callable[[Float[Array, "n n"], Float[Array, " n"]], Float[Array, " n"]]
    | None = None,
) -> Float[Array, " n"]:
    """Attach implicit-function-theorem derivatives to a solver's output.

    Args:
        x_star: the solution found by a solver, shape ``(n,)``. Its own derivatives are
            discarded (``stop_gradient``).
        theta: pytree the solution depends on; derivatives are taken with respect to its
            floating-point arrays (other leaves: integer arrays, functions, are constants).
        optimality: ``g(x, theta) -> (n,)``, zero at the solution (for least squares,
            ``J^T r``). Its Jacobian in ``x`` must be non-singular at ``x_star``.
        jacobian: optional ``(x, theta) -> dg/dx`` of shape ``(n, n)``, used instead of
            ``jax.jacfwd(optimality)`` when a cheaper closed form is known.
        tangent: optional ``(x, theta, dtheta) -> dg``, the derivative of ``optimality`` in
            ``theta`` along ``dtheta`` (what ``jax.jvp`` of ``optimality`` would give; ``dtheta``
            holds the tangents of the floating arrays of ``theta``, ``None`` elsewhere), used
            when a cheaper closed form is known. It must be linear in ``dtheta`` with
            coefficients computed from ``(x, theta)`` only, so that reverse mode can transpose
            it.
        linear_solve: optional ``(A, b) -> x`` solving ``A x = b``, linear in ``b`` (default
            ``jnp.linalg.solve``); the least-squares solver passes a minimum-norm solve so a
            singular ``dg/dx`` gives a finite derivative.

    Returns:
        ``x_star`` (same value) whose derivatives w.r.t. ``theta`` follow from the implicit
        function theorem.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> # x* = sqrt(theta) solves x^2 - theta = 0, dx*/dtheta = 1 / (2 sqrt(theta))
        >>> g = lambda x, th: x**2 - th
        >>> f = lambda th: implicit_solution(jnp.sqrt(th), th, g)
        >>> float(jax.grad(lambda th: f(th)[0])(jnp.array([4.0]))[0])
        0.25
    """

    # Floating arrays are differentiated; other arrays (integer indices, masks) are passed to
    # the rule as inputs without tangents, and everything else (functions) is closed over.
    # No array is closed over, so no tracer of an enclosing transformation leaks into the rule.
    diff, rest = eqx.partition(theta, eqx.is_inexact_array)
    consts, static = eqx.partition(rest, eqx.is_array)

    @jax.custom_jvp
    def attach(x, d, c):
        return x

    @attach.defjvp
    def attach_jvp(primals, tangents):
        x0, d, c = primals
        _, dd, _ = tangents
        # The primal x0 is the solver's output, a constant to JAX. Re-attaching it makes the
        # rule's output and its own dependence on theta (through x*) differentiable, so that
        # differentiating the rule again (second and higher derivatives) is correct.
        x = attach(x0, d, c)
        th = eqx.combine(d, c, static)
        if tangent is None:
            _, dg = jax.jvp(lambda t: optimality(x, eqx.combine(t, c, static)), (d,), (dd,))
        else:
            dg = tangent(x, th, dd)
        if jacobian is None:
            dg_dx = jax.jacfwd(lambda v: optimality(v, th))(x)
        else:
            dg_dx = jacobian(x, th)
        # jnp.linalg.solve is a custom_linear_solve: linear in dg and transposable.
        solve = jnp.linalg.solve if linear_solve is None else linear_solve
        dx = -solve(dg_dx, dg)
        return x, dx

    return attach(lax.stop_gradient(x_star), diff, consts)
