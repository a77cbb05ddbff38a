"""Input validation helpers: clear errors that name the argument and what was expected.

Shapes and options are checked at trace time (``ValueError`` / ``TypeError``); values
(NaN, non-positive parameters) at run time through :func:`equinox.error_if`, which works
under ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def check_ndim(name: str, x, ndim: int) -> None:
    """Raise ``ValueError`` unless ``x`` has exactly ``ndim`` dimensions."""
    if jnp.ndim(x) != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {jnp.shape(x)}")


def check_shape(name: str, x, expected: Sequence[int | None]) -> None:
    """Raise ``ValueError`` unless ``x.shape`` matches ``expected`` (``None`` = any size)."""
    shape = jnp.shape(x)
    if len(shape) != len(expected) or any(
        e is not None and s != e for s, e in zip(shape, expected)
    ):
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape}")


def check_choice(name: str, value, choices: Sequence) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")


def error_if_nonfinite(name: str, x):
    """Return ``x``, raising at run time (also under jit) if it holds NaN or inf."""
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(x)), f"{name} contains NaN or inf")


def error_if_nonpositive(name: str, x):
    """Return ``x``, raising at run time if any entry is <= 0."""
    return eqx.error_if(x, jnp.any(x <= 0), f"{name} must be positive")


def check_grid_indices(name: str, x, grid_shape: Sequence[int]):
    """Return ``x`` as a JAX integer array of multi-indices into a grid of ``grid_shape``.

    ``x`` has shape ``(..., ndim)`` with ``ndim = len(grid_shape)``; every index must satisfy
    ``0 <= x[..., a] < grid_shape[a]`` (gathers would clip it silently). Non-integer ``x``
    raises ``TypeError``. An out-of-range index raises ``ValueError`` when ``x`` is concrete
    (NumPy, or a JAX array outside ``jit``), and an :class:`equinox.EquinoxRuntimeError` at run
    time when it is traced.

    Example:
        >>> check_grid_indices("points", [[0, 1], [2, 3]], (3, 4)).shape
        (2, 2)
    """
    grid_shape = tuple(int(n) for n in grid_shape)
    traced = isinstance(x, jax.core.Tracer)
    dtype = x.dtype if traced else np.asarray(x).dtype
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{name} must hold integer grid indices, got dtype {dtype}")
    shape = tuple(x.shape) if traced else np.shape(x)  # lists too (jnp.shape warns on them)
    if len(shape) < 1 or shape[-1] != len(grid_shape):
        raise ValueError(f"{name} must have shape (..., {len(grid_shape)}) (one index per grid "
                         f"axis of {grid_shape}), got {shape}")
    message = f"{name} must be grid indices with 0 <= {name}[..., a] < {grid_shape}[a]"
    if traced:
        upper = jnp.asarray(grid_shape, x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        return eqx.error_if(x, jnp.any((x < 0) | (x >= upper)), message)
    # Concrete (NumPy, or a JAX array outside jit): check now, in NumPy (jnp operations would
    # be staged out under an enclosing jit).
    values = np.asarray(x)
    bad = ((values < 0) | (values >= np.asarray(grid_shape))).any(-1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{message}; got {values[where].tolist()} at position {where}")
    return jnp.asarray(x)


def error_if_failed(x, failed, result, messages: dict[int, str], what: str):
    """Return ``x``, raising at run time (also under jit) if any entry of ``failed`` holds.

    The shared ``throw=True`` behaviour of every solver-running function: ``result`` holds the
    result codes (same shape as ``failed``, the codes of :mod:`pdeml.core.least_squares`) and
    the error message is ``"{what}: {messages[code]}"`` for the largest code among the failed
    entries (``NONFINITE`` outranks ``MAX_STEPS_REACHED``).

    Example:
        >>> import jax.numpy as jnp
        >>> x = error_if_failed(jnp.ones(2), jnp.array([False, False]), jnp.array([0, 0]),
        ...                     {1: "did not converge"}, "demo")
        >>> x.tolist()
        [1.0, 1.0]
    """
    failed = jnp.asarray(failed)
    codes = jnp.where(failed, jnp.asarray(result, jnp.int32), 0)
    worst = jnp.max(codes, initial=0)
    table = tuple(f"{what}: {messages.get(code, f'failed (result code {code})')} (pass "
                  "throw=False to inspect the result)" for code in range(max(messages) + 1))
    return eqx.branched_error_if(x, jnp.any(failed), jnp.minimum(worst, len(table) - 1), table)


def check_real_number(name: str, value, *, minimum: float | None = None,
                      positive: bool = False) -> None:
    """Raise ``ValueError`` unless the concrete number ``value`` is finite (and ``> 0`` with
    ``positive``, ``>= minimum`` with ``minimum``); traced values are left to run-time checks.

    Example:
        >>> check_real_number("nu", 0.5, minimum=0.0)
        >>> check_real_number("step", float("nan"), positive=True)
        Traceback (most recent call last):
        ...
        ValueError: step must be a finite number > 0, got nan
    """
    if isinstance(value, jax.core.Tracer):
        return
    want = "a finite number" + (" > 0" if positive else "") + (
        f" >= {minimum}" if minimum is not None else "")
    try:
        v = float(np.asarray(value))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {want}, got {value!r}") from None
    if not np.isfinite(v) or (positive and not v > 0) or (minimum is not None and v < minimum):
        raise ValueError(f"{name} must be {want}, got {value!r}")


def check_positive_int(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= 1 (not a bool).

    Example:
        >>> check_positive_int("width", 0)
        Traceback (most recent call last):
        ...
        ValueError: width must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_basis(name: str, basis, grid_shape: Sequence[int]):
    """Return ``basis`` after checking it is a real floating ``(*grid_shape, N)`` array with no
    NaN/inf (shape and dtype at trace time, values at run time).

    Raises ``TypeError`` for an integer or complex basis (naming the cast to make) and
    ``ValueError`` for a wrong shape.
    """
    grid = tuple(int(n) for n in grid_shape)
    dtype = jnp.result_type(basis)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real floating point, got complex dtype {dtype}; pass "
                        f"its real part ({name}.real) or split real and imaginary parts into "
                        "separate basis functions")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {dtype}; cast it, e.g. "
                        f"{name}.astype(jnp.float32)")
    if jnp.ndim(basis) != len(grid) + 1 or tuple(jnp.shape(basis)[:-1]) != grid:
        raise ValueError(
            f"{name} must have shape (*grid, N) = (*{grid}, N) (use jax.vmap for a batch), "
            f"got {jnp.shape(basis)}"
        )
    return error_if_nonfinite(name, jnp.asarray(basis))


def error_if_nonfinite_tree(name: str, tree):
    """Return ``tree``, raising at run time if any floating leaf holds NaN or inf; the message
    names the leaf (e.g. ``data.u0``)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for path, leaf in leaves:
        if eqx.is_inexact_array(leaf) or isinstance(leaf, np.ndarray) and np.issubdtype(
                leaf.dtype, np.inexact):
            where = name + jax.tree_util.keystr(path) if path else name
            leaf = error_if_nonfinite(where, jnp.asarray(leaf))
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)
