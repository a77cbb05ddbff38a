"""Proximal matching: losses, staged schedules, noise sampling and the LPN trainer.

Training pairs are ``y = x + sigma v`` with ``v ~ N(0, I)``; the network output ``f(y)`` is
compared with the clean ``x`` by

- ``"l2"``: ``||f(y) - x||^2`` (minimiser: the posterior mean E[x | y]);
- ``"l1"``: ``||f(y) - x||_1`` (per coordinate: the posterior median);
- ``"pm"``: proximal matching ``1 - exp(-||f(y) - x||^2 / gamma^2)``, whose minimiser tends to
  the MAP denoiser ``prox_{-sigma^2 log p}`` as gamma -> 0, so the learned regulariser recovers
  the log-prior (scaled by sigma^2).

A :class:`Schedule` is a sequence of :class:`Stage` s (loss, number of steps, learning rate,
gamma). The whole run uses ONE optimiser state: the stage, its gamma and its learning rate are
functions of the step computed inside the compiled step, so nothing is re-initialised or
recompiled between stages. Training runs on :func:`pdeml.train.train` (many steps per host
round trip, progress bar, JSON-lines metrics, checkpoints and resume).

Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 4 and App. (schedules).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeml.nets.icnn import icnn_optimizer
from pdeml.prox.lpn import LPN

__all__ = [
    "LOSSES",
    "Stage",
    "Schedule",
    "proximal_matching_loss",
    "l1_loss",
    "l2_loss",
    "add_noise",
    "paper_image_schedule",
    "laplace_schedule",
    "make_batch_fn",
    "sample_laplace_posterior",
    "laplace_posterior_sampler",
    "lpn_loss_fn",
    "expansiveness",
    "expansiveness_penalty",
    "train_lpn",
]

LOSSES = ("l2", "l1", "pm")


def _sample_axes(x, event_ndim):
    return tuple(range(x.ndim - event_ndim, x.ndim))


def proximal_matching_loss(pred, target, gamma, *, event_ndim: int = 1):
    """Mean over samples of ``1 - exp(-||pred - target||^2 / gamma^2)``.

    Args:
        pred, target: arrays of shape ``(batch, *event)``.
        gamma: scale > 0 (scalar, possibly traced).
        event_ndim: number of trailing axes forming one sample.

    Example:
        >>> import jax.numpy as jnp
        >>> float(proximal_matching_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), 0.5))
        0.0
    """
    d2 = jnp.sum((pred - target) ** 2, axis=_sample_axes(pred, event_ndim))
    return jnp.mean(-jnp.expm1(-d2 / gamma**2))


def l1_loss(pred, target, *, event_ndim: int = 1):
    """Mean over samples of ``||pred - target||_1``."""
    return jnp.mean(jnp.sum(jnp.abs(pred - target), axis=_sample_axes(pred, event_ndim)))


def l2_loss(pred, target, *, event_ndim: int = 1):
    """Mean over samples of ``||pred - target||_2^2``."""
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=_sample_axes(pred, event_ndim)))


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of training.

    Attributes:
        loss: ``"l2"``, ``"l1"`` or ``"pm"`` (proximal matching).
        steps: number of optimiser steps in this stage (> 0).
        learning_rate: constant rate, or ``(start, end)`` for a geometric decay over the stage.
        gamma: proximal-matching scale (required for ``"pm"``, ignored otherwise).
    """

    loss: str
    steps: int
    learning_rate: float | tuple[float, float] = 1e-3
    gamma: float | None = None

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {list(LOSSES)}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        lr = self.learning_rate
        lrs = lr if isinstance(lr, tuple) else (lr,)
        if not all(isinstance(v, (int, float)) and v > 0 for v in lrs) or len(lrs) not in (1, 2):
            raise ValueError(f"learning_rate must be > 0 or a (start, end) pair, got {lr!r}")
        if self.loss == "pm" and not (isinstance(self.gamma, (int, float)) and self.gamma > 0):
            raise ValueError(f"a 'pm' stage needs gamma > 0, got {self.gamma!r}")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A sequence of :class:`Stage` s run with one optimiser state.

    ``average_steps`` > 0 makes :func:`train_lpn` return the uniform average of the parameters
    over the last ``average_steps`` steps (Polyak-Ruppert averaging) instead of the last
    iterate. At a small proximal-matching gamma only the few samples with ``|f(y) - x| <~
    gamma`` carry gradient, so the iterates fluctuate around the minimiser; the average removes
    most of that noise. Averaging keeps the model an LPN: averaged ``"softplus"`` parameters are
    any reals, averaged ``"project"`` weights stay >= 0.

    Example:
        >>> s = Schedule((Stage("l1", 100), Stage("pm", 50, 1e-4, gamma=0.5)))
        >>> s.total_steps, int(s.stage_index(120)), float(s.gamma(120))
        (150, 1, 0.5)
    """

    stages: tuple[Stage, ...]
    average_steps: int = 0

    def __post_init__(self):
        if len(self.stages) == 0 or not all(isinstance(s, Stage) for s in self.stages):
            raise ValueError("stages must be a non-empty sequence of Stage")
        object.__setattr__(self, "stages", tuple(self.stages))
        a = self.average_steps
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool) or not 0 <= a <= self.total_steps:
            raise ValueError(f"average_steps must be an integer in [0, total_steps = {self.total_steps}], "
                             f"got {a!r}")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def boundaries(self) -> np.ndarray:
        """Step at which each stage starts."""
        return np.cumsum([0] + [s.steps for s in self.stages])[:-1]

    def stage_index(self, step):
        """Index of the stage that step ``step`` (0-based, may be traced) belongs to."""
        starts = jnp.asarray(self.boundaries, jnp.int32)
        i = jnp.searchsorted(starts, jnp.asarray(step, jnp.int32), side="right") - 1
        return jnp.clip(i, 0, len(self.stages) - 1)

    def _table(self, values, step, dtype=None):
        return jnp.asarray(values, dtype)[self.stage_index(step)]

    def loss_id(self, step):
        return self._table([LOSSES.index(s.loss) for s in self.stages], step, jnp.int32)

    def gamma(self, step):
        """Gamma at ``step`` (1.0 in non-pm stages, where it is unused)."""
        return self._table([s.gamma if s.loss == "pm" else 1.0 for s in self.stages], step)

    def learning_rate(self, step):
        """Learning rate at ``step`` (an optax schedule)."""
        starts = np.array([s.learning_rate[0] if isinstance(s.learning_rate, tuple) else s.learning_rate for s in self.stages])
        ends = np.array([s.learning_rate[1] if isinstance(s.learning_rate, tuple) else s.learning_rate for s in self.stages])
        i = self.stage_index(step)
        frac = (jnp.asarray(step) - jnp.asarray(self.boundaries)[i]) / jnp.asarray([s.steps for s in self.stages])[i]
        lo, hi = jnp.log(jnp.asarray(starts)[i]), jnp.log(jnp.asarray(ends)[i])
        return jnp.exp(lo + jnp.clip(frac, 0, 1) * (hi - lo))


def paper_image_schedule(n: int, *, pretrain_steps: int, stage_steps: int) -> Schedule:
    """The published image schedule: l1 pre-training at lr 1e-3, then proximal matching with
    gamma = (8, 4, 2, 1) x gamma_min, gamma_min = 0.08 sqrt(n), at lr 1e-4 (n = pixels x channels)."""
    gmin = 0.08 * math.sqrt(n)
    return Schedule(
        (Stage("l1", pretrain_steps, 1e-3),)
        + tuple(Stage("pm", stage_steps, 1e-4, gamma=m * gmin) for m in (8, 4, 2, 1))
    )


def laplace_schedule(
    *,
    pretrain_steps: int = 1000,
    stage_steps: int = 2500,
    gammas: Sequence[float] = (0.5, 0.4, 0.3, 0.2, 0.1, 0.05),
    final_steps: int | None = None,
    average_steps: int | None = None,
    lr_start: float = 1e-3,
    lr_end: float = 1e-4,
    hold_stages: int = 0,
    sigma: float = 1.0,
) -> Schedule:
    """The 1D Laplacian schedule of [LPN]: l1 pre-training at ``lr_start``, then proximal
    matching with ``gammas`` (multiples of the noise level ``sigma``), the learning rate held at
    ``lr_start`` for the first ``hold_stages`` proximal-matching stages and then decaying
    geometrically to ``lr_end`` over the rest. Every stage has ``stage_steps`` steps except the
    last, which has ``final_steps`` (default ``2 * stage_steps``); the returned model is the
    average of the parameters over the last ``average_steps`` steps (default ``4/5`` of
    ``final_steps``; 0 returns the last iterate).

    The defaults are the documented run of docs/prox.md (x ~ Laplace(0, 1), sigma = 1,
    :func:`laplace_posterior_sampler` with 500 noisy inputs and 32 posterior draws each,
    18,500 steps): the published gammas 0.5 ... 0.1 plus a final 0.05, whose smaller smoothing
    bias matters at the kinks of soft-thresholding (the exact proximal-matching minimiser is
    off by 0.11 at |y| = 1 for gamma = 0.1 and by 0.065 for gamma = 0.05). At gamma = 0.05
    only a few percent of the draws land within gamma of f(y), so the last iterate is noisy;
    the final stage is twice as long and its last 4/5 is averaged. Measured in float64 on seeds
    0, 1, 2 (model key s, training key s + 1): max |f - soft_threshold| 0.118, 0.114, 0.127
    and max |R - |x| - c| 0.061, 0.058, 0.049 on [-3, 3] (targets 0.15 and 0.1). A final
    gamma = 0.03 lowered the errors on seeds 1 and 2 but broke seed 0's tail (0.153).
    Gammas scale with ``sigma``: proximal matching compares ``f(y)`` with ``x`` at the scale
    of the noise.

    Example:
        >>> s = laplace_schedule(pretrain_steps=10, stage_steps=5)
        >>> s.total_steps, [st.gamma for st in s.stages[1:]], s.stages[-1].steps, s.average_steps
        (45, [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], 10, 8)
        >>> [round(st.gamma, 12) for st in laplace_schedule(gammas=(0.5, 0.1), sigma=0.2).stages[1:]]
        [0.1, 0.02]
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    k = len(gammas)
    if not isinstance(hold_stages, int) or not 0 <= hold_stages < max(k, 1):
        raise ValueError(f"hold_stages must be an integer in [0, {max(k - 1, 0)}], got {hold_stages!r}")
    final_steps = 2 * stage_steps if final_steps is None else final_steps
    average_steps = 4 * final_steps // 5 if average_steps is None else average_steps
    lrs = [lr_start] * hold_stages + [float(v) for v in np.geomspace(lr_start, lr_end, k - hold_stages + 1)]
    return Schedule(
        (Stage("l1", pretrain_steps, lr_start),)
        + tuple(
            Stage("pm", final_steps if i == k - 1 else stage_steps, (lrs[i], lrs[i + 1]),
                  gamma=float(g) * sigma)
            for i, g in enumerate(gammas)
        ),
        average_steps=average_steps,
    )


