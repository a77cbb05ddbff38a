"""Phantoms written in code (nothing downloaded): Shepp-Logan, discs, random ellipses.

Images live on ``[-1, 1]^2`` with the pixel convention of :class:`~pdeml.inverse.Radon`:
pixel ``(i, j)`` has its centre at ``(x, y) = (-1 + h (j + 1/2), -1 + h (i + 1/2))``, ``h = 2/n``.
Pixel values are the area fraction covered by each ellipse, estimated by ``supersample^2``
sub-pixel samples (anti-aliasing).

Reference: Shepp & Logan, IEEE Trans. Nucl. Sci. 21 (1974); the "modified" contrast values
of Toft, "The Radon transform: theory and implementation", PhD thesis (1996).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SHEPP_LOGAN_ELLIPSES", "render_ellipses", "shepp_logan", "disc", "random_ellipses"]

# (intensity, semi-axis a, semi-axis b, centre x, centre y, angle in degrees)
SHEPP_LOGAN_ELLIPSES = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)


def render_ellipses(ellipses, n: int, *, supersample: int = 4, dtype=np.float64) -> np.ndarray:
    """Sum of constant-intensity ellipses on an ``n x n`` grid (anti-aliased), shape ``(n, n)``.

    ``ellipses``: rows ``(intensity, a, b, x0, y0, angle_degrees)``.
    """
    if n < 1 or supersample < 1:
        raise ValueError(f"n and supersample must be >= 1, got {n}, {supersample}")
    h = 2.0 / n
    sub = (np.arange(supersample) + 0.5) / supersample
    c = -1 + h * (np.arange(n)[:, None] + sub[None, :]).reshape(-1)  # (n * s,)
    X, Y = np.meshgrid(c, c)  # rows: y, columns: x
    img = np.zeros_like(X)
    for A, a, b, x0, y0, phi in ellipses:
        t = np.deg2rad(phi)
        xr = (X - x0) * np.cos(t) + (Y - y0) * np.sin(t)
        yr = -(X - x0) * np.sin(t) + (Y - y0) * np.cos(t)
        img += A * ((xr / a) ** 2 + (yr / b) ** 2 <= 1)
    img = img.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    return img.astype(dtype)


def shepp_logan(n: int, *, supersample: int = 4, dtype=np.float64) -> np.ndarray:
    """The modified Shepp-Logan head phantom (values in [0, 1]), ``(n, n)``.

    Example:
        >>> p = shepp_logan(64)
        >>> p.shape, float(p.max()) <= 1.0
        ((64, 64), True)
    """
    return np.clip(render_ellipses(SHEPP_LOGAN_ELLIPSES, n, supersample=supersample, dtype=dtype), 0, 1)


def disc(n: int, radius: float, *, supersample: int = 8, dtype=np.float64) -> np.ndarray:
    """A centred disc of unit density; its Radon projection is ``2 sqrt(r^2 - s^2)``."""
    if not 0 < radius <= 1:
        raise ValueError(f"radius must be in (0, 1], got {radius}")
    return render_ellipses([(1.0, radius, radius, 0.0, 0.0, 0.0)], n, supersample=supersample,
                           dtype=dtype)


def random_ellipses(n: int, count: int, *, seed: int = 0, supersample: int = 2,
                    dtype=np.float64) -> np.ndarray:
    """``count`` random head-like phantoms ``(count, n, n)`` in [0, 1] (a synthetic CT training
    set, deterministic in ``seed``): an outer ellipse of intensity 1 with a darker interior
    (a "skull"), and 3-8 smaller ellipses of random contrast inside."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, n, n), dtype)
    for k in range(count):
        a, b = rng.uniform(0.6, 0.9), rng.uniform(0.7, 0.95)
        rot = rng.uniform(-15, 15)
        th = rng.uniform(0.02, 0.08)
        base = rng.uniform(0.15, 0.35)
        ell = [(1.0, a, b, 0.0, 0.0, rot), (base - 1.0, a - th, b - th, 0.0, 0.0, rot)]
        for _ in range(rng.integers(3, 9)):
            r = np.sqrt(rng.uniform(0, 1)) * 0.6
            ang = rng.uniform(0, 2 * np.pi)
            ell.append((rng.choice([-1, 1]) * rng.uniform(0.05, 0.4), rng.uniform(0.03, 0.3) * a,
                        rng.uniform(0.03, 0.3) * b, r * a * np.cos(ang), r * b * np.sin(ang),
                        rng.uniform(0, 180)))
        out[k] = np.clip(render_ellipses(ell, n, supersample=supersample, dtype=np.float64), 0, 1)
    return out
