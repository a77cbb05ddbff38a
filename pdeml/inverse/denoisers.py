"""Denoisers with the ``prox`` interface, used as plug-and-play baselines.

- :class:`CNNDenoiser`: a residual convolutional denoiser ``D(x) = x - net(x)`` (DnCNN-style,
  Zhang et al., IEEE TIP 2017), trained with the MSE loss by :func:`train_denoiser`: the
  "MMSE" denoiser that the LPN paper argues against (it approximates the posterior mean, which
  is not in general the prox of the log-prior, and has no convergence guarantee in PnP).
  Build it with the same parameter budget as an LPN via :func:`matched_cnn`.
- :class:`BM3DDenoiser`: BM3D (Dabov et al., IEEE TIP 2007) through the ``bm3d`` package
  (optional extra ``bm3d``; imported lazily), called from compiled code by
  :func:`jax.pure_callback` (host round trip per call; not differentiable).

Both take ``(*batch, C, H, W)`` arrays like an image :class:`~pdeml.prox.LPN` and have no
``regularizer`` (PnP histories record NaN objectives for them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeml.core.validation import error_if_nonfinite

__all__ = ["CNNDenoiser", "BM3DDenoiser", "matched_cnn", "count_parameters", "train_denoiser"]


def count_parameters(model) -> int:
    """Number of scalars in the inexact-array leaves of ``model``."""
    return int(sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))))


def _check_images(x, channels, name="x"):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")
    x = jnp.asarray(x)
    if x.ndim < 3 or x.shape[-3] != channels:
        raise ValueError(
            f"{name} must have trailing shape (channels={channels}, height, width), got {x.shape}"
        )
    return x


class CNNDenoiser(eqx.Module):
    """Residual CNN denoiser ``D(x) = x - net(x)`` on images ``(*batch, C, H, W)``.

    ``net``: ``depth`` 3x3 stride-1 ``SAME`` convolutions, ``width`` channels, ReLU between them
    (no normalisation layers, so the denoiser works for any image size).

    Args:
        channels: image channels; width: hidden channels; depth: number of convolutions (>= 2).
        key: PRNG key; dtype: parameter dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> d = CNNDenoiser(1, 8, 3, key=jax.random.key(0))
        >>> d.prox(jnp.zeros((2, 1, 9, 9))).shape
        (2, 1, 9, 9)

    Reference: Zhang, Zuo, Chen, Meng & Zhang, "Beyond a Gaussian denoiser", IEEE TIP 26 (2017).
    """

    layers: tuple
    channels: int = eqx.field(static=True)

    def __init__(self, channels: int, width: int, depth: int, *, key, dtype=None):
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        if not isinstance(width, int) or width < 1 or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"width must be >= 1 and depth >= 2, got {width!r}, {depth!r}")
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        sizes = [channels] + [width] * (depth - 1) + [channels]
        keys = jax.random.split(key, depth)
        self.layers = tuple(
            eqx.nn.Conv2d(sizes[i], sizes[i + 1], 3, padding="SAME", key=keys[i], dtype=dtype)
            for i in range(depth)
        )
        self.channels = channels

    @property
    def event_ndim(self) -> int:
        return 3

    def _single(self, x):
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = jax.nn.relu(h)
        return x - h

    def prox(self, x):
        """The denoised images, same shape as ``x``."""
        x = error_if_nonfinite("x", _check_images(x, self.channels))
        flat = x.reshape((-1, *x.shape[-3:]))
        return jax.vmap(self._single)(flat).reshape(x.shape).astype(x.dtype)

    def __call__(self, x):
        return self.prox(x)


def matched_cnn(lpn, *, depth: int | None = None, key) -> CNNDenoiser:
    """A :class:`CNNDenoiser` with (about) the parameter count of ``lpn`` (an image LPN):
    the depth defaults to the number of the ICNN's convolutions and the width is the largest
    that does not exceed the LPN's parameter count."""
    budget = count_parameters(lpn)
    channels = lpn.potential.channels if hasattr(lpn.potential, "channels") else 1
    if isinstance(channels, tuple):  # ConvICNN stores image_shape instead
        channels = channels[0]
    depth = depth or (len(getattr(lpn.potential, "Wz", ())) + 2)

    def size(w):  # shapes only: no random initialisation (each real one compiled anew)
        shapes = eqx.filter_eval_shape(CNNDenoiser, channels, w, depth, key=jax.random.key(0))
        return int(sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)
                       if jnp.issubdtype(x.dtype, jnp.inexact)))

    lo, hi = 1, 512  # the count grows with the width: bisect for the largest w within budget
    if size(hi) <= budget:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= budget else (lo, mid)
    return CNNDenoiser(channels, lo, depth, key=key)