class _AverageState(NamedTuple):
    count: jax.Array
    average: object


def _tail_average(start: int) -> optax.GradientTransformation:
    """Leaves the updates unchanged; its state holds the uniform average of the parameters
    after steps ``start, start + 1, ...`` (before ``start``: the current parameters)."""

    def init(params):
        return _AverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.asarray, params))

    def update(updates, state, params):
        new = optax.apply_updates(params, updates)
        n = jnp.maximum(state.count - start + 1, 1)
        avg = jax.tree.map(
            lambda m, v: None if m is None else m + (v - m) / n.astype(m.dtype),
            state.average, new, is_leaf=lambda t: t is None)
        return updates, _AverageState(state.count + 1, avg)

    return optax.GradientTransformation(init, update)


def _averaged_params(opt_state):
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda t: isinstance(t, _AverageState))
             if isinstance(s, _AverageState)]
    return found[-1].average


def add_noise(key, x, sigma, *, event_ndim: int = 1):
    """``(y, sigma_per_sample)`` with ``y = x + sigma v``, ``v ~ N(0, I)``.

    ``sigma`` is a float (fixed noise level) or a ``(low, high)`` pair: then each sample draws its
    own level uniformly in ``[low, high]`` (noise-level sampling).
    """
    batch = x.shape[: x.ndim - event_ndim]
    k1, k2 = jax.random.split(key)
    if isinstance(sigma, tuple):
        lo, hi = sigma
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma range must satisfy 0 <= low <= high, got {sigma}")
        s = jax.random.uniform(k1, batch, x.dtype, lo, hi)
    else:
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        s = jnp.full(batch, sigma, x.dtype)
    v = jax.random.normal(k2, x.shape, x.dtype)
    return x + s.reshape(batch + (1,) * event_ndim) * v, s


