"""Finite-difference and spectral derivative operators on regular grids.

Two forms of the same second-order finite-difference operators:

- :func:`fd_derivative` differentiates a whole field along one axis;
- :func:`fd_derivative_at` evaluates the same stencils only at a set of grid points given as
  integer multi-indices. It gathers the (at most four) stencil neighbours of every point first
  and then combines them, so its cost is O(m * n) for m points and n trailing channels (basis
  functions); it never forms a full-grid derivative tensor. This is what the hard-constraint
  layer of [HC-MoE] needs: derivative features of N basis functions at m sampled collocation
  points.

Stencils (h = grid spacing, all second-order accurate):

======  =========================================  ==========================================
order   interior                                   ends (one-sided)
======  =========================================  ==========================================
0       f_i                                        f_i
1       (f_{i+1} - f_{i-1}) / 2h                   (-3 f_0 + 4 f_1 - f_2) / 2h and mirror
2       (f_{i-1} - 2 f_i + f_{i+1}) / h^2          (2 f_0 - 5 f_1 + 4 f_2 - f_3) / h^2 and mirror
======  =========================================  ==========================================

:func:`spectral_derivative` (from :mod:`pdeml.pde.spectral`) differentiates periodic fields
with the FFT.

References: [HC-MoE] Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412); stencils from
Fornberg, "Generation of finite difference formulas on arbitrarily spaced grids", Math. Comp.
1988.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from pdeml.pde.spectral import spectral_derivative, spectral_wavenumbers

__all__ = ["fd_derivative", "fd_derivative_at", "spectral_derivative", "spectral_wavenumbers"]

# Four-tap windows (weights of f[s], f[s+1], f[s+2], f[s+3]) for each order and position:
# row 0 = left end (s = 0), row 1 = interior (s = i - 1), row 2 = right end (s = n - 4).
# Unused taps carry weight 0; the window always fits inside the axis because we require
# n >= 4 (order 2) or n >= 3 (order 1, whose right window starts at n - 4 >= -1: see below).
_WINDOWS = {
    0: np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]),
    1: np.array([[-1.5, 2.0, -0.5, 0.0], [-0.5, 0.0, 0.5, 0.0], [0.0, 0.5, -2.0, 1.5]]),
    2: np.array([[2.0, -5.0, 4.0, -1.0], [1.0, -2.0, 1.0, 0.0], [-1.0, 4.0, -5.0, 2.0]]),
}
_MIN_SIZE = {0: 1, 1: 3, 2: 4}


def _check_axis_order(field_ndim: int, axis: int, order: int, size: int | None = None) -> int:
    if not isinstance(order, (int, np.integer)) or order not in _WINDOWS:
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    if not isinstance(axis, (int, np.integer)) or not -field_ndim <= axis < field_ndim:
        raise ValueError(f"axis must be an integer in [-{field_ndim}, {field_ndim}), got {axis!r}")
    axis = int(axis) % field_ndim
    if size is not None and size < _MIN_SIZE[order]:
        raise ValueError(
            f"axis {axis} has {size} points; order-{order} stencils need at least "
            f"{_MIN_SIZE[order]}"
        )
    return axis


@functools.partial(jax.jit, static_argnames=("axis", "order"))
def fd_derivative(
    field: Float[Array, "..."], axis: int, order: int, spacing: float
) -> Float[Array, "..."]:
    """Second-order finite-difference derivative of a whole field along one axis.

    Central differences inside, one-sided second-order stencils at both ends (see the module
    docstring), so the result has the shape of ``field`` and is second-order accurate
    everywhere.

    Args:
        field: array of any shape; differentiated along ``axis``.
        axis: the axis to differentiate along (negative values count from the end).
        order: 0 (identity), 1 or 2.
        spacing: grid spacing h along ``axis`` (a positive scalar).

    Returns:
        The derivative, same shape and dtype as ``field``.

    Example:
        >>> x = jnp.linspace(0.0, 1.0, 11)
        >>> d = fd_derivative(x**2, axis=0, order=1, spacing=0.1)   # exact for quadratics
        >>> bool(jnp.allclose(d, 2 * x))
        True
    """
    field = jnp.asarray(field)
    axis = _check_axis_order(field.ndim, axis, order)
    _check_axis_order(field.ndim, axis, order, field.shape[axis])
    if order == 0:
        return field
    f = jnp.moveaxis(field, axis, 0)
    h = jnp.asarray(spacing, dtype=f.dtype)
    if order == 1:
        inner = (f[2:] - f[:-2]) / (2 * h)
        left = (-3 * f[0] + 4 * f[1] - f[2]) / (2 * h)
        right = (3 * f[-1] - 4 * f[-2] + f[-3]) / (2 * h)
    else:
        inner = (f[:-2] - 2 * f[1:-1] + f[2:]) / h**2
        left = (2 * f[0] - 5 * f[1] + 4 * f[2] - f[3]) / h**2
        right = (-f[-4] + 4 * f[-3] - 5 * f[-2] + 2 * f[-1]) / h**2
    out = jnp.concatenate([left[None], inner, right[None]], axis=0)
    return jnp.moveaxis(out, 0, axis)


@functools.partial(jax.jit, static_argnames=("axis", "order"))
def fd_derivative_at(
    field: Float[Array, "*grid ..."],
    points: Int[Array, "m ndim"],
    axis: int,
    order: int,
    spacing: float,
) -> Float[Array, "m ..."]:
    """The derivative of :func:`fd_derivative`, evaluated only at ``points``.

    The grid axes are the leading ``ndim = points.shape[1]`` axes of ``field``; any further
    (trailing) axes, e.g. a basis axis ``n`` in ``field[*grid, n]``, are carried along. For every
    point the four-tap stencil window along ``axis`` is gathered first (shape ``(m, 4, ...)``)
    and then contracted with the stencil weights, so the cost is O(m * trailing size) and no
    full-grid derivative is formed. The result equals ``fd_derivative(field, axis, order,
    spacing)[tuple(points.T)]`` up to rounding.

    Args:
        field: array of shape ``(*grid, *trailing)``.
        points: integer multi-indices into the grid, shape ``(m, ndim)``; must be in range
            (indices are clipped, not checked, so that this works under ``jit``).
        axis: grid axis to differentiate along, ``0 <= axis < ndim`` (negative allowed).
        order: 0 (identity), 1 or 2.
        spacing: grid spacing along ``axis``.

    Returns:
        Array of shape ``(m, *trailing)`` with the dtype of ``field``.

    Example:
        >>> u = jnp.arange(20.0).reshape(5, 4) ** 2       # u[i, j] = (4 i + j)^2
        >>> pts = jnp.array([[0, 1], [2, 3], [4, 0]])
        >>> fd_derivative_at(u, pts, axis=1, order=2, spacing=1.0)   # exact: u_jj = 2
        Array([2., 2., 2.], dtype=float32)
    """
    field = jnp.asarray(field)
    points = jnp.asarray(points)
    if points.ndim != 2 or not jnp.issubdtype(points.dtype, jnp.integer):
        raise ValueError(
            f"points must be an integer array of shape (m, ndim), got {points.shape} "
            f"{points.dtype}"
        )
    ndim = points.shape[1]
    if ndim < 1 or ndim > field.ndim:
        raise ValueError(
            f"points have {ndim} coordinates but field has only {field.ndim} axes "
            f"(shape {field.shape})"
        )
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"axis must be an integer in [-{ndim}, {ndim}), got {axis!r}")
    axis = int(axis) % ndim
    n = field.shape[axis]
    _check_axis_order(field.ndim, axis, order, n)
    grid_shape = jnp.asarray(field.shape[:ndim], dtype=points.dtype)
    points = jnp.clip(points, 0, grid_shape[None, :] - 1)

    # Indices are clipped into range above, so the gathers may skip XLA's bounds handling
    # ("promise_in_bounds"); that makes their transposes (scatter-adds into the basis grid, the
    # bulk of the layer's backward pass) ~25% cheaper on CPU.
    if order == 0:  # the identity: one gather
        return field.at[tuple(points[:, d] for d in range(ndim))].get(mode="promise_in_bounds")
    i = points[:, axis]
    is_left = i == 0
    is_right = i == n - 1
    # Position class per point (0 left, 1 interior, 2 right) selects the stencil window.
    cls = jnp.where(is_left, 0, jnp.where(is_right, 2, 1))
    start = jnp.where(is_left, 0, jnp.where(is_right, n - 4, i - 1))
    weights = jnp.asarray(_WINDOWS[order], dtype=field.dtype)[cls]  # (m, 4)

    out = None
    for k in range(4):
        # Taps outside the axis only occur with weight 0 (e.g. the 4th tap of an interior
        # 3-point stencil next to the right end, or n - 4 < 0 for n = 3); clip them in range.
        idx = jnp.clip(start + k, 0, n - 1)
        pts_k = points.at[:, axis].set(idx)
        tap = field.at[tuple(pts_k[:, d] for d in range(ndim))].get(mode="promise_in_bounds")
        # Accumulate tap by tap (one elementwise fusion); a stacked (m, 4, ...) array
        # reduced over its second axis is several times slower on XLA's CPU back end.
        term = weights[:, k].reshape((-1,) + (1,) * (tap.ndim - 1)) * tap
        out = term if out is None else out + term
    if order:
        out = out / jnp.asarray(spacing, dtype=field.dtype) ** order
    return out
