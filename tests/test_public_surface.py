"""`import pdeml` exposes each pillar's entry points, lazily and as the subpackages' own objects."""

import importlib
import subprocess
import sys

import pytest

import pdeml


@pytest.mark.parametrize("name", sorted(pdeml._ENTRY_POINTS))
def test_entry_point_is_the_subpackage_object(name):
    sub = importlib.import_module(f"pdeml.{pdeml._ENTRY_POINTS[name]}")
    assert getattr(pdeml, name) is getattr(sub, name)
    assert name in dir(pdeml)


def test_subpackages_are_attributes():
    for name in pdeml._SUBPACKAGES:
        assert getattr(pdeml, name) is importlib.import_module(f"pdeml.{name}")
    assert callable(pdeml.train.train)


def test_unknown_attribute_names_itself():
    with pytest.raises(AttributeError, match="no attribute 'HardConstrain'"):
        pdeml.HardConstrain  # noqa: B018


def test_import_is_cheap_and_star_import_works():
    code = ("import sys, pdeml; assert 'jax' not in sys.modules, 'import pdeml imported jax'; "
            "from pdeml import *; assert HardConstraint is pdeml.constraints.HardConstraint")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
