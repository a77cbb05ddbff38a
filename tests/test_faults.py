"""The fault catalogue: bad input, failing solvers, damaged or foreign files, crashes.

Every case is a function registered with :func:`case` and its expected outcome:

- ``clear error``: an exception whose type and message name the problem (the argument, the
  file, the field);
- ``flagged result``: the call returns, and its result says it failed (``converged`` False and
  a result code), never a plausible-looking number without a flag;
- ``exact resume``: after a crash the work continues and ends bit-identical to an
  uninterrupted run, or the previous complete file is still there.

Each case asserts its outcome, so a silent wrong result or lost data fails the suite.
``docs/reliability.md`` holds the table :func:`reliability_table` renders from this
registry; ``test_reliability_table_is_current`` keeps the two equal
(``python tests/test_faults.py`` rewrites the table).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("clear error", "flagged result", "exact resume")
CASES: dict[str, tuple[str, str, str, bool]] = {}  # name -> (area, outcome, description, slow)


def case(area: str, outcome: str, description: str, *, slow: bool = False):
    """Register ``fn`` as a catalogue case."""
    assert outcome in OUTCOMES

    def deco(fn):
        CASES[fn.__name__] = (area, outcome, description, slow)
        _FUNCS[fn.__name__] = (fn, ())
        return fn

    return deco


def cases(area: str, outcome: str, table: dict, *, slow: bool = False):
    """Register one case per entry of ``table`` (``{suffix: (description, args)}``)."""

    def deco(fn):
        for suffix, (description, args) in table.items():
            name = f"{fn.__name__}[{suffix}]"
            CASES[name] = (area, outcome, description, slow)
            _FUNCS[name] = (fn, args)
        return fn

    return deco


_FUNCS: dict = {}
EqxError = eqx.EquinoxRuntimeError


def _message(exc) -> str:
    return str(exc.value)


# ---------------------------------------------------------------------------- shared objects


def _lpn(alpha=0.1):
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN

    return LPN(DenseICNN(1, (8,), key=jax.random.key(0), alpha=alpha))


class _NaNProx(eqx.Module):
    def prox(self, x):
        return x * jnp.nan


class _HalfProx(eqx.Module):
    def prox(self, x):
        return x.astype(jnp.float16)


def _op():
    from pdeml.inverse.operators import MatrixOperator

    return MatrixOperator(jnp.eye(2))


_Y = np.array([2.0, 0.1])


def _t2(**params):
    from pdeml.barron import make_test_problem

    return make_test_problem("T2", dim=2, **params)


# ---------------------------------------------------------------------------- 1. diagnostics


@case("solvers", "clear error", "LPN.regularizer whose inner inversion stops at max_steps=1 "
      "(x in [-40, 40]) raises, naming the tolerance and the cap")
def regularizer_not_converged():
    x = jnp.linspace(-40.0, 40.0, 9)[:, None]
    with pytest.raises(EqxError, match="LPN.regularizer.*did not reach the tolerance") as e:
        jax.block_until_ready(_lpn().regularizer(x, max_steps=1))
    assert "max_steps" in _message(e)


@case("solvers", "clear error", "LPN.regularizer with the deprecated max_iter=1 (the issue's "
      "exact call): warns DeprecationWarning, then raises naming max_iter")
def regularizer_not_converged_legacy_keyword():
    x = jnp.linspace(-40.0, 40.0, 9)[:, None]
    with pytest.warns(DeprecationWarning, match="max_iter= is deprecated"), \
            pytest.raises(EqxError, match="LPN.regularizer.*did not reach the tolerance") as e:
        jax.block_until_ready(_lpn().regularizer(x, max_iter=1))
    assert "max_iter" in _message(e)


@case("solvers", "flagged result", "evaluate_regularizer with max_steps=1 reports "
      "converged=False and MAX_STEPS_REACHED per sample")
def regularizer_diagnostics():
    from pdeml.core.least_squares import MAX_STEPS_REACHED
    from pdeml.prox import evaluate_regularizer

    _, info = evaluate_regularizer(_lpn(), jnp.linspace(-40.0, 40.0, 9)[:, None], max_steps=1)
    assert not bool(info.converged.all())
    assert set(np.asarray(info.result)[~np.asarray(info.converged)]) == {MAX_STEPS_REACHED}


@case("solvers", "clear error", "LPN.inverse(throw=True) with max_steps=1 raises")
def inverse_throw():
    with pytest.raises(EqxError, match="LPN.inverse"):
        jax.block_until_ready(_lpn().inverse(jnp.linspace(-40.0, 40.0, 9)[:, None],
                                             max_steps=1, throw=True).y)


@case("solvers", "clear error", "ScaledLPN.prox whose inner solve stops at max_steps=1 raises")
def scaled_prox_not_converged():
    from pdeml.prox import ScaledLPN

    with pytest.raises(EqxError, match="ScaledLPN.*did not reach the tolerance"):
        jax.block_until_ready(ScaledLPN(_lpn(), 0.5, max_steps=1).prox(
            jnp.linspace(-400.0, 400.0, 9)[:, None]))


@case("solvers", "flagged result", "ScaledLPN.solve returns the inner solve's diagnostics "
      "(converged=False at max_steps=1)")
def scaled_solve_diagnostics():
    from pdeml.prox import ScaledLPN

    *_, info = ScaledLPN(_lpn(), 0.5, max_steps=1).solve(jnp.linspace(-400.0, 400.0, 9)[:, None])
    assert not bool(info.converged.all())


@cases("solvers", "flagged result", {
    "pgd": ("PnP-PGD with a prox returning NaN stops at once with result NONFINITE", ("pgd",)),
    "admm": ("PnP-ADMM with a prox returning NaN stops at once with result NONFINITE",
             ("admm",)),
})
def pnp_nan_prox(method):
    from pdeml.core.least_squares import NONFINITE
    from pdeml.inverse.solvers import pnp_admm, pnp_pgd

    res = (pnp_pgd if method == "pgd" else pnp_admm)(_op(), _NaNProx(), _Y, 2.0)
    assert not bool(res.converged) and int(res.result) == NONFINITE and int(res.iterations) == 1


@cases("solvers", "clear error", {
    "pgd": ("PnP-PGD(throw=True) with a prox returning NaN raises, naming the prox", ("pgd",)),
    "admm": ("PnP-ADMM(throw=True) with a prox returning NaN raises", ("admm",)),
})
def pnp_nan_prox_throw(method):
    from pdeml.inverse.solvers import pnp_admm, pnp_pgd

    with pytest.raises(EqxError, match=f"pnp_{method}: an iterate became NaN/inf"):
        jax.block_until_ready((pnp_pgd if method == "pgd" else pnp_admm)(
            _op(), _NaNProx(), _Y, 2.0, throw=True).x)


@case("solvers", "clear error", "PnP-PGD(throw=True) that hits max_steps raises")
def pnp_max_steps_throw():
    from pdeml.inverse.solvers import pnp_pgd
    from pdeml.prox import SoftThreshold

    with pytest.raises(EqxError, match="within max_steps"):
        jax.block_until_ready(pnp_pgd(_op(), SoftThreshold(0.5), _Y, 2.0, max_steps=1,
                                      atol=0.0, rtol=0.0, throw=True).x)


@case("solvers", "flagged result", "Sobolev gradient descent stopped at max_steps=2 reports "
      "MAX_STEPS_REACHED")
def barron_max_steps():
    from pdeml.barron import sobolev_gradient_descent
    from pdeml.core.least_squares import MAX_STEPS_REACHED

    t = sobolev_gradient_descent(_t2(nu=1.0), 9, max_steps=2)
    assert not bool(t.converged) and int(t.result) == MAX_STEPS_REACHED


@cases("solvers", "clear error", {
    "sgd": ("sobolev_gradient_descent(throw=True) that hits max_steps raises", ("sgd",)),
    "newton": ("newton_krylov(throw=True) that hits max_steps raises", ("newton",)),
})
def barron_throw(method):
    from pdeml.barron import newton_krylov, sobolev_gradient_descent

    f = sobolev_gradient_descent if method == "sgd" else newton_krylov
    with pytest.raises(EqxError, match="within max_steps"):
        jax.block_until_ready(f(_t2(nu=1.0), 9, max_steps=1, atol=0.0, rtol=0.0, throw=True).u)


@case("solvers", "flagged result", "Sobolev gradient descent with a step 50x too large does "
      "not converge and says so")
def barron_divergent_step():
    from pdeml.barron import sobolev_gradient_descent

    t = sobolev_gradient_descent(_t2(nu=1.0), 9, step=50.0, max_steps=200)
    assert not bool(t.converged) and int(t.result) != 0


# ---------------------------------------------------------------------------- 7. parameters


@cases("input", "clear error", {
    "nu<0": ("Barron T2 with nu = -5 (non-convex Lagrangian)", ("nu", {"nu": -5.0})),
    "nu=nan": ("Barron T2 with nu = NaN", ("nu", {"nu": float("nan")})),
    "mu<0": ("Barron T3 with mu = -1", ("mu", {"mu": -1.0})),
})
def barron_bad_parameter(name, params):
    from pdeml.barron import make_test_problem

    with pytest.raises(ValueError, match=f"^{name} must be a finite number >= 0"):
        make_test_problem("T3" if name == "mu" else "T2", dim=2, **params)


@cases("input", "clear error", {
    f"step={v}": (f"Barron solver with step = {v}", (v,))
    for v in (float("nan"), -1.0, 0.0, float("inf"))
})
def barron_bad_step(step):
    from pdeml.barron import sobolev_gradient_descent

    with pytest.raises(ValueError, match="^step must be a finite number > 0"):
        sobolev_gradient_descent(_t2(nu=1.0), 9, step=step)


@cases("input", "clear error", {
    "atol=nan": ("Barron solver with atol = NaN", ({"atol": float("nan")}, "atol")),
    "atol<0": ("Barron solver with atol = -1", ({"atol": -1.0}, "atol")),
    "rtol=inf": ("Barron solver with rtol = inf", ({"rtol": float("inf")}, "rtol")),
    "rtol<0": ("Barron solver with rtol = -1", ({"rtol": -1.0}, "rtol")),
    "max_steps=0": ("Barron solver with max_steps = 0", ({"max_steps": 0}, "max_steps")),
    "cg_tol=-1": ("Newton-Krylov with cg_tol = -1", ({"cg_tol": -1.0}, "cg_tol")),
})
def barron_bad_option(kwargs, name):
    from pdeml.barron import newton_krylov

    with pytest.raises(ValueError, match=f"^{name} must be"):
        newton_krylov(_t2(nu=1.0), 9, **kwargs)


def _fit_data():
    x = jnp.linspace(0.0, 1.0, 12)[:, None] * jnp.ones((1, 2))
    return x, jnp.sin(2 * jnp.pi * x[:, 0])


def _barron_calls():
    from pdeml.barron import barron_norm, barron_norm_convergence
    from pdeml.barron.approximators import orthogonal_greedy, random_features_fit

    key = jax.random.key(0)
    return {
        "norm_s<0": lambda: barron_norm(jnp.ones((8, 8)), s=-1.0),
        "norm_s=nan": lambda: barron_norm(jnp.ones((8, 8)), s=float("nan")),
        "convergence_rtol=0": lambda: barron_norm_convergence(
            lambda p: jnp.sin(2 * jnp.pi * p[0]), 1, rtol=0.0),
        "random_features_width=-1": lambda: random_features_fit(*_fit_data(), width=-1, key=key),
        "random_features_ridge<0": lambda: random_features_fit(*_fit_data(), width=4, key=key,
                                                                ridge=-1.0),
        "greedy_width=0": lambda: orthogonal_greedy(*_fit_data(), 0),
    }


@cases("input", "clear error", {
    "norm_s<0": ("barron_norm with s = -1", ("s", "norm_s<0")),
    "norm_s=nan": ("barron_norm with s = NaN", ("s", "norm_s=nan")),
    "convergence_rtol=0": ("barron_norm_convergence with rtol = 0",
                           ("rtol", "convergence_rtol=0")),
    "random_features_width=-1": ("random_features_fit with width = -1",
                                 ("width", "random_features_width=-1")),
    "random_features_ridge<0": ("random_features_fit with ridge = -1",
                                ("ridge", "random_features_ridge<0")),
    "greedy_width=0": ("orthogonal_greedy with width = 0", ("width", "greedy_width=0")),
})
def barron_bad_approximation_option(name, which):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        _barron_calls()[which]()


@case("input", "clear error", "Barron solver with an integer u0 grid")
def barron_integer_u0():
    from pdeml.barron import sobolev_gradient_descent

    with pytest.raises(TypeError, match="u0 must be a real floating-point grid field"):
        sobolev_gradient_descent(_t2(nu=1.0), jnp.zeros((9, 9), jnp.int32))


@case("input", "clear error", "PnP with a prox that returns float16 for a float32 input "
      "(the issue's float32-for-float64 case; was a while_loop carry-type error)")
def pnp_prox_dtype():
    from pdeml.inverse.solvers import pnp_admm

    with pytest.raises(TypeError, match="prox.prox must return an array of its input's shape "
                                        "and dtype.*_HalfProx.prox returned"):
        pnp_admm(_op(), _HalfProx(), _Y, 2.0)


@case("input", "clear error", "PnP with NaN in the measurements y")
def pnp_nan_measurements():
    from pdeml.inverse.solvers import pnp_pgd
    from pdeml.prox import SoftThreshold

    with pytest.raises(EqxError, match="y \\(the measurements\\) contains NaN"):
        jax.block_until_ready(pnp_pgd(_op(), SoftThreshold(0.5), _Y * np.nan, 2.0).x)


@case("input", "clear error", "LPN.inverse with y0 of the wrong shape (was a raw reshape error)")
def lpn_bad_y0():
    with pytest.raises(ValueError, match="y0 must have the shape of x"):
        _lpn().inverse(jnp.zeros((9, 1)), y0=jnp.zeros((3, 1)))


@case("input", "clear error", "LPN.prox with an integer input")
def lpn_integer_input():
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        _lpn().prox(jnp.zeros((3, 1), jnp.int32))


@case("input", "clear error", "LPN.prox with NaN in the input")
def lpn_nan_input():
    with pytest.raises(EqxError, match="x contains NaN or inf"):
        jax.block_until_ready(_lpn().prox(jnp.array([[jnp.nan]])))


@cases("input", "clear error", {
    "weight=2": ("ScaledLPN with weight 2 (outside (0, 1])", ({"weight": 2.0}, "weight")),
    "weight=0": ("ScaledLPN with weight 0", ({"weight": 0.0}, "weight")),
    "max_steps=0": ("ScaledLPN with max_steps 0", ({"weight": 0.5, "max_steps": 0}, "max_steps")),
})
def scaled_lpn_bad_option(kwargs, name):
    from pdeml.prox import ScaledLPN

    weight = kwargs.pop("weight")
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ScaledLPN(_lpn(), weight, **kwargs)


# ---------------------------------------------------------------------------- 9. constraint layer


def _layer_and_basis():
    from pdeml.constraints import HardConstraint
    from pdeml.pde import DiffusionSorption

    layer = HardConstraint(DiffusionSorption(nx=8, nt=5), num_points=10, throw=False)
    x = jnp.linspace(0.0, 1.0, 8)[:, None]
    t = jnp.linspace(0.0, 1.0, 5)[None, :]
    basis = jnp.stack([x**k * (1 + t) ** j for k in range(3) for j in range(2)], -1)
    return layer, basis, jnp.full(8, 0.1)


@cases("input", "clear error", {
    "integer": ("hard constraint with an integer basis (was an equinox tree_at error)",
                (jnp.int32, TypeError, "basis must be floating point, got dtype int32; cast")),
    "complex": ("hard constraint with a complex basis",
                (jnp.complex64, TypeError, "basis must be real floating point, got complex")),
})
def hard_basis_dtype(dtype, exc, message):
    layer, basis, u0 = _layer_and_basis()
    with pytest.raises(exc, match=message):
        layer(basis.astype(dtype), u0, key=jax.random.key(0))


@case("input", "clear error", "hard constraint with a basis of the wrong shape")
def hard_basis_shape():
    layer, basis, u0 = _layer_and_basis()
    with pytest.raises(ValueError, match=r"basis must have shape \(\*grid, N\)"):
        layer(basis[..., 0], u0, key=jax.random.key(0))


@case("input", "clear error", "hard constraint with NaN in u0: reported as NaN in the initial "
      "condition, not as a problem with the basis")
def hard_nan_u0():
    layer, basis, u0 = _layer_and_basis()
    with pytest.raises(EqxError, match="initial condition u0\\) contains NaN") as e:
        jax.block_until_ready(layer(basis, u0.at[2].set(jnp.nan), key=jax.random.key(0))[0])
    assert "basis contains" not in _message(e)


@case("input", "clear error", "hard constraint with NaN in the basis")
def hard_nan_basis():
    layer, basis, u0 = _layer_and_basis()
    with pytest.raises(EqxError, match="basis contains NaN"):
        jax.block_until_ready(layer(basis.at[0, 0, 0].set(jnp.nan), u0, key=jax.random.key(0))[0])


@case("input", "clear error", "hard constraint with collocation points off the grid")
def hard_points_off_grid():
    layer, basis, u0 = _layer_and_basis()
    with pytest.raises(ValueError, match="points must be grid indices"):
        layer(basis, u0, points=np.array([[0, 1], [8, 1]]))


# ---------------------------------------------------------------------------- 8. checkers


@case("checkers", "clear error", "check_convex_along_lines on a concave function raises "
      "AssertionError")
def checker_concave():
    from pdeml.testing import check_convex_along_lines

    with pytest.raises(AssertionError, match="not convex"):
        check_convex_along_lines(lambda v: -jnp.sum(v * v), jnp.zeros(2), jnp.ones(2))


@case("checkers", "clear error", "check_moreau_identity with NaN output raises (NaN never "
      "passes a tolerance)")
def checker_nan():
    from pdeml.testing import check_moreau_identity

    with pytest.raises(AssertionError, match="Moreau identity violated by nan"):
        check_moreau_identity(lambda v: v * jnp.nan, lambda v: v, jnp.ones(3))


@case("checkers", "clear error", "no bare assert statement in pdeml.testing (python -O would "
      "strip it): checked on the syntax tree")
def checker_no_bare_assert():
    import ast

    for path in (ROOT / "pdeml" / "testing").glob("*.py"):
        tree = ast.parse(path.read_text())
        bad = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert not bad, f"{path.name}: assert at lines {bad}"


@case("checkers", "clear error", "under python -O a concave function still fails "
      "check_convex_along_lines", slow=True)
def checker_under_optimize():
    code = ("import jax.numpy as jnp\nfrom pdeml.testing import check_convex_along_lines\n"
            "check_convex_along_lines(lambda v: -jnp.sum(v * v), jnp.zeros(2), jnp.ones(2))\n")
    r = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode != 0 and "AssertionError: psi is not convex" in r.stderr


# ---------------------------------------------------------------------------- files: core.io


def _io_module_path() -> str:
    return str(ROOT / "pdeml" / "core" / "io.py")


def _load_io():
    """pdeml.core.io loaded on its own (stdlib only), as the subprocesses below do."""
    spec = importlib.util.spec_from_file_location("_pdeml_io", _io_module_path())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_WRITER = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("io_", {io!r})
io_ = importlib.util.module_from_spec(spec); spec.loader.exec_module(io_)
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    io_.write_checksummed(path, "checkpoint", (tag * 50000 + str(i)).encode(), {{"i": i}})
    if i == 0:
        print("first", flush=True)
"""


