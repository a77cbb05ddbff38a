"""Metrics, phantoms, denoisers and the CLI of pdeml.inverse."""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.inverse import CNNDenoiser, count_parameters, psnr, shepp_logan, ssim


def test_psnr_and_ssim_against_definitions_and_skimage():
    ref = jax.random.uniform(jax.random.key(0), (2, 1, 24, 24))
    x = ref + 0.05 * jax.random.normal(jax.random.key(1), ref.shape)
    mse = jnp.mean((x - ref) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(psnr(x, ref), 10 * jnp.log10(1 / mse), rtol=1e-12)
    metrics = pytest.importorskip("skimage.metrics")
    s = ssim(x, ref)
    assert s.shape == (2, 1)
    for i in range(2):
        expect = metrics.structural_similarity(
            np.asarray(x[i, 0]), np.asarray(ref[i, 0]), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0)
        assert float(s[i, 0]) == pytest.approx(expect, abs=1e-10)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, ref[0])


def test_shepp_logan_values():
    p = shepp_logan(64)
    assert p.shape == (64, 64) and p.min() >= 0 and p.max() <= 1
    # centre pixel lies inside ellipses 1 and 2 only (plus ellipse 6 at y = 0.1 with radius
    # 0.046 does not reach y = 0): 1 - 0.8 = 0.2
    assert shepp_logan(65, supersample=1)[32, 32] == pytest.approx(0.2)


def test_cnn_denoiser_interface():
    d = CNNDenoiser(1, 4, 3, key=jax.random.key(0))
    x = jnp.zeros((2, 3, 1, 10, 12))
    assert d.prox(x).shape == x.shape
    assert count_parameters(d) == (4 * 9 + 4) + (4 * 4 * 9 + 4) + (4 * 9 + 1)
    with pytest.raises(ValueError, match="channels"):
        d.prox(jnp.zeros((2, 10, 12)))
    with pytest.raises(Exception, match="NaN"):
        d.prox(jnp.full((1, 1, 5, 5), jnp.nan))


@pytest.mark.slow
def test_cli_tikhonov_and_tv(capsys):
    from pdeml.cli import inverse

    parser = argparse.ArgumentParser()
    inverse.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inverse", "ct", "--size", "16", "--angles", "6", "--method", "tikhonov",
                              "--lam", "0.01", "--json"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert '"psnr"' in out
    from pdeml.cli import CLIError

    args = parser.parse_args(["inverse", "deblur", "--method", "lpn", "--size", "16"])
    with pytest.raises(CLIError, match="model-dir"):
        args.func(args)


def test_cli_lpn_map_accepts_any_rho_and_matches_the_library(tmp_path, capsys):
    """``--method lpn-map`` runs at rho = 0.2 ||A^T A|| (which ``--method lpn`` refuses) and
    prints what :func:`pdeml.inverse.lpn_map` returns for the same problem."""
    import json

    from pdeml.cli import CLIError, inverse
    from pdeml.inverse import Radon, lpn_map, measure, shepp_logan
    from pdeml.prox.analysis import build_lpn, save_lpn

    cfg = {"kind": "fully_conv", "channels": 1, "hidden": [4, 4], "alpha": 0.3, "seed": 3}
    save_lpn(tmp_path, build_lpn(cfg), {"model": cfg})
    parser = argparse.ArgumentParser()
    inverse.register(parser.add_subparsers(dest="command"))
    common = ["--size", "16", "--angles", "6", "--model-dir", str(tmp_path), "--rho-factor", "0.2",
              "--iters", "40"]
    args = parser.parse_args(["inverse", "ct", "--method", "lpn", *common])
    with pytest.raises(CLIError, match="convergence conditions violated"):
        args.func(args)
    args = parser.parse_args(["inverse", "ct", "--method", "lpn-map", "--json", *common])
    assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out)
    lpn = build_lpn(cfg)
    x = jnp.asarray(shepp_logan(16))[None, None]
    op = Radon((1, 16, 16), 6)
    y = measure(op, x, 0.01, key=jax.random.key(1))
    res = lpn_map(op, lpn, y, 0.2 * float(op.normest()), max_steps=40, rtol=1e-5)
    assert info["iterations"] == int(res.iterations) > 0
    np.testing.assert_allclose(info["psnr"], float(psnr(res.x, x)[0, 0]), rtol=1e-9)


def test_matched_cnn_is_the_widest_within_the_budget():
    """Brute force over widths: the bisection returns the largest width whose CNN has at most
    the LPN's parameter count."""
    from pdeml.inverse import CNNDenoiser, count_parameters, matched_cnn, near_identity_lpn

    lpn = near_identity_lpn(1, (6, 6), key=jax.random.key(0))
    budget = count_parameters(lpn)
    cnn = matched_cnn(lpn, depth=3, key=jax.random.key(1))
    w = cnn.layers[0].out_channels
    size = lambda k: count_parameters(CNNDenoiser(1, k, 3, key=jax.random.key(0)))  # noqa: E731
    assert count_parameters(cnn) == size(w) <= budget < size(w + 1)
