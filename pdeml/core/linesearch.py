"""Backtracking (Armijo) line search along a descent direction.

For ``phi(t) = F(x + t p)`` with slope ``phi'(0) = <grad F(x), p> < 0``, try ``t = step``, then
``shrink * t``, ``shrink^2 * t``, ... and accept the first ``t`` with the sufficient decrease

    phi(t) finite  and  phi(t) <= phi(0) + c t phi'(0)

after at most ``max_steps`` shrinkings. One ``lax.while_loop`` with the acceptance test carried
in the state (jit- and vmap-safe; XLA:CPU was seen to hang on the vmapped form with the
objective inside the loop condition).

A caller that has already evaluated the first trial (say with its gradient, which it needs when
the full step is accepted, or with a looser acceptance rule near round-off) passes it as
``first=(value, aux, accepted)``; the search then only shrinks if that trial was rejected.

Reference: Nocedal & Wright, *Numerical Optimization*, Alg. 3.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Bool, Float, Int

__all__ = ["LineSearchResult", "armijo_accepts", "backtracking_line_search"]


class LineSearchResult(eqx.Module):
    """Outcome of :func:`backtracking_line_search`.

    Attributes:
        step: the last step tried (the accepted one when ``accepted``).
        value: ``phi(step)``.
        aux: what ``fn`` returned next to the value at ``step`` (e.g. the gradient).
        num_backtracks: shrinkings done (0: the first trial was accepted).
        accepted: whether ``step`` passed the test (False after ``max_steps`` rejections).
    """

    step: Float[Array, ""]
    value: Float[Array, ""]
    aux: Any
    num_backtracks: Int[Array, ""]
    accepted: Bool[Array, ""]


def armijo_accepts(value, value0, slope, step, c: float = 1e-4):
    """The sufficient-decrease test: ``value`` finite and ``value <= value0 + c step slope``."""
    return jnp.isfinite(value) & (value <= value0 + c * step * slope)


def backtracking_line_search(
    fn: Callable[[Array], tuple[Array, Any]],
    value0: Array,
    slope: Array,
    *,
    step: float | Array = 1.0,
    c: float = 1e-4,
    shrink: float = 0.5,
    max_steps: int = 30,
    first: tuple[Array, Any, Array] | None = None,
) -> LineSearchResult:
    """Armijo backtracking: shrink ``t`` from ``step`` until ``fn(t)`` decreases enough.

    Args:
        fn: ``t -> (phi(t), aux)``; ``aux`` is any pytree of fixed structure (``None`` if
            unused).
        value0: ``phi(0)``.
        slope: ``phi'(0)`` (negative for a descent direction).
        step: the first trial step (its dtype is ``value0``'s).
        c: the sufficient-decrease constant in ``(0, 1)``.
        shrink: the factor in ``(0, 1)`` applied per rejection.
        max_steps: the most shrinkings.
        first: ``(phi(step), aux, accepted)`` when the caller has evaluated the first trial.

    Returns:
        :class:`LineSearchResult`.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: x**2  # from x = 1 along p = -4 (phi'(0) = -8): t = 1 overshoots
        >>> ls = backtracking_line_search(lambda t: (f(1.0 - 4.0 * t), None), jnp.asarray(1.0),
        ...                               jnp.asarray(-8.0))
        >>> float(ls.step), int(ls.num_backtracks), bool(ls.accepted)
        (0.25, 2, True)
    """
    t0 = jnp.asarray(step, jnp.result_type(value0))
    if first is None:
        v, aux = fn(t0)
        ok = armijo_accepts(v, value0, slope, t0, c)
    else:
        v, aux, ok = first

    def cond(s):
        _, j, ok, _, _ = s
        return (~ok) & (j < max_steps)

    def body(s):
        t, j, _, _, _ = s
        t = shrink * t
        v, aux = fn(t)
        return t, j + 1, armijo_accepts(v, value0, slope, t, c), v, aux

    t, j, ok, v, aux = lax.while_loop(cond, body, (t0, jnp.asarray(0, jnp.int32), ok, v, aux))
    return LineSearchResult(step=t, value=v, aux=aux, num_backtracks=j, accepted=ok)