def _spawn_writer(path, tag, n):
    return subprocess.Popen([sys.executable, "-c", _WRITER.format(io=_io_module_path()),
                             str(path), tag, str(n)], stdout=subprocess.PIPE, text=True)


@case("files", "exact resume", "kill -9 of a process saving checkpoints in a loop, at 3 "
      "random moments (during the write, the fsync or the final rename): the file on disk is "
      "always a complete, verified version")
def kill_during_save(tmp_path):
    from pdeml.core.io import read_checksummed

    path = tmp_path / "c.eqx"
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = _spawn_writer(path, "a", 10**6)
        assert proc.stdout.readline().strip() == "first"
        time.sleep(float(rng.uniform(0.0, 0.2)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        meta, payload = read_checksummed(path, "checkpoint")
        assert payload.endswith(str(meta["i"]).encode())


@case("files", "exact resume", "an interrupt inside the final os.replace leaves the previous "
      "file intact and no temporary file")
def interrupt_during_rename(tmp_path, monkeypatch):
    from pdeml.core import io as pio

    path = pio.write_checksummed(tmp_path / "c.eqx", "checkpoint", b"old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(pio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pio.write_checksummed(path, "checkpoint", b"new")
    monkeypatch.undo()
    assert pio.read_checksummed(path, "checkpoint")[1] == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.eqx"]


@case("files", "exact resume", "two processes writing the same file concurrently (50 writes "
      "each): the result is one complete, verified version")
def concurrent_writers(tmp_path):
    from pdeml.core.io import read_checksummed

    path = tmp_path / "c.eqx"
    procs = [_spawn_writer(path, tag, 50) for tag in "ab"]
    for p in procs:
        assert p.wait(timeout=120) == 0
    meta, payload = read_checksummed(path, "checkpoint")
    assert meta["i"] == 49 and payload[:1] in (b"a", b"b")


class _FullDisk:
    """A file object whose writes fail with ENOSPC after ``budget`` bytes."""

    def __init__(self, f, budget):
        self.f, self.budget = f, budget

    def write(self, data):
        if len(data) > self.budget:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _full_disk(monkeypatch, budget=16):
    import pdeml.core.io as pio

    real = os.fdopen
    monkeypatch.setattr(pio.os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(
        real(fd, mode, *a, **k), budget))


def _write_checkpoint(path):
    from pdeml.train import save_checkpoint

    save_checkpoint(path, {"w": jnp.arange(3.0)}, metadata={"step": 1})


def _write_dataset(path):
    from pdeml.pde import save_dataset
    from pdeml.pde.datasets import PDEDataset

    save_dataset(path, PDEDataset(u0=np.ones(3), u=np.ones((1, 3, 2)), metadata={"request": {}}))


def _write_lpn(path, alpha=0.1):
    from pdeml.prox.analysis import build_lpn, save_lpn

    cfg = {"kind": "fully_conv", "channels": 1, "hidden": [4, 4], "alpha": alpha, "seed": 3}
    save_lpn(path, build_lpn(dict(cfg)), {"model": cfg})


_RUN_REQUEST = {"function": "run_experiment", "config": {"lr": 0.001}}


def _write_outputs(path, request=_RUN_REQUEST):
    from pdeml.experiments.common import write_run_outputs

    write_run_outputs(path, {"test": 1.0}, {"pred": np.ones(3)}, request=request)


_WRITERS = {"checkpoint": (_write_checkpoint, "c.eqx"), "dataset": (_write_dataset, "d.npz"),
            "lpn": (_write_lpn, "lpn"), "results": (_write_outputs, "run")}


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@cases("files", "exact resume", {
    name: (f"disk full (ENOSPC) while writing a {name} over a good one: the error is raised, "
           "the old file is untouched and no temporary is left", (name,))
    for name in _WRITERS
})
def disk_full(kind, tmp_path, monkeypatch):
    write, name = _WRITERS[kind]
    target = tmp_path / name
    write(target)
    before = _snapshot(tmp_path)
    _full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        write(target)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------- files: checkpoints


def _damage(path: Path, how: str):
    raw = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif how == "bit flip":
        raw[-7] ^= 0x40
        path.write_bytes(bytes(raw))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "foreign":
        path.write_bytes(b"PK\x03\x04 a zip file, not pdeml")


@cases("files", "clear error", {
    how: (f"checkpoint {how}: CheckpointError naming the file", (how,))
    for how in ("truncated", "bit flip", "empty", "foreign")
})
def checkpoint_damaged(how, tmp_path):
    from pdeml.train import CheckpointError, load_checkpoint

    path = tmp_path / "c.eqx"
    _write_checkpoint(path)
    _damage(path, how)
    with pytest.raises(CheckpointError, match=r"c\.eqx"):
        load_checkpoint(path, {"w": jnp.zeros(3)})


@case("files", "clear error", "checkpoint restored into a template of another shape")
def checkpoint_wrong_template(tmp_path):
    from pdeml.train import CheckpointError, load_checkpoint

    _write_checkpoint(tmp_path / "c.eqx")
    with pytest.raises(CheckpointError, match="does not match the template"):
        load_checkpoint(tmp_path / "c.eqx", {"w": jnp.zeros(4)})


# ---------------------------------------------------------------------------- 3. LPN model files


@cases("files", "clear error", {
    how: (f"saved LPN model.eqx {how}: ChecksumError naming the file", (how,))
    for how in ("truncated", "bit flip", "foreign")
})
def lpn_damaged(how, tmp_path):
    from pdeml.core.io import ChecksumError
    from pdeml.prox.analysis import load_lpn

    _write_lpn(tmp_path)
    _damage(tmp_path / "model.eqx", how)
    with pytest.raises(ChecksumError, match=r"model\.eqx"):
        load_lpn(tmp_path)


@case("files", "clear error", "saved LPN whose config.json was edited: refused, model.eqx's "
      "verified header is authoritative")
def lpn_config_edited(tmp_path):
    from pdeml.core.io import ChecksumError
    from pdeml.prox.analysis import load_lpn

    _write_lpn(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model"]["alpha"] = 0.5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ChecksumError, match="differs from the configuration stored"):
        load_lpn(tmp_path)


@case("files", "clear error", "save_lpn into a directory holding a user's own config.json: "
      "refused, the file is kept")
def lpn_foreign_directory(tmp_path):
    (tmp_path / "config.json").write_text('{"mine": 1}')
    with pytest.raises(FileExistsError, match="refusing to overwrite.*config.json"):
        _write_lpn(tmp_path)
    assert (tmp_path / "config.json").read_text() == '{"mine": 1}'


# ---------------------------------------------------------------------------- 2. datasets


@cases("files", "clear error", {
    "npz": ("pdeml data --out over a user's own .npz: refused, the file is kept",
            (lambda p: np.savez(p, mine=np.arange(3)),)),
    "text": ("pdeml data --out over a non-zip file named .npz: refused, the file is kept",
             (lambda p: p.write_bytes(b"my notes"),)),
})
def data_out_foreign(make, tmp_path):
    from pdeml.pde import DiffusionSorption, load_or_generate

    out = tmp_path / "mine.npz"
    make(out)
    before = out.read_bytes()
    with pytest.raises(FileExistsError, match=f"refusing to overwrite '{re.escape(str(out))}'"):
        load_or_generate(DiffusionSorption(nx=8, nt=4), 2, 0, path=out)
    assert out.read_bytes() == before


@case("files", "clear error", "pdeml data CLI --out over a user's file: one-line error naming "
      "the path, exit status 2, file kept")
def data_cli_out_foreign(tmp_path, capsys):
    from pdeml.cli import main

    out = tmp_path / "mine.npz"
    np.savez(out, mine=np.arange(3))
    before = out.read_bytes()
    code = main(["data", "diffusion-sorption", "--samples", "2", "--nx", "8", "--nt", "4",
                 "--out", str(out)])
    assert code == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before


@case("files", "clear error", "save_dataset over a user's .npz: refused")
def save_dataset_foreign(tmp_path):
    out = tmp_path / "mine.npz"
    np.savez(out, mine=np.arange(3))
    with pytest.raises(FileExistsError, match="mine.npz"):
        _write_dataset(out)


# ---------------------------------------------------------------------------- 4. run outputs


@case("files", "exact resume", "an evaluation in another precision is written to "
      "eval-<precision>/ and leaves the run's results.json and predictions.npz byte-identical")
def eval_beside_run(tmp_path):
    from pdeml.experiments.common import load_predictions, write_evaluation

    _write_outputs(tmp_path)
    before = _snapshot(tmp_path)
    out = write_evaluation(tmp_path, "float32", {"test": 2.0}, {"pred": np.zeros(3)},
                           request={"command": "pdeml eval", "precision": "float32"})
    assert out == tmp_path / "eval-float32"
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    np.testing.assert_array_equal(load_predictions(out)["pred"], np.zeros(3))


@case("files", "clear error", "a run's predictions.npz changed after writing: detected by its "
      ".sha256 sidecar on read")
def predictions_tampered(tmp_path):
    from pdeml.core.io import ChecksumError
    from pdeml.experiments.common import load_predictions

    _write_outputs(tmp_path)
    np.savez(tmp_path / "predictions.npz", pred=np.zeros(3))
    with pytest.raises(ChecksumError, match="predictions.npz.*SHA-256 differs"):
        load_predictions(tmp_path)


# ---------------------------------------------------------------------------- 5./6. training runs


def _tiny_train(run_dir, *, steps=12, lr=0.1, callback=None, metadata=None):
    import optax

    from pdeml.train import train

    def loss_fn(w, batch, key):
        return jnp.mean((batch[0] * w[0] + w[1] - batch[1]) ** 2), {}

    def batch_fn(step, key):
        x = jax.random.normal(key, (16,))
        return x, 3.0 * x - 1.0

    return train(jnp.zeros(2), loss_fn, optax.sgd(lr), batch_fn, steps=steps,
                 key=jax.random.key(0), run_dir=run_dir, checkpoint_every=4, progress=False,
                 callback=callback, metadata={"config": {"lr": lr}} if metadata is None
                 else metadata)


class _Killed(Exception):
    pass


@case("runs", "exact resume", "training interrupted after update 6 (checkpoint at 4) and "
      "resumed: final parameters bit-identical to an uninterrupted run")
def train_interrupted_and_resumed(tmp_path):
    ref = _tiny_train(tmp_path / "ref")

    def stop(step, model):
        if step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        _tiny_train(tmp_path / "run", callback=stop)
    res = _tiny_train(tmp_path / "run")
    assert np.array_equal(np.asarray(res.model), np.asarray(ref.model))


@case("runs", "exact resume", "the newest checkpoint corrupted: resume falls back to the "
      "previous one (with a warning naming it) and ends bit-identical")
def train_resume_corrupt_newest(tmp_path):
    ref = _tiny_train(tmp_path / "ref")

    def stop(step, model):
        if step == 8:
            raise _Killed

    with pytest.raises(_Killed):
        _tiny_train(tmp_path / "run", callback=stop)
    newest = sorted((tmp_path / "run" / "checkpoints").glob("ckpt_*.eqx"))[-1]
    _damage(newest, "bit flip")
    with pytest.warns(UserWarning, match=newest.name):
        res = _tiny_train(tmp_path / "run")
    assert np.array_equal(np.asarray(res.model), np.asarray(ref.model))


@case("runs", "clear error", "resume with another learning rate than the checkpoint's: "
      "refused, naming config.lr")
def train_resume_other_config(tmp_path):
    _tiny_train(tmp_path, steps=4)
    with pytest.raises(ValueError, match=r"config\.lr: checkpoint 0\.1, requested 0\.01"):
        _tiny_train(tmp_path, steps=8, lr=0.01)


@case("runs", "clear error", "config.json deleted, rerun with --lr 0.01: refused by the "
      "configuration in the checkpoint header, naming learning_rate")
def experiment_config_deleted(tmp_path):
    from pdeml.experiments import DiffusionSorptionConfig, config_dict
    from pdeml.experiments.common import check_run_config
    from pdeml.train import save_checkpoint

    trained = config_dict(DiffusionSorptionConfig(learning_rate=1e-3))
    save_checkpoint(tmp_path / "checkpoints" / "ckpt_0000000010.eqx", {"w": jnp.zeros(1)},
                    metadata={"step": 10, "user": {"config": trained}})
    asked = config_dict(DiffusionSorptionConfig(learning_rate=1e-2))
    with pytest.raises(ValueError, match="learning_rate: stored 0.001, requested 0.01"):
        check_run_config(tmp_path, asked, config_dict(DiffusionSorptionConfig()))


@case("runs", "clear error", "a run rejected before training (its data step fails) leaves no "
      "run directory and no config.json behind")
def experiment_rejected_leaves_nothing(tmp_path, monkeypatch):
    import pdeml.experiments.runner as runner
    from pdeml.experiments import DiffusionSorptionConfig

    def reject(config, **kw):
        raise ValueError("rejected")

    monkeypatch.setattr(runner, "load_data", reject)
    with pytest.raises(ValueError, match="rejected"):
        runner.run_experiment(DiffusionSorptionConfig(steps=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("io_", {io!r})
io_ = importlib.util.module_from_spec(spec); spec.loader.exec_module(io_)
lock = io_.DirectoryLock(sys.argv[1], what="run directory").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@case("runs", "clear error", "a second trainer in a run directory another process trains in: "
      "DirectoryLockedError naming the holder; after the holder is killed -9 the lock is free")
def train_concurrent(tmp_path):
    from pdeml.core.io import DirectoryLockedError

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(io=_io_module_path()),
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryLockedError, match=f"in use by process {holder.pid}"):
            _tiny_train(tmp_path, steps=4)
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert int(_tiny_train(tmp_path, steps=4).step) == 4


_TINY_DS = dict(nx=16, nt=6, train_samples=4, test_samples=2, steps=4, batch_size=2,
                num_basis=4, num_points=20, width=8, modes=3, layers=1, max_lm_steps=30)


def _train_args(run_dir, cache_dir, **change):
    args = ["train", "diffusion-sorption", "--method", "soft", "--run-dir", str(run_dir),
            "--cache-dir", str(cache_dir), "--no-progress"]
    for k, v in {**_TINY_DS, **change}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


@case("runs", "clear error", "pdeml train in a run directory another process holds: one-line "
      "error naming the holder, exit status 2, nothing written into the directory")
def cli_train_locked(tmp_path, capsys):
    from pdeml.cli import main

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(io=_io_module_path()),
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(_train_args(run, tmp_path / "cache"))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [err[0]] and f"in use by process {holder.pid}" in err[0]
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@case("runs", "clear error", "the issue's case through the command line: a run trained at "
      "--lr 1e-3, its config.json deleted, rerun with --lr 0.01: exit 2, the message names "
      "learning_rate; the checkpoint is untouched")
def cli_resume_other_lr(tmp_path, capsys):
    from pdeml.cli import main

    run = tmp_path / "run"
    assert main(_train_args(run, tmp_path / "cache", lr=1e-3)) == 0
    (run / "config.json").unlink()
    (run / "config.json.sha256").unlink()
    before = _snapshot(run / "checkpoints")
    capsys.readouterr()
    assert main(_train_args(run, tmp_path / "cache", lr=0.01)) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert _snapshot(run / "checkpoints") == before


_NS_RUN = """
import sys, jax
jax.config.update("jax_enable_x64", True)
from pdeml.experiments.navier_stokes import NSConfig, run_experiment
cfg = NSConfig(method="hard", nx=16, ny=16, nt=6, steps=12, checkpoint_every=4, width=8,
               layers=1, num_points=200, train_samples=4, test_samples=2, test_refine=1,
               cache_dir=sys.argv[2])
run_experiment(cfg, sys.argv[1], progress=False)
"""


@case("runs", "exact resume", "Navier-Stokes PI-HC training killed -9 after its first "
      "checkpoint and rerun: predictions bit-identical to an uninterrupted run", slow=True)
def navier_stokes_killed_and_resumed(tmp_path):
    def run(d, kill=False):
        proc = subprocess.Popen([sys.executable, "-c", _NS_RUN, str(d), str(tmp_path / "cache")],
                                cwd=ROOT)
        if kill:
            while not list((d / "checkpoints").glob("ckpt_*.eqx")) and proc.poll() is None:
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=600) in ((-signal.SIGKILL,) if kill else (0,))

    run(tmp_path / "ref")
    run(tmp_path / "run", kill=True)
    assert not (tmp_path / "run" / "results.json").exists()
    run(tmp_path / "run")
    a = np.load(tmp_path / "ref" / "predictions.npz")["pred"]
    b = np.load(tmp_path / "run" / "predictions.npz")["pred"]
    assert np.array_equal(a, b)


# ---------------------------------------------------------------------------- inputs, swept over
# the public solvers: each bad argument raises at the boundary, naming the argument


def _dense_lpn2():
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN

    return LPN(DenseICNN(2, (8,), key=jax.random.key(0), alpha=0.1))


_INVERSE_SOLVERS = ("pgd", "admm", "lpn_map")
_INVERSE_BAD = {  # suffix -> (what, kwargs changed, exception, message)
    "rho=nan": ("rho = NaN", {"rho": float("nan")}, ValueError, "^rho must be a finite float > 0"),
    "rho=0": ("rho = 0", {"rho": 0.0}, ValueError, "^rho must be a finite float > 0"),
    "rho<0": ("rho = -1", {"rho": -1.0}, ValueError, "^rho must be a finite float > 0"),
    "rho=inf": ("rho = inf", {"rho": float("inf")}, ValueError, "^rho must be a finite float > 0"),
    "tol<0": ("tol = -1", {"tol": -1.0}, ValueError, "^tol must be a float >= 0"),
    "tol=nan": ("tol = NaN", {"tol": float("nan")}, ValueError, "^tol must be a float >= 0"),
    "y_int": ("integer measurements y", {"y": np.array([2, 0])}, TypeError,
              "^y must be a floating-point array"),
    "y_shape": ("measurements y of the wrong shape", {"y": np.zeros(3)}, ValueError,
                r"^y must have trailing shape \(2,\)"),
    "x0_shape": ("x0 of the wrong shape", {"x0": np.zeros(3)}, ValueError,
                 r"^x0 must have shape \(2,\)"),
    "op_matrix": ("a bare matrix as op", {"op": np.eye(2)}, TypeError,
                  "^op must be a pdeml.inverse LinearOperator"),
    "max_steps=0": ("max_steps = 0", {"max_steps": 0}, ValueError, "max_steps"),
}


@cases("input", "clear error", {
    f"{m}-{k}": (f"{m} with {v[0]}", (m, k)) for m in _INVERSE_SOLVERS for k, v in _INVERSE_BAD.items()
})
def inverse_bad_input(method, which):
    from pdeml.inverse.solvers import lpn_map, pnp_admm, pnp_pgd
    from pdeml.prox import SoftThreshold

    _, change, exc, message = _INVERSE_BAD[which]
    f = {"pgd": pnp_pgd, "admm": pnp_admm, "lpn_map": lpn_map}[method]
    prior = _dense_lpn2() if method == "lpn_map" else SoftThreshold(0.5)
    kw = {"op": _op(), "y": _Y, "rho": 2.0, **change}
    with pytest.raises(exc, match=message):
        f(kw.pop("op"), prior, kw.pop("y"), kw.pop("rho"), **kw)


@cases("input", "clear error", {
    m: (f"{m} with an inf in the measurements y", (m,)) for m in ("pgd", "admm")
})
def inverse_inf_measurements(method):
    from pdeml.inverse.solvers import pnp_admm, pnp_pgd
    from pdeml.prox import SoftThreshold

    with pytest.raises(EqxError, match="y \\(the measurements\\) contains NaN or inf"):
        jax.block_until_ready((pnp_pgd if method == "pgd" else pnp_admm)(
            _op(), SoftThreshold(0.5), _Y * np.array([1.0, np.inf]), 2.0).x)


_GRID_BAD = {  # suffix -> (what, kwargs, u0, exception, message)
    "max_steps=0": ("max_steps = 0", {"max_steps": 0}, 9, ValueError, "^max_steps must be"),
    "max_steps<0": ("max_steps = -3", {"max_steps": -3}, 9, ValueError, "^max_steps must be"),
    "max_steps=2.5": ("max_steps = 2.5", {"max_steps": 2.5}, 9, ValueError, "^max_steps must be"),
    "atol=inf": ("atol = inf", {"atol": float("inf")}, 9, ValueError, "^atol must be"),
    "rtol=nan": ("rtol = NaN", {"rtol": float("nan")}, 9, ValueError, "^rtol must be"),
    "u0_int": ("an integer u0 grid", {}, np.zeros((9, 9), np.int32), TypeError,
               "^u0 must be a real floating-point grid field"),
    "u0_complex": ("a complex u0 grid", {}, np.zeros((9, 9), np.complex64), TypeError,
                   "^u0 must be a real floating-point grid field"),
    "u0_axes": ("a u0 grid with 1 axis for a 2-D problem", {}, np.zeros(9, np.float32),
                ValueError, "^u0 must be a grid field with 2 axes"),
    "reference_shape": ("a reference of another grid shape",
                        {"reference": np.zeros((7, 7), np.float32)}, 9, ValueError,
                        "^reference must have the grid shape"),
}


@cases("input", "clear error", {
    f"{m}-{k}": (f"{m} with {v[0]}", (m, k))
    for m in ("sobolev_gradient_descent", "newton_krylov") for k, v in _GRID_BAD.items()
})
def barron_grid_bad_input(method, which):
    import pdeml.barron as barron

    _, kw, u0, exc, message = _GRID_BAD[which]
    with pytest.raises(exc, match=message):
        getattr(barron, method)(_t2(nu=1.0), u0, **kw)


@cases("solvers", "flagged result", {
    m: (f"{m} started from a u0 holding NaN: result NONFINITE, not converged", (m,))
    for m in ("sobolev_gradient_descent", "newton_krylov")
})
def barron_nan_u0(method):
    import pdeml.barron as barron
    from pdeml.core.least_squares import NONFINITE

    u0 = jnp.zeros((9, 9)).at[3, 3].set(jnp.nan)
    t = getattr(barron, method)(_t2(nu=1.0), u0, max_steps=5)
    assert not bool(t.converged) and int(t.result) == NONFINITE


_LPN_CALLS = {
    "prox": lambda lpn, x: lpn.prox(x),
    "inverse": lambda lpn, x: lpn.inverse(x).y,
    "regularizer": lambda lpn, x: lpn.regularizer(x),
}


@cases("input", "clear error", {
    f"{m}-{bad}": (f"LPN.{m} with {what}", (m, bad))
    for m in _LPN_CALLS
    for bad, what in (("int", "an integer array"), ("inf", "an inf in the input"))
})
def lpn_bad_input(method, bad):
    x = jnp.zeros((3, 1), jnp.int32) if bad == "int" else jnp.array([[0.5], [jnp.inf], [0.0]])
    if bad == "int":
        with pytest.raises(TypeError, match="x must be a floating-point array"):
            _LPN_CALLS[method](_lpn(), x)
    else:
        with pytest.raises(EqxError, match="x contains NaN or inf"):
            jax.block_until_ready(_LPN_CALLS[method](_lpn(), x))


@cases("input", "clear error", {
    "u0": ("hard constraint with an inf in u0: reported as non-finite data", ("u0",)),
    "basis": ("hard constraint with an inf in the basis", ("basis",)),
})
def hard_inf_input(where):
    layer, basis, u0 = _layer_and_basis()
    if where == "u0":
        u0, message = u0.at[0].set(jnp.inf), "initial condition u0\\) contains NaN or inf"
    else:
        basis, message = basis.at[1, 1, 1].set(jnp.inf), "basis contains NaN"
    with pytest.raises(EqxError, match=message):
        jax.block_until_ready(layer(basis, u0, key=jax.random.key(0))[0])


# ---------------------------------------------------------------------------- files: more crashes


_KILL_AT_RENAME = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("io_", {io!r})
io_ = importlib.util.module_from_spec(spec); spec.loader.exec_module(io_)
path, when = sys.argv[1], sys.argv[2]
real = os.replace

def replace(src, dst):
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
    os.kill(os.getpid(), signal.SIGKILL)  # after the rename, before the directory fsync

io_.os.replace = replace
io_.write_checksummed(path, "checkpoint", b"new" * 1000, {{"v": "new"}})
"""


@cases("files", "exact resume", {
    "before": ("kill -9 at the final rename (temporary file complete and fsync-ed, rename not "
               "yet done): the previous checkpoint is intact and verified", ("before",)),
    "after": ("kill -9 right after the final rename (before the directory fsync): the new "
              "checkpoint is complete and verified", ("after",)),
})
def kill_at_rename(when, tmp_path):
    from pdeml.core.io import read_checksummed
    from pdeml.train import CheckpointManager

    path = tmp_path / "ckpt_0000000001.eqx"
    _load_io().write_checksummed(path, "checkpoint", b"old", {"v": "old"})
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME.format(io=_io_module_path()),
                           str(path), when], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    meta, payload = read_checksummed(path, "checkpoint")
    assert (meta["v"], payload) == (("old", b"old") if when == "before" else ("new", b"new" * 1000))
    # the killed save's temporary file (if any) is recognised and removed on the next start
    CheckpointManager(tmp_path).remove_stale_temporaries()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@case("files", "clear error", "crash between writing results.json and its .sha256 sidecar: "
      "the mismatch is reported on read (ChecksumError naming the file), never read silently")
def crash_between_file_and_sidecar(tmp_path, monkeypatch):
    from pdeml.core import io as pio
    from pdeml.core.io import ChecksumError, read_json, write_json

    write_json(tmp_path / "results.json", {"test": 1.0})
    real, calls = pio.atomic_write, []

    def crash_on_sidecar(path, data):
        calls.append(path)
        if str(path).endswith(".sha256"):
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(pio, "atomic_write", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        write_json(tmp_path / "results.json", {"test": 2.0})
    monkeypatch.undo()
    with pytest.raises(ChecksumError, match="results.json.*SHA-256 differs"):
        read_json(tmp_path / "results.json")


_FSIZE_WRITER = """
import importlib.util, resource, signal, sys
spec = importlib.util.spec_from_file_location("io_", {io!r})
io_ = importlib.util.module_from_spec(spec); spec.loader.exec_module(io_)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    io_.write_checksummed(sys.argv[1], "checkpoint", b"x" * 100000, {{"v": "new"}})
except OSError as e:
    print("OSError", e.errno, flush=True)
"""


@case("files", "exact resume", "a real write failure from the kernel (the file-size limit "
      "RLIMIT_FSIZE, EFBIG, in a child process) while writing a checkpoint over a good one: "
      "OSError, the old file untouched, no temporary left")
def file_size_limit(tmp_path):
    import errno as errno_

    if not hasattr(signal, "SIGXFSZ"):  # pragma: no cover - non-POSIX
        pytest.skip("no RLIMIT_FSIZE here")
    from pdeml.core.io import read_checksummed

    path = tmp_path / "c.eqx"
    _load_io().write_checksummed(path, "checkpoint", b"old", {"v": "old"})
    before = _snapshot(tmp_path)
    r = subprocess.run([sys.executable, "-c", _FSIZE_WRITER.format(io=_io_module_path()),
                        str(path)], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["OSError", str(errno_.EFBIG)], r.stderr
    assert _snapshot(tmp_path) == before
    assert read_checksummed(path, "checkpoint")[1] == b"old"


@cases("files", "exact resume", {
    how: (f"dataset cache file {how}: detected, regenerated, and equal to a fresh dataset",
          (how,))
    for how in ("truncated", "bit flip", "empty")
})
def cache_damaged(how, tmp_path):
    from pdeml.pde import DiffusionSorption, load_or_generate

    problem = DiffusionSorption(nx=8, nt=4)
    first = load_or_generate(problem, 2, 0, cache_dir=tmp_path)
    _damage(first.path, how)
    with pytest.warns(UserWarning, match=re.escape(first.path.name)):
        again = load_or_generate(problem, 2, 0, cache_dir=tmp_path)
    assert not again.from_cache and again.checksum == first.checksum
    np.testing.assert_array_equal(np.asarray(again.dataset.u), np.asarray(first.dataset.u))
    assert load_or_generate(problem, 2, 0, cache_dir=tmp_path).from_cache


@cases("files", "clear error", {
    "missing": ("load_checkpoint of a missing file: CheckpointError naming it", ("missing",)),
    "lpn_model": ("load_checkpoint of a pdeml file of another kind (an LPN model.eqx): "
                  "CheckpointError naming it", ("lpn_model",)),
})
def checkpoint_wrong_file(which, tmp_path):
    from pdeml.train import CheckpointError, load_checkpoint

    if which == "missing":
        path = tmp_path / "nothing.eqx"
    else:
        _write_lpn(tmp_path / "lpn")
        path = tmp_path / "lpn" / "model.eqx"
    with pytest.raises(CheckpointError, match=re.escape(path.name)):
        load_checkpoint(path, {"w": jnp.zeros(3)})


@cases("files", "clear error", {
    "results": ("write_run_outputs over a user's own results.json: refused, the file is kept",
                ("results.json",)),
    "predictions": ("write_run_outputs over a user's own predictions.npz: refused, the file "
                    "is kept", ("predictions.npz",)),
})
def run_outputs_foreign(name, tmp_path):
    (tmp_path / name).write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=f"refusing to overwrite.*{re.escape(name)}"):
        _write_outputs(tmp_path)
    assert (tmp_path / name).read_bytes() == b"mine"
    assert not any(p.name.endswith(".sha256") for p in tmp_path.iterdir())


@cases("files", "clear error", {
    "json": ("a CLI output (result.json, --json PATH) over a user's own file: refused, kept",
             ("json",)),
    "figure": ("a CLI figure (--plot PATH, --png PATH) over a user's own file: refused, kept",
               ("figure",)),
    "run_figure": ("an experiment's figure (pdeml eval --plot) over a user's own file: refused, "
                   "kept", ("run_figure",)),
})
def cli_output_foreign(kind, tmp_path):
    from pdeml.cli import save_figure_atomic, write_text_atomic
    from pdeml.experiments.common import pyplot, save_figure

    path = tmp_path / ("out.json" if kind == "json" else "out.png")
    path.write_bytes(b"mine")
    request = {"command": "pdeml test"}
    if kind == "json":
        write = lambda: write_text_atomic(path, "{}", request=request)  # noqa: E731
    else:
        fig = pyplot().figure()
        write = (lambda: save_figure_atomic(fig, path, dpi=20, request=request)) if (  # noqa: E731
            kind == "figure") else (lambda: save_figure(fig, path, dpi=20, request=request))
    try:
        with pytest.raises(FileExistsError, match=f"refusing to overwrite.*{path.name}"):
            write()
    finally:
        if kind != "json":
            pyplot().close("all")
    assert path.read_bytes() == b"mine"
    # pdeml's own output is rewritten on a rerun, with its checksum
    other = tmp_path / "ours.json"
    write_text_atomic(other, "{}", request=request)
    write_text_atomic(other, '{"again": 1}', request=request)
    from pdeml.core.io import read_json

    assert read_json(other) == {"again": 1}


# ---------------------------------------------------------------------------- files: same request


def _files_and_sidecars(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def _json_request(n):
    return {"command": "pdeml test", "options": {"steps": n}}


def _writer_json(path, n):
    from pdeml.cli import write_text_atomic

    write_text_atomic(path / "result.json", json.dumps({"n": n}), request=_json_request(n))


def _writer_figure(path, n):
    from pdeml.cli import save_figure_atomic
    from pdeml.experiments.common import pyplot

    fig = pyplot().figure(figsize=(1, 1))
    try:
        save_figure_atomic(fig, path / "plot.png", dpi=20, request=_json_request(n))
    finally:
        pyplot().close(fig)


def _writer_outputs(path, n):
    _write_outputs(path, {"function": "run_experiment", "config": {"steps": n}})


def _writer_evaluation(path, n):
    from pdeml.experiments.common import write_evaluation

    write_evaluation(path, "float64", {"test": float(n)}, {"pred": np.full(3, n)},
                     request={"command": "pdeml eval", "seed": n})


def _writer_lpn(path, n):
    _write_lpn(path, alpha=0.1 * n)


def _writer_dataset(path, n):
    from pdeml.pde import save_dataset
    from pdeml.pde.datasets import PDEDataset

    save_dataset(path / "d.npz", PDEDataset(u0=np.ones(3), u=np.full((1, 3, 2), n),
                                            metadata={"request": {"samples": n}}))


_REQUEST_WRITERS = {
    "cli_json": (_writer_json, "result.json", "options.steps: 1 -> 2"),
    "cli_figure": (_writer_figure, "plot.png", "options.steps: 1 -> 2"),
    "run_outputs": (_writer_outputs, "predictions.npz", "config.steps: 1 -> 2"),
    "evaluation": (_writer_evaluation, "predictions.npz", "seed: 1 -> 2"),
    "lpn": (_writer_lpn, "model.eqx", "config.model.alpha: 0.1 -> 0.2"),
    "dataset": (_writer_dataset, "d.npz", "samples: 1 -> 2"),
}


@cases("files", "exact resume", {
    k: (f"{k.replace('_', ' ')} written again for the same request (an idempotent rerun): "
        "replaced, the new content verified by its checksum", (k,))
    for k in _REQUEST_WRITERS
})
def same_request_rerun(kind, tmp_path):
    write, _, _ = _REQUEST_WRITERS[kind]
    write(tmp_path, 1)
    first = _files_and_sidecars(tmp_path)
    write(tmp_path, 1)  # the same request: allowed, and the same bytes
    assert _files_and_sidecars(tmp_path) == first
    if kind == "cli_json":
        from pdeml.cli import write_text_atomic
        from pdeml.core.io import read_json

        write_text_atomic(tmp_path / "result.json", '{"n": "again"}', request=_json_request(1))
        assert read_json(tmp_path / "result.json") == {"n": "again"}


@cases("files", "clear error", {
    k: (f"{k.replace('_', ' ')} over one pdeml wrote for another request: FileExistsError "
        "naming the file, the request that wrote it and the differing field; every file "
        "byte-identical", (k,))
    for k in _REQUEST_WRITERS
})
def other_request_refused(kind, tmp_path):
    write, name, diff = _REQUEST_WRITERS[kind]
    write(tmp_path, 1)
    before = _files_and_sidecars(tmp_path)
    with pytest.raises(FileExistsError) as err:
        write(tmp_path, 2)
    message = _message(err)
    assert name in message and "another request" in message and diff in message, message
    assert "choose another" in message and "delete" in message
    assert _files_and_sidecars(tmp_path) == before


@case("files", "clear error", "an output whose .sha256 predates request records (an earlier "
      "pdeml): counted as another request, refused with a message saying so; file kept")
def legacy_sidecar_refused(tmp_path):
    import hashlib

    from pdeml.cli import write_text_atomic

    path = tmp_path / "result.json"
    path.write_bytes(b"{}\n")
    (tmp_path / "result.json.sha256").write_text(
        f"{hashlib.sha256(b'{}' + chr(10).encode()).hexdigest()}  result.json\n")
    before = _files_and_sidecars(tmp_path)
    with pytest.raises(FileExistsError, match="without recording for which request.*result.json"):
        write_text_atomic(path, '{"new": 1}', request=_json_request(1))
    assert _files_and_sidecars(tmp_path) == before


@case("files", "exact resume", "the request record in a .sha256 sidecar is a comment line: "
      "sha256sum -c still verifies the file, and pdeml's own check still catches a change")
def request_record_in_sidecar(tmp_path):
    import shutil

    from pdeml.core.io import ChecksumError, read_json

    _writer_json(tmp_path, 1)
    assert read_json(tmp_path / "result.json") == {"n": 1}
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", "result.json.sha256"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0 and "result.json: OK" in done.stdout, done
    (tmp_path / "result.json").write_text('{"n": 9}')
    with pytest.raises(ChecksumError, match="result.json.*SHA-256 differs"):
        read_json(tmp_path / "result.json")


@case("files", "clear error", "an experiment whose run directory keeps results.json of another "
      "configuration (config.json and checkpoints deleted): refused before any training, "
      "naming results.json and the field; the file kept")
def experiment_other_request(tmp_path, monkeypatch):
    import pdeml.experiments.runner as runner
    from pdeml.experiments import DiffusionSorptionConfig
    from pdeml.experiments.config import config_dict

    run_dir = tmp_path / "run"
    old = DiffusionSorptionConfig(steps=1, learning_rate=1e-3)
    _write_outputs(run_dir, {"function": "run_experiment", "config": config_dict(old),
                             "precision": "float64" if jax.config.jax_enable_x64 else "float32"})
    before = _files_and_sidecars(run_dir)
    monkeypatch.setattr(runner, "load_data", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(FileExistsError, match=r"another request.*config\.learning_rate"):
        runner.run_experiment(DiffusionSorptionConfig(steps=1, learning_rate=1e-2), run_dir,
                              progress=False)
    assert _files_and_sidecars(run_dir) == before


_BARRON = ["barron", "solve", "--dim", "1", "--n", "5", "--max-steps", "3"]


@case("files", "clear error", "the command line rerun into its own --out (same options: "
      "allowed, same result.json) and then with other options: one-line error naming "
      "result.json and the differing option, exit status 2, every file byte-identical")
def cli_other_request(tmp_path, capsys):
    from pdeml.cli import main

    out = ["--out", str(tmp_path / "d")]
    assert main(_BARRON + out) in (0, 1)  # 1: not converged in 3 steps, as asked
    first = _files_and_sidecars(tmp_path)
    assert main(_BARRON + out) in (0, 1)
    assert _files_and_sidecars(tmp_path) == first
    capsys.readouterr()
    assert main(_BARRON[:-1] + ["4"] + out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "result.json" in err and "another request" in err and "max_steps: 3 -> 4" in err
    assert _files_and_sidecars(tmp_path) == first


@case("files", "clear error", "pdeml data --out FILE over a dataset pdeml generated for other "
      "parameters: one-line error naming the file, exit status 2, the file kept (rerunning "
      "the same command reuses it)")
def data_cli_out_other_request(tmp_path, capsys):
    from pdeml.cli import main

    base = ["data", "diffusion-sorption", "--nx", "8", "--nt", "4", "--out",
            str(tmp_path / "ds.npz")]
    assert main(base + ["--samples", "2"]) == 0
    first = _files_and_sidecars(tmp_path)
    assert main(base + ["--samples", "2"]) == 0
    assert _files_and_sidecars(tmp_path) == first
    capsys.readouterr()
    assert main(base + ["--samples", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ds.npz" in err and "another request" in err, err
    assert _files_and_sidecars(tmp_path) == first


@case("runs", "exact resume", "a crash in the middle of appending a metrics record (a partial "
      "last line in metrics.jsonl): reads skip it, the resumed run removes it and ends "
      "bit-identical, with no (step, kind) twice")
def metrics_torn_line(tmp_path):
    from pdeml.train import read_metrics

    ref = _tiny_train(tmp_path / "ref")

    def stop(step, model):
        if step == 6:
            raise _Killed

    with pytest.raises(_Killed):
        _tiny_train(tmp_path / "run", callback=stop)
    log = tmp_path / "run" / "metrics.jsonl"
    n = len(read_metrics(log))
    with open(log, "a") as f:
        f.write('{"step": 6, "kind": "train", "lo')
    assert len(read_metrics(log)) == n
    res = _tiny_train(tmp_path / "run")
    assert np.array_equal(np.asarray(res.model), np.asarray(ref.model))
    recs = read_metrics(log)
    keys = [(r["step"], r["kind"]) for r in recs]
    assert len(keys) == len(set(keys)) and log.read_text().endswith("\n")
    assert keys == [(r["step"], r["kind"]) for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]


_BAD_CONFIGS = {
    "steps<0": ({"steps": -1}, "steps"),
    "lr<0": ({"learning_rate": -1e-3}, "learning_rate"),
    "lr=nan": ({"learning_rate": float("nan")}, "learning_rate"),
    "batch>train": ({"batch_size": 64, "train_samples": 8}, "batch_size"),
    "num_points>grid": ({"method": "hard", "num_points": 10**7}, "num_points"),
}


@cases("runs", "clear error", {
    k: (f"an experiment rejected by validation ({k}): ValueError naming the field, no run "
        "directory left behind", (k,))
    for k in _BAD_CONFIGS
})
def experiment_invalid_config(which, tmp_path):
    import pdeml.experiments.runner as runner
    from pdeml.experiments import DiffusionSorptionConfig

    change, field = _BAD_CONFIGS[which]
    with pytest.raises(ValueError, match=field):  # the config is checked where it is made
        runner.run_experiment(DiffusionSorptionConfig(**{"steps": 1, **change}), tmp_path / "run",
                              progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- the catalogue


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.slow] if CASES[n][3] else [], id=n) for n in CASES
])
def test_fault(name, tmp_path, monkeypatch, capsys):
    """Run one catalogue case: its own arguments, then the pytest fixtures it names."""
    import inspect

    fn, args = _FUNCS[name]
    fixtures = {"tmp_path": tmp_path, "monkeypatch": monkeypatch, "capsys": capsys}
    wanted = {k: v for k, v in fixtures.items() if k in inspect.signature(fn).parameters}
    fn(*args, **wanted)


def reliability_table() -> str:
    """The Markdown tables of docs/reliability.md, counted from the registry."""
    rows = {}
    for area, outcome, _, _ in CASES.values():
        rows.setdefault(area, {o: 0 for o in OUTCOMES})[outcome] += 1
    head = ("| area | cases tried | clear error | flagged result | exact resume | "
            "silent wrong result | data lost |\n|---|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    total = {o: 0 for o in OUTCOMES}
    for area, c in rows.items():
        lines.append(f"| {area} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES)
                     + " | 0 | 0 |")
        for o in OUTCOMES:
            total[o] += c[o]
    lines.append(f"| **all** | **{sum(total.values())}** | "
                 + " | ".join(f"**{total[o]}**" for o in OUTCOMES) + " | **0** | **0** |")
    detail = ["", "| case | outcome | what is tried |", "|---|---|---|"]
    for name, (area, outcome, description, slow) in CASES.items():
        detail.append(f"| `{name}`{' (slow)' if slow else ''} | {outcome} | {description} |")
    return head + "\n".join(lines) + "\n" + "\n".join(detail) + "\n"


_BEGIN, _END = "<!-- fault-table:begin -->\n", "<!-- fault-table:end -->"
_DOC = ROOT / "docs" / "reliability.md"


def test_reliability_table_is_current():
    text = _DOC.read_text()
    table = text[text.index(_BEGIN) + len(_BEGIN): text.index(_END)]
    assert table == reliability_table(), "run `python tests/test_faults.py` to update the table"


def test_every_case_is_described_once():
    descriptions = [c[2] for c in CASES.values()]
    duplicates = {d for d in descriptions if descriptions.count(d) > 1}
    assert not duplicates, duplicates


if __name__ == "__main__":
    text = _DOC.read_text()
    start, end = text.index(_BEGIN) + len(_BEGIN), text.index(_END)
    _DOC.write_text(text[:start] + reliability_table() + text[end:])
    print(f"updated {_DOC} ({len(CASES)} cases)")
