"""Fourier wavenumber grids and spectral derivatives of periodic fields: the one place of the
library that builds FFT frequency grids.

Integer frequencies (numpy, float64, static):

- :func:`fft_frequencies`, :func:`rfft_frequencies`: the frequencies ``k`` of one axis of
  ``fft`` / ``rfft`` output (``0, 1, ..., -1`` and ``0, ..., n // 2``);
- :func:`fftn_wavenumbers`: all axes of ``fftn`` output stacked, ``(d, *shape)``, optionally
  with the Nyquist entry zeroed (the convention for odd derivatives);
- :func:`rfftn_wavenumbers`: angular wavenumbers ``2 pi k / length`` per axis of ``rfftn``
  output (``fft`` frequencies on the leading axes, ``rfft`` on the last).

Derivatives:

- :func:`spectral_wavenumbers` / :func:`spectral_derivative`: one axis of any period, by
  ``rfft``; for even sizes the Nyquist mode is dropped from odd-order derivatives only;
- :func:`spectral_gradient` / :func:`spectral_divergence`: all axes of the unit torus
  ``[0, 1)^d`` by ``fftn`` (Nyquist modes dropped), as used by :mod:`pdeml.barron`.

The numpy grids are float64 and callers cast them once to their dtype; the ``rfft`` wavenumbers
of :func:`spectral_wavenumbers` are computed by JAX in the requested dtype.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = [
    "fft_frequencies",
    "rfft_frequencies",
    "fftn_wavenumbers",
    "rfftn_wavenumbers",
    "spectral_wavenumbers",
    "spectral_derivative",
    "spectral_gradient",
    "spectral_divergence",
]


def fft_frequencies(n: int) -> np.ndarray:
    """Integer frequencies of ``fft`` output along an axis of ``n`` points (float64, numpy).

    Example:
        >>> fft_frequencies(4).tolist()
        [0.0, 1.0, -2.0, -1.0]
    """
    return np.fft.fftfreq(n, d=1.0 / n)


def rfft_frequencies(n: int) -> np.ndarray:
    """Integer frequencies ``0..n // 2`` of ``rfft`` output (float64, numpy).

    Example:
        >>> rfft_frequencies(5).tolist()
        [0.0, 1.0, 2.0]
    """
    return np.fft.rfftfreq(n, d=1.0 / n)


def fftn_wavenumbers(shape: tuple[int, ...], *, nyquist_zero: bool = False) -> np.ndarray:
    """Integer wavenumbers ``k`` of ``fftn`` output, shape ``(d, *shape)`` (numpy, static).

    With ``nyquist_zero`` the Nyquist entry (``k_i = -N_i/2`` for even ``N_i``) is set to 0,
    the convention for odd derivatives.

    Example:
        >>> fftn_wavenumbers((2, 3)).shape
        (2, 2, 3)
    """
    ks = []
    for n in shape:
        k = fft_frequencies(n)
        if nyquist_zero and n % 2 == 0:
            k[n // 2] = 0.0
        ks.append(k)
    return np.stack(np.meshgrid(*ks, indexing="ij"), axis=0)


def rfftn_wavenumbers(shape: tuple[int, ...], length: float) -> list[np.ndarray]:
    """Angular wavenumbers ``2 pi k / length`` of each axis of ``rfftn`` output over ``shape``
    (one float64 vector per axis: ``fft`` frequencies, then ``rfft`` ones on the last axis).

    Example:
        >>> [k.shape for k in rfftn_wavenumbers((4, 6), 2 * np.pi)]
        [(4,), (4,)]
    """
    shape = tuple(shape)
    ks = [2 * np.pi * fft_frequencies(n) / length for n in shape[:-1]]
    ks.append(2 * np.pi * rfft_frequencies(shape[-1]) / length)
    return ks


def spectral_wavenumbers(n: int, length: float, dtype=None) -> Float[Array, " n//2+1"]:
    """Angular wavenumbers ``2 pi k / length`` of :func:`jnp.fft.rfft` output, ``k = 0..n//2``."""
    return 2 * jnp.pi * jnp.fft.rfftfreq(n, d=1.0 / n).astype(dtype) / length