def _normal_below(key, t):
    """``z ~ N(0, 1)`` conditioned on ``z < t`` (elementwise), by inverting the lower tail:
    ``ndtri(u Phi(t))`` has no cancellation however negative ``t`` is (unlike mapping a uniform
    through ``erf``, which rounds to -1 in float32 below t ~ -5.3, where
    ``jax.random.truncated_normal`` then returns -3.4e38). Where ``Phi(t)`` underflows, ``t``."""
    u = jax.random.uniform(key, t.shape, t.dtype, minval=jnp.finfo(t.dtype).tiny, maxval=1.0)
    z = jax.scipy.special.ndtri(u * jax.scipy.special.ndtr(t))
    return jnp.where(jnp.isfinite(z), jnp.minimum(z, t), t)


def sample_laplace_posterior(key, y, sigma: float = 1.0, *, scale: float = 1.0):
    """Exact draws of ``x ~ p(x | y)`` for i.i.d. coordinates ``x ~ Laplace(0, scale)`` and
    ``y = x + sigma v``, ``v ~ N(0, I)``, one per entry of ``y`` (any shape).

    Per coordinate ``p(x | y) ~ exp(-|x| / scale - (x - y)^2 / (2 sigma^2))`` is a mixture of
    ``N(y - s, sigma^2)`` truncated to ``x > 0`` and ``N(y + s, sigma^2)`` truncated to
    ``x < 0`` (``s = sigma^2 / scale``), with weights ``exp(-y / scale) Phi((y - s) / sigma)``
    and ``exp(y / scale) Phi(-(y + s) / sigma)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = sample_laplace_posterior(jax.random.key(0), jnp.full((20000,), 3.0))
        >>> bool(abs(float(jnp.median(x)) - 2.0) < 0.05)  # posterior median: soft_threshold(3, 1)
        True
    """
    if not (sigma > 0 and scale > 0):
        raise ValueError(f"sigma and scale must be > 0, got sigma={sigma!r}, scale={scale!r}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jnp.result_type(float))
    kb, kp, km = jax.random.split(key, 3)
    s = sigma**2 / scale
    a = (y - s) / sigma  # the positive part is y - s + sigma z, z ~ N(0, 1) truncated to z > -a
    b = (y + s) / sigma  # the negative part is y + s + sigma z, z truncated to z < -b
    log_ndtr = jax.scipy.special.log_ndtr
    positive = jax.random.bernoulli(kb, jax.nn.sigmoid(-2 * y / scale + log_ndtr(a) - log_ndtr(-b)))
    # the upper tail z > -a is -z' with z' < a: both parts are lower tails
    zp = -_normal_below(kp, a)
    zm = _normal_below(km, -b)
    xp = jnp.maximum(y - s + sigma * zp, 0.0)
    xm = jnp.minimum(y + s + sigma * zm, 0.0)
    return jnp.where(positive, xp, xm)


def laplace_posterior_sampler(n: int, dim: int = 1, *, sigma: float = 1.0, scale: float = 1.0,
                              proposal_scale: float = 2.0, x_per_y: int = 1,
                              dtype=None) -> Callable:
    """A paired sampler ``sampler(key) -> (x, y)`` for :func:`train_lpn` on the Laplace prior.

    ``y = x' + sigma v`` with ``x' ~ Laplace(0, proposal_scale)`` (wider than the prior), then
    ``x ~ p(x | y)`` exactly under the prior Laplace(0, ``scale``)
    (:func:`sample_laplace_posterior`). The minimiser of any of the losses at a given ``y``
    depends only on ``p(x | y)``, so it is the same as for ``x ~ Laplace(0, scale)``, ``y = x
    + sigma v``; only the density of the sampled ``y`` changes: the tails, where the prior's
    own samples are sparse, get more data.

    Example:
        >>> import jax
        >>> x, y = laplace_posterior_sampler(8)(jax.random.key(0))
        >>> x.shape, y.shape
        ((8, 1), (8, 1))
    """
    if not proposal_scale > 0:
        raise ValueError(f"proposal_scale must be > 0, got {proposal_scale!r}")
    if not isinstance(x_per_y, int) or isinstance(x_per_y, bool) or x_per_y < 1:
        raise ValueError(f"x_per_y must be a positive integer, got {x_per_y!r}")
    if not (sigma > 0 and scale > 0):
        raise ValueError(f"sigma and scale must be > 0, got sigma={sigma!r}, scale={scale!r}")

    def sampler(key):
        k1, k2, k3 = jax.random.split(key, 3)
        dt = jnp.result_type(float) if dtype is None else dtype
        y = (proposal_scale * jax.random.laplace(k1, (n, dim), dt)
             + sigma * jax.random.normal(k2, (n, dim), dt))
        if x_per_y == 1:
            return sample_laplace_posterior(k3, y, sigma, scale=scale), y
        yk = jnp.broadcast_to(y[:, None], (n, x_per_y, dim))
        return sample_laplace_posterior(k3, yk, sigma, scale=scale), y

    return sampler


def make_batch_fn(sampler: Callable, schedule: Schedule, sigma, *, event_ndim: int) -> Callable:
    """``batch_fn(step, key)`` for :func:`pdeml.train.train`.

    ``sampler(key) -> x`` draws clean samples ``(batch, *event)``; the batch holds ``x``, the noisy
    ``y`` (``x`` plus noise of level ``sigma``), and the step's ``gamma`` and ``loss_id`` from
    ``schedule``. A *paired* sampler ``sampler(key) -> (x, y)`` gives the noisy inputs itself
    (e.g. :func:`laplace_posterior_sampler`); ``sigma`` is then unused.
    """

    def batch_fn(step, key):
        kx, kn = jax.random.split(key)
        out = sampler(kx)
        if isinstance(out, tuple):
            x, y = out
        else:
            x = out
            y, _ = add_noise(kn, x, sigma, event_ndim=event_ndim)
        return {"x": x, "y": y, "gamma": schedule.gamma(step).astype(x.dtype), "loss_id": schedule.loss_id(step)}

    return batch_fn


def lpn_loss_fn(lpn: LPN, batch, key=None):
    """``(loss, metrics)`` for one batch: the stage's loss of ``lpn.prox(y)`` against ``x``.

    All three losses are computed (cheap next to the network) and the stage's one selected, so
    one compiled step serves every stage. ``x`` may have one more axis than ``y``, ``(batch, k,
    *event)``: ``k`` clean samples per noisy input (e.g. draws from the posterior ``p(x | y)``,
    :func:`laplace_posterior_sampler`); each is compared with ``f(y)`` and the losses average
    over all of them, at the cost of one network evaluation per ``y``.
    """
    x, y = batch["x"], batch["y"]
    e = lpn.event_ndim
    pred = lpn.prox(y)
    if x.ndim == pred.ndim + 1:
        pred = jnp.broadcast_to(jnp.expand_dims(pred, pred.ndim - e), x.shape)
    losses = jnp.stack(
        [l2_loss(pred, x, event_ndim=e), l1_loss(pred, x, event_ndim=e),
         proximal_matching_loss(pred, x, batch["gamma"], event_ndim=e)]
    )
    loss = losses[batch["loss_id"]]
    mse = jnp.mean((pred - x) ** 2)
    return loss, {"mse": mse, "gamma": batch["gamma"]}


def expansiveness(lpn: LPN, v, key, *, iters: int = 4):
    """Estimate of the largest eigenvalue of the prox's Jacobian ``J_f(v) = Hess psi(v)`` per
    sample of ``v`` ``(batch, *event)``: ``iters`` power iterations on Hessian-vector products
    (held constant for differentiation), then the Rayleigh quotient ``u^T H u`` at the final
    vector, which is differentiable in the LPN's parameters. A lower bound on the true
    eigenvalue (equal once the power iteration has converged); the Hessian is symmetric positive
    definite for an LPN, so the power iteration finds the largest eigenvalue.

    Why: a prox of a *convex* R has ``J_f <= I``; eigenvalues above 1 are directions in which
    R is concave, which the prox amplifies and MAP with R rewards (measured in docs/inverse.md).
    """
    e = lpn.event_ndim
    v = jnp.asarray(v)
    u0 = jax.random.normal(key, v.shape, v.dtype)

    def one(vi, ui):
        hvp = lambda w: jax.jvp(jax.grad(lpn.potential), (vi,), (w,))[1]  # noqa: E731
        def power_step(_, w):
            w = jax.lax.stop_gradient(hvp(w))
            return w / jnp.linalg.norm(w)

        # a loop, not unrolled: compiles in constant time in ``iters``
        w = jax.lax.fori_loop(0, iters, power_step, ui / jnp.linalg.norm(ui))
        return jnp.vdot(w, hvp(w))

    flat = v.reshape((-1, *v.shape[v.ndim - e:]))
    out = jax.vmap(one)(flat, u0.reshape(flat.shape))
    return out.reshape(v.shape[: v.ndim - e])


def expansiveness_penalty(lpn: LPN, v, key, *, threshold: float = 0.98, iters: int = 4):
    """``mean(relu(expansiveness(lpn, v) - threshold)^2)``: penalises Jacobian eigenvalues of
    the prox above ``threshold`` (just below 1) at the probes ``v``."""
    return _hinge(expansiveness(lpn, v, key, iters=iters), threshold)


def _hinge(lam, threshold=0.98):
    return jnp.mean(jax.nn.relu(lam - threshold) ** 2)


def _penalised_loss_fn(weight: float, probes: int, probe_sigma, iters: int, probe_fn):
    lo, hi = probe_sigma

    def loss_fn(lpn, batch, key):
        loss, metrics = lpn_loss_fn(lpn, batch, key)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        x = batch["x"][:probes]
        if x.ndim == batch["y"].ndim + 1:  # k clean samples per noisy input: take the first
            x = x[:, 0]
        # probes: the training inputs, and clean ones with noise of a log-uniform level in
        # [lo, hi] (farther from the data, where PnP iterates wander), and any custom ones
        e = lpn.event_ndim
        level = jnp.exp(jax.random.uniform(k1, x.shape[: x.ndim - e] + (1,) * e, x.dtype,
                                           jnp.log(lo), jnp.log(hi)))
        v = [batch["y"][:probes], x + level * jax.random.normal(k2, x.shape, x.dtype)]
        if probe_fn is not None:
            v.append(jnp.asarray(probe_fn(k3, batch), x.dtype))
        lam = expansiveness(lpn, jnp.concatenate(v), k4, iters=iters)
        return loss + weight * _hinge(lam), dict(metrics, max_eigenvalue=jnp.max(lam))

    return loss_fn


def train_lpn(
    lpn: LPN,
    sampler: Callable,
    schedule: Schedule,
    *,
    key,
    sigma=1.0,
    run_dir=None,
    steps_per_call: int = 100,
    optimizer: Callable[[Callable], optax.GradientTransformation] = optax.adam,
    progress: bool = True,
    expansiveness_weight: float = 0.0,
    probes: int = 4,
    probe_sigma: float | tuple[float, float] | None = None,
    power_iterations: int = 8,
    probe_fn: Callable | None = None,
    **train_options,
):
    """Train an LPN with ``schedule`` on :func:`pdeml.train.train`.

    Args:
        lpn: the :class:`LPN` to train.
        sampler: ``sampler(key) -> x`` clean samples ``(batch, *event)`` (pure, traceable).
        schedule: a :class:`Schedule` (stages of l2 / l1 / proximal matching).
        key: PRNG key of the run (data and noise derive from it and the step).
        sigma: noise level (float) or a ``(low, high)`` range sampled per sample.
        run_dir: checkpoints + ``metrics.jsonl``; resumes from it when it holds a checkpoint.
        steps_per_call: optimiser steps per host round trip (see :func:`pdeml.train.train`).
        optimizer: ``optimizer(learning_rate_schedule) -> GradientTransformation`` (Adam);
            wrapped by :func:`pdeml.nets.icnn.icnn_optimizer` so ``"project"`` models stay convex.
        progress: show the shared progress bar.
        expansiveness_weight: if > 0, adds this times :func:`expansiveness_penalty`-style
            ``mean(relu(lambda_max - 0.98)^2)`` at ``probes`` noisy training inputs and as many
            clean ones plus noise of a level drawn log-uniformly per probe from ``probe_sigma``
            (a ``(low, high)`` range or one level; default ``(s, 15 s)`` with ``s`` the training
            sigma, or the high end of its range), plus ``probe_fn(key, batch)`` if given (any
            number of extra probes of the event shape, e.g. blurred training inputs);
            ``power_iterations`` power steps per probe (``expansiveness(iters=)``). Metrics gain
            ``max_eigenvalue``.
        train_options: forwarded to :func:`pdeml.train.train` (``checkpoint_every``,
            ``eval_fn``, ``log_every``, ...).

    Returns:
        :class:`pdeml.train.TrainResult` (``.model`` is the trained LPN: the average of the
        parameters over the last ``schedule.average_steps`` steps when that is > 0).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.nets.icnn import DenseICNN
        >>> lpn = LPN(DenseICNN(1, (16, 16), key=jax.random.key(0), alpha=0.01))
        >>> sampler = lambda k: jax.random.laplace(k, (64, 1))
        >>> res = train_lpn(lpn, sampler, Schedule((Stage("l1", 20),)), key=jax.random.key(1),
        ...                 steps_per_call=10, progress=False)
        >>> res.step
        20
    """
    from pdeml.train import train

    if not isinstance(lpn, LPN):
        raise TypeError(f"lpn must be an LPN, got {type(lpn).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if not expansiveness_weight >= 0:
        raise ValueError(f"expansiveness_weight must be >= 0, got {expansiveness_weight!r}")
    opt = icnn_optimizer(optimizer(schedule.learning_rate), lpn)
    batch_fn = make_batch_fn(sampler, schedule, sigma, event_ndim=lpn.event_ndim)
    loss_fn = lpn_loss_fn
    if expansiveness_weight > 0:
        s = max(sigma) if isinstance(sigma, tuple) else sigma
        if probe_sigma is None:
            probe_sigma = (s, 15.0 * s)
        lo, hi = (probe_sigma, probe_sigma) if np.ndim(probe_sigma) == 0 else probe_sigma
        if not 0 < lo <= hi:
            raise ValueError(f"probe_sigma must be > 0 (or a range 0 < low <= high), got {probe_sigma!r}")
        if not isinstance(power_iterations, int) or power_iterations < 1:
            raise ValueError(f"power_iterations must be a positive integer, got {power_iterations!r}")
        loss_fn = _penalised_loss_fn(float(expansiveness_weight), int(probes), (float(lo), float(hi)),
                                     power_iterations, probe_fn)
    if schedule.average_steps:
        opt = optax.chain(opt, _tail_average(schedule.total_steps - schedule.average_steps))
    res = train(
        lpn,
        loss_fn,
        opt,
        batch_fn,
        steps=schedule.total_steps,
        key=key,
        run_dir=run_dir,
        steps_per_call=steps_per_call,
        progress=progress,
        **train_options,
    )
    if schedule.average_steps:
        import equinox as eqx

        _, static = eqx.partition(res.model, train_options.get("filter_spec", eqx.is_inexact_array))
        res = dataclasses.replace(res, model=eqx.combine(_averaged_params(res.opt_state), static))
    return res
