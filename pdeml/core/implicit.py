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
structured Hessian, one pass over its data). The closed form is called inside the derivative
rule on the primal inputs, so higher derivatives remain correct as long as it is itself
differentiable.
"""

from __future__ import annotations

from collections.abc import Callable

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
) -> Float[Array, " n"]:
    """Attach implicit-function-theorem derivatives to a solver's output.

    Args:
        x_star: the solution found by a solver, shape ``(n,)``. Its own derivatives are
            discarded (``stop_gradient``).
        theta: pytree of floating arrays the solution depends on.
        optimality: ``g(x, theta) -> (n,)``, zero at the solution (for least squares,
            ``J^T r``). Its Jacobian in ``x`` must be non-singular at ``x_star``.
        jacobian: optional ``(x, theta) -> dg/dx`` of shape ``(n, n)``, used instead of
            ``jax.jacfwd(optimality)`` when a cheaper closed form is known.

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

    @jax.custom_jvp
    def attach(x, th):
        return x

    @attach.defjvp
    def attach_jvp(primals, tangents):
        x, th = primals
        _, dth = tangents
        _, dg = jax.jvp(lambda t: optimality(x, t), (th,), (dth,))
        if jacobian is None:
            dg_dx = jax.jacfwd(lambda v: optimality(v, th))(x)
        else:
            dg_dx = jacobian(x, th)
        # jnp.linalg.solve is a custom_linear_solve: linear in dg and transposable.
        dx = -jnp.linalg.solve(dg_dx, dg)
        return x, dx

    return attach(lax.stop_gradient(x_star), theta)
