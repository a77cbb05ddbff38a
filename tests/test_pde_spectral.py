"""pdeml.pde.spectral: the wavenumber grids against numpy's, and their users unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.barron import spectral as barron_spectral
from pdeml.inverse.operators import HeatObservation
from pdeml.pde import GaussianRandomField, spectral_derivative, spectral_wavenumbers
from pdeml.pde import navier_stokes_solver as nss
from pdeml.pde import operators
from pdeml.pde.spectral import (
    fft_frequencies,
    fftn_wavenumbers,
    rfft_frequencies,
    rfftn_wavenumbers,
    spectral_divergence,
    spectral_gradient,
)

SIZES = [1, 2, 3, 4, 7, 8, 15, 16, 49, 64, 97, 100, 255, 256]


@pytest.mark.parametrize("n", SIZES)
def test_frequencies_are_numpys(n):
    k = fft_frequencies(n)
    assert k.dtype == np.float64
    np.testing.assert_array_equal(k, np.fft.fftfreq(n, d=1.0 / n))
    np.testing.assert_allclose(k, np.fft.fftfreq(n) * n, rtol=1e-15, atol=1e-12)
    np.testing.assert_allclose(rfft_frequencies(n), np.arange(n // 2 + 1), rtol=1e-15)
    np.testing.assert_array_equal(rfft_frequencies(n), np.fft.rfftfreq(n, d=1.0 / n))


def test_fftn_wavenumbers_and_nyquist():
    k = fftn_wavenumbers((4, 5))
    assert k.shape == (2, 4, 5)
    np.testing.assert_array_equal(k[0, :, 0], np.fft.fftfreq(4, d=0.25))
    np.testing.assert_array_equal(k[1, 0, :], np.fft.fftfreq(5, d=0.2))
    kz = fftn_wavenumbers((4, 5), nyquist_zero=True)
    assert np.all(kz[0, 2] == 0) and np.array_equal(kz[1], k[1])
    assert barron_spectral.wavenumbers is fftn_wavenumbers
    assert barron_spectral.spectral_gradient is spectral_gradient
    assert barron_spectral.spectral_divergence is spectral_divergence


@pytest.mark.parametrize("shape", [(8,), (6, 9), (3, 4, 10)])
def test_rfftn_wavenumbers_match_numpy(shape):
    L = 2.5
    ks = rfftn_wavenumbers(shape, L)
    want = [2 * np.pi * np.fft.fftfreq(n, d=1.0 / n) / L for n in shape[:-1]]
    want.append(2 * np.pi * np.fft.rfftfreq(shape[-1], d=1.0 / shape[-1]) / L)
    assert len(ks) == len(shape)
    for a, b in zip(ks, want):
        np.testing.assert_array_equal(a, b)
    # the axes of jnp.fft.rfftn output
    assert tuple(len(k) for k in ks) == jnp.fft.rfftn(jnp.zeros(shape)).shape


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("n", [8, 15, 64])
def test_spectral_wavenumbers_dtype_and_values(dtype, n):
    k = spectral_wavenumbers(n, 3.0, dtype)
    assert k.dtype == dtype and operators.spectral_wavenumbers is spectral_wavenumbers
    np.testing.assert_allclose(k, 2 * np.pi * np.arange(n // 2 + 1) / 3.0,
                               rtol=4 * float(jnp.finfo(dtype).eps))
    assert operators.spectral_derivative is spectral_derivative


def test_users_build_the_same_grids():
    """The heat operator, the Navier-Stokes wavenumbers and the random field spectrum equal
    the formulas they are defined by, bit for bit."""
    op = HeatObservation((12, 10), time=0.02, kappa=0.7, length=2.0)
    kx = 2 * np.pi * np.fft.fftfreq(12, d=1.0 / 12) / 2.0
    ky = 2 * np.pi * np.fft.rfftfreq(10, d=1.0 / 10) / 2.0
    k2 = kx[:, None] ** 2 + ky[None, :] ** 2
    np.testing.assert_array_equal(op.multiplier(jnp.float64), np.exp(-0.7 * k2 * 0.02))
    kx_ns, ky_ns, *_, k2_ns, _, mask = nss._wavenumbers(12, 10, 2.0, jnp.float64)
    np.testing.assert_array_equal(kx_ns[:, 0], kx)
    np.testing.assert_array_equal(ky_ns[0], ky)
    np.testing.assert_array_equal(k2_ns, k2)
    ix, iy = np.fft.fftfreq(12, d=1.0 / 12), np.fft.rfftfreq(10, d=1.0 / 10)
    np.testing.assert_array_equal(mask, (3 * np.abs(ix)[:, None] < 12) & (3 * iy[None, :] < 10))
    g = GaussianRandomField(kind="li2021", zero_mean=False)
    kk = ix[:, None] ** 2 + np.fft.fftfreq(10, d=1.0 / 10)[None, :] ** 2
    lam = 120 * g.sigma**2 * ((2 * np.pi / g.length) ** 2 * kk + g.tau**2) ** (-g.alpha)
    np.testing.assert_array_equal(g.spectrum(12, 10), lam)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_gradient_and_divergence_on_the_torus(dtype):
    n = 9
    x = jnp.arange(n, dtype=dtype) / n
    X, Y = jnp.meshgrid(x, x, indexing="ij")
    u = jnp.sin(2 * jnp.pi * X) * jnp.cos(4 * jnp.pi * Y)
    g = spectral_gradient(u)
    tol = 1e-4 if dtype == jnp.float32 else 1e-11
    np.testing.assert_allclose(g[0], 2 * jnp.pi * jnp.cos(2 * jnp.pi * X) * jnp.cos(4 * jnp.pi * Y),
                               atol=tol * 10)
    lap = spectral_divergence(g)
    np.testing.assert_allclose(lap, -20 * jnp.pi**2 * u, atol=tol * 200)
    assert g.dtype == dtype and lap.dtype == dtype
    with pytest.raises(ValueError, match="shape"):
        spectral_divergence(jnp.zeros((3, n, n), dtype))


def test_spectral_wavenumbers_default_dtype_without_x64():
    with jax.enable_x64(False):
        assert spectral_wavenumbers(8, 1.0).dtype == jnp.float32
