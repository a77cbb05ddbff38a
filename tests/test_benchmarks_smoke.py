"""Smoke test of benchmarks/constraint_layer.py: its smallest case runs and its record is sound."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("jaxopt")
pytest.importorskip("optimistix")

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "constraint_layer.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("constraint_layer_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraint_layer_smallest_case():
    bench = load_benchmark()
    setup = bench.make_setup(*bench.SMOKE_GRID)
    rec = bench.run_case(setup, 100, 8, modes=("fwd",), repeats=1)
    rec = json.loads(json.dumps(rec))  # the record must be JSON-serialisable as written

    assert (rec["m"], rec["n"], rec["start"]) == (100, 8, "warm")
    assert set(rec["results"]) == set(bench.BACKENDS)
    for backend, res in rec["results"].items():
        fwd = res["fwd"]
        for field in ("compile_s", "median_s", "times_s", "iterations", "converged", "memory",
                      "seconds_per_iteration", "residual_norm"):
            assert field in fwd, (backend, field)
        assert fwd["converged"], backend
        assert 1 <= fwd["iterations"] <= rec["max_steps"]
        assert fwd["median_s"] > 0 and len(fwd["times_s"]) == fwd["repeats"] == 1
        # The compiled allocation holds at least the (64, 11, 8) float64 basis argument.
        assert fwd["memory"]["total_allocation_bytes"] >= 64 * 11 * 8 * 8
        assert rec["ratios"][backend]["fwd"] == pytest.approx(
            fwd["median_s"] / rec["results"]["native"]["fwd"]["median_s"])
    assert rec["ratios"]["native"]["fwd"] == 1.0
    # All back ends stop at the same minimiser up to their stopping tests: native and
    # optimistix at a relative step of xtol = sqrt(eps) ~ 1.5e-8, jaxopt at a gradient norm
    # of xtol * ||J^T r(w0)||, which leaves w (and u) accurate to ~1e-7 relative on this
    # well-conditioned problem. 1e-6 is a margin of 10 over the loosest.
    for backend in ("jaxopt", "optimistix"):
        assert rec["agreement"][backend]["u_max_abs_diff_rel"] < 1e-6, backend
    # The warm-started solve lands near the reference solution that spans part of the basis
    # (not exactly on it: the FD residual of the BDF2 solution is small but non-zero).
    assert rec["agreement"]["native_vs_reference_rel_l2"] < 1e-2
    assert np.isfinite(rec["results"]["native"]["fwd"]["condition_number"])


def load_moe_scaling():
    import sys

    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("moe_scaling_benchmark",
                                                  BENCH.parent / "moe_scaling.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_moe_scaling_points_part_smallest_case():
    bench = load_moe_scaling()
    (rec,) = json.loads(json.dumps(bench.points_part((200,), 1, 3, nx=64, nt=11, n=8)))
    assert rec["m_total"] == 200
    assert rec["results"]["hc"]["points_per_solve"] == 200
    assert rec["results"]["moe"]["points_per_solve"] == 50
    assert len(rec["results"]["moe"]["iterations"]) == 4  # K = 4 experts along x
    for name in ("hc", "moe"):
        for mode in ("inference", "training"):
            r = rec["results"][name][mode]
            assert r["median_s"] > 0 and r["memory"]["total_allocation_bytes"] >= 64 * 11 * 8 * 8
        assert rec["ratio_moe_over_hc"]["training"] == pytest.approx(
            rec["results"]["moe"]["training"]["median_s"] / rec["results"]["hc"]["training"]["median_s"])


def test_moe_scaling_experts_part_smallest_case():
    recs = json.loads(json.dumps(load_moe_scaling().experts_part((1, 2), (0, 2), 200, 1, 3,
                                                                 nx=64, nt=11, n=8)))
    assert [(r["K"], r["sweeps"], r["points_per_expert"]) for r in recs] == [
        (1, 0, 200), (2, 0, 100), (2, 2, 100)]
    assert recs[0]["ratio_to_k1"] == {"inference": 1.0, "training": 1.0}
    for r in recs:
        for mode in ("inference", "training"):
            assert r[mode]["median_s"] > 0
            assert r["ratio_to_k1"][mode] == pytest.approx(
                r[mode]["median_s"] / recs[0][mode]["median_s"])


def test_benchmark_outputs_are_checksummed_and_never_overwrite_a_foreign_file(tmp_path):
    # benchmarks/_common writes every result through pdeml.core.io.write_protected: atomic,
    # with a .sha256 sidecar; a rerun replaces its own output, a file pdeml did not write is
    # refused (kept byte for byte), and a damaged result is detected on read.
    from pdeml.core.io import ChecksumError

    bench = load_benchmark()  # puts benchmarks/ on sys.path
    import _common

    out = tmp_path / "results.json"
    _common.write_json(out, {"a": 1})
    assert (tmp_path / "results.json.sha256").is_file()
    _common.write_json(out, {"a": 2})  # a rerun of the benchmark replaces its own output
    assert _common.read_json(out) == {"a": 2}
    out.write_text('{"a": 3}')  # damaged or edited behind the sidecar's back
    with pytest.raises(ChecksumError, match="results.json"):
        _common.read_json(out)
    foreign = tmp_path / "mine.md"
    foreign.write_text("a user's notes\n")
    with pytest.raises(FileExistsError, match="mine.md"):
        _common.write_text(foreign, "table\n")
    assert foreign.read_text() == "a user's notes\n"
    assert bench.DEFAULT_OUT  # the module loaded
