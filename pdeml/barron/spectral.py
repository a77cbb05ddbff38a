"""Fourier-spectral operators on the periodic torus [0, 1)^d.

A field is an array of shape ``(N_1, ..., N_d)`` holding samples at the grid points
``x_j = j / N`` (per axis). Every operator here is an exact Fourier multiplier on the
trigonometric polynomials the grid represents, which is what makes the Sobolev-gradient
iteration of [Barron] (Marwah, Lipton, Lu, Risteski, ICML 2023, arXiv:2210.12101) a
spectral method on the torus.

Even grid sizes: the Nyquist mode k = N/2 has no well-defined derivative (its ``+N/2`` and
``-N/2`` aliases differentiate to opposite signs), so derivatives zero it. Solvers warn on
even sizes and keep iterates free of that mode; odd sizes avoid the issue entirely.

The wavenumber grid (:func:`wavenumbers`) and the gradient and divergence are those of
:mod:`pdeml.pde.spectral` (``fftn_wavenumbers``, ``spectral_gradient``,
``spectral_divergence``), re-exported here.
"""

from __future__ import annotations

import math
import warnings

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from pdeml.pde.spectral import fftn_wavenumbers as wavenumbers
from pdeml.pde.spectral import spectral_divergence, spectral_gradient

__all__ = [
    "torus_grid",
    "wavenumbers",
    "spectral_gradient",
    "spectral_divergence",
    "sobolev_inverse",
    "sobolev_norm",
    "l2_norm",
    "check_grid_sizes",
]


def check_grid_sizes(shape: tuple[int, ...], *, name: str = "u", warn: bool = True) -> None:
    """Validate a grid shape; warn when any size is even (the Nyquist mode is dropped)."""
    if len(shape) == 0:
        raise ValueError(f"{name} must have at least one grid axis, got a scalar")
    if any(int(n) < 3 for n in shape):
        raise ValueError(f"{name} must have at least 3 points per axis, got shape {shape}")
    if warn and any(int(n) % 2 == 0 for n in shape):
        warnings.warn(
            f"{name} has even grid size(s) {shape}: the Nyquist mode is zeroed by the "
            "spectral derivative and the Sobolev solvers project it out; use odd sizes for "
            "exact symmetry.",
            stacklevel=3,
        )


def torus_grid(shape: int | tuple[int, ...], dim: int | None = None, dtype=None) -> Float[Array, "*grid d"]:
    """Points ``x_j = j / N`` of the tensor grid on [0, 1)^d, shape ``(*shape, d)``.

    Args:
        shape: grid sizes per axis, or one size used for every axis (then ``dim`` is needed).
        dim: dimension when ``shape`` is an int.
        dtype: floating dtype (default: JAX's default float).

    Example:
        >>> torus_grid(3, dim=2).shape
        (3, 3, 2)
    """
    if isinstance(shape, int):
        if dim is None:
            raise ValueError("dim is required when shape is an int")
        shape = (shape,) * dim
    shape = tuple(int(n) for n in shape)
    axes = [jnp.arange(n, dtype=dtype) / n for n in shape]
    if dtype is None:
        axes = [jnp.asarray(a, dtype=jnp.result_type(float)) for a in axes]
    return jnp.stack(jnp.meshgrid(*axes, indexing="ij"), axis=-1)


def _real_ifft(uh, axes):
    return jnp.real(jnp.fft.ifftn(uh, axes=axes))


def _sobolev_symbol(shape, dtype, *, drop_nyquist: bool):
    k = wavenumbers(shape)
    symbol = 1.0 / (1.0 + 4.0 * math.pi**2 * np.sum(k**2, axis=0))
    if drop_nyquist:
        # Even sizes: keep iterates out of the Nyquist subspace, where the discrete
        # gradient carries no derivative information (the prototype stalled at 1e-5).
        for axis, n in enumerate(shape):
            if n % 2 == 0:
                idx = [slice(None)] * len(shape)
                idx[axis] = n // 2
                symbol[tuple(idx)] = 0.0
    return jnp.asarray(symbol, dtype=dtype)


def sobolev_inverse(h: Float[Array, "*grid"], *, drop_nyquist: bool = True) -> Float[Array, "*grid"]:
    """Apply ``(I - Laplacian)^{-1}``: the Fourier multiplier ``1 / (1 + 4 pi^2 |k|^2)``.

    This is the H^1 Riesz map: for the L^2 gradient ``h`` of a functional, it returns the
    H^1 gradient. ``drop_nyquist`` zeroes the Nyquist modes of even grid sizes.

    Example:
        >>> import jax.numpy as jnp
        >>> x = torus_grid(9, dim=1)[..., 0]
        >>> u = jnp.sin(2 * jnp.pi * x)
        >>> bool(jnp.allclose(sobolev_inverse(u), u / (1 + 4 * jnp.pi**2), atol=1e-6))
        True
    """
    axes = tuple(range(h.ndim))
    sym = _sobolev_symbol(h.shape, h.dtype, drop_nyquist=drop_nyquist)
    return _real_ifft(sym * jnp.fft.fftn(h, axes=axes), axes)


def sobolev_multiply(u: Float[Array, "*grid"]) -> Float[Array, "*grid"]:
    """Apply ``(I - Laplacian)`` spectrally (the inverse of :func:`sobolev_inverse`)."""
    axes = tuple(range(u.ndim))
    k = wavenumbers(u.shape)
    sym = jnp.asarray(1.0 + 4.0 * math.pi**2 * np.sum(k**2, axis=0), dtype=u.dtype)
    return _real_ifft(sym * jnp.fft.fftn(u, axes=axes), axes)


def l2_norm(u: Float[Array, "*grid"]) -> Float[Array, ""]:
    """L^2(torus) norm of a grid field (the grid mean is the exact quadrature)."""
    return jnp.sqrt(jnp.mean(u**2))


def sobolev_norm(u: Float[Array, "*grid"]) -> Float[Array, ""]:
    """H^1(torus) norm ``sqrt(||u||^2 + ||grad u||^2)`` computed spectrally (Parseval)."""
    axes = tuple(range(u.ndim))
    k = wavenumbers(u.shape, nyquist_zero=True)
    sym = jnp.asarray(1.0 + 4.0 * math.pi**2 * np.sum(k**2, axis=0), dtype=u.dtype)
    uh = jnp.fft.fftn(u, axes=axes) / u.size
    return jnp.sqrt(jnp.sum(sym * jnp.abs(uh) ** 2))
