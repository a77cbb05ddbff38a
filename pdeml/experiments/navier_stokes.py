"""Soft constraint (PI-SC) vs hard constraint (PI-HC) vs mixture of experts (PI-HC-MoE) on 2D
Navier-Stokes (vorticity form, periodic square), tested at the training resolution *and* on a
finer spatial grid.

:class:`NavierStokesConfig` is the experiment; :func:`~pdeml.experiments.run_experiment` does
the whole job for one method:

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
   reference solutions computed by the solver *on the fine grid* (cached too,
   :func:`fine_test_data`).

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

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from pdeml.experiments.common import make_optimizer
from pdeml.experiments.config import METHODS, ExperimentConfig, config_dict, option
from pdeml.experiments.navier_stokes_eval import (
    BASELINES,
    baseline_prediction,
    evaluate_baselines,
    fine_test_data,
    plot_predictions,
)
from pdeml.experiments.runner import (
    build_model,
    load_data,
    load_run,
    model_at_resolution,
    run_experiment,
)
from pdeml.experiments.runner import evaluate as _evaluate
from pdeml.pde.navier_stokes import NavierStokes2D
from pdeml.pde.navier_stokes_data import navier_stokes_dataset
from pdeml.pde.navier_stokes_solver import vorticity_tendency

__all__ = [
    "BASELINES", "METHODS", "OUTPUTS", "IncrementOutput", "NSConfig", "NavierStokesConfig",
    "PeriodicInputNavierStokes2D",
    "baseline_prediction", "build_model", "config_dict", "evaluate", "evaluate_baselines",
    "fine_test_data", "load_data", "load_run", "make_optimizer", "model_at_resolution",
    "parse_experts", "plot_predictions", "run_experiment",
]

OUTPUTS = ("direct", "increment")


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


@dataclasses.dataclass(frozen=True)
class NavierStokesConfig(ExperimentConfig):
    """Configuration of one Navier-Stokes run (defaults: a laptop version of the paper's; every
    field's meaning is its help text, ``pdeml train navier-stokes --help``).

    ``ic_weight``: with 1 the 1024 IC rows are outweighed by the 2000 PDE rows and the layer
    fits the initial vorticity loosely (measured, defaults otherwise, 150 steps: PI-HC 44.9%
    test error at 32^2); with 10: 33.4%. ``tendency_input``: without it no method beat
    persistence at T = 1 (soft 33.52% = persistence, PI-HC 32.83%).

    Example:
        >>> cfg = NavierStokesConfig(method="moe", experts="1x2x2", steps=10)
        >>> cfg.experts, cfg.num_experts, cfg.problem.grid_shape
        ((1, 2, 2), 4, (32, 32, 16))
    """

    PDE: ClassVar[str] = "navier-stokes"
    SUMMARY: ClassVar[str] = ("2D Navier-Stokes (vorticity, periodic), soft vs hard vs "
                              "mixture-of-experts")
    DESCRIPTION: ClassVar[str] = (
        "Data-free physics-loss training of a 3D FNO on 2D Navier-Stokes with a soft, hard or "
        "mixture-of-experts hard constraint; evaluates the test relative L2 error against our "
        "pseudo-spectral reference on the training grid and on a finer grid, and writes "
        "results.json.")
    EXPERT_AXES: ClassVar[tuple[str, ...]] = ("t", "x", "y")
    EXPERTS_EXAMPLE: ClassVar[str] = "'1x2x2' (2 x 2 in space, the paper's router)"
    PERIODIC_SPACE: ClassVar[bool] = True
    EVAL_BATCH: ClassVar[int] = 2
    EVAL_RESIDUAL: ClassVar[bool] = True
    REFINED_TEST: ClassVar[bool] = True

    nx: int = option(32, "grid points in x (paper 64)")
    nt: int = option(16, "time levels (paper 64)")
    t_max: float = option(1.0, "horizon T (paper 5; 1 here so that 32^2 resolves the flow)")
    train_samples: int = 8
    test_samples: int = 4
    steps: int = 200
    batch_size: int = 2
    learning_rate: float = 2e-3
    num_basis: int = option(16, "basis functions N of --method hard/moe (paper 64)")
    num_points: int = option(2000, "collocation points m of --method hard/moe (per expert or in "
                             "total, --points-mode; paper 20000 per expert); the same m on the "
                             "finer test grid")
    width: int = 16
    layers: int = option(3, "FNO Fourier layers (paper 8)")
    padding: int = 4
    max_lm_steps: int = 50
    constraint_weight: float = option(1.0, "weight of the initial-condition term in the physics "
                                      "loss")
    experts: tuple[int, int, int] = option(
        (1, 2, 2), "--method moe: experts K_t x K_x x K_y along t, x and y (the paper's: 2 x 2 "
        "in space)")
    points_mode: str = "per_expert"
    ny: int = option(32, "grid points in y (paper 64)", check="count")
    viscosity: float = option(1e-4, "viscosity nu (paper 1e-4)")
    test_refine: int = option(2, "also test on a grid this many times finer in x and y (1: only "
                              "the training grid)", check="count")
    ic_weight: float = option(10.0, "factor on the initial-condition rows, in the layer and the "
                              "loss alike", check="positive")
    checkpoint_every: int = option(50, "steps between checkpoints", check="count")
    tendency_input: bool = option(
        False, "add the channel t * F(w0) (F: the PDE's right-hand side, computed spectrally from "
        "w0; data-free, the same for every method) to the network input", check="bool")
    output: str = option(
        "direct", "the network's output is w / the basis (direct), or an increment: soft "
        "w = w0 + (t/T) g, hard/moe basis (w0, (t/T) g_1, ..., (t/T) g_{N-1})", choices=OUTPUTS)

    def validate(self):
        if self.output == "increment" and self.method != "soft" and self.num_basis < 2:
            raise ValueError("output='increment' needs num_basis >= 2 (w0 and the increments)")

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every

    def problem_at(self, refine: int = 1) -> PeriodicInputNavierStokes2D:
        """The problem on the training grid (``refine=1``) or ``refine`` times finer in space."""
        return PeriodicInputNavierStokes2D(
            viscosity=self.viscosity, t_max=self.t_max, nx=self.nx * refine,
            ny=self.ny * refine, nt=self.nt, ic_weight=self.ic_weight,
            tendency_input=self.tendency_input)

    @property
    def problem(self) -> PeriodicInputNavierStokes2D:
        return self.problem_at(1)

    def data_problem(self) -> NavierStokes2D:
        """The plain :class:`~pdeml.pde.NavierStokes2D` that names the cached reference data."""
        return NavierStokes2D(viscosity=self.viscosity, t_max=self.t_max, nx=self.nx,
                              ny=self.ny, nt=self.nt)

    def dataset(self, *, num_samples, seed, dtype, progress=False):
        """Initial vorticities ``(S, nx, ny)`` and solutions ``(S, nx, ny, nt)`` of
        :class:`~pdeml.pde.NavierStokesSolver` (cached)."""
        return navier_stokes_dataset(self.data_problem(), num_samples, seed,
                                     cache_dir=self.cache_dir, dtype=dtype, progress=progress)

    def fine_test_set(self, test_set):
        return fine_test_data(self, test_set) if self.test_refine > 1 else None

    def network(self, key):
        """The 3D FNO (input ``(w0, x, y, t)``, with ``tendency_input`` also ``t F(w0)``).

        Modes are capped at half the grid (padded grid for t); x and y are periodic (no
        padding), t is padded by ``padding`` zeros.
        """
        from pdeml.nets import FNO

        soft = self.method == "soft"
        increment = self.output == "increment"
        out = 1 if soft else self.num_basis - int(increment)
        modes = (min(self.modes, self.nx // 2), min(self.modes, self.ny // 2),
                 min(self.modes, (self.nt + self.padding) // 2))
        net = FNO(self.problem.input_channels, out, modes=modes, width=self.width,
                  n_layers=self.layers, padding=(0, 0, self.padding), key=key)
        return IncrementOutput(net, keep_w0=not soft) if increment else net


NSConfig = NavierStokesConfig
parse_experts = NavierStokesConfig.parse_experts


def evaluate(model, u0s, us, *, key=None, batch: int = 2):
    """:func:`pdeml.experiments.evaluate` as the Navier-Stokes runs use it: 2 samples per call,
    with the predictions' mean squared PDE residual (``pde_residual_mean``) and grid."""
    return _evaluate(model, u0s, us, key=key, batch=batch, residual=True)
