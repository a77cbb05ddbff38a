"""The configuration of an experiment: one frozen dataclass per PDE on a shared base.

:class:`ExperimentConfig` holds the fields every PDE experiment has (method, grid size, data,
optimiser, FNO, constraint layer, mixture of experts) and validates a configuration once, for
every PDE. A PDE is one subclass: its own fields, its defaults, and four hooks:

- :meth:`~ExperimentConfig.problem_at`: the problem the model is trained and constrained on
  (``refine`` times finer in space, where the PDE supports it);
- :meth:`~ExperimentConfig.partition`: the experts' partition of the grid (a generic one
  from ``experts``; override for another router);
- :meth:`~ExperimentConfig.dataset`: reference data (initial conditions and solutions);
- :meth:`~ExperimentConfig.network`: the basis network.

Every field carries its help text in its metadata (:func:`option`), which is what
``pdeml train <pde> --help`` shows: the command-line options are generated from the fields.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import ClassVar

import jax
import numpy as np

from pdeml.experiments.common import check_carry_start

METHODS = ("soft", "hard", "moe")
ASSIGNMENTS = ("spatial", "random")
BOUNDARY_ROWS = ("all", "touching")
POINTS_MODES = ("per_expert", "total")

#: Every PDE experiment, by its name on the command line (``pdeml train <name>``).
REGISTRY: dict[str, type] = {}


def option(default, help: str, *, check: str | None = None, choices=None, flags=()):
    """A configuration field with its help text.

    ``check`` names the validation of the value: ``"count"`` (an integer >= 1), ``"index"``
    (an integer >= 0), ``"positive"`` (a number > 0), ``"fraction"`` (a number in [0, 1)),
    ``"decay"`` (a number in (0, 1]) or ``"bool"``; ``choices`` the allowed values; ``flags``
    further command-line spellings (the first is always ``--field-name``).
    """
    meta = {"help": help, "check": check, "choices": None if choices is None else tuple(choices),
            "flags": tuple(flags)}
    return dataclasses.field(default=default,
                             metadata={k: v for k, v in meta.items() if v not in (None, ())})


def field_info(cls, name: str) -> dict:
    """The metadata of field ``name`` of config class ``cls``: a subclass that redeclares a
    field (another default, a help text naming the PDE) keeps what it does not restate."""
    info = {}
    for klass in reversed(cls.__mro__):
        f = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if f is not None:
            info.update(f.metadata)
    return info


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(name: str, kind: str, v) -> None:
    if kind == "count" and not (_is_int(v) and v >= 1):
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if kind == "index" and not _is_int(v):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    if kind == "index" and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    if kind == "positive" and not (_is_number(v) and v > 0):
        raise ValueError(f"{name} must be positive, got {v!r}")
    if kind == "fraction" and not (_is_number(v) and 0 <= v < 1):
        raise ValueError(f"{name} must be a number in [0, 1), got {v!r}")
    if kind == "decay" and not (_is_number(v) and 0 < v <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {v!r}")
    if kind == "bool" and not isinstance(v, bool):
        raise ValueError(f"{name} must be True or False, got {v!r}")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """The fields and the validation shared by every PDE experiment (see the module doc).

    Subclasses set ``PDE`` (the command-line name), ``SUMMARY`` and ``DESCRIPTION`` (its help),
    ``EXPERT_AXES`` (the axes of ``experts``, time first), and define the hooks. A subclass is
    registered in :data:`REGISTRY` under ``PDE``.
    """

    PDE: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    EXPERT_AXES: ClassVar[tuple[str, ...]] = ("t", "x")
    EXPERTS_EXAMPLE: ClassVar[str] = "'1x2'"
    PERIODIC_SPACE: ClassVar[bool] = False  # the partition also blends the seam at the wrap
    EVAL_BATCH: ClassVar[int] = 4  # test samples per compiled evaluation call
    EVAL_RESIDUAL: ClassVar[bool] = False  # the evaluation reports PDE residual and grid
    REFINED_TEST: ClassVar[bool] = False  # also tested ``test_refine`` times finer in space

    method: str = option("hard", "soft constraint (PI-SC), hard constraint (PI-HC) or mixture of "
                         "hard-constraint experts (PI-HC-MoE)", choices=METHODS)
    nx: int = option(64, "grid points in x", check="count")
    nt: int = option(26, "time levels", check="count")
    t_max: float = option(1.0, "horizon T", check="positive")
    train_samples: int = option(32, "training initial conditions", check="count")
    test_samples: int = option(16, "test initial conditions", check="count")
    data_seed: int = option(0, "seed of the training data; the test data uses seed + 1")
    seed: int = option(0, "seed of the model initialisation and of training")
    steps: int = option(300, "optimiser steps", check="index")
    batch_size: int = option(4, "initial conditions per step", check="count")
    learning_rate: float = option(1e-3, "Adam learning rate", check="positive", flags=("--lr",))
    lr_decay: float = option(0.1, "final learning rate as a fraction of the first (exponential "
                             "decay)", check="decay")
    num_basis: int = option(16, "basis functions N of --method hard/moe", check="count")
    num_points: int = option(1000, "collocation points m of --method hard/moe (per expert or in "
                             "total, --points-mode)", check="count")
    width: int = option(32, "FNO width", check="count")
    modes: int = option(8, "FNO Fourier modes per axis (capped at half the grid)", check="count")
    layers: int = option(4, "FNO Fourier layers", check="count")
    padding: int = option(6, "FNO zero padding of the (non-periodic) time axis", check="index")
    max_lm_steps: int = option(100, "Levenberg-Marquardt iteration cap", check="count")
    constraint_weight: float = option(1.0, "weight of the initial/boundary-condition term in the "
                                      "physics loss")
    cache_dir: str | None = option(None, "dataset cache (default $PDEML_CACHE_DIR or "
                                   "~/.cache/pdeml)")
    experts: tuple[int, ...] = option((1, 2), "--method moe: experts per axis, time first "
                                      "(K_t x K_x ...)")
    overlap: float = option(0.0, "--method moe: width of the smooth blending band at expert seams "
                            "as a fraction of an expert's width, in [0, 1) (0: block-wise)",
                            check="fraction")
    assignment: str = option("spatial", "--method moe: spatial blocks or a random point-to-expert "
                             "assignment (ablation)", choices=ASSIGNMENTS)
    boundary_rows: str = option("all", "--method moe: initial/boundary-condition rows for every "
                                "expert or only the experts they touch", choices=BOUNDARY_ROWS)
    points_mode: str = option("total", "--method moe: --num-points per expert or in total over "
                              "the experts", choices=POINTS_MODES)
    sweeps: int = option(0, "--method moe: rounds of Schwarz coupling after the independent "
                         "expert solves, in which every expert also imposes its neighbours' "
                         "field at its interface (0: independent experts)", check="index")
    interface_weight: float = option(10.0, "--method moe: weight of the Schwarz interface rows",
                                     check="positive")
    coarse: bool = option(True, "--method moe with --sweeps: start the Schwarz rounds from a "
                          "coarse global solve (two-level) instead of the independent expert "
                          "solves", check="bool")
    carry_start: bool = option(False, "start each training sample's solve from its solution the "
                               "last time it was in a batch (a carried, checkpointed state) "
                               "instead of the layer's own start (hard and moe only)")

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.PDE:
            REGISTRY[cls.PDE] = cls

    # ---- validation (one, for every PDE) ----------------------------------------------------

    def __post_init__(self):
        if not self.PDE:
            raise TypeError(f"{type(self).__name__} is not an experiment: use one of "
                            f"{[c.__name__ for c in REGISTRY.values()]}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        check_carry_start(self.carry_start, self.method)
        # config.json gives lists back: store the normalised tuple so configs compare equal.
        object.__setattr__(self, "experts", self.parse_experts(self.experts))
        for f in dataclasses.fields(self):
            info, v = field_info(type(self), f.name), getattr(self, f.name)
            if info.get("choices") and v not in info["choices"]:
                raise ValueError(f"unknown {f.name} {v!r}; expected one of "
                                 f"{list(info['choices'])}")
            if info.get("check"):
                _check(f.name, info["check"], v)
        if self.assignment == "random" and self.overlap > 0:
            raise ValueError("overlap needs assignment='spatial' (random experts are not "
                             "contiguous, so there is no seam to blend)")
        if self.batch_size > self.train_samples:
            raise ValueError(
                f"batch_size ({self.batch_size}) exceeds train_samples ({self.train_samples})"
            )
        self.validate()
        prob = self.problem_at(1)  # validates the grid and the physics
        interior = prob.interior_points().shape[0]
        grid = " x ".join(map(str, prob.grid_shape))
        if self.method in ("hard", "moe") and self.num_points > interior:
            raise ValueError(f"num_points={self.num_points} exceeds the {interior} interior "
                             f"points of the {grid} grid{self.grid_note()}")
        if self.method == "moe":
            extents = (prob.grid_shape[-1],) + tuple(prob.grid_shape[:-1])  # time first
            if any(k > n for k, n in zip(self.experts, extents)):
                names = " x ".join(f"K_{a}" for a in self.EXPERT_AXES)
                raise ValueError(
                    f"experts {'x'.join(map(str, self.experts))} ({names}) exceed the grid "
                    f"{' x '.join(map(str, extents))} ({' x '.join(self.EXPERT_AXES)})")
            from pdeml.constraints import MoEHardConstraint

            # Fail before any data is generated: too many experts or points per expert.
            MoEHardConstraint(prob, self.partition(), num_points=self.num_points,
                              points=self.points_mode, sweeps=self.sweeps, coarse=self.coarse)

    def validate(self) -> None:
        """Checks of the subclass's own fields (run after the shared ones)."""

    def grid_note(self) -> str:
        """Text after the grid in the ``num_points`` error (e.g. a training window)."""
        return ""

    @classmethod
    def parse_experts(cls, spec) -> tuple[int, ...]:
        """``"1x2"`` (or ``(1, 2)``) -> ``(K_t, K_x, ...)``, one count per :attr:`EXPERT_AXES`."""
        if isinstance(spec, str):
            try:
                spec = tuple(int(p) for p in spec.lower().split("x"))
            except ValueError:
                spec = ()
        spec = tuple(spec)
        counts = all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1
                     for k in spec)
        if len(spec) != len(cls.EXPERT_AXES) or not counts:
            names = " x ".join(f"K_{a}" for a in cls.EXPERT_AXES)
            raise ValueError(f"experts must be {names} with positive integers, e.g. "
                             f"{cls.EXPERTS_EXAMPLE}, got {spec!r}")
        return tuple(int(k) for k in spec)

    # ---- hooks --------------------------------------------------------------------------------

    def problem_at(self, refine: int = 1):
        """The problem the model is trained and constrained on, ``refine`` times finer in space."""
        raise NotImplementedError

    def dataset(self, *, num_samples: int, seed: int, dtype, progress: bool = False):
        """Reference data: a :class:`~pdeml.pde.cache.CachedDataset` (``u0``, ``u``)."""
        raise NotImplementedError

    def network(self, key):
        """The basis network: one output channel for ``soft``, ``num_basis`` otherwise."""
        raise NotImplementedError

    def partition(self, refine: int = 1):
        """The expert partition of ``method="moe"`` on the grid of :meth:`problem_at`.

        Spatial blocks split by ``experts`` (``(K_t, K_x, ...)`` against the grid's
        ``(x, ..., t)``), periodic in space with :attr:`PERIODIC_SPACE`; or a random assignment.
        """
        from pdeml.constraints import Partition

        shape = self.problem_at(refine).grid_shape
        if self.assignment == "random":
            key = jax.random.fold_in(jax.random.key(self.seed), 2)
            return Partition.random(shape, self.num_experts, key, boundary_rows=self.boundary_rows)
        splits = self.experts[1:] + self.experts[:1]
        periodic = (True,) * (len(shape) - 1) + (False,) if self.PERIODIC_SPACE else False
        return Partition.uniform(shape, splits, overlap=self.overlap,
                                 boundary_rows=self.boundary_rows, periodic=periodic)

    # ---- derived ------------------------------------------------------------------------------

    @property
    def model_problem(self):
        """The problem of the model on the training grid."""
        return self.problem_at(1)

    @property
    def num_experts(self) -> int:
        return math.prod(self.experts)

    @property
    def checkpoint_interval(self) -> int:
        """Steps between checkpoints (a PDE with a ``checkpoint_every`` field lets the user
        choose)."""
        return 100

    @property
    def split_level(self) -> int | None:
        """The last time level of a training window (errors are also reported on each side)."""
        return None

    def fine_test_set(self, test_set):
        """The test set on the finer grid (``None``: no finer-grid test)."""
        return None


def config_dict(config: ExperimentConfig) -> dict:
    """The configuration as stored in ``config.json`` (JSON types: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_class(stored: dict) -> type:
    """The config class a stored ``config.json`` belongs to: the one experiment whose fields
    include every stored key."""
    fits = [cls for cls in REGISTRY.values()
            if set(stored) <= {f.name for f in dataclasses.fields(cls)}]
    if len(fits) != 1:
        raise ValueError(f"the stored configuration fits {len(fits)} of the experiments "
                         f"{list(REGISTRY)}, not one: keys {sorted(stored)}")
    return fits[0]
