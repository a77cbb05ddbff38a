"""Soft constraint (PI-SC) vs hard constraint (PI-HC) vs mixture of experts (PI-HC-MoE) on 2D
Navier-Stokes (vorticity form, periodic square), tested at the training resolution *and* on a
finer spatial grid.

One function, :func:`run_experiment`, does the whole job for one method:

1. reference data: Gaussian-random-field initial vorticities and their solutions from our
   pseudo-spectral solver (:func:`pdeml.pde.navier_stokes_dataset`, cached on disk), train and
   test sets from different seeds;
2. a 3D (x, y, t) FNO basis network wrapped as a soft-constrained model (one output channel,
   the vorticity) or a hard-constrained one (N basis functions, a
   :class:`~pdeml.constraints.HardConstraint` or :class:`~pdeml.constraints.MoEHardConstraint`
   layer picks their weights at m sampled collocation points);
3. data-free physics-loss training with :func:`pdeml.train.train` (progress bar, JSON-lines
   metrics, checkpoints, bit-identical resume);
4. evaluation of the relative L2 error on the test set at the training grid, and on a grid
   ``test_refine`` times finer in each spatial direction: the FNO is discretisation invariant,
   so the *same* trained network is applied to the finer grid, and the constraint layer is
   rebuilt for the finer problem. The fine test set holds the same initial conditions as the
   coarse one (trigonometric interpolation, exact for the band-limited fields) and their
   reference solutions computed by the solver *on the fine grid* (cached too).

Everything it measured is written to ``run_dir/results.json``; test predictions and references
to ``run_dir/predictions.npz`` (for :func:`plot_predictions`).

The paper's setting is 64^2 x 64 (x, y, t), T = 5, nu = 1e-4, N = 64 basis functions, 20k
points per expert, 2 x 2 experts in space, test at 128^2 and 256^2. The defaults here are a
laptop version: 32^2 x 16, T = 1 (our 32^2 grid resolves the flow to ~0.2% up to T = 1, 4% at
T = 5, measured against the 64^2 solution), N = 16, m = 2000. ``benchmarks/navier_stokes.py``
adds ``tendency_input=True``, ``output="increment"``, 128 training / 16 test ICs and 600 steps
(``BENCH_DEFAULTS`` there): with the defaults here no method beats the persistence baseline
``w(t) = w0`` at T = 1 (:func:`evaluate_baselines`; docs/pde.md).

Reference: Chalapathi, Du, Krishnapriyan, "Scaling physics-informed hard constraints with
mixture-of-experts", ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdeml.experiments.common import (
    check_carry_start,
    check_run_config,
    initial_state,
    load_predictions,
    make_optimizer,
    restore_run,
    run_lock,
    training_functions,
    write_run_config,
    write_run_outputs,
)
from pdeml.constraints import (
    HardConstrainedModel,
    HardConstraint,
    MoEHardConstraint,
    Partition,
    SoftConstrainedModel,
    relative_l2,
)
from pdeml.core import LevenbergMarquardt
from pdeml.nets import FNO
from pdeml.pde.cache import (
    CachedDataset,
    CacheError,
    CacheWarning,
    dataset_path,
    load_dataset,
    save_dataset,
)
from pdeml.pde.datasets import PDEDataset
from pdeml.pde.navier_stokes import NavierStokes2D
from pdeml.pde.navier_stokes_data import MAX_STABLE_CFL, navier_stokes_dataset
from pdeml.pde.navier_stokes_solver import (
    NavierStokesSolver,
    fourier_upsample,
    vorticity_tendency,
)
from pdeml.train import train

__all__ = [
    "BASELINES",
    "METHODS",
    "NSConfig",
    "PeriodicInputNavierStokes2D",
    "add_train_parser",
    "baseline_prediction",
    "build_model",
    "evaluate",
    "evaluate_baselines",
    "fine_test_data",
    "load_data",
    "load_run",
    "make_optimizer",
    "model_at_resolution",
    "parse_experts",
    "plot_predictions",
    "run_experiment",
]

METHODS = ("soft", "hard", "moe")
ASSIGNMENTS = ("spatial", "random")
BOUNDARY_ROWS = ("all", "touching")
POINTS_MODES = ("per_expert", "total")
OUTPUTS = ("direct", "increment")

# Problem fields that determine reference data (the fine test set's cache request holds them).
_DATA_FIELDS = ("viscosity", "t_max", "length", "nx", "ny", "nt", "forcing", "forcing_amplitude")


class PeriodicInputNavierStokes2D(NavierStokes2D):
    """:class:`~pdeml.pde.NavierStokes2D` whose network input uses the same coordinate values
    at every resolution.

    ``NavierStokes2D.network_input`` normalises each coordinate so that its first *and last*
    grid point map to 0 and 1; on the periodic grid ``x_i = i L / n`` the last point is
    ``(n - 1) L / n``, so the same physical point gets a different input value on a finer grid
    (``i / (n - 1)`` vs ``2i / (2n - 1)``, up to 1.6% of the range at n = 32) and the trained
    FNO would see a shifted coordinate channel at test time. Here ``x / L`` and ``y / L`` (in
    ``[0, 1)``, identical at coarse points of every refinement) and ``t / T`` are used, which
    keeps the network discretisation invariant in space. Everything else (residual, features,
    rows) is the parent's.

    Example:
        >>> p = PeriodicInputNavierStokes2D(nx=4, ny=4, nt=3)
        >>> p.network_input(jnp.zeros((4, 4)))[:, 0, 0, 1].tolist()
        [0.0, 0.25, 0.5, 0.75]
    """

    #: Add the channel ``t * F(w0)`` (``F`` the PDE's right-hand side,
    #: :func:`~pdeml.pde.navier_stokes_solver.vorticity_tendency`), the first-order Taylor
    #: increment, after ``w0``: computed from the equation and ``w0`` only (data-free).
    tendency_input: bool = eqx.field(static=True, default=False)

    @property
    def input_channels(self) -> int:
        return 5 if self.tendency_input else 4

    def network_input(self, data) -> jnp.ndarray:
        from pdeml.nets.fno import grid_features

        w0 = self._w0(data)
        x, y, t = self.coordinates(w0.dtype)
        fields = [w0[:, :, None]]
        if self.tendency_input:
            f = self.forcing_field(w0.dtype)
            tend = vorticity_tendency(w0, self.viscosity, self.length, f)
            fields.append(tend[:, :, None] * t[None, None, :])
        return grid_features(x / self.length, y / self.length, t / self.t_max,
                             fields=fields, normalise=False)


def parse_experts(spec) -> tuple[int, int, int]:
    """``"1x2x2"`` (or ``(1, 2, 2)``) -> ``(K_t, K_x, K_y)``: experts along t, x and y."""
    if isinstance(spec, str):
        try:
            spec = tuple(int(p) for p in spec.lower().split("x"))
        except ValueError:
            spec = ()
    spec = tuple(spec)
    if len(spec) != 3 or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in spec):
        raise ValueError(
            f"experts must be K_t x K_x x K_y with positive integers, e.g. '1x2x2' (2 x 2 in "
            f"space, the paper's router), got {spec!r}"
        )
    return tuple(int(k) for k in spec)


@dataclasses.dataclass(frozen=True)
class NSConfig:
    """Configuration of one Navier-Stokes run (defaults: a laptop version of the paper's).

    Attributes:
        method: ``"soft"`` (PI-SC), ``"hard"`` (PI-HC) or ``"moe"`` (PI-HC-MoE).
        nx, ny, nt: training grid (paper 64 x 64 x 64).
        t_max: horizon T (paper 5; 1 here so that 32^2 resolves the flow, see the module doc).
        viscosity: nu (paper 1e-4).
        train_samples, test_samples: initial conditions (train seed ``data_seed``, test seed
            ``data_seed + 1``).
        test_refine: the finer test grid is ``test_refine`` times finer in x and y (1: no
            finer-resolution test).
        seed: model initialisation and training randomness.
        steps, batch_size, learning_rate, lr_decay: Adam with exponential decay to
            ``lr_decay * learning_rate`` at the last step, global-norm clipping at 1.
        num_basis: N basis functions of the hard-constrained model (paper 64).
        num_points: collocation points m (per expert or in total, ``points_mode``; paper
            20k per expert). The same m is used on the finer test grid.
        width, modes, layers, padding: FNO width, Fourier modes per axis (capped at half the
            grid), Fourier layers, zero padding of the (non-periodic) time axis.
        max_lm_steps: Levenberg-Marquardt iteration cap.
        constraint_weight: weight of the initial-condition term in the physics loss.
        ic_weight: factor on the initial-condition rows (layer and loss alike). With 1 the
            1024 IC rows are outweighed by the 2000 PDE rows and the layer fits the initial
            vorticity loosely (measured, defaults otherwise, 150 steps: PI-HC 44.9% test error
            at 32^2); with 10: 33.4%.
        checkpoint_every: steps between checkpoints.
        cache_dir: dataset cache (default ``$PDEML_CACHE_DIR`` or ``~/.cache/pdeml``).
        experts: ``(K_t, K_x, K_y)`` experts for ``method="moe"`` (paper ``(1, 2, 2)``).
        overlap, assignment, boundary_rows, points_mode: as in
            :class:`pdeml.experiments.ExperimentConfig` (blending band, spatial/random
            experts, which experts get the IC rows, how ``num_points`` is counted).
        tendency_input: give the FNO a fifth input channel ``t * F(w0)``, the first-order
            Taylor increment with ``F`` the PDE's right-hand side computed spectrally from
            ``w0`` (equation only, no solution data; the same for every method). Without it
            no method beat persistence at T = 1 (soft 33.52% = persistence, PI-HC 32.83%).
        output: ``"direct"`` (the FNO's channels are w, or the N basis functions) or
            ``"increment"`` (:class:`IncrementOutput`: soft ``w = w0 + (t / T) g``; hard and
            moe the basis ``(w0, (t / T) g_1, ..., (t / T) g_{N-1})``), for every method alike.
        carry_start: start each training sample's solve from its solution the last time it
            was in a batch (a carried state, checkpointed) instead of the layer's linearised
            start (``hard`` and ``moe`` only).

    Example:
        >>> cfg = NSConfig(method="moe", experts="1x2x2", steps=10)
        >>> cfg.experts, cfg.num_experts, cfg.problem.grid_shape
        ((1, 2, 2), 4, (32, 32, 16))
    """

    method: str = "hard"
    nx: int = 32
    ny: int = 32
    nt: int = 16
    t_max: float = 1.0
    viscosity: float = 1e-4
    train_samples: int = 8
    test_samples: int = 4
    test_refine: int = 2
    data_seed: int = 0
    seed: int = 0
    steps: int = 200
    batch_size: int = 2
    learning_rate: float = 2e-3
    lr_decay: float = 0.1
    num_basis: int = 16
    num_points: int = 2000
    width: int = 16
    modes: int = 8
    layers: int = 3
    padding: int = 4
    max_lm_steps: int = 50
    constraint_weight: float = 1.0
    ic_weight: float = 10.0
    checkpoint_every: int = 50
    cache_dir: str | None = None
    experts: tuple[int, int, int] = (1, 2, 2)
    overlap: float = 0.0
    assignment: str = "spatial"
    boundary_rows: str = "all"
    points_mode: str = "per_expert"
    tendency_input: bool = False
    output: str = "direct"
    carry_start: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        check_carry_start(self.carry_start, self.method)
        # config.json gives lists back: store the normalised tuple so configs compare equal.
        object.__setattr__(self, "experts", parse_experts(self.experts))
        for name, choices in (("assignment", ASSIGNMENTS), ("boundary_rows", BOUNDARY_ROWS),
                              ("points_mode", POINTS_MODES), ("output", OUTPUTS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of "
                                 f"{list(choices)}")
        for name in ("nx", "ny", "nt", "train_samples", "test_samples", "test_refine",
                     "batch_size", "num_basis", "num_points", "width", "modes", "layers",
                     "max_lm_steps", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {self.padding!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        for name in ("learning_rate", "t_max", "ic_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if self.output == "increment" and self.method != "soft" and self.num_basis < 2:
            raise ValueError("output='increment' needs num_basis >= 2 (w0 and the increments)")
        if self.batch_size > self.train_samples:
            raise ValueError(
                f"batch_size ({self.batch_size}) exceeds train_samples ({self.train_samples})"
            )
        if not (isinstance(self.overlap, (int, float)) and 0 <= self.overlap < 1):
            raise ValueError(f"overlap must be a number in [0, 1), got {self.overlap!r}")
        if self.assignment == "random" and self.overlap > 0:
            raise ValueError("overlap needs assignment='spatial' (random experts are not "
                             "contiguous, so there is no seam to blend)")
        prob = self.problem  # validates the grid and the physics
        interior = prob.interior_points().shape[0]
        if self.method in ("hard", "moe") and self.num_points > interior:
            raise ValueError(
                f"num_points={self.num_points} exceeds the {interior} interior points of the "
                f"{self.nx} x {self.ny} x {self.nt} grid"
            )
        if self.method == "moe":
            k_t, k_x, k_y = self.experts
            if k_t > self.nt or k_x > self.nx or k_y > self.ny:
                raise ValueError(f"experts {k_t}x{k_x}x{k_y} (K_t x K_x x K_y) exceed the grid "
                                 f"{self.nt} x {self.nx} x {self.ny} (t x x x y)")
            # Fail before any data is generated: too many experts or points per expert.
            MoEHardConstraint(prob, self.partition(), num_points=self.num_points,
                              points=self.points_mode)

    @property
    def num_experts(self) -> int:
        return self.experts[0] * self.experts[1] * self.experts[2]

    def problem_at(self, refine: int = 1) -> PeriodicInputNavierStokes2D:
        """The problem on the training grid (``refine=1``) or ``refine`` times finer in space."""
        return PeriodicInputNavierStokes2D(
            viscosity=self.viscosity, t_max=self.t_max, nx=self.nx * refine,
            ny=self.ny * refine, nt=self.nt, ic_weight=self.ic_weight,
            tendency_input=self.tendency_input)

    def data_problem(self) -> NavierStokes2D:
        """The plain :class:`~pdeml.pde.NavierStokes2D` that names the cached reference data."""
        return NavierStokes2D(viscosity=self.viscosity, t_max=self.t_max, nx=self.nx,
                              ny=self.ny, nt=self.nt)

    @property
    def problem(self) -> NavierStokes2D:
        return self.problem_at(1)

    def partition(self, refine: int = 1) -> Partition:
        """The expert partition of ``method="moe"`` on the (x, y, t) grid (``refine``: finer)."""
        k_t, k_x, k_y = self.experts
        shape = self.problem_at(refine).grid_shape
        if self.assignment == "random":
            key = jax.random.fold_in(jax.random.key(self.seed), 2)
            return Partition.random(shape, self.num_experts, key, boundary_rows=self.boundary_rows)
        # x and y are periodic: the seam at the wrap is blended like the interior ones.
        return Partition.uniform(shape, (k_x, k_y, k_t), overlap=self.overlap,
                                 boundary_rows=self.boundary_rows, periodic=(True, True, False))


def config_dict(config: NSConfig) -> dict:
    """The configuration as stored in ``config.json`` (JSON types: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


# ---- data ------------------------------------------------------------------------------------


def load_data(config: NSConfig, *, progress: bool = False) -> tuple[CachedDataset, CachedDataset]:
    """Train and test sets (``u0`` ``(S, nx, ny)``, ``u`` ``(S, nx, ny, nt)``) from the cache.

    Generated by :class:`~pdeml.pde.NavierStokesSolver` if absent; the two sets use different
    seeds (``data_seed``, ``data_seed + 1``), so no test initial condition is seen in training.
    """
    prob = config.data_problem()
    dtype = jnp.result_type(float)
    kw = dict(cache_dir=config.cache_dir, dtype=dtype, progress=progress)
    train_set = navier_stokes_dataset(prob, config.train_samples, config.data_seed, **kw)
    test_set = navier_stokes_dataset(prob, config.test_samples, config.data_seed + 1, **kw)
    return train_set, test_set


@eqx.filter_jit
def _solve_many(solver, problem, w0s):
    return jax.vmap(lambda w0: solver(problem, w0))(w0s)


def fine_test_data(config: NSConfig, test_set: CachedDataset, *,
                   solver: NavierStokesSolver | None = None) -> CachedDataset:
    """The test initial conditions on the ``test_refine``-times finer grid, with references
    solved on that grid.

    ``u0`` is the trigonometric interpolation of the coarse test ``u0`` (exact: the fields are
    band-limited and ``fourier_upsample(w)[::r, ::r] == w``), ``u`` the solution of
    :class:`~pdeml.pde.NavierStokesSolver` on the fine grid (its default time step scales with
    that grid). Cached like the other datasets, under a request naming the coarse test set's
    checksum, the fine problem and the solver settings.

    Raises:
        RuntimeError: a fine solution is not finite or exceeded the CFL limit.
    """
    r = config.test_refine
    fine = config.problem_at(r)
    solver = NavierStokesSolver() if solver is None else solver
    u0_coarse = np.asarray(test_set.dataset.u0)
    from pdeml import __version__

    request = {
        "problem": {"class": "NavierStokes2D",
                    **{k: getattr(fine, k) for k in _DATA_FIELDS}},
        "kind": "upsampled test initial conditions",
        "source_checksum": test_set.checksum,
        "refine": r,
        "solver": solver.settings(),
        "dtype": str(u0_coarse.dtype),
        "pdeml_version": __version__,
    }
    path = dataset_path(request, config.cache_dir)
    if path.exists():
        try:
            ds = load_dataset(path, expected_request=request)
            return CachedDataset(ds, path, ds.metadata["checksum"], True)
        except CacheError as e:
            warnings.warn(f"cache file {path} is unusable: {e}; regenerating it", CacheWarning,
                          stacklevel=2)
    u0 = fourier_upsample(jnp.moveaxis(jnp.asarray(u0_coarse), 0, -1), r)
    u0 = jnp.moveaxis(u0, -1, 0)
    start = time.perf_counter()
    sol = _solve_many(solver, fine, u0)
    u = np.asarray(sol.w)
    cfl = np.asarray(sol.cfl_max)
    bad = np.flatnonzero(~np.asarray(sol.finite) | ~(cfl <= MAX_STABLE_CFL)).tolist()
    if bad:
        raise RuntimeError(f"reference solver unstable on the {fine.nx} x {fine.ny} test grid "
                           f"for samples {bad} (largest CFL {float(np.nanmax(cfl)):.3g})")
    meta = {"request": request,
            "result": {"cfl_max": float(cfl.max()), "dt": solver.time_step(fine),
                       "wall_time_s": time.perf_counter() - start}}
    ds = PDEDataset(u0=np.asarray(u0), u=u, metadata=meta)
    checksum = save_dataset(path, ds)
    return CachedDataset(ds._replace(metadata=dict(meta, checksum=checksum)), path, checksum,
                         False)


# ---- model -----------------------------------------------------------------------------------


def _layer(config: NSConfig, refine: int = 1):
    prob = config.problem_at(refine)
    solver = LevenbergMarquardt(max_steps=config.max_lm_steps)
    if config.method == "moe":
        return MoEHardConstraint(prob, config.partition(refine), num_points=config.num_points,
                                 points=config.points_mode, solver=solver, throw=False)
    return HardConstraint(prob, num_points=config.num_points, solver=solver, throw=False)


class IncrementOutput(eqx.Module):
    """Wraps the FNO so that its output is an increment on the initial vorticity.

    The network input carries ``w0`` in channel 0 and ``t / T`` in the last channel
    (:class:`PeriodicInputNavierStokes2D`). With ``keep_w0=False`` (PI-SC, one output) the
    output is ``w = w0 + (t / T) g``; with ``keep_w0=True`` (PI-HC / MoE, N basis functions) the
    basis is ``(w0, (t / T) g_1, ..., (t / T) g_{N-1})``, ``g`` the wrapped network's N - 1
    channels, so the initial-condition rows fix the weight of ``w0`` and the layer fits the
    change. Either way the initial condition is representable exactly and the network learns
    the dynamics.
    """

    net: eqx.Module
    keep_w0: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        w0, tau = x[..., :1], x[..., -1:]
        g = tau * self.net(x)
        return jnp.concatenate([w0, g], axis=-1) if self.keep_w0 else w0 + g


def build_model(config: NSConfig, key):
    """The 3D FNO (input ``(w0, x, y, t)``) as a soft- or hard-constrained model.

    Modes are capped at half the grid (padded grid for t); x and y are periodic (no padding),
    t is padded by ``config.padding`` zeros.
    """
    soft = config.method == "soft"
    increment = config.output == "increment"
    out = 1 if soft else config.num_basis - int(increment)
    modes = (min(config.modes, config.nx // 2), min(config.modes, config.ny // 2),
             min(config.modes, (config.nt + config.padding) // 2))
    net = FNO(config.problem.input_channels, out, modes=modes, width=config.width,
              n_layers=config.layers, padding=(0, 0, config.padding), key=key)
    if increment:
        net = IncrementOutput(net, keep_w0=not soft)
    if soft:
        return SoftConstrainedModel(net, config.problem)
    return HardConstrainedModel(net, _layer(config))


def model_at_resolution(model, config: NSConfig, refine: int):
    """The same trained network on a grid ``refine`` times finer in x and y.

    The FNO's weights belong to Fourier modes, not grid points, so it applies unchanged; the
    problem (soft) or constraint layer (hard: same m points; moe: the partition rebuilt on the
    fine grid) is rebuilt for the finer grid.
    """
    if refine == 1:
        return model
    if config.method == "soft":
        return SoftConstrainedModel(model.net, config.problem_at(refine))
    return HardConstrainedModel(model.net, _layer(config, refine))


def load_run(run_dir):
    """``(config, model, step)`` of the newest good checkpoint in ``run_dir``."""
    return restore_run(run_dir, NSConfig, build_model,
                       lambda c: jnp.zeros((c.nx, c.ny)))


# ---- evaluation ------------------------------------------------------------------------------


@eqx.filter_jit
def _predict(model, u0_batch, key):
    # Module level, so that repeated evaluations of same-shaped models reuse the compilation.
    keys = jax.random.split(key, u0_batch.shape[0])
    u, info = jax.vmap(lambda d, k: model(d, key=k))(u0_batch, keys)
    res = jax.vmap(lambda uu, d: jnp.mean(model.problem.residual_field(uu, d) ** 2))(u, u0_batch)
    return u, info, res


def evaluate(model, u0s, us, *, key=None, batch: int = 2) -> tuple[dict, np.ndarray]:
    """Relative L2 error per test sample (whole (x, y, t) field) and solver diagnostics.

    Also reports the mean squared PDE residual of the predictions on their own grid
    (``pde_residual_mean``) and, for a constraint layer, the fraction of converged
    Levenberg-Marquardt solves, mean iterations and their histogram (per expert for a mixture).

    Returns:
        ``(metrics, predictions (S, nx, ny, nt))``.
    """
    key = jax.random.key(12345) if key is None else key
    errs, res, conv, iters, preds = [], [], [], [], []
    for i in range(0, u0s.shape[0], batch):
        u, info, r = _predict(model, u0s[i : i + batch], jax.random.fold_in(key, i))
        preds.append(np.asarray(u))
        res.append(np.asarray(r))
        errs.append(np.asarray(jax.vmap(relative_l2)(u, us[i : i + batch])))
        if info is not None:
            conv.append(np.asarray(info.stats.converged))
            iters.append(np.asarray(info.stats.iterations))
    errs = np.concatenate(errs)
    out = {
        "rel_l2_mean": float(errs.mean()),
        "rel_l2_std": float(errs.std()),
        "rel_l2_per_sample": errs.tolist(),
        "pde_residual_mean": float(np.concatenate(res).mean()),
        "grid": list(model.problem.grid_shape),
    }
    if conv:
        conv, iters = np.concatenate(conv), np.concatenate(iters)
        out["lm_converged_fraction"] = float(conv.mean())
        out["lm_iterations_mean"] = float(iters.mean())
        out["lm_iteration_histogram"] = np.bincount(iters.ravel()).tolist()
        if iters.ndim == 2:  # (samples, experts): the per-expert view of a mixture
            out["lm_iterations_per_expert"] = iters.mean(0).tolist()
            out["lm_converged_per_expert"] = conv.mean(0).tolist()
    return out, np.concatenate(preds)


# ---- trivial baselines -----------------------------------------------------------------------

#: The baselines every learned method is judged against (no training, no solution data).
BASELINES = ("persistence", "taylor")


def baseline_prediction(problem: NavierStokes2D, u0s, kind: str) -> jnp.ndarray:
    """Trivial predictions ``(S, nx, ny, nt)`` for initial vorticities ``u0s`` ``(S, nx, ny)``.

    ``"persistence"``: ``w(x, y, t) = w0(x, y)`` at every level. ``"taylor"``: the first-order
    Taylor extrapolation ``w0 + t F(w0)`` with ``F`` the PDE's right-hand side (spectral,
    :func:`~pdeml.pde.navier_stokes_solver.vorticity_tendency`; the problem's forcing included).
    Both use the equation and ``w0`` only.
    """
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline {kind!r}; expected one of {list(BASELINES)}")
    u0s = jnp.asarray(u0s)
    if u0s.ndim != 3 or u0s.shape[1:] != (problem.nx, problem.ny):
        raise ValueError(f"u0s must have shape (S, {problem.nx}, {problem.ny}), got {u0s.shape}")
    t = jnp.asarray(problem.times(), u0s.dtype)
    if kind == "persistence":
        return jnp.broadcast_to(u0s[..., None], u0s.shape + t.shape)
    w = jnp.moveaxis(u0s, 0, -1)  # (nx, ny, S)
    f = problem.forcing_field(u0s.dtype)
    tend = vorticity_tendency(w, problem.viscosity, problem.length,
                              None if f is None else f[:, :, None])
    return u0s[..., None] + jnp.moveaxis(tend, -1, 0)[..., None] * t[None, None, None, :]


def evaluate_baselines(problem: NavierStokes2D, u0s, us) -> dict:
    """``{kind: metrics}`` of :func:`baseline_prediction` (relative L2 of the whole field per
    sample, mean, std, mean squared PDE residual), in the form of :func:`evaluate`."""
    us = jnp.asarray(us)
    out = {}
    for kind in BASELINES:
        pred = baseline_prediction(problem, u0s, kind)
        errs = np.asarray(jax.vmap(relative_l2)(pred, us))
        res = jax.vmap(lambda uu, d: jnp.mean(problem.residual_field(uu, d) ** 2))(
            pred, jnp.asarray(u0s))
        out[kind] = {"rel_l2_mean": float(errs.mean()), "rel_l2_std": float(errs.std()),
                     "rel_l2_per_sample": errs.tolist(),
                     "pde_residual_mean": float(np.mean(res)),
                     "grid": list(problem.grid_shape)}
    return out


# ---- the run ---------------------------------------------------------------------------------


_TRAINING_FUNCTIONS: dict = {}


def _training_functions(config: NSConfig, checksum: str, u0_train):
    """``(optimizer, batch_fn, loss_fn)`` for a configuration and training set.

    The training loop compiles one step per distinct ``(loss_fn, optimizer, batch_fn)``; handing
    back the same objects for the same configuration and data lets a run that is resumed in
    the same process (tests, benchmarks) reuse the compiled step instead of compiling it again.
    """
    cache_key = (dataclasses.replace(config, cache_dir=None, checkpoint_every=1), checksum)
    if cache_key not in _TRAINING_FUNCTIONS:
        if len(_TRAINING_FUNCTIONS) >= 4:  # bounded: each entry holds a training set
            _TRAINING_FUNCTIONS.pop(next(iter(_TRAINING_FUNCTIONS)))

        _TRAINING_FUNCTIONS[cache_key] = (make_optimizer(config),
                                          *training_functions(u0_train, config))
    return _TRAINING_FUNCTIONS[cache_key]


def run_experiment(config: NSConfig, run_dir, *, progress: bool = True) -> dict:
    """Train one method on Navier-Stokes and evaluate it; resumes if ``run_dir`` has a checkpoint.

    Writes ``run_dir/config.json``, ``metrics.jsonl``, ``checkpoints/``, ``results.json``
    (``test``: errors on the training grid; ``test_fine``: on the ``test_refine``-times finer
    grid; ``seconds``; dataset checksums) and ``predictions.npz`` (``pred``, ``ref``, ``u0``
    and, with ``test_refine > 1``, ``pred_fine``, ``ref_fine``).

    Example (a few seconds)::

        cfg = NSConfig(method="hard", nx=16, ny=16, nt=6, steps=5, width=8, layers=1)
        res = run_experiment(cfg, "runs/ns_hc")
        res["test"]["rel_l2_mean"], res["test_fine"]["rel_l2_mean"]
    """
    run_dir = Path(run_dir)
    cfg = config_dict(config)
    defaults = config_dict(NSConfig(method=config.method))
    # Nothing is written before the run is known to be valid: a rejected run leaves no trace.
    check_run_config(run_dir, cfg, defaults)

    t0 = time.perf_counter()
    train_set, test_set = load_data(config, progress=progress)
    fine_set = fine_test_data(config, test_set) if config.test_refine > 1 else None
    t_data = time.perf_counter() - t0
    u0_train = jnp.asarray(train_set.dataset.u0)

    key = jax.random.key(config.seed)
    model = build_model(config, jax.random.fold_in(key, 0))
    optimizer, batch_fn, loss_fn = _training_functions(config, train_set.checksum, u0_train)

    with run_lock(run_dir):  # one process trains in a run directory at a time
        check_run_config(run_dir, cfg, defaults)
        write_run_config(run_dir, cfg)
        t1 = time.perf_counter()
        result = train(model, loss_fn, optimizer, batch_fn, steps=config.steps,
                       key=jax.random.fold_in(key, 1), run_dir=run_dir,
                       checkpoint_every=max(1, min(config.checkpoint_every, config.steps)),
                       log_every=10, progress=progress, metadata={"config": cfg},
                       state=initial_state(config, model, u0_train[0], u0_train.shape[0]))
        t_train = time.perf_counter() - t1

    t2 = time.perf_counter()
    metrics, preds = evaluate(result.model, jnp.asarray(test_set.dataset.u0),
                              jnp.asarray(test_set.dataset.u))
    t_eval = time.perf_counter() - t2
    arrays = {"pred": preds, "ref": np.asarray(test_set.dataset.u),
              "u0": np.asarray(test_set.dataset.u0)}
    fine_metrics, t_fine = None, 0.0
    if fine_set is not None:
        t3 = time.perf_counter()
        fine_model = model_at_resolution(result.model, config, config.test_refine)
        fine_metrics, fine_preds = evaluate(fine_model, jnp.asarray(fine_set.dataset.u0),
                                            jnp.asarray(fine_set.dataset.u))
        t_fine = time.perf_counter() - t3
        arrays.update(pred_fine=fine_preds, ref_fine=np.asarray(fine_set.dataset.u))
    final_loss = result.history[-1]["loss"] if result.history else None
    train_steps = [h for h in result.history if "loss" in h]
    results = {
        "method": config.method,
        "config": cfg,
        "test": metrics,
        "test_fine": fine_metrics,
        "final_train_loss": final_loss,
        "seconds": {"data": t_data, "train": t_train, "eval": t_eval, "eval_fine": t_fine},
        "logged_train_records": len(train_steps),
        "dataset_checksums": {"train": train_set.checksum, "test": test_set.checksum,
                              "test_fine": None if fine_set is None else fine_set.checksum},
        "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                        "x64": bool(jax.config.jax_enable_x64)},
    }
    write_run_outputs(run_dir, results, arrays)
    return results


# ---- plots -----------------------------------------------------------------------------------


def plot_predictions(run_dirs: dict, out_png, *, sample: int = 0, fine: bool = False,
                     times=None) -> Path:
    """Vorticity snapshots of one test sample: reference, each run's prediction and |error|.

    Args:
        run_dirs: ``{label: run_dir}`` of finished runs (their ``predictions.npz``).
        out_png: the PNG to write.
        sample: test sample index.
        fine: show the finer test grid (``pred_fine``/``ref_fine``) instead of the training grid.
        times: time-level indices to show (default: the middle and the last level).

    One row per time level: the reference, then each run's prediction and absolute error
    (shared colour scales for the vorticity and for the errors of a row).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'pdeml[plot]'") from e
    pk, rk = ("pred_fine", "ref_fine") if fine else ("pred", "ref")
    loaded = {}
    for name, d in run_dirs.items():
        z = load_predictions(d)
        if pk not in z:
            raise ValueError(f"{d}/predictions.npz has no {pk!r} (a run with test_refine=1?)")
        loaded[name] = z
    ref = next(iter(loaded.values()))[rk][sample]
    nt = ref.shape[-1]
    times = [nt // 2, nt - 1] if times is None else list(times)
    ncol = 1 + 2 * len(loaded)
    fig, axes = plt.subplots(len(times), ncol, figsize=(3.1 * ncol, 2.9 * len(times)),
                             squeeze=False)
    kw = dict(origin="lower", extent=(0, 1, 0, 1))
    for row, j in enumerate(times):
        r = ref[..., j]
        vmax = float(np.abs(r).max())
        errs = {n: np.abs(z[pk][sample][..., j] - r) for n, z in loaded.items()}
        emax = max(float(e.max()) for e in errs.values()) or 1.0
        im = axes[row, 0].imshow(r.T, cmap="RdBu_r", vmin=-vmax, vmax=vmax, **kw)
        axes[row, 0].set_title(f"reference, level {j}/{nt - 1}", fontsize=9)
        fig.colorbar(im, ax=axes[row, 0], fraction=0.046)
        for c, (name, z) in enumerate(loaded.items()):
            p = z[pk][sample]
            rel = np.linalg.norm(p - ref) / np.linalg.norm(ref)
            ax = axes[row, 1 + c]
            im = ax.imshow(p[..., j].T, cmap="RdBu_r", vmin=-vmax, vmax=vmax, **kw)
            ax.set_title(f"{name} (rel. L2 {100 * rel:.1f}%)", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
            ax = axes[row, 1 + len(loaded) + c]
            im = ax.imshow(errs[name].T, cmap="magma", vmin=0, vmax=emax, **kw)
            ax.set_title(f"{name}: |error|", fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    grid = "x".join(str(n) for n in ref.shape[:2])
    fig.suptitle(f"Navier-Stokes vorticity, test sample {sample}, {grid} grid", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


# ---- command line ----------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of :class:`NSConfig`, with its defaults (shared by the CLI and benchmark)."""
    d = NSConfig()
    p.add_argument("--method", choices=list(METHODS), default=d.method,
                   help=f"soft (PI-SC), hard (PI-HC) or moe (PI-HC-MoE) (default {d.method})")
    p.add_argument("--nx", type=int, default=d.nx, help=f"grid points in x ({d.nx}; paper 64)")
    p.add_argument("--ny", type=int, default=d.ny, help=f"grid points in y ({d.ny}; paper 64)")
    p.add_argument("--nt", type=int, default=d.nt, help=f"time levels ({d.nt}; paper 64)")
    p.add_argument("--t-max", type=float, default=d.t_max, help=f"horizon T ({d.t_max}; paper 5)")
    p.add_argument("--viscosity", type=float, default=d.viscosity,
                   help=f"nu ({d.viscosity}; paper 1e-4)")
    p.add_argument("--train-samples", type=int, default=d.train_samples,
                   help=f"training initial conditions ({d.train_samples})")
    p.add_argument("--test-samples", type=int, default=d.test_samples,
                   help=f"test initial conditions ({d.test_samples})")
    p.add_argument("--test-refine", type=int, default=d.test_refine,
                   help=f"also test on a grid this many times finer in x, y ({d.test_refine}; "
                   "1: only the training grid)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"initial conditions per step ({d.batch_size})")
    p.add_argument("--lr", type=float, default=d.learning_rate,
                   help=f"Adam learning rate ({d.learning_rate})")
    p.add_argument("--num-basis", type=int, default=d.num_basis,
                   help=f"basis functions N for hard/moe ({d.num_basis}; paper 64)")
    p.add_argument("--num-points", type=int, default=d.num_points,
                   help=f"collocation points m for hard/moe ({d.num_points}; paper 20000)")
    p.add_argument("--experts", type=str, default="x".join(map(str, d.experts)),
                   help="--method moe: K_t x K_x x K_y experts (default "
                   f"{'x'.join(map(str, d.experts))}: 2 x 2 in space, the paper's)")
    p.add_argument("--overlap", type=float, default=d.overlap,
                   help=f"--method moe: blending band at seams, fraction of an expert ({d.overlap})")
    p.add_argument("--assignment", choices=list(ASSIGNMENTS), default=d.assignment,
                   help=f"--method moe: spatial blocks or random points ({d.assignment})")
    p.add_argument("--boundary-rows", choices=list(BOUNDARY_ROWS), default=d.boundary_rows,
                   help=f"--method moe: IC rows for all experts or those touching t=0 "
                   f"({d.boundary_rows})")
    p.add_argument("--points-mode", choices=list(POINTS_MODES), default=d.points_mode,
                   help=f"--method moe: --num-points per expert or in total ({d.points_mode})")
    p.add_argument("--tendency-input", action=argparse.BooleanOptionalAction,
                   default=d.tendency_input,
                   help="add the channel t * F(w0) (F: the PDE's right-hand side, computed from "
                   f"w0 by the spectral operator; data-free) to the network input ({d.tendency_input})")
    p.add_argument("--output", choices=list(OUTPUTS), default=d.output,
                   help="the FNO output is w / the basis (direct), or an increment: soft "
                   "w = w0 + (t/T) g, hard/moe basis (w0, (t/T) g_1, ..., (t/T) g_{N-1}) "
                   f"({d.output})")
    p.add_argument("--width", type=int, default=d.width, help=f"FNO width ({d.width})")
    p.add_argument("--modes", type=int, default=d.modes, help=f"FNO modes per axis ({d.modes})")
    p.add_argument("--layers", type=int, default=d.layers,
                   help=f"FNO Fourier layers ({d.layers}; paper 8)")
    p.add_argument("--padding", type=int, default=d.padding,
                   help=f"FNO zero padding of the time axis ({d.padding})")
    p.add_argument("--max-lm-steps", type=int, default=d.max_lm_steps,
                   help=f"Levenberg-Marquardt iteration cap ({d.max_lm_steps})")
    p.add_argument("--ic-weight", type=float, default=d.ic_weight,
                   help="factor on the initial-condition rows, in the layer and the loss "
                   f"({d.ic_weight})")
    p.add_argument("--constraint-weight", type=float, default=d.constraint_weight,
                   help=f"weight of the initial-condition term in the loss ({d.constraint_weight})")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay,
                   help=f"final learning rate as a fraction of --lr ({d.lr_decay})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"steps between checkpoints ({d.checkpoint_every})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"model/training seed ({d.seed})")
    p.add_argument("--data-seed", type=int, default=d.data_seed,
                   help=f"seed of the training data; test data uses seed+1 ({d.data_seed})")
    p.add_argument("--cache-dir", type=str, default=None,
                   help="dataset cache (default $PDEML_CACHE_DIR or ~/.cache/pdeml)")


def config_from_args(args: argparse.Namespace, **overrides) -> NSConfig:
    """:class:`NSConfig` from parsed :func:`add_arguments` options (ValueError if invalid)."""
    kw = dict(
        method=args.method, nx=args.nx, ny=args.ny, nt=args.nt, t_max=args.t_max,
        viscosity=args.viscosity, train_samples=args.train_samples,
        test_samples=args.test_samples, test_refine=args.test_refine, steps=args.steps,
        batch_size=args.batch_size, learning_rate=args.lr, lr_decay=args.lr_decay,
        ic_weight=args.ic_weight, constraint_weight=args.constraint_weight, num_basis=args.num_basis,
        num_points=args.num_points, width=args.width, modes=args.modes, layers=args.layers,
        padding=args.padding, max_lm_steps=args.max_lm_steps,
        checkpoint_every=args.checkpoint_every, seed=args.seed, data_seed=args.data_seed,
        cache_dir=args.cache_dir, experts=args.experts, overlap=args.overlap,
        assignment=args.assignment, boundary_rows=args.boundary_rows,
        points_mode=args.points_mode, tendency_input=args.tendency_input,
        output=args.output,
    )
    kw.update(overrides)
    return NSConfig(**kw)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``navier-stokes`` under the problems of ``pdeml train``.

    ``subparsers`` is the object returned by ``add_subparsers`` of the ``train`` parser::

        pdeml train navier-stokes --method hard --steps 200 --run-dir runs/ns_hc
        pdeml train navier-stokes --method moe --experts 1x2x2 --run-dir runs/ns_moe

    Training runs in float64 unless ``--float32`` is given.
    """
    p = subparsers.add_parser(
        "navier-stokes",
        help="2D Navier-Stokes (vorticity, periodic), soft vs hard vs mixture-of-experts",
        description="Data-free physics-loss training of a 3D FNO on 2D Navier-Stokes with a "
        "soft, hard or mixture-of-experts hard constraint; evaluates the test relative L2 "
        "error against our pseudo-spectral reference on the training grid and on a finer "
        "grid, and writes results.json.",
    )
    from pdeml.cli import add_json, add_precision

    add_arguments(p)
    p.add_argument("--out", "--run-dir", dest="run_dir", type=Path, required=True,
                   help="run directory for checkpoints, metrics.jsonl and results.json "
                   "(--run-dir is the older spelling)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(p, "results.json")
    add_precision(p, "float64", "the dense Gauss-Newton solves square the condition number")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """``pdeml train navier-stokes``: run the experiment and print the errors."""
    from pdeml.cli import CLIError

    try:
        config = config_from_args(args)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    try:
        results = run_experiment(config, args.run_dir, progress=not args.no_progress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for name in ("test", "test_fine"):
        t = results[name]
        if t is None:
            continue
        grid = "x".join(map(str, t["grid"]))
        line = (f"{config.method}: {name} ({grid}) relative L2 = {100 * t['rel_l2_mean']:.2f}% "
                f"+/- {100 * t['rel_l2_std']:.2f}% over {len(t['rel_l2_per_sample'])} ICs")
        if "lm_converged_fraction" in t:
            line += f"; LM converged {100 * t['lm_converged_fraction']:.0f}%"
        print(line)
    print(f"results: {Path(args.run_dir) / 'results.json'} ({config.steps} steps, "
          f"{results['seconds']['train']:.1f} s training)")
    return 0
