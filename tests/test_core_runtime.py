"""pdeml.core.runtime: the CPU allocator setting changes speed, never results."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.core.runtime import set_cpu_allocator, set_cpu_allocator_from_environment

glibc = sys.platform.startswith("linux") and set_cpu_allocator("default")["applied"]


def _large_computation():
    # temporaries well above glibc's 32 MB mmap threshold: the case the setting is for
    x = jax.random.normal(jax.random.key(3), (2048, 2048))
    f = jax.jit(lambda x: jnp.sum(jnp.sin(x) @ jnp.cos(x).T, axis=0) + jnp.stack([x, 2 * x]).sum())
    return np.asarray(f(x))


def test_results_identical_under_both_settings():
    before = _large_computation()
    tuned = set_cpu_allocator("tuned")
    after = _large_computation()
    set_cpu_allocator("default")
    again = _large_computation()
    set_cpu_allocator("tuned")
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(before, again)
    assert tuned["mode"] == "tuned"
    assert isinstance(tuned["applied"], bool) and tuned["reason"]


@pytest.mark.skipif(not glibc, reason="needs glibc (mallopt)")
def test_tuned_setting_is_applied_on_glibc():
    info = set_cpu_allocator("tuned")
    assert info["applied"], info
    assert info["settings"]["M_MMAP_MAX"] == 0
    assert info["glibc"]


def test_bad_mode_names_the_argument():
    with pytest.raises(ValueError, match="mode must be one of"):
        set_cpu_allocator("fast")


def test_environment_choice(monkeypatch):
    monkeypatch.setenv("PDEML_CPU_ALLOCATOR", "default")
    assert set_cpu_allocator_from_environment() is None  # left alone
    monkeypatch.setenv("PDEML_CPU_ALLOCATOR", "Tuned")
    assert set_cpu_allocator_from_environment()["mode"] == "tuned"
    monkeypatch.setenv("PDEML_CPU_ALLOCATOR", "bogus")
    with pytest.raises(ValueError, match="PDEML_CPU_ALLOCATOR"):
        set_cpu_allocator_from_environment()


def test_cli_rejects_a_bad_setting_in_one_line():
    env = {"PDEML_CPU_ALLOCATOR": "bogus", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "pdeml", "barron", "norm", "--sizes", "4"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "pdeml: error: PDEML_CPU_ALLOCATOR must be 'tuned' or 'default', got 'bogus'"]
