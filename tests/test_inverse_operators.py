"""Forward operators of pdeml.inverse: exact adjoints, Radon against the analytic disc
projection, the heat map against exact and implicit reference solutions, norms, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdeml.inverse import (
    CompressedSensing,
    GaussianBlur,
    HeatObservation,
    Inpainting,
    MatrixOperator,
    Radon,
    disc,
    dot_product_test,
    measure,
)

IMAGE_SHAPES = [(1, 8, 8), (2, 6, 10), (12, 12)]


def _make(kind, shape, key):
    if kind == "blur":
        return GaussianBlur(shape, 1.3)
    if kind == "inpaint":
        return Inpainting.random(shape, 0.6, key=key)
    if kind == "cs":
        return CompressedSensing(shape, ratio=0.3, key=key)
    if kind == "radon":
        side = shape[-1]
        return Radon((*shape[:-2], side, side), angles=5)
    if kind == "heat":
        return HeatObservation(shape, time=2e-3, stride=2)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["blur", "inpaint", "cs", "radon", "heat"])
@settings(max_examples=8)
@given(shape=st.sampled_from(IMAGE_SHAPES), seed=st.integers(0, 2**31 - 1))
def test_dot_product_adjoint(kind, shape, seed):
    key = jax.random.key(seed)
    op = _make(kind, shape, key)
    lhs, rhs = dot_product_test(op, jax.random.fold_in(key, 1), batch=(2,))
    # float64: both sides are sums of O(100) products of O(1) terms; 1e-12 relative is ~1e4 eps
    assert abs(float(lhs - rhs)) <= 1e-12 * max(1.0, abs(float(lhs)))


@given(seed=st.integers(0, 2**31 - 1))
def test_dot_product_heat_1d_and_matrix(seed):
    key = jax.random.key(seed)
    for op in (HeatObservation((20,), time=1e-3, stride=3),
               MatrixOperator(jax.random.normal(key, (5, 7)))):
        lhs, rhs = dot_product_test(op, key)
        assert abs(float(lhs - rhs)) <= 1e-12 * max(1.0, abs(float(lhs)))


def test_batching_matches_loop():
    op = Radon((1, 8, 8), angles=4)
    x = jax.random.normal(jax.random.key(0), (3, 2, 1, 8, 8))
    y = op(x)
    assert y.shape == (3, 2, *op.out_shape)
    np.testing.assert_allclose(y[1, 0], op(x[1, 0]), rtol=1e-13, atol=1e-13)


@pytest.mark.slow
def test_normest_matches_dense_svd():
    for op in (GaussianBlur((1, 6, 6), 0.8), CompressedSensing((1, 6, 6), ratio=0.5, key=jax.random.key(3)),
               Radon((6, 6), angles=4), HeatObservation((1, 6, 6), time=1e-2, stride=2)):
        n = int(np.prod(op.in_shape))
        A = jax.vmap(op)(jnp.eye(n).reshape((n, *op.in_shape))).reshape(n, -1).T
        exact = np.linalg.norm(np.asarray(A), 2) ** 2
        # power iteration stops at a relative change of 1e-7 per step; 1e-5 is a safe margin
        assert float(op.normest(iters=2000, rtol=1e-12)) == pytest.approx(exact, rel=1e-5)


def test_blur_preserves_constants_and_is_periodic():
    op = GaussianBlur((10, 12), 1.5)
    np.testing.assert_allclose(op(jnp.ones((10, 12))), 1.0, atol=1e-14)
    x = jax.random.normal(jax.random.key(0), (10, 12))
    # circular convolution commutes with circular shifts
    np.testing.assert_allclose(op(jnp.roll(x, (3, 5), (0, 1))), jnp.roll(op(x), (3, 5), (0, 1)),
                               atol=1e-13)


def test_cs_is_keyed_and_scaled():
    a = CompressedSensing((1, 16, 16), ratio=0.25, key=jax.random.key(1))
    b = CompressedSensing((1, 16, 16), ratio=0.25, key=jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (1, 16, 16))
    np.testing.assert_array_equal(a(x), b(x))
    # E ||A x||^2 = ||x||^2 over random operators: the mean of 40 draws is within 20% (the
    # per-draw ratio has a std of about 0.35 for m = 64, so the mean's std is about 0.06)
    ratios = [float(jnp.sum(CompressedSensing((1, 16, 16), ratio=0.25, key=jax.random.key(k))(x) ** 2)
                    / jnp.sum(x**2)) for k in range(40)]
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.2)


def test_radon_disc_against_analytic_projection():
    """A unit-density disc of radius r projects to 2 sqrt(r^2 - s^2) at every angle; the error
    away from the disc edge (|s| < 0.9 r, where the projection is smooth) decreases with the
    grid (pixelisation + bilinear interpolation, observed order ~1.3)."""
    r = 0.6
    errs, ns = [], [32, 64, 128]
    for n in ns:
        op = Radon((n, n), angles=3, oversample=4)
        p = np.asarray(op(jnp.asarray(disc(n, r, supersample=8))))
        s = (np.arange(op.n_det) - (op.n_det - 1) / 2) * (2 / n)
        exact = 2 * np.sqrt(np.maximum(r * r - s * s, 0))
        inner = np.abs(s) < 0.9 * r
        errs.append(np.abs(p - exact[None])[:, inner].max())
    slope = np.polyfit(np.log(2.0 / np.array(ns)), np.log(errs), 1)[0]
    assert slope > 1.0, (errs, slope)
    assert errs[-1] < 5e-3  # 0.4% of the peak value 2 r = 1.2


def test_heat_matches_exact_fourier_mode():
    L, kappa, T = 2.0, 0.3, 0.05
    n = 32
    x = np.arange(n) * L / n
    k = 2 * np.pi * 3 / L
    op = HeatObservation((n,), time=T, kappa=kappa, length=L)
    u = op(jnp.asarray(np.sin(k * x)))
    np.testing.assert_allclose(u, np.exp(-kappa * k**2 * T) * np.sin(k * x), atol=1e-14)
    # 2D with a channel axis and sub-sampling: the observation is the solution on the sub-grid
    op2 = HeatObservation((1, 16, 12), time=T, kappa=kappa, length=L, stride=2)
    X, Y = np.meshgrid(np.arange(16) * L / 16, np.arange(12) * L / 12, indexing="ij")
    k1, k2 = 2 * np.pi / L, 2 * np.pi * 2 / L
    u0 = np.cos(k1 * X) * np.sin(k2 * Y)
    ut = np.exp(-kappa * (k1**2 + k2**2) * T) * u0
    np.testing.assert_allclose(op2(jnp.asarray(u0[None])), ut[None, ::2, ::2], atol=1e-14)


def _crank_nicolson_fd(u0, L, kappa, T, steps):
    """Independent reference: second-order periodic finite differences in space, Crank-Nicolson
    in time, dense solves (numpy)."""
    n = u0.size
    h = L / n
    D = (np.roll(np.eye(n), 1, 0) - 2 * np.eye(n) + np.roll(np.eye(n), -1, 0)) * kappa / h**2
    dt = T / steps
    M1, M2 = np.eye(n) - 0.5 * dt * D, np.eye(n) + 0.5 * dt * D
    u = u0.copy()
    for _ in range(steps):
        u = np.linalg.solve(M1, M2 @ u)
    return u


def test_heat_matches_implicit_reference_with_second_order_convergence():
    L, kappa, T = 1.0, 0.1, 0.05
    errs, ns = [], [16, 32, 64]
    for n in ns:
        x = np.arange(n) * L / n
        u0 = np.exp(np.sin(2 * np.pi * x))  # smooth, not a finite Fourier series
        spectral = np.asarray(HeatObservation((n,), time=T, kappa=kappa, length=L)(jnp.asarray(u0)))
        ref = _crank_nicolson_fd(u0, L, kappa, T, steps=n // 2)  # dt ~ h: both errors O(h^2)
        errs.append(np.abs(spectral - ref).max())
    slope = np.polyfit(np.log(L / np.array(ns)), np.log(errs), 1)[0]
    # the spectral map is exact to rounding at these n; the reference converges at order 2
    assert 1.8 < slope < 2.3, (errs, slope)
    assert errs[-1] < 2e-3


def test_heat_solve_full_field_and_time_zero():
    op = HeatObservation((1, 8, 8), time=1e-2, stride=2)
    u0 = jax.random.normal(jax.random.key(0), (2, 1, 8, 8))
    np.testing.assert_allclose(op.solve(u0, 0.0), u0, atol=1e-14)
    np.testing.assert_allclose(op.solve(u0)[..., ::2, ::2], op(u0), atol=1e-14)
    # semigroup: S(t) S(s) = S(t + s)
    np.testing.assert_allclose(op.solve(op.solve(u0, 0.004), 0.006), op.solve(u0, 0.01), atol=1e-13)


def test_dtype_is_kept():
    x = jnp.ones((1, 8, 8), jnp.float32)
    for op in (GaussianBlur((1, 8, 8), 1.0), Radon((1, 8, 8), angles=3),
               HeatObservation((1, 8, 8), time=1e-3), CompressedSensing((1, 8, 8), m=10, key=jax.random.key(0))):
        assert op(x).dtype == jnp.float32
        assert op.adjoint(op(x)).dtype == jnp.float32


def test_measure_adds_keyed_noise():
    op = GaussianBlur((8, 8), 1.0)
    x = jnp.zeros((8, 8))
    a = measure(op, x, 0.1, key=jax.random.key(0))
    np.testing.assert_array_equal(a, measure(op, x, 0.1, key=jax.random.key(0)))
    assert float(jnp.std(a)) == pytest.approx(0.1, rel=0.3)  # 64 samples: std error ~9%


def test_bad_inputs():
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur((8, 8), 0.0)
    with pytest.raises(ValueError, match="in_shape"):
        GaussianBlur((8,), 1.0)
    with pytest.raises(ValueError, match="trailing shape"):
        GaussianBlur((8, 8), 1.0)(jnp.ones((8, 9)))
    with pytest.raises(ValueError, match="trailing shape"):
        Radon((8, 8), angles=3).adjoint(jnp.ones((3, 5)))
    with pytest.raises(TypeError, match="floating"):
        GaussianBlur((8, 8), 1.0)(jnp.ones((8, 8), jnp.int32))
    with pytest.raises(ValueError, match="square"):
        Radon((8, 6), angles=3)
    with pytest.raises(ValueError, match="exactly one"):
        CompressedSensing((4, 4), key=jax.random.key(0))
    with pytest.raises(ValueError, match="m must"):
        CompressedSensing((4, 4), m=17, key=jax.random.key(0))
    with pytest.raises(ValueError, match="mask"):
        Inpainting(jnp.array([0.0, 0.5]))
    with pytest.raises(ValueError, match="time"):
        HeatObservation((8,), time=-1.0)
    with pytest.raises(ValueError, match="stride"):
        HeatObservation((8,), time=1.0, stride=0)
    with pytest.raises(ValueError, match="noise_std"):
        measure(GaussianBlur((8, 8), 1.0), jnp.ones((8, 8)), -0.1, key=jax.random.key(0))
