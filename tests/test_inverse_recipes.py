"""pdeml.inverse.recipes: prior recipes train reproducibly, the cache of trained priors is atomic
and checksummed, the validation selection picks the best candidate."""

import json
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.core.io import ChecksumError, sidecar_path
from pdeml.inverse import GaussianBlur, measure, psnr, tikhonov
from pdeml.inverse.recipes import (
    PriorCache,
    PriorRecipe,
    ct_training_patches,
    prior_set,
    rho_grid,
    select_on_validation,
)

TINY = PriorRecipe(hidden=(4,), patch=8, batch=4, l2_steps=3, pm_stage_steps=2,
                   gamma_multiples=(2, 1), cnn_steps=3, probes=2)
STORED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "inverse" / "priors"


def _patches(n=12, size=8):
    return np.random.default_rng(0).uniform(size=(n, 1, size, size))


def _leaves(model):
    return [np.asarray(a) for a in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def _assert_same_bits(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8))


def test_recipe_trains_the_same_bits_twice():
    patches = _patches()
    first = TINY.train_pm(TINY.train_l2(patches, 0.05), patches, 0.05)
    second = TINY.train_pm(TINY.train_l2(patches, 0.05), patches, 0.05)
    _assert_same_bits(first, second)
    assert not all(np.array_equal(x, y) for x, y in zip(_leaves(first), _leaves(TINY.skeleton(patches, 0.05))))


def test_recipe_schedule_and_keys():
    assert TINY.gammas(0.05) == pytest.approx([2 * 0.05 * 8, 0.05 * 8])
    stages = TINY.pm_schedule(0.05).stages
    assert [s.steps for s in stages] == [2, 2]
    key = TINY.lpn_j_key(0.05, 12)
    assert key["probe_sigma"] == [0.05, 0.75] and key["l2_steps"] == 3 and "train_sigma" not in key
    assert PriorRecipe(train_sigma=(0.01, 0.05)).l2_key(0.02, 5)["train_sigma"] == [0.01, 0.05]


def test_ct_patches_drop_empty_background():
    p = ct_training_patches(16, 2, 8)
    assert p.shape[1:] == (1, 8, 8) and np.all(p.std(axis=(1, 2, 3)) > 0.01)


def test_cache_round_trip_writes_checksums_atomically(tmp_path):
    cache = PriorCache(tmp_path)
    model = TINY.skeleton(_patches(), 0.05)
    cache.save("lpn", model, {"want": {"a": 1}, "train_seconds": 1.0})
    entry = tmp_path / "lpn"
    names = sorted(p.name for p in entry.iterdir())
    assert names == ["config.json", "config.json.sha256", "model.eqx", "model.eqx.sha256"]
    loaded, config = cache.load("lpn", {"a": 1}, TINY.skeleton())
    _assert_same_bits(model, loaded)
    assert config["train_seconds"] == 1.0
    assert cache.load("lpn", {"a": 2}, TINY.skeleton()) is None
    assert cache.load("absent", {"a": 1}, TINY.skeleton()) is None


