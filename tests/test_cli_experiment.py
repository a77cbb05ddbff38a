"""End-to-end: the experiment runner and the `pdeml train/eval` commands on a tiny problem."""

import dataclasses
import json

import jax
import pytest

from pdeml.cli import main
from pdeml.experiments import DiffusionSorptionConfig, ExperimentConfig, load_run, run_experiment

TINY = dict(nx=16, nt=6, train_samples=4, test_samples=2, steps=4, batch_size=2, num_basis=4,
            num_points=20, width=8, modes=3, layers=1, padding=2, max_lm_steps=30)


def test_run_experiment_writes_results_and_resumes(tmp_path):
    cfg = DiffusionSorptionConfig(method="hard", cache_dir=str(tmp_path / "cache"), **TINY)
    res = run_experiment(cfg, tmp_path / "run", progress=False)
    t = res["test"]
    assert len(t["rel_l2_per_sample"]) == 2 and 0 < t["rel_l2_mean"] < 10
    assert 0 <= t["lm_converged_fraction"] <= 1
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["test"]["rel_l2_mean"] == t["rel_l2_mean"]
    # Running again resumes from the final checkpoint: no training, identical evaluation.
    again = run_experiment(cfg, tmp_path / "run", progress=False)
    assert again["test"]["rel_l2_per_sample"] == t["rel_l2_per_sample"]
    config, model, step = load_run(tmp_path / "run")
    assert step == cfg.steps and config == cfg
    # A different configuration in the same directory is refused, not mixed.
    with pytest.raises(ValueError, match="different configuration"):
        run_experiment(dataclasses.replace(cfg, steps=5), tmp_path / "run", progress=False)


def _tiny_soft_ds(run_dir, cache_dir):
    """`pdeml train diffusion-sorption --method soft` with the TINY sizes."""
    args = ["train", "diffusion-sorption", "--method", "soft", "--run-dir", str(run_dir),
            "--cache-dir", str(cache_dir), "--no-progress"]
    for k, v in TINY.items():
        if k != "padding":
            args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def test_cli_train_and_eval(tmp_path, capsys):
    assert main(_tiny_soft_ds(tmp_path / "sc", tmp_path / "cache")) == 0
    assert "soft: test relative L2" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "sc"), "--plot", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 0
    assert "soft" in capsys.readouterr().out


def test_cli_bad_arguments(tmp_path, capsys):
    assert main(["train", "diffusion-sorption", "--run-dir", str(tmp_path), "--nx", "64",
                 "--nt", "26", "--num-points", "100000"]) == 2
    assert "exceeds the 1550 interior points" in capsys.readouterr().err
    assert main(["train", "diffusion-sorption", "--run-dir", str(tmp_path), "--steps", "-3"]) == 2
    assert "steps must be >= 0" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    assert main(["train", "diffusion-sorption", "--method", "magic", "--run-dir", str(tmp_path)]) == 2
    assert "argument --method: invalid choice: 'magic'" in capsys.readouterr().err
    assert main(["demo", "--steps", "0"]) == 2


def test_moe_config_builds_the_mixture_and_round_trips():
    from pdeml.experiments import build_model

    cfg = DiffusionSorptionConfig(method="moe", experts="2x2", overlap=0.25, boundary_rows="touching",
                           points_mode="per_expert", **{**TINY, "num_points": 12})
    assert cfg.experts == (2, 2) and cfg.num_experts == 4
    model = build_model(cfg, jax.random.key(0))
    part = model.layer.partition
    # (K_t, K_x) = (2, 2) on the (x, t) grid: splits (K_x, K_t), overlapping, touching rows.
    assert part.splits == (2, 2) and part.overlap == 0.25 and part.boundary_rows == "touching"
    assert model.layer.points_per_expert == 12
    stored = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as in config.json
    assert stored["experts"] == [2, 2] and DiffusionSorptionConfig(**stored) == cfg
    rand = DiffusionSorptionConfig(method="moe", experts="1x3", assignment="random",
                            points_mode="total", **TINY).partition()
    assert rand.assignment == "random" and rand.num_experts == 3


