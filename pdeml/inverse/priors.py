"""Image LPN priors that start at the identity: :func:`near_identity_lpn` builds an LPN around a
:class:`pdeml.nets.QuadraticICNN`, a fully convolutional ICNN plus a learned convex quadratic,

    psi(x) = phi(x) + 1/2 ||Q * x||^2          (phi: a :class:`FullyConvICNN`, with its alpha term)

and :func:`load_near_identity_lpn` reads one saved by the benchmark. ``QuadraticICNN`` and
:func:`center_icnn_biases` live in :mod:`pdeml.nets.icnn` and are importable from here too.

``Q * x`` is a multi-channel stride-1 ``SAME`` convolution, so the quadratic is convex for ANY
kernel ``Q`` and ``grad psi = grad phi + Q^T Q x`` is still the gradient of an
``alpha``-strongly convex potential: ``f = grad psi`` is an exact proximal operator (an LPN) and
every LPN guarantee (PnP convergence for ``0 < alpha < 1``) holds unchanged.

Why: a denoiser for small noise is close to the identity. A plain ICNN must *learn*
``1/2 ||x||^2`` out of (near-)ReLU units, which an affordable CPU training run does not manage
(measured: a ``FullyConvICNN`` with alpha 0.5 starts at 16.9 dB on held-out 32x32 crops at noise
0.03, where the identity gives 30.5 dB, and reaches 20.6 dB after 150 l2 steps). Here ``Q``
starts as ``sqrt(1 - alpha)`` times the identity kernel and the ICNN's read-out is scaled down,
so ``f`` starts near ``x``; ``Q^T Q`` (a positive semi-definite filter) learns the linear,
Wiener-like part of the denoiser and ``phi`` the non-linear part (measured: 30.75 dB after the
same 150 steps, the MSE-trained CNN of the same budget 30.79 dB). A small ``alpha`` keeps the
prox free to shrink noise: the Jacobian of ``f`` is bounded below by ``alpha``, so with
``alpha = 0.5`` no frequency can be attenuated by more than half.

Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344) for LPNs; Amos, Xu & Kolter,
ICML 2017 for ICNNs (any convex function of a linear map of x may enter the first layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from pdeml.nets import FullyConvICNN, QuadraticICNN, center_icnn_biases

__all__ = ["QuadraticICNN", "center_icnn_biases", "near_identity_lpn", "load_near_identity_lpn"]


def near_identity_lpn(
    channels: int,
    hidden: Sequence[int],
    *,
    key: PRNGKeyArray,
    alpha: float = 0.05,
    beta: float = 100.0,
    quadratic_channels: int = 4,
    kernel_size: int = 3,
    readout_scale: float = 0.1,
    nonnegativity: str = "project",
    center_on=None,
    dtype=None,
):
    """An :class:`pdeml.prox.LPN` around a :class:`QuadraticICNN` whose prox starts near ``x``.

    ``Q``'s first ``channels`` output channels are ``sqrt(1 - alpha)`` times the identity kernel
    (output channel c reads image channel c) (so ``alpha x + Q^T Q x = x`` at the start), the other entries small random; the
    ICNN's non-negative read-out weights are multiplied by about ``readout_scale`` and its linear
    read-out zeroed, so the non-linear part starts small but not dead.

    Why ``nonnegativity="project"`` and ``readout_scale=0.1`` by default (measured, 16 x 16
    patches of the bundled images, noise 0.02, l2 loss, 48 held-out 32 x 32 crops, identity
    33.97 dB): with softplus weights a small read-out scale puts ``w_out`` deep in softplus's
    exponential tail, where Adam grows it by a factor ``e^lr`` per step: with ``1e-2`` the ICNN
    still contributed 0.02 dB after 800 steps (the prior was a linear filter, 34.7 dB). After
    1000 steps: softplus, scale 1e-2: 34.7 dB; softplus, 0.1: 35.0; projected weights, 0.1:
    35.0; projected and ``center_on`` data: 35.5 dB.

    ``center_on``: optional batch of (noisy) images ``(n, C, H, W)``; the ICNN's biases are then
    set so every hidden unit is active on half of it (:func:`center_icnn_biases`).

    Args:
        channels: image channels; hidden: ICNN hidden channels; key: PRNG key.
        alpha: strong convexity, in (0, 1) (the LPN convergence condition).
        beta: softplus sharpness; quadratic_channels: ``m``; kernel_size: odd, for ICNN and Q.
        readout_scale: in (0, 1]; nonnegativity: ``"project"`` or ``"softplus"`` (the ICNN's
            hidden-path weights); center_on: see above; dtype: parameter dtype.

    Returns:
        an ``LPN``.
    """
    from pdeml.prox import LPN

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0 < readout_scale <= 1:
        raise ValueError(f"readout_scale must be in (0, 1], got {readout_scale!r}")
    if not isinstance(quadratic_channels, int) or quadratic_channels < channels:
        raise ValueError(
            f"quadratic_channels must be an int >= channels={channels}, got {quadratic_channels!r}"
        )
    k1, k2 = jax.random.split(key)
    icnn = FullyConvICNN(channels, hidden, key=k1, alpha=alpha, beta=beta,
                         kernel_size=kernel_size, nonnegativity=nonnegativity, dtype=dtype)
    if icnn.nonnegativity == "softplus":
        # softplus(v + log s) ~ s softplus(v) for small s: a scaled-down but trainable read-out
        icnn = eqx.tree_at(lambda p: p.w_out, icnn, icnn.w_out + math.log(readout_scale))
    else:
        icnn = eqx.tree_at(lambda p: p.w_out, icnn, icnn.w_out * readout_scale)
    icnn = eqx.tree_at(lambda p: p.a_out, icnn, jnp.zeros_like(icnn.a_out))
    dt = icnn.W0.dtype
    k = kernel_size
    Q = 0.01 * jax.random.normal(k2, (quadratic_channels, channels, k, k), dt)
    idx = jnp.arange(channels)
    Q = Q.at[idx].set(0.0)
    Q = Q.at[idx, idx, k // 2, k // 2].set(math.sqrt(1.0 - alpha))
    if center_on is not None:
        icnn = center_icnn_biases(icnn, jnp.asarray(center_on, dt))
    return LPN(QuadraticICNN(icnn, Q))


def load_near_identity_lpn(path, *, dtype=jnp.float32):
    """Load an LPN saved by ``benchmarks/inverse.py`` (``config.json`` + ``model.eqx`` in
    ``path``, e.g. ``benchmarks/results/inverse/priors/lpn_pm_natural``).

    The config's ``"want"`` entry holds the constructor arguments of :func:`near_identity_lpn`
    (``hidden``, ``alpha``, ``beta``, ``quadratic_channels``, ``seed``); ``dtype`` is the dtype
    the parameters were saved in (float32 for the benchmark).

    Returns:
        ``(lpn, config)``.
    """
    import json
    from pathlib import Path

    path = Path(path)
    if not (path / "config.json").exists() or not (path / "model.eqx").exists():
        raise FileNotFoundError(f"{path} does not hold a saved LPN (config.json + model.eqx)")
    config = json.loads((path / "config.json").read_text())
    want = config.get("want", {})
    if want.get("kind") != "QuadraticICNN(FullyConvICNN)":
        raise ValueError(f"{path}/config.json is not a near-identity LPN (kind {want.get('kind')!r})")
    skeleton = near_identity_lpn(
        1, want["hidden"], key=jax.random.key(want.get("seed", 0)), alpha=want["alpha"],
        beta=want["beta"], quadratic_channels=want["quadratic_channels"],
        nonnegativity=want.get("nonnegativity", "softplus"),
        kernel_size=want.get("kernel_size", 3), dtype=dtype,
    )
    return eqx.tree_deserialise_leaves(path / "model.eqx", skeleton), config
