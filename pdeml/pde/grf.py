"""Gaussian random fields on periodic grids (initial vorticity for Navier-Stokes).

A stationary Gaussian field on the periodic square has a circulant covariance on a regular
grid, diagonalised by the 2D DFT: with ``c`` the covariance between the origin and every grid
point and ``Lambda = DFT(c)`` (real and non-negative for a positive-definite kernel), a sample is

    w = IDFT( sqrt(Lambda) * DFT(z) ),      z ~ N(0, I) on the grid,

whose covariance is *exactly* the circulant matrix of ``c`` (no truncation of the spectrum).
Two families:

- ``kind="periodic"`` ([HC-MoE]): the periodic ("exp-sine-squared") kernel in each direction,
  ``k(r) = sigma^2 prod_d exp(-2 sin^2(pi r_d / L) / ell^2)`` with length scale ``ell = 0.8``
  (the paper's value) on the period L. Its Fourier coefficients are
  ``sigma^2 prod_d exp(-1/ell^2) I_{k_d}(1/ell^2)`` (modified Bessel functions): at ell = 0.8
  they fall by ~10x per wavenumber beyond k = 2, so the fields are very smooth.
- ``kind="li2021"`` (Li et al.'s FNO Navier-Stokes data, ``N(0, 7^(3/2) (-lap + 49 I)^-2.5)``):
  the covariance operator ``sigma^2 (-lap + tau^2 I)^(-alpha)`` with ``alpha = 2.5``, ``tau = 7``
  and, as in their sampling code, ``sigma = tau^(alpha - 1) = 7^(3/2)`` (spectrum
  ``sigma^2 (4 pi^2 |k|^2 / L^2 + tau^2)^-alpha``, truncated to the grid's modes).

By default the mean (k = 0) mode is removed (``zero_mean=True``): a periodic velocity field has
zero circulation around the square, so its vorticity has zero mean; PDEBench and Li et al. do the
same. The covariance is then ``c - mean(c)``.

References: [HC-MoE] Chalapathi, Du, Krishnapriyan, ICLR 2024; Li et al., ICLR 2021;
Rasmussen & Williams, "Gaussian Processes for Machine Learning" (2006), sec. 4.2 (the periodic
kernel); Dietrich & Newsam, SIAM J. Sci. Comput. 1997 (circulant embedding).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pdeml.core.validation import check_choice
from pdeml.pde.spectral import fft_frequencies

__all__ = ["GaussianRandomField", "GRF_KINDS"]

GRF_KINDS = ("periodic", "li2021")


class GaussianRandomField(eqx.Module):
    """A stationary Gaussian random field on the periodic square ``[0, L)^2``.

    Attributes:
        kind: ``"periodic"`` (product periodic kernel, [HC-MoE]) or ``"li2021"`` (Li et al.).
        length_scale: ell of the periodic kernel ([HC-MoE]: 0.8).
        std: sigma, the pointwise standard deviation of the periodic kernel (before the mean is
            removed) or the prefactor of the ``li2021`` spectrum (``None``: 1 for ``"periodic"``,
            ``7^1.5`` for ``"li2021"``).
        alpha, tau: exponent and shift of the ``li2021`` spectrum (2.5 and 7).
        length: the period L.
        zero_mean: remove the k = 0 mode (zero-mean fields).

    Example:
        >>> grf = GaussianRandomField()
        >>> w = grf.sample(jax.random.key(0), 16, 16, num_samples=3)
        >>> w.shape, bool(jnp.allclose(w.mean(axis=(1, 2)), 0, atol=1e-6))
        ((3, 16, 16), True)
    """

    kind: str = eqx.field(static=True, default="periodic")
    length_scale: float = eqx.field(static=True, default=0.8)
    std: float | None = eqx.field(static=True, default=None)
    alpha: float = eqx.field(static=True, default=2.5)
    tau: float = eqx.field(static=True, default=7.0)
    length: float = eqx.field(static=True, default=1.0)
    zero_mean: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_choice("kind", self.kind, GRF_KINDS)
        for name in ("length_scale", "length", "alpha", "tau"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.std is not None and not self.std > 0:
            raise ValueError(f"std must be positive or None, got {self.std!r}")

    @property
    def sigma(self) -> float:
        """The prefactor actually used (``std`` or the family's default)."""
        if self.std is not None:
            return self.std
        return 1.0 if self.kind == "periodic" else 7.0**1.5

    def settings(self) -> dict:
        """JSON-serialisable description (used in dataset metadata)."""
        out = {"kind": self.kind, "std": self.sigma, "length": self.length,
               "zero_mean": self.zero_mean}
        if self.kind == "periodic":
            out["length_scale"] = self.length_scale
        else:
            out.update(alpha=self.alpha, tau=self.tau)
        return out

    def covariance(self, nx: int, ny: int) -> np.ndarray:
        """Covariance ``c[i, j]`` between the origin and grid point ``(i L / nx, j L / ny)``
        (``kind="periodic"``: the kernel itself, mean removed if ``zero_mean``)."""
        lam = self.spectrum(nx, ny)
        return np.real(np.fft.ifft2(lam))

    def spectrum(self, nx: int, ny: int) -> np.ndarray:
        """Eigenvalues ``Lambda`` (``(nx, ny)``, float64, DFT order) of the grid covariance."""
        for name, n in (("nx", nx), ("ny", ny)):
            if not isinstance(n, (int, np.integer)) or n < 1:
                raise ValueError(f"{name} must be a positive integer, got {n!r}")
        if self.kind == "periodic":
            def factor(n):
                r = np.arange(n) / n  # r / L
                return np.exp(-2 * np.sin(np.pi * r) ** 2 / self.length_scale**2)

            c = self.sigma**2 * factor(nx)[:, None] * factor(ny)[None, :]
            # DFT of a symmetric positive-definite kernel: real, >= 0 up to round-off.
            lam = np.clip(np.real(np.fft.fft2(c)), 0.0, None)
        else:
            kx = fft_frequencies(nx)[:, None]
            ky = fft_frequencies(ny)[None, :]
            k2 = (2 * np.pi / self.length) ** 2 * (kx**2 + ky**2)
            # Continuous coefficients lambda_k; the grid covariance has eigenvalues n lambda_k.
            lam = nx * ny * self.sigma**2 * (k2 + self.tau**2) ** (-self.alpha)
        if self.zero_mean:
            lam = lam.copy()
            lam[0, 0] = 0.0
        return lam

    def sample(
        self, key: PRNGKeyArray, nx: int, ny: int, *, num_samples: int | None = None, dtype=None
    ) -> Float[Array, "*s nx ny"]:
        """Draw fields on the ``nx x ny`` grid ``(i L / nx, j L / ny)``.

        Args:
            key: JAX PRNG key.
            nx, ny: grid size.
            num_samples: number of fields (``None``: one field without a leading axis).
            dtype: floating dtype (default: JAX's default float).

        Returns:
            ``(nx, ny)`` or ``(num_samples, nx, ny)``.
        """
        if num_samples is not None and (not isinstance(num_samples, int)
                                        or isinstance(num_samples, bool) or num_samples < 1):
            raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
        dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.result_type(float)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"dtype must be a real floating dtype, got {dtype}")
        root = np.sqrt(self.spectrum(nx, ny))
        s = 1 if num_samples is None else num_samples
        out = _sample(key, jnp.asarray(root, dtype), s, dtype)
        return out[0] if num_samples is None else out

    def apply(self, z: Float[Array, "*s nx ny"]) -> Float[Array, "*s nx ny"]:
        """The linear map ``z -> IDFT(sqrt(Lambda) DFT(z))`` from white noise to a field."""
        z = jnp.asarray(z)
        root = jnp.asarray(np.sqrt(self.spectrum(*z.shape[-2:])), z.dtype)
        return _colour(z, root)


def _colour(z, root):
    zh = jnp.fft.fft2(z, axes=(-2, -1))
    root = root.reshape((1,) * (z.ndim - 2) + root.shape)
    return jnp.real(jnp.fft.ifft2(root * zh, axes=(-2, -1))).astype(z.dtype)


@functools.partial(jax.jit, static_argnames=("num_samples", "dtype"))
def _sample(key, root, num_samples, dtype):
    z = jax.random.normal(key, (num_samples,) + root.shape, dtype)
    return _colour(z, root)
