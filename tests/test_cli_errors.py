"""Every user error of the ``pdeml`` command: one line on stderr, exit code 2, no traceback.

The cases are run through :func:`pdeml.cli.main` in-process (what the console script calls);
docs/cli.md lists them with their messages.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from pdeml.cli import main

# (argv, a phrase the one-line message must contain). "{tmp}" is the test's tmp_path.
CASES = [
    (["inverse", "deblur", "--method", "lpn"], "--method lpn needs --model-dir"),
    (["inverse", "ct", "--method", "lpn-map", "--model-dir", "{tmp}/none"], "no config.json"),
    (["inverse", "ct", "--rho-factor", "-1"], "argument --rho-factor: must be > 0"),
    (["inverse", "cs", "--ratio", "2"], "argument --ratio: must be in (0, 1]"),
    (["inverse", "ct", "--size", "8"], "--size must be >= 16"),
    (["inverse", "ct", "--iters", "0"], "argument --iters: must be an integer >= 1"),
    (["prox", "train", "--out", "{tmp}/p", "--beta", "0"], "argument --beta: must be > 0"),
    (["prox", "train", "--out", "{tmp}/p", "--alpha", "-1"], "argument --alpha: must be > 0"),
    (["prox", "train", "--out", "{tmp}/p", "--stage-steps", "-3"], "argument --stage-steps: must be an integer >= 1"),
    (["prox", "train", "--out", "{tmp}/p", "--sigma", "-1"], "argument --sigma: must be > 0"),
    (["prox", "train", "--out", "{tmp}/p", "--lr", "nan"], "argument --lr: expected a finite number"),
    (["prox", "train", "--out", "{tmp}/p", "--hidden", "8", "x"], "argument --hidden: expected an integer"),
    (["prox", "train", "--out", "{tmp}/file/p"], "--out"),
    (["prox", "train"], "the following arguments are required: --out"),
    (["prox", "eval", "--model-dir", "{tmp}/none"], "does not hold a saved LPN"),
    (["barron", "norm", "--sizes", "4,x"], "argument --sizes: expected comma-separated integers"),
    (["barron", "solve", "--float32", "--tol", "1e-10"], "--tol 1e-10 is below what float32 can reach"),
    (["barron", "solve", "--problem", "T9"], "argument --problem: invalid choice"),
    (["barron", "fit", "--widths", "0,2"], "argument --widths: every entry must be >= 1"),
    (["barron", "solve", "--x64", "--float32"], "not allowed with argument"),
    (["--x64", "barron", "solve", "--float32"], "--x64 and --float32 contradict"),
    (["train", "diffusion-sorption", "--out", "{tmp}/file/run"], "--out"),
    (["train", "diffusion-sorption", "--method", "magic", "--out", "{tmp}/r"], "invalid choice: 'magic'"),
    (["eval", "{tmp}/none"], "not a training run directory"),
    (["demo", "--steps", "0"], "argument --steps: must be an integer >= 1"),
    (["demo", "--out", "{tmp}/file"], "--out"),
    (["data", "diffusion-sorption", "--out", "{tmp}/data.txt"], ".npz"),
    (["nonsense"], "invalid choice: 'nonsense'"),
]


def _run(argv, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a directory")
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("argv,phrase", CASES, ids=[" ".join(c[0][:3]) + f" #{i}" for i, c in enumerate(CASES)])
def test_user_error_is_one_line_and_exit_code_2(argv, phrase, tmp_path, capsys):
    x64 = bool(jax.config.jax_enable_x64)
    code, err = _run(argv, tmp_path, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pdeml: error: "), err
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in err
    assert bool(jax.config.jax_enable_x64) == x64  # the command's precision does not leak


def _tiny_prox(tmp_path, *extra):
    return ["prox", "train", "--out", str(tmp_path / "lpn"), "--hidden", "4", "--pretrain-steps", "2",
            "--stage-steps", "2", "--gammas", "0.5", "--steps-per-call", "2", "--batch", "8",
            "--no-progress", *extra]


@pytest.mark.parametrize("command", [["prox", "eval"], ["inverse", "ct", "--method", "lpn-map"]])
def test_damaged_saved_model(command, tmp_path, capsys):
    """A model.eqx that is not a saved LPN, and a config.json that is not JSON, are reported in
    one line naming --model-dir."""
    cfg = {"model": {"kind": "dense", "in_size": 1, "hidden": [4], "alpha": 0.1}, "data": "laplace"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.eqx").write_bytes(b"junk")
    assert main([*command, "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--model-dir {str(tmp_path)!r}: cannot load the LPN" in err[0], err
    if command[0] == "prox":
        from pdeml.prox.analysis import build_lpn, save_lpn

        good = tmp_path / "good"
        save_lpn(good, build_lpn(cfg["model"]), cfg)
        (good / "config.json").write_text("{")
        assert main([*command, "--model-dir", str(good)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot load the LPN" in err[0] and "config.json" in err[0], err


def test_all_corrupt_checkpoints(tmp_path, capsys):
    """A run directory whose every checkpoint is corrupt is reported, not a traceback."""
    ckpts = tmp_path / "lpn" / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    for step in (2, 4):
        (ckpts / f"ckpt_{step:010d}.eqx").write_bytes(b"not a checkpoint")
    assert main(_tiny_prox(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pdeml: error: ") and "checkpoint" in err[0], err


def test_non_finite_loss(tmp_path, capsys):
    """A learning rate of 1e30 overflows the float32 parameters: training stops at the first
    non-finite update with one line."""
    assert main(_tiny_prox(tmp_path, "--lr", "1e30", "--lr-end", "1e30")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "not finite" in err[0], err


def test_x64_eval_of_a_float32_model(tmp_path, capsys):
    """``pdeml --x64 prox eval`` on a model saved in float32 runs (the model is cast) and the
    x64 flag is restored afterwards."""
    from pdeml.prox.analysis import build_lpn, save_lpn

    cfg = {"kind": "dense", "in_size": 1, "hidden": [4], "beta": 10.0, "alpha": 0.5, "seed": 0}
    save_lpn(tmp_path, build_lpn(cfg), {"model": cfg, "data": "laplace"})
    x64 = bool(jax.config.jax_enable_x64)
    assert main(["--x64", "prox", "eval", "--model-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inversion_all_converged"] is True
    assert bool(jax.config.jax_enable_x64) == x64


def test_console_script_exit_code_and_single_line():
    """The installed entry point (``python -m pdeml``) gives the same one line and code 2."""
    proc = subprocess.run([sys.executable, "-m", "pdeml", "barron", "norm", "--sizes", "4,x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pdeml: error: pdeml barron norm: argument --sizes: expected comma-separated integers, "
        "got '4,x' ('x' is not an integer) (see pdeml barron norm --help)"
    ]
