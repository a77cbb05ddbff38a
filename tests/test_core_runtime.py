"""pdeml.core.runtime: the CPU allocator setting changes speed, never results.

Every test that applies the "tuned" setting does so in a child process: the setting keeps a
process's memory at its high-water mark, and a pytest worker that runs hundreds of tests after
it must not inherit that.
"""

import json
import subprocess
import sys

import pytest

from pdeml.core.runtime import set_cpu_allocator, set_cpu_allocator_from_environment



_CHILD = """
import hashlib, json, sys
import jax, jax.numpy as jnp, numpy as np
from pdeml.core.runtime import set_cpu_allocator

def large_computation():
    # temporaries well above glibc's 32 MB mmap threshold: the case the setting is for
    x = jax.random.normal(jax.random.key(3), (2048, 2048))
    f = jax.jit(lambda x: jnp.sum(jnp.sin(x) @ jnp.cos(x).T, axis=0) + jnp.stack([x, 2 * x]).sum())
    return hashlib.sha256(np.asarray(f(x)).tobytes()).hexdigest()

before = large_computation()
tuned = set_cpu_allocator("tuned")
after = large_computation()
default = set_cpu_allocator("default")
again = large_computation()
print(json.dumps({"hashes": [before, after, again], "tuned": tuned, "default": default}))
"""


def _child():
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_results_identical_under_both_settings_and_tuned_applies_on_glibc():
    out = _child()
    before, after, again = out["hashes"]
    assert before == after == again
    tuned = out["tuned"]
    assert tuned["mode"] == "tuned"
    assert isinstance(tuned["applied"], bool) and tuned["reason"]
    if "glibc" in tuned:  # glibc found: both settings must apply
        assert tuned["applied"], tuned
        assert tuned["settings"]["M_MMAP_MAX"] == 0
        assert tuned["glibc"]
        assert out["default"]["applied"]


def test_bad_mode_names_the_argument():
    with pytest.raises(ValueError, match="mode must be one of"):
        set_cpu_allocator("fast")


def test_environment_choice(monkeypatch):
    monkeypatch.setenv("PDEML_CPU_ALLOCATOR", "default")
    assert set_cpu_allocator_from_environment() is None  # left alone
    monkeypatch.setenv("PDEML_CPU_ALLOCATOR", "Tuned")
    try:
        assert set_cpu_allocator_from_environment()["mode"] == "tuned"
    finally:
        set_cpu_allocator("default")
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