@pytest.mark.slow
def test_cli_train_moe_and_config_round_trip(tmp_path, capsys):
    args = ["train", "diffusion-sorption", "--method", "moe", "--experts", "1x2", "--overlap",
            "0.5", "--run-dir", str(tmp_path / "moe"), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    for k, v in TINY.items():
        if k != "padding":
            args += [f"--{k.replace('_', '-')}", str(v)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "moe: test relative L2" in out and "per expert [" in out
    res = json.loads((tmp_path / "moe" / "results.json").read_text())
    t = res["test"]
    assert len(t["lm_iterations_per_expert"]) == 2 and len(t["lm_converged_per_expert"]) == 2
    # 2 test ICs x 2 experts solves, counted by iteration number.
    assert sum(t["lm_iteration_histogram"]) == 4
    assert res["config"]["experts"] == [1, 2] and res["config"]["overlap"] == 0.5
    config, model, step = load_run(tmp_path / "moe")
    assert config.experts == (1, 2) and step == TINY["steps"]
    assert model.layer.partition.num_experts == 2
    # The stored configuration (lists in JSON) equals the one given as a string.
    cli_args = {k: v for k, v in TINY.items() if k != "padding"}  # the CLI has no --padding
    cfg = DiffusionSorptionConfig(method="moe", experts="1x2", overlap=0.5, **cli_args)
    assert dataclasses.replace(config, cache_dir=None) == cfg


def test_cli_moe_bad_arguments(tmp_path, capsys):
    base = ["train", "diffusion-sorption", "--method", "moe", "--run-dir", str(tmp_path),
            "--nx", "16", "--nt", "6", "--num-points", "20", "--points-mode", "per_expert"]
    assert main(base + ["--experts", "2y2"]) == 2
    assert "experts must be K_t x K_x" in capsys.readouterr().err
    # 1x4: the smallest expert has 3 x 5 = 15 interior points, fewer than 20 per expert;
    # in total (5 per expert) it fits.
    assert main(base + ["--experts", "1x4"]) == 2
    assert "smallest expert subdomain has only 15" in capsys.readouterr().err
    DiffusionSorptionConfig(method="moe", experts=(1, 4), nx=16, nt=6, num_points=20)  # total
    assert main(base + ["--experts", "2x4"]) == 2
    assert "smallest expert subdomain has only" in capsys.readouterr().err
    assert main(base + ["--experts", "1x2", "--overlap", "1.5"]) == 2
    assert "overlap must be a number in [0, 1)" in capsys.readouterr().err
    assert main(base + ["--assignment", "random", "--overlap", "0.2"]) == 2
    assert "overlap needs assignment='spatial'" in capsys.readouterr().err


def test_extrapolation_window_and_split_errors():
    import jax.numpy as jnp
    import numpy as np

    from pdeml.experiments import evaluate

    cfg = DiffusionSorptionConfig(method="hard", t_train=300.0, **{**TINY, "num_points": 20})
    # nt = 6 over t_max 500: levels at 0, 100, ..., 500; t <= 300 keeps j = 1..3.
    assert cfg.train_levels == 3
    prob = cfg.model_problem
    pts = np.asarray(prob.interior_points())
    assert pts[:, 1].max() == 3 and len(pts) == (TINY["nx"] - 2) * 3
    rows, targets = prob.constraint_rows(jnp.ones((16, 6, 2)), jnp.zeros(16))
    full_rows, _ = cfg.problem.constraint_rows(jnp.ones((16, 6, 2)), jnp.zeros(16))
    assert rows.shape == (16 + 2 * 3, 2) and full_rows.shape == (16 + 2 * 5, 2)
    # The split errors are the relative L2 errors on the two column blocks.
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.5, 1, (2, 16, 6))
    err = rng.normal(size=(2, 16, 6)) * 0.01
    pred = jnp.asarray(ref + err)
    model = lambda d, key: (jnp.where(d[0] > 1, pred[1], pred[0]), None)  # noqa: E731
    u0s = jnp.asarray([[0.0] * 16, [2.0] * 16])
    out, _ = evaluate(model, u0s, jnp.asarray(ref), split_level=3, batch=1)
    for name, cols in (("train_window", slice(0, 4)), ("extrapolation", slice(4, None))):
        want = [np.linalg.norm(err[i][:, cols]) / np.linalg.norm(ref[i][:, cols]) for i in (0, 1)]
        np.testing.assert_allclose(out[name]["rel_l2_per_sample"], want, rtol=1e-12)
    with pytest.raises(ValueError, match="keeps 0 of the 5 time steps"):
        DiffusionSorptionConfig(method="hard", t_train=50.0, **TINY)


@pytest.mark.slow
def test_cli_train_extrapolation(tmp_path, capsys):
    args = ["train", "diffusion-sorption", "--method", "moe", "--experts", "1x2", "--t-train",
            "300", "--run-dir", str(tmp_path / "ex"), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    for k, v in TINY.items():
        if k != "padding":
            args += [f"--{k.replace('_', '-')}", str(v)]
    assert main(args) == 0
    assert "(extrapolation):" in capsys.readouterr().out
    t = json.loads((tmp_path / "ex" / "results.json").read_text())["test"]
    assert len(t["extrapolation"]["rel_l2_per_sample"]) == 2


@pytest.mark.parametrize("pde", ["diffusion-sorption", "navier-stokes"])
def test_every_config_field_is_a_train_option(pde):
    from pdeml.cli import build_parser
    from pdeml.experiments import REGISTRY

    config_cls = REGISTRY[pde]
    sub = [a for a in build_parser()._actions if a.dest == "command"][0].choices["train"]
    parser = [a for a in sub._actions if a.dest == "problem"][0].choices[pde]
    dests = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(config_cls):
        assert f.name in dests and dests[f.name].help, f.name
    # The defaults parse back to the default configuration; --lr is --learning-rate.
    from pdeml.cli.train import config_from_args

    args = parser.parse_args(["--out", "x"])
    assert config_from_args(config_cls, args) == config_cls()
    args = parser.parse_args(["--out", "x", "--lr", "0.5", "--no-carry-start"])
    assert config_from_args(config_cls, args).learning_rate == 0.5


def test_config_base_and_stored_configs():
    from pdeml.experiments import (
        DiffusionSorptionConfig,
        NavierStokesConfig,
        config_class,
        config_dict,
    )

    with pytest.raises(TypeError, match="not an experiment"):
        ExperimentConfig()
    assert config_class(config_dict(NavierStokesConfig())) is NavierStokesConfig
    # A configuration stored before some fields existed still names its experiment.
    assert config_class({"method": "hard", "nx": 16, "row_weight": 1.0}) is DiffusionSorptionConfig
    with pytest.raises(ValueError, match="fits 2 of the experiments"):
        config_class({"method": "hard"})
    with pytest.raises(ValueError, match="lr_decay must be in"):
        DiffusionSorptionConfig(lr_decay=0.0)


def test_cli_eval_navier_stokes_run_and_mixed_runs(tmp_path, capsys):
    """`pdeml eval` evaluates a Navier-Stokes run as that run evaluated itself (its batch and
    PDE-residual diagnostics) and plots vorticity; runs of two experiments get no shared plot."""
    ns = ["train", "navier-stokes", "--method", "soft", "--run-dir", str(tmp_path / "ns"),
          "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--steps", "2",
          "--train-samples", "2", "--test-samples", "2", "--nx", "16", "--ny", "16", "--nt", "6",
          "--width", "8", "--layers", "1"]
    assert main(ns) == 0
    assert main(_tiny_soft_ds(tmp_path / "ds", tmp_path / "cache")) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "ns"), "--out", str(tmp_path / "o"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    test = summary[str(tmp_path / "ns")]["test"]
    stored = json.loads((tmp_path / "ns" / "results.json").read_text())["test"]
    # a soft model has no sampled points: the evaluation is the run's own, to the last bit
    assert test["rel_l2_per_sample"] == stored["rel_l2_per_sample"]
    assert "pde_residual_mean" in test
    assert (tmp_path / "o" / "predictions.png").stat().st_size > 0
    assert main(["eval", str(tmp_path / "ns"), str(tmp_path / "ds"),
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different experiments" in err[0]
