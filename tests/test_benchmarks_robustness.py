"""Smoke test of benchmarks/solver_robustness.py: the --quick run writes a sound record.

The benchmark runs in a subprocess: it switches precisions with ``jax.enable_x64`` contexts,
and a subprocess keeps this test independent of the suite's global x64 setting either way.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("optimistix")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "solver_robustness.py"

CASE_FIELDS = ("problem", "m", "n", "precision", "start", "backend", "converged", "result",
               "own_verdict", "iterations", "stationarity", "stationarity_float64", "rel_l2",
               "tolerance", "within_tolerance", "solved", "false_converged",
               "false_converged_kind", "representable", "wall_s", "compile_s")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("solver_robustness")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "solver_robustness.json") as f:
        return out, json.load(f)


# The quick run takes ~80 s on 2 cores (a subprocess over 4 problems x 2 precisions x
# 3 starts x 3 back ends): slow lane; test_solver_trust covers the native solver by default.
@pytest.mark.slow
def test_quick_run_writes_every_case_with_its_fields(quick_run):
    out, result = quick_run
    assert (out / "solver_robustness.md").stat().st_size > 0
    assert (out / "solver_robustness.png").stat().st_size > 0
    assert result["config"]["quick"] is True
    problems = {"diffusion-sorption", "navier-stokes", "reaction-diffusion", "burgers"}
    assert set(result["problems"]) == problems
    cases = result["cases"]
    # 4 problems x 1 (m, N) x 2 precisions x 3 starts x 3 back ends
    assert len(cases) == 4 * 2 * 3 * 3
    combos = {(c["problem"], c["precision"], c["start"], c["backend"]) for c in cases}
    assert len(combos) == len(cases)
    for c in cases:
        for field in CASE_FIELDS:
            assert field in c, field
        assert c["result"] in (0, 1, 2, 3)
        assert c["converged"] == (c["result"] == 0)
        assert c["solved"] == (c["converged"] and c["within_tolerance"])
        assert c["false_converged"] == (c["converged"] and not c["within_tolerance"])
        assert c["tolerance"] == {"float64": 1e-3, "float32": 1e-2}[c["precision"]]
        assert 0 <= c["iterations"] <= result["config"]["max_steps"]
        assert c["wall_s"] > 0
        if c["backend"] == "native":
            assert c["own_verdict"] == c["converged"]
        elif c["own_verdict"] and not c["converged"]:
            assert c["result"] == 3  # optimistix stopped, pdeml's test did not hold: STAGNATED
    for part in ("all", "representable"):
        tab = result["summary"][part]
        assert set(tab) == {"native", "optimistix", "optimistix-cholesky"}
        for per in tab.values():
            for s in per.values():
                assert 0.0 <= s["fraction_solved"] <= 1.0
                assert s["solved"] <= s["cases"]


@pytest.mark.slow
def test_quick_run_native_has_no_false_converged(quick_run):
    _, result = quick_run
    native = [c for c in result["cases"] if c["backend"] == "native"]
    assert not [c for c in native if c["false_converged"]]
    for precision in ("float64", "float32"):
        assert result["summary"]["all"]["native"][precision]["false_converged"] == 0
    # on these small problems every case is representable: some back end reaches the truth
    assert all(c["representable"] for c in result["cases"])


def test_optimistix_linear_solver_choice_reaches_the_same_point():
    """The optimistix back end's QR and normal-Cholesky linear solvers find the same w, and
    report optimistix's own verdict and step count."""
    import jax.numpy as jnp
    import numpy as np

    from pdeml.core import LevenbergMarquardt, StructuredLeastSquares
    from pdeml.interop.optimistix import (
        BACKEND_LINEAR_SOLVERS,
        backend_solver,
        levenberg_marquardt_optimistix,
    )

    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.standard_normal((1, 40, 4)))
    w_true = jnp.asarray([0.5, -0.2, 0.3, 0.1])
    target = jnp.tanh(feats[0] @ w_true)
    prob = StructuredLeastSquares(feats, lambda a, y: jnp.tanh(a[0]) - y, aux=target)
    solver = LevenbergMarquardt()
    w0 = jnp.zeros(4)
    w_qr, it_qr, ok_qr = levenberg_marquardt_optimistix(prob, w0, solver)
    w_ch, it_ch, ok_ch = levenberg_marquardt_optimistix(prob, w0, solver, linear_solver="cholesky")
    assert bool(ok_qr) and bool(ok_ch) and int(it_qr) >= 1 and int(it_ch) >= 1
    np.testing.assert_allclose(w_qr, w_true, atol=1e-6)
    np.testing.assert_allclose(w_ch, w_true, atol=1e-6)
    assert set(BACKEND_LINEAR_SOLVERS) == {"optimistix", "optimistix-cholesky"}
    w_b, _, _ = backend_solver("optimistix-cholesky")(prob, w0, solver)
    np.testing.assert_array_equal(w_b, w_ch)
    with pytest.raises(ValueError, match="linear_solver"):
        levenberg_marquardt_optimistix(prob, w0, solver, linear_solver="lu")
    with pytest.raises(ValueError, match="backend"):
        backend_solver("native")
