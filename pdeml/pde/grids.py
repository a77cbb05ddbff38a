"""Regular space-time grids.

A :class:`SpaceTimeGrid` is vertex-centred: both end points of each interval are grid nodes,
``x_i = x_min + i * dx`` (``i = 0..nx-1``, ``dx = (x_max - x_min) / (nx - 1)``) and likewise in
time. A field on the grid has shape ``(nx, nt)`` (space first), and a set of grid points is an
integer array of multi-indices ``(i, j)`` of shape ``(m, 2)``, as in :mod:`pdeml.pde.base`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = ["PeriodicSpaceTimeGrid", "SpaceTimeGrid", "grid_points"]


def grid_points(shape: tuple[int, ...], start: tuple[int, ...], stop: tuple[int, ...]
                ) -> Int[Array, "m ndim"]:
    """Integer multi-indices ``start[d] <= i_d < shape[d] - stop[d]`` of a grid, first axis slowest.

    Example:
        >>> grid_points((4, 3), start=(1, 1), stop=(1, 0)).tolist()
        [[1, 1], [1, 2], [2, 1], [2, 2]]
    """
    if not (len(shape) == len(start) == len(stop)):
        raise ValueError(f"shape, start and stop need one entry per axis, got {shape}, {start}, "
                         f"{stop}")
    axes = [np.arange(a, n - b) for n, a, b in zip(shape, start, stop, strict=True)]
    if any(ax.size == 0 for ax in axes):
        raise ValueError(f"no grid points in {shape} with start={start}, stop={stop}")
    mesh = np.meshgrid(*axes, indexing="ij")
    return jnp.asarray(np.stack([m.ravel() for m in mesh], axis=1).astype(np.int32))


class SpaceTimeGrid(eqx.Module):
    """A regular vertex-centred 1D-space x time grid.

    Attributes:
        nx: number of spatial nodes (>= 4, so that one-sided second-order stencils fit).
        nt: number of time levels including ``t_min`` (>= 3).
        x_min, x_max: spatial interval; nodes include both ends.
        t_min, t_max: time interval; levels include both ends.

    Example:
        >>> g = SpaceTimeGrid(nx=5, nt=3, t_max=2.0)
        >>> g.dx, g.dt, g.shape
        (0.25, 1.0, (5, 3))
    """

    nx: int = eqx.field(static=True)
    nt: int = eqx.field(static=True)
    x_min: float = eqx.field(static=True, default=0.0)
    x_max: float = eqx.field(static=True, default=1.0)
    t_min: float = eqx.field(static=True, default=0.0)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        for name, n, least in (("nx", self.nx, 4), ("nt", self.nt, 3)):
            if not isinstance(n, int) or isinstance(n, bool) or n < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {n!r}")
        if not self.x_max > self.x_min:
            raise ValueError(f"x_max must exceed x_min, got [{self.x_min}, {self.x_max}]")
        if not self.t_max > self.t_min:
            raise ValueError(f"t_max must exceed t_min, got [{self.t_min}, {self.t_max}]")

    @property
    def shape(self) -> tuple[int, int]:
        """``(nx, nt)``."""
        return (self.nx, self.nt)

    @property
    def dx(self) -> float:
        """Spatial spacing."""
        return (self.x_max - self.x_min) / (self.nx - 1)

    @property
    def dt(self) -> float:
        """Time spacing."""
        return (self.t_max - self.t_min) / (self.nt - 1)

    def spacing(self, axis: int) -> float:
        """Spacing along ``axis`` (0: ``dx``, 1: ``dt``), for the finite-difference operators."""
        if axis not in (0, 1):
            raise ValueError(f"a space-time grid has axes 0 (x) and 1 (t), got {axis!r}")
        return self.dx if axis == 0 else self.dt

    def interior_points(self) -> Int[Array, "q 2"]:
        """The points ``(i, j)`` with ``1 <= i <= nx - 2`` and ``1 <= j <= nt - 1`` (x-major).

        These are the points where a time-dependent PDE with conditions at both ends of the
        interval and an initial condition is imposed (every point no IC/BC row covers).
        """
        return grid_points(self.shape, (1, 1), (1, 0))

    def dirichlet_rows(self, basis: Float[Array, "nx nt n"], u0, left, right
                       ) -> tuple[Float[Array, "p n"], Float[Array, " p"]]:
        """Initial-condition and Dirichlet rows ``rows @ w = targets`` for a basis on this grid.

        Rows, in this order: ``u(x_i, t_0) = u0[i]`` for every ``i``, then ``u(x_0, t_j) =
        left[j - 1]`` and ``u(x_{nx-1}, t_j) = right[j - 1]`` for ``j >= 1`` (the corners at
        ``t_0`` carry only the IC row, so IC and boundary data never contradict): ``nx + 2 (nt
        - 1)`` rows. ``left`` and ``right`` may be scalars (constant in time).

        Example:
            >>> import jax.numpy as jnp
            >>> g = SpaceTimeGrid(nx=4, nt=3)
            >>> rows, targets = g.dirichlet_rows(jnp.ones((4, 3, 2)), jnp.zeros(4), 1.0, 2.0)
            >>> rows.shape, targets.tolist()
            ((8, 2), [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
        """
        basis = jnp.asarray(basis)
        if basis.ndim != 3 or basis.shape[:2] != self.shape:
            raise ValueError(f"basis must have shape (nx, nt, n) = (*{self.shape}, n), got "
                             f"{basis.shape}")
        u0 = jnp.asarray(u0, basis.dtype)
        if u0.shape != (self.nx,):
            raise ValueError(f"u0 must have shape ({self.nx},), got {u0.shape}")
        sides = []
        for name, v in (("left", left), ("right", right)):
            v = jnp.asarray(v, basis.dtype)
            if v.ndim == 0:
                v = jnp.full((self.nt - 1,), v)
            if v.shape != (self.nt - 1,):
                raise ValueError(f"{name} must be a scalar or have shape ({self.nt - 1},) (one "
                                 f"value per time level after t_min), got {v.shape}")
            sides.append(v)
        rows = jnp.concatenate([basis[:, 0, :], basis[0, 1:, :], basis[-1, 1:, :]])
        return rows, jnp.concatenate([u0, *sides])

    def x(self, dtype=None) -> Float[Array, " nx"]:
        """Spatial nodes."""
        return self.x_min + self.dx * jnp.arange(self.nx, dtype=dtype)

    def t(self, dtype=None) -> Float[Array, " nt"]:
        """Time levels."""
        return self.t_min + self.dt * jnp.arange(self.nt, dtype=dtype)

    def mesh(self, dtype=None) -> tuple[Float[Array, "nx nt"], Float[Array, "nx nt"]]:
        """``(X, T)`` coordinate fields of shape ``(nx, nt)``."""
        return jnp.meshgrid(self.x(dtype), self.t(dtype), indexing="ij")

    def refine(self, x_factor: int = 1, t_factor: int = 1) -> "SpaceTimeGrid":
        """The grid with every interval split into ``x_factor`` (``t_factor``) equal parts.

        The nodes of ``self`` are the nodes ``[::x_factor, ::t_factor]`` of the result.
        """
        for name, f in (("x_factor", x_factor), ("t_factor", t_factor)):
            if not isinstance(f, int) or f < 1:
                raise ValueError(f"{name} must be a positive integer, got {f!r}")
        return SpaceTimeGrid(
            nx=(self.nx - 1) * x_factor + 1,
            nt=(self.nt - 1) * t_factor + 1,
            x_min=self.x_min,
            x_max=self.x_max,
            t_min=self.t_min,
            t_max=self.t_max,
        )


class PeriodicSpaceTimeGrid(eqx.Module):
    """A periodic square ``[0, L)^2`` (``nx`` x ``ny`` nodes ``i L / nx``) times ``[0, T]``.

    The time levels are vertex-centred as in :class:`SpaceTimeGrid`: ``t_k = k T / (nt - 1)``.
    Fields have shape ``(nx, ny, nt)``; a set of points is an integer array ``(m, 3)``.

    Example:
        >>> g = PeriodicSpaceTimeGrid(nx=4, ny=4, nt=3, t_max=2.0)
        >>> g.shape, g.dx, g.dt, g.interior_points().shape
        ((4, 4, 3), 0.25, 1.0, (32, 3))
    """

    nx: int = eqx.field(static=True)
    ny: int = eqx.field(static=True)
    nt: int = eqx.field(static=True)
    length: float = eqx.field(static=True, default=1.0)
    t_max: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        for name, least in (("nx", 4), ("ny", 4), ("nt", 3)):
            n = getattr(self, name)
            if not isinstance(n, int) or isinstance(n, bool) or n < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {n!r}")
        for name in ("length", "t_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nx, ny, nt)``."""
        return (self.nx, self.ny, self.nt)

    @property
    def dx(self) -> float:
        """Spacing in x, ``L / nx``."""
        return self.length / self.nx

    @property
    def dy(self) -> float:
        """Spacing in y, ``L / ny``."""
        return self.length / self.ny

    @property
    def dt(self) -> float:
        """Time spacing, ``T / (nt - 1)``."""
        return self.t_max / (self.nt - 1)

    def spacing(self, axis: int) -> float:
        """Spacing along ``axis`` (0: ``dx``, 1: ``dy``, 2: ``dt``)."""
        if axis not in (0, 1, 2):
            raise ValueError(f"this grid has axes 0 (x), 1 (y) and 2 (t), got {axis!r}")
        return (self.dx, self.dy, self.dt)[axis]

    def x(self, dtype=None) -> Float[Array, " nx"]:
        """Nodes in x."""
        return self.dx * jnp.arange(self.nx, dtype=dtype)

    def y(self, dtype=None) -> Float[Array, " ny"]:
        """Nodes in y."""
        return self.dy * jnp.arange(self.ny, dtype=dtype)

    def t(self, dtype=None) -> Float[Array, " nt"]:
        """Time levels."""
        return self.dt * jnp.arange(self.nt, dtype=dtype)

    def interior_points(self) -> Int[Array, "q 3"]:
        """Every ``(i, j, k)`` with ``k >= 1`` (all points after the initial time; x-major)."""
        return grid_points(self.shape, (0, 0, 1), (0, 0, 0))
