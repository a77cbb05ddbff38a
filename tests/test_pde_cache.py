"""The on-disk dataset cache and the ``pdeml data`` command."""

import argparse
import json
import os
import warnings

import numpy as np
import pytest

from pdeml.cli import CLIError
from pdeml.cli.data import register
from pdeml.pde import (
    CacheError,
    CacheWarning,
    DiffusionSorption,
    DiffusionSorptionSolver,
    array_checksum,
    load_dataset,
    load_or_generate,
    save_dataset,
)

P = DiffusionSorption(nx=8, nt=4)
SOLVER = DiffusionSorptionSolver(x_refine=2, substeps=10)
KW = dict(solver=SOLVER, batch_size=4)


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        return fn(*args, **kwargs)


def test_round_trip_and_second_call_hits_the_cache(tmp_path):
    first = _no_warnings(load_or_generate, P, 3, 7, cache_dir=tmp_path, **KW)
    assert not first.from_cache and first.path.parent == tmp_path
    second = _no_warnings(load_or_generate, P, 3, 7, cache_dir=tmp_path, **KW)
    assert second.from_cache and second.path == first.path
    assert second.checksum == first.checksum
    np.testing.assert_array_equal(second.dataset.u, first.dataset.u)
    np.testing.assert_array_equal(second.dataset.u0, first.dataset.u0)
    meta = second.dataset.metadata
    assert meta["request"]["seed"] == 7
    assert meta["request"]["problem"]["D"] == P.D and meta["request"]["problem"]["nx"] == 8
    assert meta["request"]["solver"]["substeps"] == 10
    assert "pdeml_version" in meta["request"] and meta["checksum"] == first.checksum
    # A different seed is a different file.
    other = _no_warnings(load_or_generate, P, 3, 8, cache_dir=tmp_path, **KW)
    assert other.path != first.path and not np.array_equal(other.dataset.u0, first.dataset.u0)
    # No temporary files are left behind.
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz", ".npz"]


def test_corrupted_bytes_are_detected_reported_and_regenerated(tmp_path):
    good = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    raw = bytearray(good.path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 64] = bytes(64)  # zero a block inside the compressed arrays
    good.path.write_bytes(bytes(raw))
    with pytest.raises(CacheError):
        load_dataset(good.path)
    with pytest.warns(CacheWarning, match=str(good.path.name)):
        again = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    assert not again.from_cache and again.checksum == good.checksum
    assert _no_warnings(load_or_generate, P, 2, 0, cache_dir=tmp_path, **KW).from_cache


def test_truncated_file_is_regenerated(tmp_path):
    good = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    good.path.write_bytes(good.path.read_bytes()[:100])
    with pytest.warns(CacheWarning, match="unreadable"):
        again = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    assert not again.from_cache and again.checksum == good.checksum


def test_checksum_mismatch_is_regenerated(tmp_path):
    # A readable file whose arrays no longer match the stored checksum (e.g. edited by hand).
    good = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    with np.load(good.path) as z:
        u0, u, meta = z["u0"], z["u"].copy(), str(z["metadata_json"])
    u[0, 3, 2] += 1e-9
    with open(good.path, "wb") as f:
        np.savez_compressed(f, u0=u0, u=u, metadata_json=np.asarray(meta))
    with pytest.raises(CacheError, match="checksum mismatch"):
        load_dataset(good.path)
    with pytest.warns(CacheWarning, match="checksum mismatch"):
        again = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    assert not again.from_cache and again.checksum == good.checksum


def test_an_explicit_path_holding_another_request_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "mine.npz"
    load_or_generate(P, 2, 0, path=path, **KW)
    before = path.read_bytes()
    other = DiffusionSorption(nx=8, nt=4, D=1e-3)
    with pytest.raises(FileExistsError, match=r"another request \(metadata mismatch in "
                                              r"\['problem'\]\)"):
        load_or_generate(other, 2, 0, path=path, **KW)
    assert path.read_bytes() == before
    # the same request is read back from the file
    assert load_or_generate(P, 2, 0, path=path, **KW).from_cache


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    first = load_or_generate(P, 2, 0, cache_dir=tmp_path, **KW)
    before = first.path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(first.path, first.dataset)
    assert first.path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PDEML_CACHE_DIR", str(tmp_path / "envcache"))
    res = load_or_generate(P, 2, 0, **KW)
    assert res.path.parent == tmp_path / "envcache"


def test_checksum_covers_dtype_shape_and_values():
    a = np.arange(6.0).reshape(2, 3)
    base = array_checksum({"u": a})
    assert array_checksum({"u": a.reshape(3, 2)}) != base
    assert array_checksum({"u": a.astype(np.float32)}) != base
    assert array_checksum({"u": a + 1e-12}) != base
    assert array_checksum({"u": a.copy()}) == base


def _cli(argv):
    parser = argparse.ArgumentParser(prog="pdeml")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generates_then_loads_and_prints_a_summary(tmp_path, capsys):
    argv = ["data", "diffusion-sorption", "--samples", "2", "--nx", "8", "--nt", "4",
            "--seed", "0", "--batch-size", "4", "--cache-dir", str(tmp_path)]
    assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "generated in" in out and "sha256" in out and str(tmp_path) in out
    assert _cli(argv) == 0
    out2 = capsys.readouterr().out
    assert "loaded from cache" in out2
    checksum = [line.split()[-1] for line in out2.splitlines() if "sha256" in line][0]
    (path,) = tmp_path.glob("*.npz")
    assert load_dataset(path).metadata["checksum"] == checksum


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--samples", "-3"], "--samples"),
        (["--nx", "2"], "--nx"),
        (["--nt", "0"], "--nt"),
        (["--seed", "-1"], "--seed"),
        (["--substeps", "0"], "--substeps"),
        (["--out", "data.txt"], ".npz"),
    ],
)
def test_cli_rejects_bad_arguments(extra, message):
    with pytest.raises(CLIError, match=message):
        _cli(["data", "diffusion-sorption"] + extra)


def test_cli_out_file(tmp_path):
    out = tmp_path / "sub" / "ds.npz"
    argv = ["data", "diffusion-sorption", "--samples", "2", "--nx", "8", "--nt", "4",
            "--batch-size", "4", "--out", str(out)]
    assert _cli(argv) == 0
    ds = load_dataset(out)
    assert ds.u.shape == (2, 8, 4)
    assert not [p for p in os.listdir(out.parent) if p != "ds.npz"]
