"""Models that pair a basis network with a constraint, and the physics loss both train on.

* :class:`HardConstrainedModel` (PI-HC): the network outputs N basis functions; the
  :class:`~pdeml.constraints.HardConstraint` layer picks the weights.
* :class:`SoftConstrainedModel` (PI-SC): the same network with one output channel, u itself.

Both are trained data-free on :func:`physics_loss`: the PDE residual of the *whole* output
field (every interior grid point, not only the sampled ones) plus the IC/BC rows, as in
[HC-MoE].
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from pdeml.constraints.hard import ConstraintInfo, HardConstraint
from pdeml.nets.fno import grid_features
from pdeml.pde.base import PDEProblem


def network_input(problem: PDEProblem, data) -> Float[Array, "*grid c"]:
    """The network input for a problem instance: the data broadcast on the grid + coordinates.

    Problems may define ``problem.network_input(data)``; otherwise a space-time problem with a
    ``grid`` (``x()``, ``t()``) and 1D data (the initial condition) gets the channels
    ``(u0(x), x, t)`` with coordinates normalised to [0, 1].
    """
    if hasattr(problem, "network_input"):
        return problem.network_input(data)
    grid = problem.grid
    data = jnp.asarray(data)
    return grid_features(grid.x(data.dtype), grid.t(data.dtype), fields=[data[:, None]])


def physics_loss(
    problem: PDEProblem, u: Float[Array, "*grid"], data, *, constraint_weight: float = 1.0
) -> tuple[Float[Array, ""], dict]:
    """Mean squared PDE residual over all interior points + weighted mean squared IC/BC rows."""
    res = problem.residual_field(u, data)
    viol = problem.constraint_violation(u, data)
    pde = jnp.mean(res**2)
    bc = jnp.mean(viol**2)
    return pde + constraint_weight * bc, {"pde_residual": pde, "constraint_residual": bc}


def relative_l2(u: Float[Array, "*grid"], u_ref: Float[Array, "*grid"]) -> Float[Array, ""]:
    """``||u - u_ref|| / ||u_ref||`` over the grid."""
    return jnp.linalg.norm(u - u_ref) / jnp.linalg.norm(u_ref)


class SoftConstrainedModel(eqx.Module):
    """PI-SC: ``u = net(input)[..., 0]``, trained on :func:`physics_loss`."""

    net: eqx.Module
    problem: PDEProblem

    def __call__(self, data, *, key=None) -> tuple[Float[Array, "*grid"], None]:
        return self.net(network_input(self.problem, data))[..., 0], None


class HardConstrainedModel(eqx.Module):
    """PI-HC: ``b = net(input)`` (N channels), ``u, info = layer(b, data)``."""

    net: eqx.Module
    layer: HardConstraint  # or a MoEHardConstraint: anything returning (u, info)

    @property
    def problem(self) -> PDEProblem:
        return self.layer.problem

    def basis(self, data) -> Float[Array, "*grid n"]:
        return self.net(network_input(self.problem, data))

    def __call__(self, data, *, key=None, w0=None, use_w0=None
                 ) -> tuple[Float[Array, "*grid"], ConstraintInfo]:
        if w0 is None and use_w0 is None:
            return self.layer(self.basis(data), data, key=key)
        return self.layer(self.basis(data), data, key=key, w0=w0, use_w0=use_w0)


def carried_starts(model, data, num_samples: int) -> dict:
    """The initial training state for carried starts: ``{"w": zeros, "seen": False}`` for
    ``num_samples`` training samples, ``w`` shaped like one solve's ``info.w`` (``(N,)``, or
    ``(K, N)`` for a mixture of experts); ``data`` is one problem instance."""
    out = jax.eval_shape(lambda d: model(d, key=jax.random.key(0))[1].w, data)
    return {"w": jnp.zeros((num_samples, *out.shape), out.dtype),
            "seen": jnp.zeros((num_samples,), bool)}


def carried_physics_loss(model, batch, key, state, *, constraint_weight: float = 1.0):
    """:func:`batch_physics_loss` with carried starts, for ``pdeml.train.train(state=...)``.

    ``batch = (idx, data_batch)`` (``idx`` the training-set indices of the batch); each solve
    starts from that sample's solution the last time it was in a batch (``state["w"][idx]``),
    or from the layer's own start on its first visit. Returns ``(loss, metrics, new_state)``;
    the metrics add ``carried`` (the fraction of the batch that started from a carried w).
    """
    idx, data_batch = batch
    w0, seen = state["w"][idx], state["seen"][idx]
    keys = jax.random.split(key, idx.shape[0])

    def one(data, k, w, use):
        u, info = model(data, key=k, w0=w, use_w0=use)
        loss, parts = physics_loss(model.problem, u, data, constraint_weight=constraint_weight)
        parts["converged"] = jnp.mean(info.stats.converged.astype(u.dtype))
        parts["lm_iterations"] = jnp.mean(info.stats.iterations.astype(u.dtype))
        return loss, parts, info.w

    losses, parts, w = jax.vmap(one)(data_batch, keys, w0, seen)
    parts = jax.tree.map(jnp.mean, parts)
    parts["carried"] = jnp.mean(seen.astype(losses.dtype))
    new = {"w": state["w"].at[idx].set(w.astype(state["w"].dtype)),
           "seen": state["seen"].at[idx].set(True)}
    return jnp.mean(losses), parts, new


def batch_physics_loss(model, data_batch, key, *, constraint_weight: float = 1.0):
    """:func:`physics_loss` averaged over a batch of problem instances (``(B, ...)`` data).

    Returns ``(loss, metrics)`` in the form :func:`pdeml.train.train` expects; for a hard
    constraint the metrics include the fraction of converged solves and the mean number of
    Levenberg-Marquardt iterations.
    """
    keys = jax.random.split(key, jax.tree.leaves(data_batch)[0].shape[0])

    def one(data, k):
        u, info = model(data, key=k)
        loss, parts = physics_loss(model.problem, u, data, constraint_weight=constraint_weight)
        if info is not None:
            parts["converged"] = info.stats.converged.astype(u.dtype)
            parts["lm_iterations"] = info.stats.iterations.astype(u.dtype)
        return loss, parts

    losses, parts = jax.vmap(one)(data_batch, keys)
    return jnp.mean(losses), jax.tree.map(jnp.mean, parts)
