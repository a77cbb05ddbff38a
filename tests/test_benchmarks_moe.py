"""Tests of benchmarks/moe.py: the point-set error measurement and a --quick smoke run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("bench_moe", ROOT / "benchmarks" / "moe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def test_rel_matches_brute_force():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 5, 4))
    pred = ref + 0.1 * rng.normal(size=ref.shape)
    mask = rng.random(ref.shape) < 0.4
    got = bench._rel(pred - ref, ref, mask)
    for s in range(3):
        m = mask[s]
        want = np.linalg.norm((pred - ref)[s][m]) / np.linalg.norm(ref[s][m])
        # Same sums in another order: round-off only.
        assert abs(got[s] - want) <= 1e-14 * want


def test_row_configs_are_valid_and_share_the_seed():
    import argparse

    base = bench.base_config(argparse.Namespace(quick=True, steps=None, seed=3))
    cfgs = {name: bench.row_config(base, over) for name, _, over, _ in bench.ROWS}
    # Every row uses the base seed except the explicit second-seed rows.
    assert {c.seed for n, c in cfgs.items() if not n.endswith("_s1")} == {3}
    assert {cfgs[n].seed for n in ("soft_s1", "hc_s1", "moe_s1")} == {1}
    assert cfgs["hc_half"].num_points == base.num_points // 2
    assert cfgs["moe_1x8_all"].num_experts == 8
    assert cfgs["moe_extrap"].t_train == 400.0
    # The main MoE row is the documented configuration; the published router is kept as a row.
    moe = cfgs["moe"]
    assert (moe.experts, moe.overlap, moe.boundary_rows) == ((1, 2), 0.9, "touching")
    pub = cfgs["moe_1x4_published"]
    assert (pub.experts, pub.overlap, pub.boundary_rows) == ((1, 4), 0.0, "all")
    for name in ("moe_s1", "moe_extrap", "moe_per_expert", "moe_all_rows", "moe_overlap0"):
        assert cfgs[name].experts == (1, 2)


@pytest.mark.parametrize("method", [pytest.param("hard", marks=pytest.mark.slow), "moe"])
def test_point_diagnostics_on_an_untrained_model(method):
    import argparse

    from pdeml.experiments import build_model, evaluate

    base = bench.base_config(argparse.Namespace(quick=True, steps=None, seed=0))
    cfg = bench.row_config(base, {"method": method, "experts": (1, 2), "overlap": 0.0})
    model = build_model(cfg, jax.random.key(0))
    rng = np.random.default_rng(1)
    u0 = jnp.asarray(rng.uniform(0.0, 1.0, (2, cfg.nx)))
    # Any reference field works for the bookkeeping: the measured sets are what is tested.
    us = jnp.asarray(rng.uniform(0.5, 1.5, (2, cfg.nx, cfg.nt)))
    d = bench.point_diagnostics(cfg, model, u0, us)
    ev, _ = evaluate(model, u0, us)
    # Same keys and same forward pass as evaluate(): identical up to round-off.
    assert abs(d["rel_l2_full"]["mean"] - ev["rel_l2_mean"]) < 1e-12
    # Points are drawn without replacement (and from disjoint blocks for the MoE): exactly m of
    # the (nx - 2) * (nt - 1) interior points are sampled.
    interior = (cfg.nx - 2) * (cfg.nt - 1)
    assert d["sampled_fraction_of_interior"] == pytest.approx(cfg.num_points / interior, abs=1e-15)
    k = 2 if method == "moe" else 1
    assert len(d["per_expert"]["iterations"]) == k
    if method == "moe":
        assert len(d["per_expert"]["rel_l2_block"]) == 2


@pytest.mark.slow
def test_quick_run_writes_tables(tmp_path):
    # Two rows of the --quick configuration end to end (compiles dominate: ~1 min on a loaded
    # 2-core CPU, hence slow).
    assert bench.main(["--quick", "--only", "hc,moe", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["partial"] and doc["rows_done"] == ["hc", "moe"]
    for r in doc["rows"]:
        assert r["points"]["check_full_vs_evaluate"] < 1e-12
        assert r["points_total"] == 40
    assert (tmp_path / "results.md").read_text().count("\n| main |") == 2
    assert (tmp_path / "errors.png").stat().st_size > 0
    assert (tmp_path / "predictions.png").stat().st_size > 0


@pytest.mark.slow
def test_moe_k_quick_run_chooses_sweeps_on_validation(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_moe_k", ROOT / "benchmarks" / "moe_k.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--experts", "1,2", "--select-sweeps", "0,1,1c", "--seeds", "0",
              "--modes", "total", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")])
    doc = json.loads((tmp_path / "out" / "moe_k.json").read_text())
    assert doc["complete"]
    sel = doc["selection"]
    assert [(r["K"], r["sweeps"], r["coarse"]) for r in sel] == [
        (2, 0, True), (2, 1, False), (2, 1, True)]
    chosen = doc["chosen_sweeps"]["2"]
    assert chosen == min(sel, key=lambda r: r["validation"])["variant"]
    got = {(r["K"], r["variant"]): r for r in doc["rows"]}
    assert set(got) == {(1, "0"), (2, "0"), (2, chosen)}
    # The selection runs are reused, not retrained, in the table.
    assert got[(2, chosen)]["test"] == next(r for r in sel if r["variant"] == chosen)["test"]
    assert all(0 < r["test"] < 10 and r["config"]["points_mode"] == "total" for r in doc["rows"])
    assert "| total | 2 |" in (tmp_path / "out" / "moe_k.md").read_text()
    assert (tmp_path / "out" / "moe_k.png").stat().st_size > 0
    with pytest.raises(ValueError, match="bad Schwarz variant"):
        mod.parse_variant("0c")
