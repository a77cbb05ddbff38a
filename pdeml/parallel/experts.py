"""Expert parallelism: the K expert solves of a :class:`~pdeml.constraints.MoEHardConstraint`
spread over the devices of a mesh with ``jax.shard_map`` (never ``pmap``).

Layout. A :class:`jax.sharding.Mesh` with an *expert* axis (size E) and optionally a *batch*
axis (size B_d). Each device receives the whole basis of its batch shard (replicated along the
expert axis), the collocation points and IC/BC row masks of its ``K / E`` experts, solves them
(``vmap``), blends its experts' fields with their partition-of-unity weights, and one ``psum``
over the expert axis adds the partial fields. Gradients flow back through the same program (the
implicit-function-theorem backward pass of each expert runs on that expert's device).

K not a multiple of E. The expert axis is padded to ``K_pad = E * ceil(K / E)`` with *dummy*
experts: copies of real experts' points (so every solve is a valid problem and costs the same)
whose blending weights are zero and whose results are dropped before returning. Padding wastes
``K_pad - K`` solves; it never changes the result. (Grouping instead of padding is what you get
by choosing E dividing K.)

Lockstep. Experts on one device share one batched ``while_loop``: converged experts are frozen
(masked) while the others iterate, and the loop ends when the slowest expert *on that device*
is done; devices exit independently. Cap the cost with a small ``LevenbergMarquardt(max_steps)``
and ``throw=False`` (the fixed-small-iteration-count mode); :func:`iteration_histogram` and
:func:`lockstep_efficiency` report what the experts needed.

Reference: Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from jaxtyping import Array, Float

from pdeml.constraints.moe import MoEConstraintInfo, MoEHardConstraint
from pdeml.core.validation import check_grid_indices

__all__ = ["ShardedMoE", "expert_mesh", "iteration_histogram", "lockstep_efficiency",
           "padded_num_experts"]


def expert_mesh(
    experts: int | None = None,
    batch: int = 1,
    *,
    devices=None,
    expert_axis: str = "expert",
    batch_axis: str = "batch",
) -> Mesh:
    """A ``(batch, expert)`` mesh with ``AxisType.Auto`` axes.

    Args:
        experts: devices along the expert axis (default: all devices / ``batch``).
        batch: devices along the batch axis.
        devices: the devices to use (default ``jax.devices()``, all processes).

    Example:
        >>> mesh = expert_mesh()
        >>> mesh.axis_names
        ('batch', 'expert')
    """
    devices = list(jax.devices() if devices is None else devices)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if experts is None:
        if len(devices) % batch:
            raise ValueError(f"batch={batch} does not divide the {len(devices)} devices")
        experts = len(devices) // batch
    if not isinstance(experts, int) or experts < 1:
        raise ValueError(f"experts must be a positive integer, got {experts!r}")
    if experts * batch > len(devices):
        raise ValueError(
            f"a mesh of batch={batch} x experts={experts} needs {experts * batch} devices, "
            f"only {len(devices)} are available"
        )
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((batch, experts), (batch_axis, expert_axis), (auto, auto),
                         devices=devices[: experts * batch])


def padded_num_experts(num_experts: int, num_devices: int) -> int:
    """``K_pad = E * ceil(K / E)``: experts after padding with dummies for E devices."""
    return num_devices * math.ceil(num_experts / num_devices)


def iteration_histogram(iterations, max_steps: int) -> np.ndarray:
    """Counts of Levenberg-Marquardt iteration numbers ``0..max_steps`` over all solves.

    Args:
        iterations: ``info.stats.iterations`` of any shape (e.g. ``(B, K)``).
        max_steps: the solver's cap (the last bin counts the solves that hit it).
    """
    it = np.asarray(iterations).ravel()
    if it.size and (it.min() < 0 or it.max() > max_steps):
        raise ValueError(f"iterations must lie in [0, max_steps={max_steps}]")
    return np.bincount(it, minlength=max_steps + 1)


def lockstep_efficiency(iterations, num_devices: int) -> float:
    """Useful / executed expert-iterations when the experts run in lockstep per device.

    ``iterations`` is ``(..., K)``; experts are dealt to ``num_devices`` contiguous groups as by
    :class:`ShardedMoE` (dummies padded with zero iterations). A device executes
    ``(experts on it) x (its slowest expert's iterations)``; 1.0 means no lockstep waste.
    """
    it = np.asarray(iterations)
    k = it.shape[-1]
    it = it.reshape(-1, k)
    kp = padded_num_experts(k, num_devices)
    pad = np.zeros((it.shape[0], kp - k), it.dtype)
    groups = np.concatenate([it, pad], 1).reshape(it.shape[0], num_devices, kp // num_devices)
    executed = (groups.max(-1) * (kp // num_devices)).sum()
    return float(it.sum() / executed) if executed else 1.0


class ShardedMoE(eqx.Module):
    """Run a :class:`MoEHardConstraint` on a batch with its experts sharded over a mesh.

    Attributes:
        layer: the mixture-of-experts layer.
        mesh: a mesh with an ``expert_axis`` (see :func:`expert_mesh`).
        expert_axis: name of the mesh axis the experts are spread over.
        batch_axis: name of a mesh axis to shard the batch over, or ``None`` (replicated).

    Calling it on ``basis (B, *grid, N)`` and ``data (B, ...)`` gives the same ``(u, info)``
    as ``jax.vmap(layer)`` (fields of ``info`` with shape ``(B, K, ...)``), to round-off.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.pde import DiffusionSorption
        >>> from pdeml.constraints import MoEHardConstraint, Partition
        >>> prob = DiffusionSorption(nx=16, nt=6)
        >>> layer = MoEHardConstraint(prob, Partition.uniform((16, 6), (3, 1)), num_points=10)
        >>> sharded = ShardedMoE(layer, expert_mesh())
        >>> x, t = prob.grid.mesh()
        >>> b = jnp.stack([x**k * (1 + t / 500) ** j for k in range(4) for j in range(2)], -1)
        >>> u, info = sharded(b[None], jnp.zeros((1, 16)), key=jax.random.key(0))
        >>> u.shape, info.w.shape
        ((1, 16, 6), (1, 3, 8))
    """

    layer: MoEHardConstraint
    mesh: Mesh = eqx.field(static=True)
    expert_axis: str = eqx.field(static=True, default="expert")
    batch_axis: str | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not isinstance(self.layer, MoEHardConstraint):
            raise TypeError(f"layer must be a MoEHardConstraint, got {type(self.layer).__name__}")
        names = tuple(self.mesh.axis_names)
        if self.expert_axis not in names:
            raise ValueError(
                f"the mesh has axes {names} but no expert axis {self.expert_axis!r}; build it "
                "with pdeml.parallel.expert_mesh(...) or pass expert_axis=<one of its axes>"
            )
        if self.batch_axis is not None:
            if self.batch_axis not in names:
                raise ValueError(f"the mesh has axes {names} but no batch axis {self.batch_axis!r}")
            if self.batch_axis == self.expert_axis:
                raise ValueError("batch_axis and expert_axis must be different mesh axes")

    @property
    def expert_devices(self) -> int:
        return self.mesh.shape[self.expert_axis]

    @property
    def padded_experts(self) -> int:
        return padded_num_experts(self.layer.num_experts, self.expert_devices)

    @eqx.filter_jit
    def _solve_all(self, basis, data, pts, msk, weights, idx, valid):
        """Every (batch element, expert) solve, under ``shard_map`` and compiled once per
        shape: run eagerly, ``shard_map`` dispatches the solver's operations one by one
        (30 s against 0.05 s for the 3-expert docstring example). Each device solves its
        slice of the experts with :meth:`MoEHardConstraint.solve_all`; the blended field is
        summed over the expert axis (one ``psum`` per Schwarz round)."""
        layer = self.layer
        ba, ea = self.batch_axis, self.expert_axis

        def local(basis_l, data_l, pts_l, msk_l, weights_l, idx_l, valid_l):
            # Every expert's points (the coarse solve's), without the padding's copies.
            everyone = jax.lax.all_gather(pts_l, ea, axis=1, tiled=True)[:, : layer.num_experts]

            def one(b, d, p, m, a):
                return layer.solve_all(b, d, p, m, weights=weights_l,
                                       gather=lambda v: jax.lax.psum(v, ea),
                                       interface=(idx_l, valid_l), all_points=a, throw=False)

            return jax.vmap(one)(basis_l, data_l, pts_l, msk_l, everyone)

        fn = jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(P(ba), P(ba), P(ba, ea), P(ba, ea), P(ea), P(ea), P(ea)),
            out_specs=(P(ba), P(ba, ea), P(ba, ea)),
            # The core's while_loop starts from constants that are not marked as varying over
            # the expert axis, which the varying-manual-axes checker rejects; the specs above
            # are exact (u is psum-ed, w and stats are per expert), and the tests compare
            # outputs and gradients with the unsharded vmap.
            check_vma=False,
        )
        return fn(basis, data, pts, msk, weights, idx, valid)

    def __call__(
        self, basis: Float[Array, "b *grid n"], data, *, key=None, points=None
    ) -> tuple[Float[Array, "b *grid"], MoEConstraintInfo]:
        """Solve every expert of every batch element; ``(u (B, *grid), info (B, K, ...))``.

        Args:
            basis: ``(B, *grid, N)``.
            data: problem data with leading axis B.
            key: one PRNG key; batch element i samples with ``jax.random.split(key, B)[i]``
                (as ``jax.vmap(layer)(basis, data, key=split(key, B))`` does).
            points: explicit ``(B, K, m, ndim)`` points instead.
        """
        layer = self.layer
        ndim = len(layer.problem.grid_shape)
        if jnp.ndim(basis) != ndim + 2:
            raise ValueError(
                f"basis must have shape (B, *grid, N) with grid {tuple(layer.problem.grid_shape)}"
                f", got {jnp.shape(basis)}"
            )
        nb = basis.shape[0]
        if self.batch_axis is not None and nb % self.mesh.shape[self.batch_axis]:
            raise ValueError(
                f"the batch size {nb} is not a multiple of the {self.mesh.shape[self.batch_axis]} "
                f"devices of the batch axis {self.batch_axis!r}"
            )
        layer.check_inputs(basis[0], None if points is None else points[0])
        if points is not None:
            points = check_grid_indices("points", points, layer.problem.grid_shape)
        elif key is None:
            points = jnp.stack([layer.select_points(None)] * nb)
        else:
            points = jax.vmap(layer.select_points)(jax.random.split(key, nb))
        masks = jax.vmap(layer.row_masks)(basis, data)

        k, kp = layer.num_experts, self.padded_experts
        # Dummy experts copy real ones (valid problems), carry zero weight, are dropped.
        src = np.arange(kp) % k
        pts = points[:, src]
        msk = masks[:, src]
        weights = layer.partition.weights.astype(basis.dtype)[src]
        weights = weights * jnp.asarray(np.arange(kp) < k, basis.dtype).reshape(
            (kp,) + (1,) * ndim
        )

        u, w, stats = self._solve_all(basis, data, pts, msk, weights,
                                      layer.interface_idx[src], layer.interface_valid[src])
        w = w[:, :k]
        stats = jax.tree.map(lambda a: a[:, :k], stats)
        if layer.throw:
            u = eqx.error_if(
                u, ~jnp.all(stats.converged),
                "Levenberg-Marquardt failed for at least one expert (see info.stats; pass "
                "throw=False to the MoEHardConstraint to inspect it)",
            )
        return u, MoEConstraintInfo(w=w, stats=stats, points=points, row_mask=masks)
