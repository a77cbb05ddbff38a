"""The near-identity LPN potential: exact quadratic term (brute-force correlation), strong
convexity, start near the identity, invertibility of its prox, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdeml.inverse import QuadraticICNN, near_identity_lpn
from pdeml.nets.icnn import FullyConvICNN

SHAPE = (1, 6, 7)  # one small image shape for every test: one compilation each
# compiled once per test session (the arrays vary, the shapes and static fields do not)
_call = eqx.filter_jit(lambda m, x: m(x))
_prox = eqx.filter_jit(lambda m, x: m.prox(x))


def _lpn(alpha=0.05, seed=0):
    return near_identity_lpn(1, (4, 4), key=jax.random.key(seed), alpha=alpha, quadratic_channels=3)


def _correlate_same(x, q):
    """Zero-padded 'same' cross-correlation of one (H, W) image with a (k, k) kernel, by loops."""
    k = q.shape[0]
    r = k // 2
    H, W = x.shape
    xp = np.pad(x, r)
    return np.array([[np.sum(xp[i : i + k, j : j + k] * q) for j in range(W)] for i in range(H)])


@settings(max_examples=5)
@given(seed=st.integers(0, 2**31 - 1))
def test_quadratic_term_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    icnn = FullyConvICNN(1, (3,), key=jax.random.key(1), alpha=0.1)
    Q = rng.normal(size=(2, 1, 3, 3))
    x = rng.normal(size=SHAPE)
    psi = QuadraticICNN(icnn, jnp.asarray(Q))
    quad = 0.5 * sum(np.sum(_correlate_same(x[0], Q[m, 0]) ** 2) for m in range(2))
    # float64 throughout: round-off only
    diff = _call(psi, jnp.asarray(x)) - _call(icnn, jnp.asarray(x))
    np.testing.assert_allclose(float(diff), quad, rtol=1e-12)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 3.0))
def test_potential_is_alpha_strongly_convex(seed, scale):
    rng = np.random.default_rng(seed)
    # random Q of any sign: the quadratic part must stay convex
    psi = QuadraticICNN(_lpn().potential.icnn, jnp.asarray(scale * rng.normal(size=(3, 1, 3, 3))))
    a, b = (jnp.asarray(rng.uniform(-1, 1, SHAPE)) for _ in range(2))
    gap = _call(psi, a) + _call(psi, b) - 2 * _call(psi, (a + b) / 2)
    # midpoint strong convexity: gap >= alpha / 4 ||a - b||^2 (minus float64 round-off)
    assert float(gap) >= 0.05 / 4 * float(jnp.sum((a - b) ** 2)) - 1e-9


def test_starts_near_the_identity():
    x = jax.random.uniform(jax.random.key(3), (2, *SHAPE))
    # alpha x + Q_0^T Q_0 x = x exactly; the rest: small random Q channels (std 0.01) and the
    # ICNN read-out scaled by readout_scale (measured max deviation on [0, 1] images: 0.068 at
    # the default 0.1), so the deviation shrinks with the scale
    devs = []
    for scale in (0.1, 0.01):
        lpn = near_identity_lpn(1, (4, 4), key=jax.random.key(0), quadratic_channels=3,
                                readout_scale=scale)
        devs.append(float(jnp.max(jnp.abs(_prox(lpn, x) - x))))
    assert devs[0] < 0.1 and devs[1] < 0.3 * devs[0]
    # the plain ICNN with the same alpha is far from the identity (what this class fixes)
    from pdeml.prox import LPN

    plain = LPN(FullyConvICNN(1, (4, 4), key=jax.random.key(0), alpha=0.05))
    assert float(jnp.max(jnp.abs(_prox(plain, x) - x))) > 0.2


@pytest.mark.slow
def test_prox_is_invertible():
    lpn = _lpn()
    x = jax.random.uniform(jax.random.key(4), SHAPE)
    inv = eqx.filter_jit(lambda m, v: m.inverse(m.prox(v), atol=1e-10))(lpn, x)
    assert bool(inv.converged)
    np.testing.assert_allclose(np.asarray(inv.y), np.asarray(x), atol=1e-7)


def test_bad_input():
    icnn = FullyConvICNN(1, (3,), key=jax.random.key(1))
    with pytest.raises(ValueError, match="Q must have shape"):
        QuadraticICNN(icnn, jnp.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="Q must have shape"):
        QuadraticICNN(icnn, jnp.zeros((2, 1, 2, 2)))
    with pytest.raises(TypeError, match="FullyConvICNN"):
        QuadraticICNN(object(), jnp.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        near_identity_lpn(1, (4,), key=jax.random.key(0), alpha=1.0)
    with pytest.raises(ValueError, match="quadratic_channels"):
        near_identity_lpn(2, (4,), key=jax.random.key(0), quadratic_channels=1)
    with pytest.raises(ValueError, match="channels"):
        _lpn().prox(jnp.zeros((2, 6, 7)))


def test_load_round_trip(tmp_path):
    import json

    from pdeml.inverse import load_near_identity_lpn

    want = {"kind": "QuadraticICNN(FullyConvICNN)", "hidden": [4, 4], "alpha": 0.05,
            "beta": 100.0, "quadratic_channels": 3, "seed": 5}
    lpn = near_identity_lpn(1, (4, 4), key=jax.random.key(5), alpha=0.05, quadratic_channels=3,
                            dtype=jnp.float64)
    lpn = eqx.tree_at(lambda m: m.potential.Q, lpn, lpn.potential.Q + 0.5)  # "trained"
    eqx.tree_serialise_leaves(tmp_path / "model.eqx", lpn)
    (tmp_path / "config.json").write_text(json.dumps({"want": want}))
    back, config = load_near_identity_lpn(tmp_path, dtype=jnp.float64)
    assert config["want"] == want
    np.testing.assert_array_equal(np.asarray(back.potential.Q), np.asarray(lpn.potential.Q))
    (tmp_path / "config.json").write_text(json.dumps({"want": {"kind": "other"}}))
    with pytest.raises(ValueError, match="near-identity"):
        load_near_identity_lpn(tmp_path)


def test_projected_weights_stay_nonnegative_through_the_wrapper():
    """Regression: the optimiser wrapper must find a "project" ICNN inside QuadraticICNN (it
    used to see no ``nonnegativity`` on the wrapper and skip the projection, training a
    non-convex potential). A large SGD step against the gradient sign would push every
    constrained weight below zero; after the projection none is."""
    import optax

    from pdeml.nets.icnn import icnn_optimizer

    lpn = near_identity_lpn(1, (4, 4), key=jax.random.key(0), nonnegativity="project")
    assert lpn.potential.nonnegativity == "project"
    params = eqx.filter(lpn, eqx.is_inexact_array)
    opt = icnn_optimizer(optax.sgd(10.0), lpn)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = eqx.apply_updates(lpn, updates)
    constrained = jax.tree.leaves(new.potential._constrained())
    assert len(constrained) == 2 and all(float(w.min()) >= 0.0 for w in constrained)
    # the free parameters did move (the step was applied, only the projection clipped)
    assert float(jnp.max(jnp.abs(new.potential.Q - lpn.potential.Q))) > 1.0


def test_center_icnn_biases_halves_every_unit_and_keeps_convexity():
    from pdeml.inverse import center_icnn_biases
    from pdeml.nets.icnn import _conv, scaled_softplus

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(0, 1, (16, *SHAPE)))
    for mode in ("project", "softplus"):
        icnn = FullyConvICNN(1, (5, 5, 5), key=jax.random.key(2), alpha=0.05, nonnegativity=mode)
        c = center_icnn_biases(icnn, x)
        # brute force: recompute every layer's pre-activations and count the positive ones
        z = None
        layers = [(c.K0, None, None, c.b0)] + list(zip([None] * 2, c.Wz, c.Ax, c.bz))
        for K0, W, A, b in layers:
            if K0 is not None:
                pre = jax.vmap(lambda v: _conv(v, K0, 1))(x) + b[None]
            else:
                We = jax.nn.softplus(W) if mode == "softplus" else W
                pre = jax.vmap(lambda zz, v: _conv(zz, We, 1) + _conv(v, A, 1))(z, x) + b[None]
            frac = np.asarray(jnp.mean(pre > 0, axis=(0, 2, 3)))
            np.testing.assert_allclose(frac, 0.5, atol=2 / pre[:, 0].size)  # ties at the median
            z = scaled_softplus(pre, c.beta)
        a, b2 = (jnp.asarray(rng.uniform(-1, 1, SHAPE)) for _ in range(2))
        gap = _call(c, a) + _call(c, b2) - 2 * _call(c, (a + b2) / 2)
        assert float(gap) >= 0.05 / 4 * float(jnp.sum((a - b2) ** 2)) - 1e-9
    with pytest.raises(ValueError, match="shape"):
        center_icnn_biases(icnn, x[:, 0])
    with pytest.raises(TypeError, match="FullyConvICNN"):
        center_icnn_biases(QuadraticICNN(icnn, jnp.zeros((1, 1, 3, 3))), x)