def train_denoiser(
    model: CNNDenoiser,
    sampler: Callable,
    *,
    sigma,
    steps: int,
    key,
    learning_rate: float | tuple[float, float] = (1e-3, 1e-4),
    run_dir=None,
    steps_per_call: int = 100,
    progress: bool = True,
    **train_options,
):
    """Train a denoiser with the MSE loss ``||D(x + sigma v) - x||^2`` on :func:`pdeml.train.train`.

    Args:
        model: the denoiser; sampler: ``sampler(key) -> x`` clean images ``(batch, C, H, W)``.
        sigma: noise level (float) or ``(low, high)`` range sampled per image.
        steps: optimiser steps; key: PRNG key of the run.
        learning_rate: constant, or ``(start, end)`` decayed geometrically (Adam).
        run_dir: checkpoints + metrics (resumes when present).

    Returns:
        :class:`pdeml.train.TrainResult` (``.model`` is the trained denoiser).
    """
    from pdeml.prox.training import add_noise
    from pdeml.train import train

    if isinstance(learning_rate, tuple):
        lr = optax.exponential_decay(learning_rate[0], steps, learning_rate[1] / learning_rate[0])
    else:
        lr = learning_rate

    def batch_fn(step, k):
        kx, kn = jax.random.split(k)
        x = sampler(kx)
        y, _ = add_noise(kn, x, sigma, event_ndim=3)
        return {"x": x, "y": y}

    def loss_fn(m, batch, _key=None):
        pred = jax.vmap(m._single)(batch["y"])
        mse = jnp.mean((pred - batch["x"]) ** 2)
        return mse, {"mse": mse}

    return train(model, loss_fn, optax.adam(lr), batch_fn, steps=steps, key=key, run_dir=run_dir,
                 steps_per_call=steps_per_call, progress=progress, **train_options)


def _import_bm3d():
    try:
        import bm3d
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "BM3DDenoiser needs the 'bm3d' package (optional extra): pip install 'pdeml[bm3d]' "
            "or pip install bm3d"
        ) from e
    return bm3d


class BM3DDenoiser(eqx.Module):
    """BM3D denoising at noise level ``sigma`` with the ``prox`` interface.

    Runs on the host (``jax.pure_callback``), one image and channel at a time; works inside
    :func:`~pdeml.inverse.pnp_admm`'s compiled loop. Not differentiable.

    Args:
        sigma: noise standard deviation assumed by BM3D (> 0), in image units.
        channels: image channels (each denoised separately).
        profile: the ``bm3d`` package's profile name (``"np"`` default, ``"refilter"``, ...).

    Reference: Dabov, Foi, Katkovnik & Egiazarian, IEEE TIP 16 (2007); the ``bm3d`` package of
    Makinen, Azzari & Foi (2020).
    """

    sigma: float = eqx.field(static=True)
    channels: int = eqx.field(static=True, default=1)
    profile: str = eqx.field(static=True, default="np")

    def __init__(self, sigma: float, channels: int = 1, profile: str = "np"):
        if not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma must be a positive float, got {sigma!r}")
        _import_bm3d()
        self.sigma, self.channels, self.profile = float(sigma), int(channels), profile

    @property
    def event_ndim(self) -> int:
        return 3

    def _host(self, x):
        bm3d = _import_bm3d()
        x = np.asarray(x)
        flat = x.reshape((-1, *x.shape[-2:]))
        out = np.stack([bm3d.bm3d(v.astype(np.float64), self.sigma, profile=self.profile)
                        for v in flat])
        return out.reshape(x.shape).astype(x.dtype)

    def prox(self, x):
        """BM3D estimate of every image in ``x`` (``(*batch, C, H, W)``)."""
        x = error_if_nonfinite("x", _check_images(x, self.channels))
        return jax.pure_callback(self._host, jax.ShapeDtypeStruct(x.shape, x.dtype), x,
                                 vmap_method="sequential")

    def __call__(self, x):
        return self.prox(x)
