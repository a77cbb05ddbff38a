"""The ICNN core (pdeml.nets.icnn): the leaf order that saved models depend on, the shared hidden
path against hand-written formulas, the shared initialisation, data-dependent bias centring on
every ICNN, and QuadraticICNN's place in pdeml.nets."""

import ast
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdeml.inverse
import pdeml.nets
from pdeml.nets import AbstractICNN, ConvICNN, DenseICNN, FullyConvICNN, QuadraticICNN
from pdeml.nets import center_icnn_biases, scaled_softplus

ROOT = Path(__file__).resolve().parents[1]


def _conv(x, w, stride):
    y = jax.lax.conv_general_dilated(x[None], w, (stride, stride), "SAME",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y[0]


def _leaf_names(model):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(model)[0]]


def _expected(n_layers, extra=()):
    hidden = [f".{name}[{i}]" for name in ("Wz", "Ax", "bz") for i in range(n_layers - 1)]
    return [".W0", ".b0", *hidden, ".w_out", ".a_out", *extra]


def test_leaf_order_is_the_saved_file_format():
    """Saved LPNs, checkpoints and the shipped priors store the leaves in this order."""
    dense = DenseICNN(3, (4, 5, 6), key=jax.random.key(0))
    conv = ConvICNN((1, 8, 8), (2, 3), (1, 2), key=jax.random.key(0))
    full = FullyConvICNN(2, (3, 3, 3), key=jax.random.key(0))
    assert _leaf_names(dense) == _expected(3, [".c_out"])
    assert _leaf_names(conv) == _expected(2, [".c_out"])
    assert _leaf_names(full) == _expected(3)
    quad = QuadraticICNN(full, jnp.zeros((2, 2, 3, 3)))
    assert _leaf_names(quad) == [".icnn" + n for n in _expected(3)] + [".Q"]
    assert [a.shape for a in jax.tree.leaves(conv)] == [
        (2, 1, 3, 3), (2, 1, 1), (3, 2, 3, 3), (3, 1, 3, 3), (3, 1, 1), (3 * 4 * 4,), (1, 8, 8), ()]


def test_the_three_potentials_share_the_core():
    for cls in (DenseICNN, ConvICNN, FullyConvICNN):
        assert issubclass(cls, AbstractICNN)
    with pytest.raises(TypeError):
        AbstractICNN()
    conv = ConvICNN((1, 8, 8), (2,), (1,), key=jax.random.key(0))
    assert conv.K0 is conv.W0
    moved = eqx.tree_at(lambda m: m.K0, conv, jnp.ones_like(conv.K0))
    assert float(moved.W0.min()) == 1.0


@pytest.mark.parametrize("mode", ["softplus", "project"])
def test_dense_matches_the_written_out_formula(mode):
    psi = DenseICNN(3, (5, 4, 6), key=jax.random.key(3), beta=7.0, alpha=0.3, nonnegativity=mode)
    x = jax.random.normal(jax.random.key(4), (3,))
    eff = (lambda w: jax.nn.softplus(w)) if mode == "softplus" else (lambda w: w)
    act = lambda t: jax.nn.softplus(7.0 * t) / 7.0  # noqa: E731
    z = act(psi.W0 @ x + psi.b0)
    for W, A, b in zip(psi.Wz, psi.Ax, psi.bz):
        z = act(eff(W) @ z + A @ x + b)
    want = eff(psi.w_out) @ z + psi.a_out @ x + psi.c_out + 0.15 * x @ x
    np.testing.assert_allclose(psi(x), want, rtol=1e-6)
    np.testing.assert_allclose(psi.hidden(x), z, rtol=1e-6)


