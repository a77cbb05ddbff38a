"""pdeml: constrained PDE solvers and learned priors in JAX.

The main entry points of each pillar are attributes of the package, loaded on first use (so
``import pdeml`` stays cheap and imports neither JAX nor an optional dependency):

>>> import pdeml
>>> pdeml.HardConstraint is pdeml.constraints.HardConstraint
True

Subpackages:

- :mod:`pdeml.core`: structured Levenberg-Marquardt, implicit differentiation, conjugate
  gradients, line search, solver diagnostics, input validation, atomic checksummed files.
- :mod:`pdeml.pde`: PDE problems, derivative and spectral operators, reference solvers,
  datasets.
- :mod:`pdeml.nets`: FNO, MLP and input-convex networks (Equinox).
- :mod:`pdeml.constraints`: the hard-constraint layer, its mixture of experts and the
  soft-constraint baseline; :mod:`pdeml.parallel`: experts across devices and hosts.
- :mod:`pdeml.prox`: learned proximal networks and proximal matching;
  :mod:`pdeml.inverse`: operators, plug-and-play and MAP solvers, pretrained priors.
- :mod:`pdeml.barron`: spectral Barron norms, Sobolev-preconditioned descent, Deep Ritz.
- :mod:`pdeml.train`: the optax training loop with progress, metrics and checkpoints;
  :mod:`pdeml.experiments`: the paper's experiments, one runner for every PDE.
- :mod:`pdeml.testing`: hypothesis strategies and checkers for users' own solvers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("barron", "constraints", "core", "experiments", "inverse", "nets", "parallel",
                "pde", "prox", "testing", "train")

# name -> subpackage: the entry points a user reaches for first
_ENTRY_POINTS = {
    # hard constraints
    "HardConstraint": "constraints", "MoEHardConstraint": "constraints",
    "Partition": "constraints", "physics_loss": "constraints",
    "solve_least_squares": "core", "LevenbergMarquardt": "core",
    "StructuredLeastSquares": "core",
    # problems and networks
    "PDEProblem": "pde", "DiffusionSorption": "pde", "NavierStokes2D": "pde",
    "FNO": "nets", "MLP": "nets",
    # learned proximal networks and inverse problems
    "LPN": "prox", "train_lpn": "prox", "pnp_pgd": "inverse", "pnp_admm": "inverse",
    "lpn_map": "inverse", "pretrained": "inverse",
    # experiments (the training loop is pdeml.train.train: pdeml.train is the subpackage)
    "run_experiment": "experiments",
}

# pdeml.testing needs hypothesis (the test extra): reachable, but not part of `import *`
__all__ = ["__version__", *(s for s in _SUBPACKAGES if s != "testing"), *sorted(_ENTRY_POINTS)]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"pdeml.{name}")
    elif name in _ENTRY_POINTS:
        module = getattr(importlib.import_module(f"pdeml.{_ENTRY_POINTS[name]}"), name)
    else:
        raise AttributeError(f"module 'pdeml' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__():
    return sorted(set(globals()) | set(__all__))
