"""The result convention of every iterative solver: :class:`Solution` and :class:`RESULTS`.

Every public iterative solver of pdeml returns a :class:`Solution`:

- ``value``: what was solved for (weights, an inverse, a reconstruction);
- ``result``: an integer code of :class:`RESULTS` (an array: one code per sample for a batched
  solver, a scalar otherwise); ``converged`` is ``result == RESULTS.SUCCESS``;
- ``stats``: the solver's own diagnostics, a small :class:`equinox.Module` with named fields
  (iterations, residual norms, condition number, ...);
- ``history``: per-iteration records when the solver keeps them (``None`` otherwise).

The solvers take the same keywords for the same things: ``max_steps`` (the iteration cap),
``throw`` (raise instead of only reporting a failure) and, where the stopping test is a
tolerance on a residual, ``atol`` / ``rtol`` (stop when ``residual <= atol + rtol * scale``).
With ``throw=True`` a failure raises :class:`equinox.EquinoxRuntimeError` at run time, also
under ``jax.jit`` and ``jax.vmap`` (:func:`raise_if_failed`); with ``throw=False`` it is only
reported in ``result``.

Example:
    >>> import jax.numpy as jnp
    >>> sol = Solution(value=jnp.zeros(2), result=jnp.asarray(RESULTS.MAX_STEPS_REACHED),
    ...                stats=None)
    >>> bool(sol.converged), RESULTS(int(sol.result)).name
    (False, 'MAX_STEPS_REACHED')
"""

from __future__ import annotations

import enum
import math
import warnings

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PyTree

from pdeml.core.validation import check_positive_int, error_if_failed

__all__ = ["RESULTS", "Solution", "max_steps_option", "raise_if_failed", "result_code",
           "tolerance_option"]


class RESULTS(enum.IntEnum):
    """Result codes of every iterative solver (``Solution.result``).

    An :class:`enum.IntEnum`: the members are plain integers, so they compare with the
    integer arrays in ``Solution.result`` (``int(sol.result) == RESULTS.NONFINITE``) and can be
    used inside ``jnp.where``. :attr:`message` says what the code means in general; a solver
    may give a more specific message when it raises.
    """

    SUCCESS = 0
    MAX_STEPS_REACHED = 1
    NONFINITE = 2
    STAGNATED = 3

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @classmethod
    def messages(cls) -> dict[int, str]:
        """``{code: message}`` for every code."""
        return {int(code): code.message for code in cls}


_MESSAGES = {
    RESULTS.SUCCESS: "converged (the stopping test holds)",
    RESULTS.MAX_STEPS_REACHED: "did not pass the stopping test within max_steps (raise "
                               "max_steps, loosen the tolerance, or start closer)",
    RESULTS.NONFINITE: "produced a non-finite value (NaN/inf in an iterate)",
    RESULTS.STAGNATED: "stopped at a point where no step makes progress any more (round-off "
                       "limited)",
}


def result_code(converged, nonfinite=False, stagnated=False) -> Int[Array, "..."]:
    """The code of each entry, as an int32 array: ``SUCCESS`` where ``converged``, else
    ``NONFINITE`` where ``nonfinite``, else ``STAGNATED`` where ``stagnated``, else
    ``MAX_STEPS_REACHED``.

    Example:
        >>> result_code(jnp.array([True, False, False]), jnp.array([False, True, False])).tolist()
        [0, 2, 1]
    """
    return jnp.where(converged, RESULTS.SUCCESS, jnp.where(
        nonfinite, RESULTS.NONFINITE, jnp.where(
            stagnated, RESULTS.STAGNATED, RESULTS.MAX_STEPS_REACHED))).astype(jnp.int32)


class Solution(eqx.Module):
    """What an iterative solver returns.

    Attributes:
        value: the solution (any pytree; an array for every solver in pdeml).
        result: :class:`RESULTS` code(s), int32: a scalar, or one per sample for a solver that
            treats the samples of a batch as separate problems.
        stats: the solver's diagnostics (an :class:`equinox.Module`; see each solver).
        history: per-iteration records (an :class:`equinox.Module` of arrays with the iteration
            as the leading axis, NaN after the last iteration), or ``None``.
    """

    value: PyTree
    result: Int[Array, "..."]
    stats: PyTree
    history: PyTree = None

    @property
    def converged(self) -> Bool[Array, "..."]:
        """``result == RESULTS.SUCCESS`` (same shape as ``result``)."""
        return self.result == RESULTS.SUCCESS