def test_strided_conv_skips_downsample_by_the_total_stride():
    psi = ConvICNN((2, 9, 7), (3, 4, 2), (1, 2, 2), key=jax.random.key(5), beta=20.0, alpha=0.2)
    x = jax.random.normal(jax.random.key(6), (2, 9, 7))
    act = lambda t: scaled_softplus(t, 20.0)  # noqa: E731
    z = act(_conv(x, psi.W0, 1) + psi.b0)
    z = act(_conv(z, jax.nn.softplus(psi.Wz[0]), 2) + _conv(x, psi.Ax[0], 2) + psi.bz[0])
    z = act(_conv(z, jax.nn.softplus(psi.Wz[1]), 2) + _conv(x, psi.Ax[1], 4) + psi.bz[1])
    assert z.shape == (2, 3, 2)
    np.testing.assert_allclose(psi.hidden(x), z, rtol=1e-6)
    want = jax.nn.softplus(psi.w_out) @ z.reshape(-1) + jnp.vdot(psi.a_out, x) + 0.1 * jnp.vdot(x, x)
    np.testing.assert_allclose(psi(x), want, rtol=1e-6)


def test_initialisation_is_shared():
    """Same key and widths: DenseICNN and the convolutional classes draw their hidden-path
    weights the same way (a 1x1 kernel is a matrix); both modes have the same effective weights."""
    dense = DenseICNN(2, (3, 4), key=jax.random.key(7), nonnegativity="project")
    full = FullyConvICNN(2, (3, 4), key=jax.random.key(7), kernel_size=1, nonnegativity="project")
    np.testing.assert_array_equal(dense.W0, full.W0[:, :, 0, 0])
    np.testing.assert_array_equal(dense.Wz[0], full.Wz[0][:, :, 0, 0])
    np.testing.assert_array_equal(dense.Ax[0], full.Ax[0][:, :, 0, 0])
    np.testing.assert_array_equal(dense.w_out, full.w_out)
    assert float(jnp.abs(full.b0).max()) == 0.0 and float(jnp.abs(dense.b0).max()) > 0.0
    soft = FullyConvICNN(2, (3, 4), key=jax.random.key(7), kernel_size=1)
    np.testing.assert_allclose(jax.nn.softplus(soft.Wz[0]), full.Wz[0], rtol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        ConvICNN((1, 8, 8), (4, 0), (1, 1), key=jax.random.key(0))


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_center_icnn_biases_on_every_icnn(kind):
    rng = np.random.default_rng(8)
    if kind == "dense":
        icnn = DenseICNN(3, (6, 6, 6), key=jax.random.key(9), alpha=0.1)
        x = jnp.asarray(rng.normal(size=(101, 3)))
    else:
        icnn = ConvICNN((1, 8, 8), (3, 3, 3), (1, 2, 2), key=jax.random.key(9), alpha=0.1)
        x = jnp.asarray(rng.uniform(size=(9, 1, 8, 8)))
    c = center_icnn_biases(icnn, x)
    z = None
    for layer, b in enumerate((c.b0, *c.bz)):
        pre = jax.vmap(lambda zz, v, k=layer: c.pre_activation(k, zz, v))(z, x) + b[None]
        axes = (0, *range(2, pre.ndim))
        count = pre[:, 0].size
        np.testing.assert_allclose(jnp.mean(pre > 0, axis=axes), 0.5, atol=1.5 / count)
        z = scaled_softplus(pre, c.beta)
    assert _leaf_names(c) == _leaf_names(icnn)
    with pytest.raises(ValueError, match="shape"):
        center_icnn_biases(icnn, x[0])


def test_quadratic_icnn_lives_in_nets_and_is_reexported():
    assert pdeml.inverse.QuadraticICNN is pdeml.nets.QuadraticICNN
    assert pdeml.inverse.center_icnn_biases is pdeml.nets.center_icnn_biases
    phi = FullyConvICNN(1, (3,), key=jax.random.key(10), alpha=0.2, nonnegativity="project")
    psi = QuadraticICNN(phi, jnp.ones((1, 1, 1, 1)))
    assert (psi.alpha, psi.channels, psi.nonnegativity, psi.event_ndim) == (0.2, 1, "project", 3)
    x = jnp.full((1, 4, 5), 0.5)
    np.testing.assert_allclose(psi(x), phi(x) + 0.5 * jnp.vdot(x, x), rtol=1e-6)


def test_no_private_name_of_nets_is_imported_elsewhere():
    """Other subpackages and the benchmarks use pdeml.nets through its public names."""
    offenders = []
    for path in [*(ROOT / "pdeml").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.is_relative_to(ROOT / "pdeml" / "nets"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pdeml.nets"):
                offenders += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names
                              if a.name.startswith("_")]
    assert offenders == []
