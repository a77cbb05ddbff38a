"""Image quality metrics: PSNR and SSIM (per image, batched).

SSIM follows Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error
visibility to structural similarity", IEEE TIP 13 (2004): Gaussian window (sigma 1.5, radius 5),
K1 = 0.01, K2 = 0.03, population (co)variances, symmetric padding, the mean over the interior
(a border of 5 pixels cropped) — the same conventions as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)``, which the tests compare against.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["psnr", "ssim"]


def _check(x, ref, name="x"):
    x, ref = jnp.asarray(x), jnp.asarray(ref)
    if x.shape != ref.shape:
        raise ValueError(f"{name} and ref must have the same shape, got {x.shape} and {ref.shape}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have at least 2 axes (height, width), got {x.shape}")
    return x, ref


def psnr(x, ref, *, data_range: float = 1.0, event_ndim: int = 2):
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, one value per sample
    (the last ``event_ndim`` axes form a sample).

    Example:
        >>> round(float(psnr(jnp.full((4, 4), 0.1), jnp.zeros((4, 4)))), 6)
        20.0
    """
    x, ref = _check(x, ref)
    axes = tuple(range(x.ndim - event_ndim, x.ndim))
    mse = jnp.mean((x - ref) ** 2, axis=axes)
    return 10 * jnp.log10(data_range**2 / mse)


def _gauss_filter(v, sigma=1.5, radius=5):
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = jnp.asarray(k / k.sum(), v.dtype)
    pad = [(0, 0)] * (v.ndim - 2) + [(radius, radius), (radius, radius)]
    p = jnp.pad(v, pad, mode="symmetric")
    h, w = v.shape[-2:]
    n = 2 * radius + 1
    p = sum(k[i] * p[..., i : i + h, :] for i in range(n))
    return sum(k[i] * p[..., :, i : i + w] for i in range(n))


def ssim(x, ref, *, data_range: float = 1.0):
    """Structural similarity of 2D images, one value per image (the last two axes form an image;
    any other axes are batch/channel axes, each channel scored separately).

    Example:
        >>> import jax
        >>> a = jax.random.uniform(jax.random.key(0), (16, 16))
        >>> round(float(ssim(a, a)), 6)
        1.0
    """
    x, ref = _check(x, ref)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11 x 11 pixels, got {x.shape[-2:]}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _gauss_filter(x), _gauss_filter(ref)
    sxx = _gauss_filter(x * x) - mx * mx
    syy = _gauss_filter(ref * ref) - my * my
    sxy = _gauss_filter(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    r = 5
    return jnp.mean(s[..., r:-r, r:-r], axis=(-2, -1))
