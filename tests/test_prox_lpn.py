"""ICNN potentials and learned proximal networks: convexity, exact-prox structure, inversion,
the custom gradient of the regulariser, analytic cases and input errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdeml.nets.icnn import (
    ConvICNN,
    DenseICNN,
    FullyConvICNN,
    icnn_optimizer,
    nonnegative_mask,
    project_nonnegative,
)
from pdeml.prox import LPN, ScaledLPN, evaluate_regularizer, invert_adam
from pdeml.testing.prox import (
    arrays_of_shape,
    check_convex_along_lines,
    check_inversion_round_trip,
    check_regularizer_gradient,
    check_symmetric_psd_jacobian,
    seeds,
)

DENSE = {
    mode: DenseICNN(3, (16, 16, 16), key=jax.random.key(0), beta=10.0, alpha=0.1, nonnegativity=mode)
    for mode in ("softplus", "project")
}
CONV = ConvICNN((1, 8, 8), (4, 4), (1, 2), key=jax.random.key(1), beta=10.0, alpha=0.1)
FCONV = FullyConvICNN(1, (4, 4), key=jax.random.key(2), beta=10.0, alpha=0.1)


def _reseed(model, seed):
    """Same architecture, new random weights."""
    return DenseICNN(3, (16, 16, 16), key=jax.random.key(seed), beta=10.0, alpha=model.alpha,
                     nonnegativity=model.nonnegativity)


@pytest.mark.parametrize("mode", ["softplus", "project"])
@given(seed=seeds(), x=arrays_of_shape((3,)), d=arrays_of_shape((3,), low=-1, high=1))
def test_dense_psi_convex_along_lines(mode, seed, x, d):
    psi = _reseed(DENSE[mode], seed)
    check_convex_along_lines(psi, jnp.asarray(x), jnp.asarray(d), t_max=3.0)


@settings(max_examples=5)
@given(seed=seeds(), x=arrays_of_shape((1, 8, 8), low=0, high=1))
def test_conv_psi_convex_along_lines(seed, x):
    d = jax.random.normal(jax.random.key(seed), (1, 8, 8))
    for psi in (CONV, FCONV):
        check_convex_along_lines(psi, jnp.asarray(x), d)


@pytest.mark.parametrize("mode", ["softplus", "project"])
@given(seed=seeds(), x=arrays_of_shape((3,)))
def test_dense_prox_jacobian_symmetric_psd(mode, seed, x):
    psi = _reseed(DENSE[mode], seed)
    asym, lam_min = check_symmetric_psd_jacobian(jax.grad(psi), jnp.asarray(x), atol=1e-10)
    # strong convexity: the Jacobian of grad psi is >= alpha I
    assert lam_min >= psi.alpha - 1e-10


@settings(max_examples=3)
@given(x=arrays_of_shape((1, 5, 6), low=0, high=1))
def test_fully_conv_prox_jacobian_symmetric_psd(x):
    check_symmetric_psd_jacobian(jax.grad(FCONV), jnp.asarray(x), atol=1e-10)


def test_negative_weight_breaks_convexity_detected():
    """The checker can fail: a negative constrained weight makes psi nonconvex."""
    psi = DenseICNN(3, (16, 16, 16), key=jax.random.key(0), alpha=0.0, nonnegativity="project")
    # a negative read-out of the convex features makes psi concave where the features curve
    bad = eqx.tree_at(lambda m: m.w_out, psi, -10.0 * jnp.ones_like(psi.w_out))
    xs = jax.random.normal(jax.random.key(3), (20, 3))
    failures = 0
    for x in xs:
        try:
            check_convex_along_lines(bad, x, jnp.array([1.0, 0.5, -0.3]))
        except AssertionError:
            failures += 1
    assert failures > 0


@pytest.mark.parametrize("mode,method", [("softplus", "newton_cg"), ("project", "lbfgs")])
def test_inversion_round_trip_dense(method, mode):
    lpn = LPN(DENSE[mode])
    x = 2.0 * jax.random.normal(jax.random.key(4), (32, 3))
    inv = jax.jit(lambda l, x: l.inverse(x, method=method))
    res = inv(lpn, x)
    # default float64 tolerance: ||f(y) - x|| <= 1e-10 (1 + ||x||); round trip checked at that level
    assert bool(res.converged.all())
    assert float(res.residual.max()) <= 1e-10 * (1 + float(jnp.linalg.norm(x, axis=-1).max()))
    check_inversion_round_trip(lpn, x, atol=1e-9, method=method)
    assert res.y.shape == x.shape and res.iterations.shape == (32,)


@pytest.mark.parametrize("psi", [CONV, FCONV], ids=["conv", "fully_conv"])
def test_inversion_round_trip_images(psi):
    lpn = LPN(psi)
    x = jax.random.uniform(jax.random.key(5), (3, 1, 8, 8))
    check_inversion_round_trip(lpn, x, atol=1e-9)


def test_newton_cg_compaction_matches_per_sample_solves():
    """The batched loop compacts unconverged samples into smaller phases; each sample must get
    the same iterate as when solved alone (the phases only change which samples are computed)."""
    lpn = LPN(DENSE["softplus"])
    x = 3.0 * jax.random.normal(jax.random.key(9), (11, 3))
    res = lpn.inverse(x)
    assert bool(res.converged.all()) and len(set(np.asarray(res.iterations).tolist())) > 1
    for i in range(x.shape[0]):
        one = lpn.inverse(x[i : i + 1])
        assert int(one.iterations[0]) == int(res.iterations[i])
        np.testing.assert_allclose(one.y[0], res.y[i], rtol=0, atol=1e-12)


def test_newton_cg_mixed_precision_hvp_keeps_the_float64_tolerance():
    lpn = LPN(CONV)
    x = jax.random.uniform(jax.random.key(10), (4, 1, 8, 8))
    res = lpn.inverse(x, hvp_dtype=jnp.float32, atol=1e-9, rtol=0.0)
    assert res.y.dtype == jnp.float64
    assert bool(res.converged.all()) and float(res.residual.max()) <= 1e-9
    np.testing.assert_allclose(lpn.prox(res.y), x, atol=1e-9)


def test_fully_conv_any_size_and_batch_axes():
    lpn = LPN(FCONV)
    for shape in [(2, 1, 5, 7), (2, 2, 1, 6, 6)]:
        x = jax.random.uniform(jax.random.key(6), shape)
        assert lpn.prox(x).shape == shape
        assert lpn.psi(x).shape == shape[:-3]
    # the operator is translation-equivariant away from the borders (local potentials)
    x = jax.random.uniform(jax.random.key(7), (1, 1, 16, 16))
    shifted = jnp.roll(x, 2, axis=-1)
    a = lpn.prox(x)[..., 4:10, 4:10]
    b = lpn.prox(shifted)[..., 4:10, 6:12]
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_inversion_with_unconverged_budget_is_reported():
    lpn = LPN(DENSE["softplus"])
    x = 3.0 * jax.random.normal(jax.random.key(8), (8, 3))
    res = lpn.inverse(x, max_steps=1)
    assert not bool(res.converged.all())
    assert bool(jnp.all(res.iterations <= 1))


def test_regularizer_custom_gradient_matches_finite_differences():
    lpn = LPN(DENSE["softplus"])
    x = jax.random.normal(jax.random.key(9), (4, 3))
    # R is evaluated to residual 1e-13; FD with h = 1e-4 has truncation error O(h^2 R''') ~ 1e-8
    reg = lambda v: lpn.regularizer(v, atol=1e-13, rtol=1e-13)  # noqa: E731
    check_regularizer_gradient(reg, x, h=1e-4, rtol=1e-7)
    g = jax.grad(lambda v: jnp.sum(reg(v)))(x)
    np.testing.assert_allclose(g, lpn.inverse(x).y - x, atol=1e-9)


def test_regularizer_parameter_gradient_matches_finite_differences():
    """Envelope theorem: d R / d theta = -d psi_theta(y) / d theta at the fixed inverse y."""
    lpn = LPN(DENSE["softplus"])
    x = jax.random.normal(jax.random.key(10), (4, 3))
    opts = dict(atol=1e-13, rtol=1e-13)

    def total(lpn):
        return jnp.sum(lpn.regularizer(x, **opts))

    grads = jax.grad(total)(lpn)
    direction = jax.random.normal(jax.random.key(11), lpn.potential.a_out.shape)
    ad = float(jnp.vdot(grads.potential.a_out, direction))
    h = 1e-5
    plus = eqx.tree_at(lambda m: m.potential.a_out, lpn, lpn.potential.a_out + h * direction)
    minus = eqx.tree_at(lambda m: m.potential.a_out, lpn, lpn.potential.a_out - h * direction)
    fd = float((total(plus) - total(minus)) / (2 * h))
    assert abs(ad - fd) <= 1e-6 * max(1.0, abs(fd))


def test_quadratic_potential_closed_form():
    """With all hidden weights zero, psi = c + alpha/2 ||x||^2: prox = alpha x,
    f^{-1}(x) = x / alpha and R(x) = (1/alpha - 1)/2 ||x||^2 + const."""
    alpha = 0.4
    psi = DenseICNN(2, (8, 8), key=jax.random.key(12), alpha=alpha, nonnegativity="project")
    psi = eqx.tree_at(lambda m: (m.W0, m.Ax, m.a_out), psi,
                      (jnp.zeros_like(psi.W0), tuple(jnp.zeros_like(a) for a in psi.Ax),
                       jnp.zeros_like(psi.a_out)))
    lpn = LPN(psi)
    x = jax.random.normal(jax.random.key(13), (10, 2))
    np.testing.assert_allclose(lpn.prox(x), alpha * x, atol=1e-14)
    res = lpn.inverse(x)
    np.testing.assert_allclose(res.y, x / alpha, atol=1e-10)
    R = lpn.regularizer(x)
    R0 = lpn.regularizer(jnp.zeros((1, 2)))
    np.testing.assert_allclose(R - R0, 0.5 * (1 / alpha - 1) * jnp.sum(x * x, -1), atol=1e-10)


class SoftThresholdPotential(eqx.Module):
    """psi(y) = sum 1/2 max(|y| - 1, 0)^2 + alpha/2 ||y||^2: grad psi is soft-thresholding at 1
    plus alpha y, i.e. the 1D Laplacian MAP denoiser (alpha -> 0) in closed form."""

    alpha: float = eqx.field(static=True)
    event_ndim: int = eqx.field(static=True, default=1)

    def check_event_shape(self, shape, name="x"):
        if len(shape) != 1:
            raise ValueError(f"{name} must be a vector")

    def __call__(self, y):
        return 0.5 * jnp.sum(jnp.maximum(jnp.abs(y) - 1, 0) ** 2) + 0.5 * self.alpha * jnp.vdot(y, y)


def test_soft_threshold_potential_closed_form_regularizer():
    alpha = 0.05
    lpn = LPN(SoftThresholdPotential(alpha))
    x = jnp.linspace(-3, 3, 61)[:, None]
    st_ = jnp.sign(x) * jnp.maximum(jnp.abs(x) - 1, 0)
    np.testing.assert_allclose(lpn.prox(x), st_ + alpha * x, atol=1e-14)
    # exact inverse: |x| <= alpha -> y = x / alpha, else y = (x + sign x) / (1 + alpha)
    y_true = jnp.where(jnp.abs(x) <= alpha, x / alpha, (x + jnp.sign(x)) / (1 + alpha))
    res = lpn.inverse(x)
    assert bool(res.converged.all())
    np.testing.assert_allclose(res.y, y_true, atol=1e-9)
    # R = <x,y> - psi(y) - x^2/2; for alpha -> 0 this tends to |x| (the Laplace log-prior)
    R = lpn.regularizer(x)[:, None]
    psi_y = 0.5 * jnp.maximum(jnp.abs(y_true) - 1, 0) ** 2 + 0.5 * alpha * y_true**2
    np.testing.assert_allclose(R, x * y_true - psi_y - 0.5 * x**2, atol=1e-9)
    # closed form for |x| > alpha: R = |x| - x^2/2 + (|x| + 1)^2/(2(1+alpha)) - ... ; compare the
    # alpha -> 0 limit instead: R - |x| -> const = 0 with error O(alpha) on [-3, 3]
    dev = R[:, 0] - jnp.abs(x[:, 0])
    assert float(jnp.max(jnp.abs(dev - dev.mean()))) <= 3 * alpha * (1 + 9)


def test_lpn_prox_is_the_prox_of_its_regularizer_brute_force():
    """Gribonval-Nikolova: f = grad psi is exactly prox_R with R from the inverse. Checked
    against a 1D grid search of 1/2 (z - x)^2 + R(z) over z."""
    psi = DenseICNN(1, (16, 16), key=jax.random.key(14), beta=10.0, alpha=0.2)
    lpn = LPN(psi)
    z = jnp.linspace(-4, 4, 4001)[:, None]
    Rz = lpn.regularizer(z)
    xs = jnp.linspace(-1.5, 1.5, 7)
    for x in xs:
        obj = 0.5 * (z[:, 0] - x) ** 2 + Rz
        z_star = z[jnp.argmin(obj), 0]
        # grid spacing 2e-3: argmin within one cell (the objective is 1-strongly convex in z
        # along f's range only where R is smooth; a 2-cell margin absorbs round-off)
        assert abs(float(lpn.prox(x.reshape(1, 1))[0, 0]) - float(z_star)) <= 4e-3


def test_projection_optimizer_keeps_weights_nonnegative():
    psi = DENSE["project"]
    lpn = LPN(psi)
    params = eqx.filter(lpn, eqx.is_inexact_array)
    mask = nonnegative_mask(lpn)(params)
    assert jax.tree.leaves(mask).count(True) == len(psi.Wz) + 1
    opt = icnn_optimizer(optax.sgd(10.0), lpn)
    state = opt.init(params)
    # a huge step along a positive gradient would drive every weight far negative
    grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
    upd, state = opt.update(grads, state, params)
    new = eqx.apply_updates(lpn, upd)
    assert all(float(w.min()) >= 0 for w in (*new.potential.Wz, new.potential.w_out))
    assert float(new.potential.W0.max()) < float(psi.W0.min())  # free weights moved freely
    clipped = project_nonnegative(eqx.tree_at(lambda m: m.potential.w_out, lpn, -lpn.potential.w_out))
    assert float(clipped.potential.w_out.max()) == 0.0
    # softplus mode needs no projection
    assert icnn_optimizer(optax.sgd(1.0), DENSE["softplus"]) is not None
    assert not any(jax.tree.leaves(nonnegative_mask(DENSE["softplus"])(DENSE["softplus"])))


def test_adam_baseline_inverts_slowly_but_correctly():
    lpn = LPN(DENSE["softplus"])
    x = 0.3 * jax.random.normal(jax.random.key(15), (4, 3))
    res = invert_adam(lpn.potential, x, steps=1000, learning_rate=1e-2)
    ref = lpn.inverse(x)
    # Adam with a fixed lr hovers around the solution: accurate to ~1e-3, not to 1e-10
    assert float(jnp.max(jnp.abs(res.y - ref.y))) <= 5e-2
    assert float(res.residual.max()) > float(ref.residual.max())


def test_evaluate_regularizer_returns_diagnostics():
    lpn = LPN(DENSE["softplus"])
    x = jax.random.normal(jax.random.key(16), (5, 3))
    R, info = evaluate_regularizer(lpn, x)
    np.testing.assert_allclose(R, lpn.regularizer(x))
    assert info.converged.shape == (5,) and bool(info.converged.all())


# ---------------------------------------------------------------------------- bad input


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="alpha"):
        DenseICNN(2, (4,), key=jax.random.key(0), alpha=-0.1)
    with pytest.raises(ValueError, match="beta"):
        DenseICNN(2, (4,), key=jax.random.key(0), beta=0.0)
    with pytest.raises(ValueError, match="nonnegativity"):
        DenseICNN(2, (4,), key=jax.random.key(0), nonnegativity="clamp")
    with pytest.raises(ValueError, match="strides"):
        ConvICNN((1, 8, 8), (4, 4), (1,), key=jax.random.key(0))
    lpn0 = LPN(DenseICNN(2, (4,), key=jax.random.key(0), alpha=0.0))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        lpn0.inverse(jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="method"):
        LPN(DENSE["softplus"]).inverse(jnp.zeros((1, 3)), method="adam")


def test_nan_input_raises():
    lpn = LPN(DENSE["softplus"])
    x = jnp.array([[0.0, jnp.nan, 1.0]])
    for fn in (lpn.prox, lpn.psi, lpn.regularizer, lambda v: lpn.inverse(v).y):
        with pytest.raises(Exception, match="x contains NaN"):
            jax.block_until_ready(fn(x))
    with pytest.raises(Exception, match="x contains NaN"):
        jax.block_until_ready(eqx.filter_jit(lambda m, v: m.prox(v))(lpn, x))


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match=r"trailing shape \(3,\)"):
        LPN(DENSE["softplus"]).prox(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"image shape \(1, 8, 8\)"):
        LPN(CONV).prox(jnp.zeros((2, 1, 8, 9)))
    with pytest.raises(ValueError, match="channels=1"):
        LPN(FCONV).prox(jnp.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="at least 3 trailing axes"):
        LPN(FCONV).prox(jnp.zeros((8, 8)))
    with pytest.raises(TypeError, match="floating-point"):
        LPN(DENSE["softplus"]).prox(jnp.zeros((4, 3), jnp.int32))


@pytest.mark.parametrize("c", [1.0, 0.5, 0.1, 0.02])
def test_scaled_lpn_is_the_prox_of_c_R_brute_force(c):
    """ScaledLPN(lpn, c).prox is the GLOBAL minimiser of 1/2 (z - v)^2 + c R(z): a 1D grid
    search over z (R from the inversion) agrees, and the returned c R(z) is exact."""
    lpn = LPN(DenseICNN(1, (16, 16), key=jax.random.key(14), beta=10.0, alpha=0.2))
    scaled = ScaledLPN(lpn, c)
    z = jnp.linspace(-5, 5, 4001)[:, None]
    Rz = lpn.regularizer(z)
    vs = jnp.linspace(-2.0, 2.0, 9)[:, None]
    zs, cR, w, info = scaled.solve(vs)
    assert bool(info.converged.all())
    np.testing.assert_allclose(cR, c * lpn.regularizer(zs), atol=1e-9)
    np.testing.assert_allclose(lpn.prox(w), zs, atol=1e-12)  # z = f(w)
    for v, zv, cRv in zip(vs[:, 0], zs[:, 0], cR):
        obj = 0.5 * (z[:, 0] - v) ** 2 + c * Rz
        # the grid (spacing 2.5e-3) can only do worse than the exact minimiser
        assert float(0.5 * (zv - v) ** 2 + cRv) <= float(obj.min()) + 1e-9
        assert abs(float(zv) - float(z[jnp.argmin(obj), 0])) <= 5e-3
    if c == 1.0:
        np.testing.assert_allclose(zs, lpn.prox(vs), atol=1e-12)


def test_scaled_lpn_closed_form_soft_threshold_potential():
    """psi = sum 1/2 max(|y| - 1, 0)^2 + alpha/2 y^2 (prox = soft-threshold + alpha y): the
    inner equation c w + (1 - c) f(w) = v is piecewise linear, solved in closed form."""
    alpha, c = 0.05, 0.3
    lpn = LPN(SoftThresholdPotential(alpha))
    v = jnp.linspace(-3, 3, 61)[:, None]
    k_in = c + (1 - c) * alpha  # slope of grad phi for |w| <= 1
    w_true = jnp.where(jnp.abs(v) <= k_in, v / k_in, (v + (1 - c) * jnp.sign(v)) / (1 + (1 - c) * alpha))
    z_true = jnp.sign(w_true) * jnp.maximum(jnp.abs(w_true) - 1, 0) + alpha * w_true
    z, _, w, info = ScaledLPN(lpn, c).solve(v)
    assert bool(info.converged.all())
    np.testing.assert_allclose(w, w_true, atol=1e-9)
    np.testing.assert_allclose(z, z_true, atol=1e-9)


def test_scaled_lpn_rejects_bad_weights_and_priors():
    lpn = LPN(DenseICNN(2, (8,), key=jax.random.key(0), alpha=0.5))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="weight must be in"):
            ScaledLPN(lpn, bad)
    with pytest.raises(TypeError, match="must be an LPN"):
        ScaledLPN(lambda x: x, 0.5)
    with pytest.raises(ValueError, match="alpha > 0"):
        ScaledLPN(LPN(DenseICNN(2, (8,), key=jax.random.key(0), alpha=0.0)), 0.5)
    with pytest.raises(eqx.EquinoxRuntimeError, match="v contains NaN or inf"):
        ScaledLPN(lpn, 0.5).prox(jnp.array([[jnp.nan, 0.0]]))
