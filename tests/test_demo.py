"""``pdeml demo --quick``: every pillar runs end to end, the numbers reach demo.json before any
figure is drawn, and a figure that fails does not lose them. (CI runs the full demo as the
README's first command.)"""

from __future__ import annotations

import json

import jax
import pytest

from pdeml.cli import demo, main


@pytest.mark.slow  # ~1-2 minutes on 2 cores: compiles three trainings, an LPN, CT and Barron
def test_quick_demo_writes_every_pillar_and_survives_a_failing_figure(tmp_path, capsys, monkeypatch):
    seen_before_figure = {}

    def failing_figure(curves, path, **kwargs):
        # the LPN's numbers are already on disk when its figure is drawn
        seen_before_figure.update(json.loads((tmp_path / "demo.json").read_text()))
        raise RuntimeError("no display")

    monkeypatch.setattr(demo, "_figure_lpn", failing_figure)
    x64 = bool(jax.config.jax_enable_x64)
    assert main(["demo", "--quick", "--out", str(tmp_path), "--seed", "1", "--no-progress"]) == 0
    assert bool(jax.config.jax_enable_x64) == x64
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "demo.json").read_text())

    assert "lpn_laplace" in seen_before_figure and "inverse_ct" not in seen_before_figure
    assert summary["config"] == {"seed": 1, "quick": True, "out": str(tmp_path)}
    assert summary["layer_check"]["residual_norm_at_points"] < 1e-8
    assert summary["layer_check"]["implicit_grad_rel_error_vs_fd"] < 1e-5
    assert set(summary["diffusion_sorption"]["methods"]) == {"soft", "hard", "moe"}
    for m in summary["diffusion_sorption"]["methods"].values():
        assert 0 < m["test_rel_l2_mean"] < 100
    lpn = summary["lpn_laplace"]
    assert lpn["inversion_all_converged"] and lpn["max_abs_f_minus_soft_threshold"] >= 0
    assert {"TV", "LPN MAP"} <= set(summary["inverse_ct"]["methods"])
    barron = summary["barron"]["dims"]["d2"]
    assert barron["converged"] and barron["h1_error_final"] < 1e-8
    assert barron["h1_contraction_per_step"] <= barron["bound_h1_contraction"]

    figures = summary["figures"]
    assert figures["lpn_laplace"].startswith("failed: RuntimeError: no display")
    for name in ("diffusion_sorption", "inverse_ct", "barron"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, figures[name]
    assert "figure lpn_laplace.png failed" in out
    # the printed table carries the papers' numbers beside ours
    assert "85.93%" in out and "7.55%" in out and "3.60%" in out
    rows = {(r["pillar"], r["quantity"]) for r in summary["table"]}
    assert ("diffusion-sorption", "PI-HC-MoE test rel. L2") in rows