def test_cache_keeps_the_old_entry_when_a_write_fails(tmp_path, monkeypatch):
    cache = PriorCache(tmp_path)
    cache.save("w", jnp.arange(3.0), {"want": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("pdeml.inverse.recipes.write_json", fail)
    with pytest.raises(OSError, match="disk full"):
        cache.save("w", jnp.arange(4.0) * 2, {"want": 2})
    monkeypatch.undo()
    # no temporary files left; the model was replaced but its configuration was not: a miss
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted(before)
    assert cache.load("w", 1, jnp.zeros(3)) is None
    cache.save("w", jnp.arange(3.0), {"want": 1})  # ours: may be overwritten
    assert cache.load("w", 1, jnp.zeros(3))[0].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("target", ["model.eqx", "config.json"])
def test_cache_detects_corruption(tmp_path, target):
    cache = PriorCache(tmp_path)
    cache.save("w", jnp.arange(3.0), {"want": 1})
    path = tmp_path / "w" / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="corrupt"):
        cache.load("w", 1, jnp.zeros(3))


def test_cache_refuses_to_overwrite_foreign_files(tmp_path):
    entry = tmp_path / "w"
    entry.mkdir()
    (entry / "model.eqx").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        PriorCache(tmp_path).save("w", jnp.arange(3.0), {"want": 1})
    assert (entry / "model.eqx").read_bytes() == b"someone else's"


def test_cache_reads_entries_without_checksums_and_adopts_them(tmp_path):
    entry = tmp_path / "old"
    entry.mkdir()
    eqx.tree_serialise_leaves(entry / "model.eqx", jnp.arange(3.0))
    (entry / "config.json").write_text(json.dumps({"want": 1, "train_seconds": 2.0}))
    cache = PriorCache(tmp_path)
    with pytest.warns(UserWarning, match="adopt"):
        model, _ = cache.load("old", 1, jnp.zeros(3))
    assert model.tolist() == [0.0, 1.0, 2.0]
    cache.adopt("old")
    assert sidecar_path(entry / "model.eqx").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load("old", 1, jnp.zeros(3))[0].tolist() == [0.0, 1.0, 2.0]


def test_cache_get_trains_once(tmp_path):
    cache, calls = PriorCache(tmp_path), []

    def train():
        calls.append(1)
        return jnp.arange(2.0)

    for _ in range(2):
        model, config = cache.get("w", {"k": 1}, jnp.zeros(2), train, log=lambda m: None)
    assert len(calls) == 1 and model.tolist() == [0.0, 1.0] and config["want"] == {"k": 1}


def test_select_on_validation_matches_brute_force():
    truth = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 1, 8, 8)), jnp.float32)
    op = GaussianBlur((1, 8, 8), 1.0)
    y = measure(op, truth, 0.05, key=jax.random.key(0))
    lams = rho_grid(1.0, (1e-4, 1e-3, 1e-2, 1e-1, 1.0))
    best, scores = select_on_validation(lams, lambda lam: tikhonov(op, y, lam), truth)
    brute = [float(psnr(tikhonov(op, y, lam), truth).mean()) for lam in lams]
    assert scores == brute and best == int(np.argmax(brute))
    assert select_on_validation([1.0], lambda c: 1 / 0, truth) == (0, [])
    nan_first = select_on_validation([0, 1], lambda c: truth * (jnp.nan if c == 0 else 0.9), truth)
    assert nan_first[0] == 1


@pytest.mark.slow  # ~20 s on a loaded 2-core CPU: trains all five tiny priors, two noise levels
def test_prior_set_trains_and_then_reuses_the_cache(tmp_path):
    patches, log = _patches(), []
    first = prior_set(PriorCache(tmp_path), "d", patches, TINY, 0.05, map_sigma=0.1, log=log.append)
    again = prior_set(PriorCache(tmp_path), "d", patches, TINY, 0.05, map_sigma=0.1, log=log.append)
    assert sum(m.startswith("trained") for m in log) == 5
    assert sum(m.startswith("reusing") for m in log) == 5
    for k in ("lpn_l2", "lpn", "lpn_j", "lpn_j_map", "cnn"):
        _assert_same_bits(first[k], again[k])
    assert (tmp_path / "lpn_j_d_sigma0.1" / "model.eqx").is_file()


@pytest.mark.skipif(not STORED.is_dir(), reason="benchmark results not in this checkout")
def test_the_stored_benchmark_priors_match_the_recipe_and_load():
    """The default recipe's cache keys are those the stored priors were trained with."""
    recipe = PriorRecipe()
    cache = PriorCache(STORED)
    for domain, sigma in (("natural", 0.02), ("ct", 0.004)):
        n = json.loads((STORED / f"lpn_l2_{domain}" / "config.json").read_text())["want"]["n_patches"]
        lpn, _ = cache.load(f"lpn_pm_{domain}", recipe.pm_key(sigma, n), recipe.skeleton())
        for name, key in ((f"lpn_l2_{domain}", recipe.l2_key(sigma, n)),
                          (f"lpn_j_{domain}", recipe.lpn_j_key(sigma, n))):
            assert cache.load(name, key, recipe.skeleton()) is not None, name
        cnn = recipe.cnn_skeleton(lpn)
        assert cache.load(f"cnn_{domain}", recipe.cnn_key(cnn, sigma, n), cnn, field="cnn") is not None
    assert cache.load("lpn_j_ct_sigma0.02", recipe.lpn_j_key(0.02, n), recipe.skeleton()) is not None
