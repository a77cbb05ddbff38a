"""End-to-end: the Navier-Stokes soft/hard/MoE experiment on a tiny problem (8^2 x 4 grid).

What is checked: a run writes its results at the training and at the finer grid, the finer
test uses references solved on the finer grid, a run interrupted after a checkpoint resumes to
bit-identical parameters, and the ``navier-stokes`` training sub-command parses and runs.
"""

import argparse
import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.experiments.navier_stokes import (
    NSConfig,
    PeriodicInputNavierStokes2D,
    build_model,
    fine_test_data,
    load_data,
    load_run,
    model_at_resolution,
    plot_predictions,
    run_experiment,
)
from pdeml.cli.train import add_problem_parser
from pdeml.pde import NavierStokesSolver
from pdeml.pde.navier_stokes_solver import fourier_upsample
from pdeml.train import CheckpointManager

TINY = dict(nx=8, ny=8, nt=4, train_samples=2, test_samples=2, steps=4, batch_size=1,
            num_basis=4, num_points=20, width=4, modes=2, layers=1, padding=2, max_lm_steps=20,
            checkpoint_every=2)


def _leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]


def test_hard_run_writes_results_and_resumes_bit_identically(tmp_path):
    # The finer-grid test is exercised by the soft run below; here the resume is the point.
    cfg = NSConfig(method="hard", cache_dir=str(tmp_path / "cache"),
                   **{**TINY, "test_refine": 1})
    run = tmp_path / "run"
    res = run_experiment(cfg, run, progress=False)
    t = res["test"]
    assert t["grid"] == [8, 8, 4] and res["test_fine"] is None
    assert len(t["rel_l2_per_sample"]) == 2 and np.all(np.isfinite(t["rel_l2_per_sample"]))
    assert 0 <= t["lm_converged_fraction"] <= 1 and sum(t["lm_iteration_histogram"]) == 2
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["test"]["rel_l2_mean"] == t["rel_l2_mean"]

    config, model, step = load_run(run)
    assert step == 4 and config == cfg
    full = _leaves(model)
    # Interrupt after the step-2 checkpoint: drop the final one and run the same command again.
    ckpts = CheckpointManager(run / "checkpoints")
    assert ckpts.steps() == [2, 4]
    ckpts.path(4).unlink()
    again = run_experiment(cfg, run, progress=False)
    _, resumed, step = load_run(run)
    assert step == 4
    for a, b in zip(full, _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again["test"]["rel_l2_per_sample"] == t["rel_l2_per_sample"]
    # A different configuration in the same directory is refused, not mixed.
    with pytest.raises(ValueError, match="different configuration"):
        run_experiment(dataclasses.replace(cfg, steps=5), run, progress=False)


def test_soft_run_tests_on_the_finer_grid_and_plots(tmp_path):
    cfg = NSConfig(method="soft", cache_dir=str(tmp_path / "cache"),
                   **{**TINY, "checkpoint_every": 4})
    res = run_experiment(cfg, tmp_path / "sc", progress=False)
    t, f = res["test"], res["test_fine"]
    assert "lm_converged_fraction" not in t
    assert t["grid"] == [8, 8, 4] and f["grid"] == [16, 16, 4]
    z = np.load(tmp_path / "sc" / "predictions.npz")
    assert z["pred"].shape == z["ref"].shape == (2, 8, 8, 4)
    assert z["pred_fine"].shape == z["ref_fine"].shape == (2, 16, 16, 4)
    # The fine references are the cached fine-grid solutions, and the stored errors are those
    # of the stored predictions against them.
    _, test = load_data(cfg)
    np.testing.assert_array_equal(z["ref_fine"], fine_test_data(cfg, test).dataset.u)
    for pk, rk, m in (("pred", "ref", t), ("pred_fine", "ref_fine", f)):
        err = np.linalg.norm((z[pk] - z[rk]).reshape(2, -1), axis=1) / \
            np.linalg.norm(z[rk].reshape(2, -1), axis=1)
        np.testing.assert_allclose(err, m["rel_l2_per_sample"], rtol=1e-12)
    hist = [json.loads(s) for s in (tmp_path / "sc" / "metrics.jsonl").read_text().split("\n")
            if s]
    assert [h["step"] for h in hist] == [0, 3] and np.all(np.isfinite([h["loss"] for h in hist]))
    png = plot_predictions({"soft": tmp_path / "sc"}, tmp_path / "p.png", fine=True)
    assert png.stat().st_size > 0


def test_fine_reference_is_solved_on_the_fine_grid(tmp_path):
    cfg = NSConfig(method="soft", cache_dir=str(tmp_path / "cache"), **TINY)
    _, test = load_data(cfg)
    fine = fine_test_data(cfg, test)
    u0c, uc = test.dataset.u0, test.dataset.u
    u0f, uf = fine.dataset.u0, fine.dataset.u
    assert u0f.shape == (2, 16, 16) and uf.shape == (2, 16, 16, 4)
    # Same initial conditions: trigonometric interpolation reproduces the coarse samples
    # (exact up to FFT round-off, ~1e-16 relative).
    np.testing.assert_allclose(u0f[:, ::2, ::2], u0c, atol=1e-13)
    # The references are the solver's on the 16^2 problem (recomputed here) ...
    problem = cfg.problem_at(2)
    direct = NavierStokesSolver()(problem, jnp.asarray(u0f[1]))
    np.testing.assert_allclose(uf[1], np.asarray(direct.w), rtol=0, atol=1e-12)
    # ... which are closer to the solution on a 32^2 grid than the 8^2 references are (the
    # 8^2 solver keeps only |k| <= 2 after dealiasing): a refinement check, not a copy.
    finer = NavierStokesSolver()(cfg.problem_at(4), jnp.asarray(
        np.asarray(fourier_upsample(jnp.asarray(u0c[1]), 4))))
    best = np.asarray(finer.w)[::4, ::4]
    assert np.linalg.norm(uf[1, ::2, ::2] - best) < 0.5 * np.linalg.norm(uc[1] - best)
    again = fine_test_data(cfg, test)
    assert again.from_cache and again.checksum == fine.checksum


def test_network_sees_the_same_coordinates_at_every_resolution():
    coarse = PeriodicInputNavierStokes2D(nx=8, ny=8, nt=4)
    fine = PeriodicInputNavierStokes2D(nx=16, ny=16, nt=4)
    w0 = jnp.zeros((16, 16))
    a = coarse.network_input(w0[::2, ::2])
    b = fine.network_input(w0)[::2, ::2]
    np.testing.assert_array_equal(a, b)
    # The model at the finer resolution keeps the trained network and rebuilds the layer.
    cfg = NSConfig(method="moe", experts="1x2x2", **TINY)
    model = build_model(cfg, jax.random.key(0))
    fm = model_at_resolution(model, cfg, 2)
    assert fm.net is model.net and fm.problem.grid_shape == (16, 16, 4)
    assert fm.layer.partition.grid_shape == (16, 16, 4) and fm.layer.partition.num_experts == 4
    # Partition.uniform splits (x, y, t) into (K_x, K_y, K_t) = (2, 2, 1) at either resolution.
    assert fm.layer.partition.splits == model.layer.partition.splits == (2, 2, 1)


def test_moe_partition_is_periodic_in_space():
    # x and y wrap around: with overlap the seam at x = 0 = L is blended like the interior one
    # (the residual takes spectral derivatives of the blended field), t is not periodic.
    cfg = NSConfig(method="moe", experts="1x2x2", overlap=0.5, **TINY)
    w = np.asarray(cfg.partition().weights)  # (4, nx, ny, nt)
    np.testing.assert_allclose(w.sum(0), 1.0, atol=4e-16)
    wx = w[0, :, 0, 0]
    band = 0.5 / 2 * cfg.nx
    assert np.abs(np.diff(np.concatenate([wx, wx[:1]]))).max() <= 15 / 8 / band * (1 + 1e-12)
    # Expert (1, 1) is expert (0, 0) rotated by half the square.
    np.testing.assert_allclose(np.roll(w[0], (cfg.nx // 2, cfg.ny // 2), axis=(0, 1)), w[3],
                               atol=1e-15)


@pytest.mark.slow
def test_moe_run_end_to_end(tmp_path):
    cfg = NSConfig(method="moe", experts="1x2x2", overlap=0.25,
                   cache_dir=str(tmp_path / "cache"), **TINY)
    res = run_experiment(cfg, tmp_path / "moe", progress=False)
    for name in ("test", "test_fine"):
        t = res[name]
        assert np.all(np.isfinite(t["rel_l2_per_sample"]))
        assert len(t["lm_iterations_per_expert"]) == 4
        assert sum(t["lm_iteration_histogram"]) == 2 * 4  # 2 test ICs x 4 experts
    config, model, step = load_run(tmp_path / "moe")
    assert config == cfg and step == 4 and model.layer.partition.overlap == 0.25


def test_config_validation():
    with pytest.raises(ValueError, match="experts must be K_t x K_x x K_y"):
        NSConfig(method="moe", experts="2x2")
    with pytest.raises(ValueError, match="num_points=99999 exceeds"):
        NSConfig(method="hard", num_points=99999, **{k: v for k, v in TINY.items()
                                                     if k != "num_points"})
    with pytest.raises(ValueError, match="unknown method"):
        NSConfig(method="magic")
    with pytest.raises(ValueError, match="test_refine must be a positive integer"):
        NSConfig(test_refine=0)
    stored = json.loads(json.dumps(dataclasses.asdict(NSConfig(experts="1x2x2"))))
    assert NSConfig(**stored) == NSConfig(experts=(1, 2, 2))


def _parser():
    p = argparse.ArgumentParser(prog="pdeml")
    sub = p.add_subparsers(dest="command")
    train = sub.add_parser("train")
    problems = train.add_subparsers(dest="problem")
    add_problem_parser(problems, "navier-stokes", NSConfig)
    return p


def test_train_parser_runs_the_experiment(tmp_path, capsys):
    args = ["train", "navier-stokes", "--method", "hard", "--run-dir", str(tmp_path / "hc"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--test-refine", "1"]
    for k, v in TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    ns = _parser().parse_args(args)
    assert ns.func(ns) == 0
    out = capsys.readouterr().out
    assert "hard: test (8x8x4) relative L2" in out and "test_fine" not in out
    res = json.loads((tmp_path / "hc" / "results.json").read_text())
    assert res["test_fine"] is None and res["config"]["num_points"] == 20


def test_train_parser_reports_bad_input(tmp_path):
    from pdeml.cli import CLIError

    ns = _parser().parse_args(["train", "navier-stokes", "--run-dir", str(tmp_path),
                               "--method", "moe", "--experts", "2y2"])
    with pytest.raises(CLIError, match="experts must be"):
        ns.func(ns)
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "navier-stokes", "--run-dir", str(tmp_path),
                              "--method", "magic"])


def test_baselines_and_tendency_input():
    from pdeml.experiments.navier_stokes import baseline_prediction, evaluate_baselines
    from pdeml.pde.navier_stokes_solver import vorticity_tendency

    jax.config.update("jax_enable_x64", True)
    prob = PeriodicInputNavierStokes2D(nx=16, ny=16, nt=5, t_max=0.2, tendency_input=True)
    u0s = jnp.stack([jnp.asarray(_field(s)) for s in range(2)])
    t = prob.times()
    pers = baseline_prediction(prob, u0s, "persistence")
    tay = baseline_prediction(prob, u0s, "taylor")
    assert pers.shape == tay.shape == (2, 16, 16, 5)
    np.testing.assert_array_equal(pers[..., 3], u0s)
    np.testing.assert_array_equal(tay[..., 0], u0s)
    f = vorticity_tendency(u0s[0], prob.viscosity)
    np.testing.assert_allclose(tay[0, ..., 4], u0s[0] + t[4] * f, atol=1e-13)
    # The fifth input channel is exactly the Taylor increment t F(w0).
    x = prob.network_input(u0s[0])
    assert x.shape == (16, 16, 5, 5) and prob.input_channels == 5
    np.testing.assert_allclose(x[..., 1], tay[0] - u0s[0][..., None], atol=1e-13)
    # Against the reference solution over a short horizon: Taylor beats persistence, and the
    # metrics are the relative L2 of the whole field.
    ref = jnp.stack([NavierStokesSolver()(prob, u0).w for u0 in u0s])
    m = evaluate_baselines(prob, u0s, ref)
    e = np.linalg.norm(pers[1] - ref[1]) / np.linalg.norm(ref[1])
    np.testing.assert_allclose(m["persistence"]["rel_l2_per_sample"][1], e, rtol=1e-12)
    assert m["taylor"]["rel_l2_mean"] < 0.3 * m["persistence"]["rel_l2_mean"]  # 0.022 vs 0.099
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_prediction(prob, u0s, "oracle")


@pytest.mark.parametrize("method", ["soft", "hard"])
def test_increment_output_keeps_the_initial_condition(method):
    cfg = NSConfig(method=method, output="increment", tendency_input=True, **TINY)
    model = build_model(cfg, jax.random.key(0))
    w0 = jnp.asarray(_field(0, n=8))
    x = cfg.problem.network_input(w0)
    out = model.net(x)
    if method == "soft":  # w = w0 + (t/T) g
        assert out.shape == (8, 8, 4, 1)
        np.testing.assert_array_equal(out[..., 0, 0], w0)
    else:  # basis (w0, (t/T) g_1, ..., (t/T) g_{N-1}): N = 4 channels, 3 from the FNO
        assert out.shape == (8, 8, 4, 4)
        np.testing.assert_array_equal(out[..., 0], jnp.broadcast_to(w0[..., None], (8, 8, 4)))
        np.testing.assert_array_equal(out[:, :, 0, 1:], 0.0)
    assert float(jnp.abs(out[:, :, -1] - w0[..., None]).max()) > 0
    w, _ = model(w0, key=jax.random.key(1))
    # The hard layer solves for the weights: the IC rows fix the weight of w0 (~1).
    np.testing.assert_allclose(w[..., 0], w0, atol=1e-12 if method == "soft" else 1e-2)
    with pytest.raises(ValueError, match="unknown output"):
        NSConfig(output="magic")
    with pytest.raises(ValueError, match="num_basis >= 2"):
        NSConfig(method="hard", output="increment", num_basis=1)


def _field(seed, n=16):
    from pdeml.pde import GaussianRandomField

    return np.asarray(GaussianRandomField().sample(jax.random.key(seed), n, n), np.float64)
