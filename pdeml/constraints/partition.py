"""Partitions of a space-time grid into experts, held as data (arrays), not as code.

A :class:`Partition` of a grid of shape ``grid_shape`` into K experts is three arrays:

* ``weights`` ``(K, *grid)``: a partition of unity, ``sum_k weights[k] == 1`` at every grid
  point; the mixture-of-experts output is ``u = sum_k weights[k] * (b @ w_k)``;
* ``members`` ``(K, *grid)`` (bool): the points expert k may sample its collocation points from
  (its subdomain, extended by the overlap; ``weights[k] > 0`` exactly there);
* plus static metadata (``splits``, ``overlap``, ``assignment``, ``boundary_rows``).

Constructors:

* :meth:`Partition.uniform`: the router of [HC-MoE], a uniform split into
  ``splits[a]`` pieces along each grid axis ``a`` (``K = prod(splits)``; splits of 1 leave an
  axis whole). Along an axis of n points, point i has the normalised cell-centre coordinate
  ``s_i = (i + 1/2) / n`` and piece j covers ``j / K_a <= s < (j + 1) / K_a``. When
  ``K_a`` does not divide n the pieces differ by at most one point (documented, not an error).

  With ``overlap > 0`` the hard seam at every cut ``c`` is replaced by a blending band
  ``|s - c| < overlap / (2 K_a)`` (so ``overlap`` is the band width as a fraction of one
  piece's width, in [0, 1)); inside the band the weights ramp with the C^2 quintic smoothstep
  ``psi(z) = 6 z^5 - 15 z^4 + 10 z^3``. The 1D weights of piece j are the telescoping
  differences ``psi_j - psi_{j+1}`` of the steps at its two cuts (``psi_0 = 1``,
  ``psi_{K_a} = 0``), so they sum to one; the K-dimensional weights are tensor products and
  sum to one too. The blended field has no jump at a seam: across a seam it changes by
  ``O(h / band)`` times the difference between neighbouring experts, smoothly.

* :meth:`Partition.random`: the ablation of [HC-MoE]'s reviewers: every grid point is given to
  one expert at random (a balanced random assignment: a random permutation dealt round-robin),
  with one-hot weights. The experts are then not spatially localised.

``boundary_rows`` says which IC/BC rows each expert's least squares gets: ``"all"`` (every
expert gets every global row, the published setting) or ``"touching"`` (only the rows whose
stencil touches the expert's ``members``; see
:meth:`pdeml.constraints.MoEHardConstraint.row_masks`).

Reference: Chalapathi, Du, Krishnapriyan, "Scaling physics-informed hard constraints with
mixture-of-experts", ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from pdeml.core.validation import check_choice

__all__ = ["ASSIGNMENTS", "BOUNDARY_ROWS", "Partition", "smoothstep"]

ASSIGNMENTS = ("spatial", "random")
BOUNDARY_ROWS = ("all", "touching")


def smoothstep(z):
    """The C^2 quintic step ``6 z^5 - 15 z^4 + 10 z^3`` on [0, 1], clamped outside."""
    z = np.clip(z, 0.0, 1.0)
    return z * z * z * (z * (6.0 * z - 15.0) + 10.0)


def _axis_weights(n: int, pieces: int, overlap: float, periodic: bool = False) -> np.ndarray:
    """``(pieces, n)`` 1D partition-of-unity weights along one axis (float64, numpy).

    ``periodic``: the axis wraps around (grid ``s_i = i / n``, no repeated end point); piece j
    covers ``[j / K, (j + 1) / K)`` and the cut at ``s = 0 = 1`` between the last and the first
    piece is blended like the others, so the blended field is smooth across the wrap too.
    """
    half = overlap / (2.0 * pieces)
    if periodic:
        if pieces == 1:
            return np.ones((1, n))
        i = np.arange(n)
        s = i / n
        block = (i * pieces) // n  # the piece holding point i (integer, exact)
        # Signed periodic distance of every point to every cut c_j = j / K, in [-1/2, 1/2).
        d = [((s - j / pieces + 0.5) % 1.0) - 0.5 for j in range(pieces)]
        ramp = [smoothstep((dj + half) / (2.0 * half)) if half > 0 else None for dj in d]
        out = np.zeros((pieces, n))
        for j in range(pieces):
            w = (block == j).astype(np.float64)
            if half > 0:
                nxt = (j + 1) % pieces
                # Rising band at the own cut, falling band at the next one: the neighbour's
                # ramp there is the complement, so the weights sum to one (to one rounding).
                w = np.where(np.abs(d[nxt]) < half, 1.0 - ramp[nxt], w)
                w = np.where(np.abs(d[j]) < half, ramp[j], w)
            out[j] = w
        return out
    s = (np.arange(n) + 0.5) / n
    steps = [np.ones(n)]
    for j in range(1, pieces):
        c = j / pieces
        if half > 0:
            steps.append(smoothstep((s - (c - half)) / (2.0 * half)))
        else:
            steps.append((s >= c).astype(np.float64))
    steps.append(np.zeros(n))
    return np.stack([steps[j] - steps[j + 1] for j in range(pieces)])


def _check_weights(weights) -> None:
    """``ValueError`` unless concrete ``weights (K, *grid)`` are a partition of unity.

    Finite, non-negative, and summing to one over the experts at every grid point to
    ``1e3 * eps`` of their dtype (the constructors' telescoping sums are exact to a few eps).
    Traced weights (a partition built inside ``jit``) are not checked.
    """
    if isinstance(weights, jax.core.Tracer):
        return
    w = np.asarray(weights)
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)
            or w.dtype == np.bool_):
        raise TypeError(f"Partition.weights must be real numbers, got dtype {w.dtype}")
    if np.issubdtype(w.dtype, np.floating) and not np.isfinite(w).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(w))[0])
        raise ValueError(f"Partition.weights must be finite, got {w[where]} at {where}")
    if (w < 0).any():
        where = tuple(int(i) for i in np.argwhere(w < 0)[0])
        raise ValueError(f"Partition.weights must be non-negative, got {w[where]} at {where}")
    eps = np.finfo(w.dtype).eps if np.issubdtype(w.dtype, np.floating) else 0.0
    total = w.sum(0, dtype=np.float64)
    off = np.abs(total - 1.0)
    if off.max(initial=0.0) > 1e3 * eps:
        where = tuple(int(i) for i in np.argwhere(off == off.max())[0])
        raise ValueError(
            "Partition.weights must sum to one over the experts at every grid point (a "
            f"partition of unity, to 1e3 * eps = {1e3 * eps:.1e}); the sum is {total[where]} "
            f"at grid point {where}"
        )


class Partition(eqx.Module):
    """K experts on a grid: partition-of-unity ``weights`` and sampling ``members``.

    Build with :meth:`uniform` or :meth:`random` (or pass your own arrays: any non-negative
    ``weights`` summing to one with ``members == (weights > 0)`` is a valid partition; weights
    that are not finite, negative, or do not sum to one at some grid point (to ``1e3 * eps`` of
    their dtype) raise ``ValueError`` at construction).

    Attributes:
        weights: ``(K, *grid)`` blending weights, summing to one over k at every point.
        members: ``(K, *grid)`` bool, the points of each expert's (extended) subdomain.
        grid_shape: the grid.
        splits: pieces per grid axis for a uniform partition, ``None`` for a random one.
        overlap: band width of the blending as a fraction of a piece (0: block-wise).
        assignment: ``"spatial"`` or ``"random"``.
        boundary_rows: ``"all"`` or ``"touching"`` (which IC/BC rows each expert gets).
        member_counts: points in each expert's subdomain (static, for checks at trace time).
        periodic: which grid axes wrap around (``Partition.uniform(periodic=...)``; empty:
            none). Used by :meth:`interface_points`.

    Example:
        >>> p = Partition.uniform((8, 6), (2, 1), overlap=0.5)
        >>> p.num_experts, p.weights.shape, bool(abs(p.weights.sum(0) - 1).max() < 1e-15)
        (2, (2, 8, 6), True)
    """

    weights: Float[Array, "k *grid"]
    members: Bool[Array, "k *grid"]
    grid_shape: tuple[int, ...] = eqx.field(static=True)
    splits: tuple[int, ...] | None = eqx.field(static=True, default=None)
    overlap: float = eqx.field(static=True, default=0.0)
    assignment: str = eqx.field(static=True, default="spatial")
    boundary_rows: str = eqx.field(static=True, default="all")
    member_counts: tuple[int, ...] = eqx.field(static=True, default=())
    periodic: tuple[bool, ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        check_choice("assignment", self.assignment, ASSIGNMENTS)
        check_choice("boundary_rows", self.boundary_rows, BOUNDARY_ROWS)
        shape = (len(self.member_counts), *self.grid_shape)
        for name in ("weights", "members"):
            if tuple(jnp.shape(getattr(self, name))) != shape:
                raise ValueError(
                    f"Partition.{name} must have shape (K, *grid_shape) = {shape}, got "
                    f"{jnp.shape(getattr(self, name))}"
                )
        _check_weights(self.weights)

    # ---- constructors ---------------------------------------------------------------

    @classmethod
    def uniform(
        cls,
        grid_shape,
        splits,
        *,
        overlap: float = 0.0,
        boundary_rows: str = "all",
        periodic=False,
        dtype=None,
    ) -> Partition:
        """Uniform split into ``splits[a]`` pieces along grid axis ``a`` ([HC-MoE]'s router).

        Args:
            grid_shape: the grid, e.g. ``(nx, nt)``.
            splits: pieces per axis, same length as ``grid_shape`` (1 = axis not split).
                Experts are numbered in C order over the pieces (last axis fastest).
            overlap: width of the smooth blending band at every seam, as a fraction of one
                piece's width, in ``[0, 1)``; 0 gives block-wise experts (hard seams).
            boundary_rows: ``"all"`` or ``"touching"``.
            periodic: one bool per axis (or one for all): the axis is periodic (points
                ``s_i = i / n``, e.g. the space axes of Navier-Stokes). Its pieces start at
                ``j / K_a`` and, with ``overlap > 0``, the seam at the wrap ``s = 0 = 1`` is
                blended like the interior ones (a spectral derivative of a field that jumps at
                the wrap would ring over the whole domain).
            dtype: dtype of ``weights`` (default: JAX's default float).
        """
        grid_shape = tuple(int(n) for n in grid_shape)
        splits = tuple(splits)
        if len(splits) != len(grid_shape) or not all(
            isinstance(k, (int, np.integer)) and k >= 1 for k in splits
        ):
            raise ValueError(
                f"splits must be {len(grid_shape)} positive integers (one per grid axis of "
                f"{grid_shape}), got {splits!r}"
            )
        splits = tuple(int(k) for k in splits)
        for a, (n, k) in enumerate(zip(grid_shape, splits)):
            if k > n:
                raise ValueError(
                    f"splits[{a}] = {k} exceeds the {n} grid points along axis {a}"
                )
        if not (isinstance(overlap, (int, float)) and 0.0 <= overlap < 1.0):
            raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
        if isinstance(periodic, (bool, np.bool_)):
            periodic = (bool(periodic),) * len(grid_shape)
        periodic = tuple(bool(p) for p in periodic)
        if len(periodic) != len(grid_shape):
            raise ValueError(f"periodic must be one bool or one per grid axis of {grid_shape}, "
                             f"got {periodic!r}")
        per_axis = [_axis_weights(n, k, float(overlap), p)
                    for n, k, p in zip(grid_shape, splits, periodic)]
        weights = np.ones((1,) * (len(grid_shape) + 1))
        for a, wa in enumerate(per_axis):
            # Outer product over axes, expert index in C order over (piece_0, piece_1, ...).
            shape = [1] * len(grid_shape)
            shape[a] = grid_shape[a]
            wa = wa.reshape((wa.shape[0], *shape))
            prod = weights[:, None] * wa[None]
            weights = prod.reshape((-1, *prod.shape[2:]))
        weights = weights.reshape((-1, *grid_shape))
        members = weights > 0
        dtype = jnp.result_type(float) if dtype is None else dtype
        return cls(
            weights=jnp.asarray(weights, dtype),
            members=jnp.asarray(members),
            grid_shape=grid_shape,
            splits=splits,
            overlap=float(overlap),
            assignment="spatial",
            boundary_rows=boundary_rows,
            member_counts=tuple(int(c) for c in members.reshape(members.shape[0], -1).sum(1)),
            periodic=periodic,
        )

    @classmethod
    def random(
        cls, grid_shape, num_experts: int, key, *, boundary_rows: str = "all", dtype=None
    ) -> Partition:
        """Balanced random assignment of grid points to ``num_experts`` experts (ablation).

        A random permutation of the grid points (from ``key``) is dealt round-robin, so the
        expert sizes differ by at most one; the weights are one-hot.
        """
        grid_shape = tuple(int(n) for n in grid_shape)
        size = math.prod(grid_shape)
        if not isinstance(num_experts, (int, np.integer)) or not 1 <= num_experts <= size:
            raise ValueError(
                f"num_experts must be an integer in [1, {size}] (the grid points), got "
                f"{num_experts!r}"
            )
        perm = np.asarray(jax.random.permutation(key, size))
        owner = np.empty(size, np.int64)
        owner[perm] = np.arange(size) % num_experts
        members = owner.reshape(grid_shape)[None] == np.arange(num_experts).reshape(
            (-1,) + (1,) * len(grid_shape)
        )
        dtype = jnp.result_type(float) if dtype is None else dtype
        return cls(
            weights=jnp.asarray(members, dtype),
            members=jnp.asarray(members),
            grid_shape=grid_shape,
            splits=None,
            overlap=0.0,
            assignment="random",
            boundary_rows=boundary_rows,
            member_counts=tuple(int(c) for c in members.reshape(num_experts, -1).sum(1)),
        )

    # ---- queries ---------------------------------------------------------------------

    @property
    def num_experts(self) -> int:
        return len(self.member_counts)

    def owner(self) -> Int[Array, "*grid"]:
        """The expert with the largest weight at every grid point (the block of a point)."""
        return jnp.argmax(self.weights, axis=0)

    def member_mask_at(self, points: Int[Array, "m ndim"]) -> Bool[Array, "k m"]:
        """Whether each of ``points`` (multi-indices) lies in each expert's subdomain."""
        return self.members[(slice(None), *points.T)]

    def counts_at(self, points: Int[Array, "m ndim"]) -> tuple[int, ...]:
        """Concrete number of ``points`` in each expert's subdomain (needs concrete points)."""
        mask = np.asarray(self.member_mask_at(jnp.asarray(points)))
        return tuple(int(c) for c in mask.sum(1))

    def blend(self, fields: Float[Array, "k *grid"]) -> Float[Array, "*grid"]:
        """``sum_k weights[k] * fields[k]``: the mixture of per-expert fields."""
        return jnp.einsum("k...,k...->...", self.weights.astype(fields.dtype), fields)

    def permute(self, order) -> Partition:
        """The same partition with the experts renumbered: expert i becomes ``order[i]``-th."""
        order = np.asarray(order)
        if sorted(order.tolist()) != list(range(self.num_experts)):
            raise ValueError(f"order must be a permutation of range({self.num_experts}), got "
                             f"{order.tolist()}")
        return Partition(
            weights=self.weights[order], members=self.members[order],
            grid_shape=self.grid_shape, splits=self.splits, overlap=self.overlap,
            assignment=self.assignment, boundary_rows=self.boundary_rows,
            member_counts=tuple(self.member_counts[i] for i in order),
            periodic=self.periodic,
        )

    def interface_points(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices (K, P, ndim), valid (K, P))``: the grid points just outside each expert.

        Point x is on the interface of expert k when it is not in ``members[k]`` but one of
        its grid neighbours (+-1 along one axis; across the wrap of a periodic axis) is. This
        is the boundary of the expert's extended subdomain inside the domain, where the
        overlapping Schwarz coupling of :class:`~pdeml.constraints.MoEHardConstraint`
        (``sweeps > 0``) imposes the neighbours' field; ``weights[k]`` vanishes there, so the
        blended field at these points comes from the other experts only. The lists are padded
        to the longest one (``valid`` marks the real entries; padding repeats the first
        point). Needs a spatial partition: random experts are not contiguous.
        """
        if self.assignment != "spatial":
            raise ValueError("interface points need a spatial partition (Partition.uniform); "
                             f"this one has assignment={self.assignment!r}")
        members = np.asarray(self.members)
        periodic = self.periodic or (False,) * len(self.grid_shape)
        near = np.zeros_like(members)
        for a, wrap in enumerate(periodic):
            for shift in (1, -1):
                moved = np.roll(members, shift, axis=a + 1)
                if not wrap:  # np.roll wraps: drop what came across the end
                    edge = [slice(None)] * members.ndim
                    edge[a + 1] = 0 if shift == 1 else -1
                    moved[tuple(edge)] = False
                near |= moved
        outside = near & ~members
        lists = [np.argwhere(o) for o in outside]
        size = max(1, max(len(p) for p in lists))
        idx = np.zeros((len(lists), size, len(self.grid_shape)), np.int32)
        valid = np.zeros((len(lists), size), bool)
        for k, pts in enumerate(lists):
            if len(pts):
                idx[k, :len(pts)] = pts
                idx[k, len(pts):] = pts[0]
                valid[k, :len(pts)] = True
        return idx, valid
