"""The pretrained priors shipped in the package: loadable by name, checksummed, useful."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pdeml.inverse.pretrained_priors as pp
from pdeml.inverse import available_priors, psnr, pretrained, pretrained_info, random_ellipses
from pdeml.prox import LPN


def test_every_manifest_entry_loads_and_documents_itself():
    names = available_priors()
    assert {"lpn_j_natural", "lpn_j_ct", "lpn_j_ct_sigma0.02"} <= set(names)
    for name in names:
        info = pretrained_info(name)
        assert info["training"]["noise_sigma"] > 0 and info["measured"]["tasks"]
        assert set(info["sha256"]) == {"model.eqx", "config.json"}
        lpn = pretrained(name)
        assert isinstance(lpn, LPN)
        leaves = [a for a in jax.tree.leaves(lpn) if hasattr(a, "dtype")]
        assert leaves and all(a.dtype == jnp.float32 for a in leaves if a.dtype.kind == "f")


def test_the_ct_prior_denoises_phantoms():
    """On held-out phantoms at its training noise the prior gains PSNR over the noisy input."""
    clean = jnp.asarray(random_ellipses(32, 4, seed=5)[:, None], jnp.float32)
    noisy = clean + 0.02 * jax.random.normal(jax.random.key(0), clean.shape, clean.dtype)
    den = pretrained("lpn_j_ct_sigma0.02").prox(noisy)
    gain = float(psnr(den, clean).mean() - psnr(noisy, clean).mean())
    assert gain > 1.0, gain


def test_a_damaged_file_is_refused(monkeypatch):
    bad = {n: dict(e) for n, e in pp._manifest().items()}
    bad["lpn_j_ct"]["sha256"] = dict(bad["lpn_j_ct"]["sha256"], **{"model.eqx": "0" * 64})
    monkeypatch.setattr(pp, "_manifest", lambda: bad)
    with pytest.raises(ValueError, match="model.eqx is damaged"):
        pretrained("lpn_j_ct")
    pretrained("lpn_j_natural")  # the others still load


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: lpn_j_ct"):
        pretrained("mnist")


def test_manifest_matches_the_benchmark_results():
    """The published files are what benchmarks/publish_results.py builds from the results."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "publish_results.py"
    spec = importlib.util.spec_from_file_location("publish_results", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not (mod.RESULTS / "inverse" / "inverse.json").exists():
        pytest.skip("benchmark results not in this checkout")
    assert mod.publish_priors(check=True) == []
    np.testing.assert_equal(pretrained_info("lpn_j_ct")["measured"]["image_size"], 32)