@functools.partial(jax.jit, static_argnames=("axis", "order"))
def spectral_derivative(
    field: Float[Array, "..."], axis: int, order: int, length: float
) -> Float[Array, "..."]:
    """Spectral (Fourier) derivative of a periodic field along one axis.

    ``field`` holds samples at ``x_j = j * length / n``, ``j = 0..n-1`` (the period is not
    repeated). The derivative multiplies each Fourier coefficient by ``(i k)^order``. For even
    ``n`` the Nyquist mode ``cos(pi n x / length)`` has no resolvable odd derivative (its
    derivative vanishes at every sample), so for odd ``order`` its coefficient is set to zero;
    for even ``order`` it is kept (multiplied by ``(-k^2)^(order/2)``), which makes the
    even-order derivative exact for every trigonometric polynomial the grid can represent.

    Args:
        field: real array; differentiated along ``axis``.
        axis: the periodic axis.
        order: derivative order >= 0.
        length: the period along ``axis``.

    Returns:
        Real array of the shape and dtype of ``field``.

    Example:
        >>> x = jnp.arange(16) * 2 * jnp.pi / 16
        >>> d = spectral_derivative(jnp.sin(3 * x), axis=0, order=1, length=2 * jnp.pi)
        >>> bool(jnp.allclose(d, 3 * jnp.cos(3 * x), atol=1e-5))
        True
    """
    field = jnp.asarray(field)
    if not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    if not isinstance(axis, (int, np.integer)) or not -field.ndim <= axis < field.ndim:
        raise ValueError(f"axis must be an integer in [-{field.ndim}, {field.ndim}), got {axis!r}")
    if jnp.iscomplexobj(field):
        raise TypeError("spectral_derivative expects a real field")
    if order == 0:
        return field
    axis = int(axis) % field.ndim
    n = field.shape[axis]
    coeffs = jnp.fft.rfft(field, axis=axis)
    k = spectral_wavenumbers(n, length, dtype=field.dtype)
    mult = (1j * k) ** order
    if n % 2 == 0 and order % 2 == 1:
        mult = mult.at[-1].set(0)
    shape = [1] * field.ndim
    shape[axis] = k.shape[0]
    out = jnp.fft.irfft(coeffs * mult.astype(coeffs.dtype).reshape(shape), n=n, axis=axis)
    return out.astype(field.dtype)


def _real_ifft(uh, axes):
    return jnp.real(jnp.fft.ifftn(uh, axes=axes))


def spectral_gradient(u: Float[Array, "*grid"]) -> Float[Array, "d *grid"]:
    """Gradient of a periodic field on the unit torus by FFT: ``(d, *grid)`` with
    ``[i] = du/dx_i`` (samples at ``x_j = j / N`` per axis; Nyquist modes dropped).

    Example:
        >>> x = jnp.arange(9) / 9
        >>> g = spectral_gradient(jnp.sin(2 * jnp.pi * x))
        >>> bool(jnp.allclose(g[0], 2 * jnp.pi * jnp.cos(2 * jnp.pi * x), atol=1e-4))
        True
    """
    shape = u.shape
    axes = tuple(range(u.ndim))
    k = jnp.asarray(fftn_wavenumbers(shape, nyquist_zero=True), dtype=u.dtype)
    uh = jnp.fft.fftn(u, axes=axes)
    return jnp.stack([_real_ifft(2j * math.pi * k[i] * uh, axes) for i in range(u.ndim)])


def spectral_divergence(p: Float[Array, "d *grid"]) -> Float[Array, "*grid"]:
    """Divergence ``sum_i dp_i/dx_i`` of a periodic vector field of shape ``(d, *grid)`` on the
    unit torus (as :func:`spectral_gradient`)."""
    shape = p.shape[1:]
    if p.shape[0] != len(shape):
        raise ValueError(
            f"p must have shape (d, *grid) with d = grid dimension, got {p.shape}"
        )
    axes = tuple(range(len(shape)))
    k = jnp.asarray(fftn_wavenumbers(shape, nyquist_zero=True), dtype=p.dtype)
    total = 0.0
    for i in range(len(shape)):
        total = total + 2j * math.pi * k[i] * jnp.fft.fftn(p[i], axes=axes)
    return _real_ifft(total, axes)
