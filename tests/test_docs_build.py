"""The docs site builds with ``mkdocs build --strict`` (needs the ``docs`` extra)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                        for m in ("mkdocs", "mkdocstrings_handlers.python", "pymdownx")),
                    reason="the docs extra is not installed (pip install -e '.[docs]')")
def test_mkdocs_build_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                          str(tmp_path / "site")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    site = tmp_path / "site"
    for page in ("index.html", "results/index.html", "api/pde/index.html",
                 "examples/burgers/index.html"):
        assert (site / page).exists(), page
    home = (site / "index.html").read_text()
    assert "Quickstart" in home  # the README, included
    assert ":class:`" not in (site / "api" / "pde" / "index.html").read_text()