def raise_if_failed(solution: Solution, what: str, messages: dict[int, str] | None = None, *,
                    target=None):
    """Attach the ``throw=True`` check: raise :class:`equinox.EquinoxRuntimeError` at run time
    (also under jit and vmap) if any entry of ``solution.result`` is not ``SUCCESS``.

    The message is ``"{what}: {messages[code]} (pass throw=False to inspect the result)"`` for
    the largest failing code (``messages`` defaults to :meth:`RESULTS.messages`). Returns the
    solution with the check attached to its ``value``, or, with ``target``, ``target`` with the
    check attached (to guard a quantity computed from the solution, e.g. a regulariser value).

    Example:
        >>> bad = Solution(jnp.ones(2), jnp.asarray(RESULTS.MAX_STEPS_REACHED), None)
        >>> try:
        ...     _ = raise_if_failed(bad, "demo").value.block_until_ready()
        ... except eqx.EquinoxRuntimeError as e:
        ...     print("demo: did not pass the stopping test" in str(e))
        True
    """
    messages = RESULTS.messages() if messages is None else messages
    x = solution.value if target is None else target
    x = error_if_failed(x, ~solution.converged, solution.result, messages, what)
    if target is not None:
        return x
    return eqx.tree_at(lambda s: s.value, solution, x)


def max_steps_option(max_steps, default: int, *, stacklevel: int = 3, **legacy) -> tuple[int, str]:
    """``(cap, keyword)``: the iteration cap from ``max_steps`` or from ONE deprecated spelling
    of it (``legacy``: ``{"max_iter": value}``, ``None`` when not given), with the keyword the
    caller used (for error messages). A legacy keyword warns with ``DeprecationWarning``
    (``stacklevel`` as in :func:`warnings.warn`, counted from this function);
    giving two raises ``TypeError``; the cap must be a positive integer (``ValueError`` naming
    the keyword).

    Example:
        >>> max_steps_option(None, 100, max_iter=None)
        (100, 'max_steps')
    """
    given = {k: v for k, v in legacy.items() if v is not None}
    if max_steps is not None:
        given = {"max_steps": max_steps, **given}
    if len(given) > 1:
        raise TypeError(f"give the iteration cap once, as max_steps=; got {sorted(given)}")
    if not given:
        return default, "max_steps"
    (name, value), = given.items()
    if name != "max_steps":
        warnings.warn(f"{name}= is deprecated; use max_steps=", DeprecationWarning,
                      stacklevel=stacklevel)
    check_positive_int(name, value)
    return int(value), name


def _check_tolerance(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not value >= 0:
        raise ValueError(f"{name} must be a float >= 0, got {value!r}")
    return float(value)


def tolerance_option(atol, rtol, default: tuple[float, float], *, test: str, tol=None,
                     tol_is: str = "rtol", tol_name: str = "tol",
                     stacklevel: int = 3) -> tuple[float, float]:
    """``(atol, rtol)`` of a stopping test ``quantity <= atol + rtol * scale``.

    ``atol`` / ``rtol`` as given (``None``: the entry of ``default``), or from the deprecated
    single tolerance ``tol``, which was the relative test (``tol_is="rtol"``: ``atol = 0,
    rtol = tol``) or the absolute one (``tol_is="atol"``: ``atol = tol, rtol = 0``), so a call
    with ``tol=`` gives the same result as one with the equivalent ``atol=`` / ``rtol=``
    (``tol_name``: the deprecated keyword's name in messages). The
    deprecated keyword warns with ``DeprecationWarning`` stating ``test`` (the stopping test);
    giving it together with ``atol=`` / ``rtol=`` raises ``TypeError``; every tolerance must be
    a finite number ``>= 0`` (``ValueError`` naming the keyword, checked before the warning).

    Example:
        >>> tolerance_option(None, 1e-6, (0.0, 1e-5), test="||dx|| <= atol + rtol ||x||")
        (0.0, 1e-06)
    """
    if tol is not None:
        if atol is not None or rtol is not None:
            raise TypeError(f"give the tolerance as atol=/rtol=, not together with {tol_name}=")
        tol = _check_tolerance(tol_name, tol)
        atol, rtol = (0.0, tol) if tol_is == "rtol" else (tol, 0.0)
        warnings.warn(f"{tol_name}= is deprecated; use atol= and rtol= ({tol_name}={tol:g} is "
                      f"atol={atol:g}, rtol={rtol:g}): the test is {test}",
                      DeprecationWarning, stacklevel=stacklevel)
        return atol, rtol
    atol = default[0] if atol is None else _check_tolerance("atol", atol)
    rtol = default[1] if rtol is None else _check_tolerance("rtol", rtol)
    return float(atol), float(rtol)
