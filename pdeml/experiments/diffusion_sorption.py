"""Soft constraint (PI-SC) vs hard constraint (PI-HC) vs mixture of experts (PI-HC-MoE) on
1D diffusion-sorption.

:class:`DiffusionSorptionConfig` is the experiment: its fields and the four hooks of
:class:`~pdeml.experiments.config.ExperimentConfig` (the problem, optionally restricted to a
training window, the expert partition of the (x, t) grid, reference data from our own stiff
solver, an FNO basis network). :func:`~pdeml.experiments.run_experiment` trains and evaluates
it; everything it measured is written to ``run_dir/results.json``.

Reference: Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from pdeml.experiments.common import (
    load_predictions,
    make_optimizer,
    plot_request,
    pyplot,
    save_figure,
)
from pdeml.experiments.config import METHODS, ExperimentConfig, config_dict, option
from pdeml.experiments.runner import build_model, evaluate, load_data, load_run, run_experiment
from pdeml.pde import DiffusionSorption, load_or_generate

__all__ = ["METHODS", "DiffusionSorptionConfig", "TrainingWindow", "build_model", "config_dict",
           "evaluate", "load_data", "load_run", "make_optimizer", "parse_experts",
           "plot_predictions", "run_experiment"]


class TrainingWindow(DiffusionSorption):
    """Diffusion-sorption with the PDE imposed only up to time level ``last_level``.

    Used for the extrapolation test of [HC-MoE] (train on t <= 400, test on t > 400): the
    residual points (so the collocation points of the constraint layers and the physics loss)
    are those with ``j <= last_level``; the grid, the network input and the IC/BC rows at the
    window's times are those of the full problem, so the trained model predicts the whole grid.
    """

    last_level: int = eqx.field(static=True, default=0)

    def interior_points(self):
        # Same x-major order as DiffusionSorption.interior_points, built in numpy so that it
        # stays a constant under tracing.
        i, j = np.meshgrid(np.arange(1, self.nx - 1), np.arange(1, self.last_level + 1),
                           indexing="ij")
        return jnp.asarray(np.stack([i.ravel(), j.ravel()], axis=1).astype(np.int32))

    def constraint_rows(self, basis, data):
        rows, targets = super().constraint_rows(basis, data)
        # Row order: IC (nx), left BC (nt - 1), right BC (nt - 1); keep j <= last_level.
        j = np.arange(1, self.nt)
        keep = np.concatenate([np.ones(self.nx, bool), j <= self.last_level, j <= self.last_level])
        return rows[keep], targets[keep]


@dataclasses.dataclass(frozen=True)
class DiffusionSorptionConfig(ExperimentConfig):
    """Configuration of one diffusion-sorption run (defaults: a laptop-scale version of the
    paper's setting; every field's meaning is its help text, ``pdeml train diffusion-sorption
    --help``).

    The paper uses a 1024 x 101 grid, 20k collocation points, N = 16 basis functions and an
    FNO with 5 layers, 8 modes, width 64; the defaults here keep the structure at a size that
    trains in minutes on a laptop CPU.

    ``row_weight`` multiplies the IC/BC rows (in the layer's least squares and, identically,
    in the physics loss of both methods). With weight 1 the 114 rows are outvoted by the 1000
    PDE rows and the layer satisfies the boundary data poorly (measured at 300 steps: PI-HC
    20.6% test error, LM converged in 69% of solves); with 10: 2.8%, 100% converged.

    Mixture of experts (``method="moe"``): ``experts = (K_t, K_x)`` experts along t and x
    (the paper: ``(1, 4)``); ``points_mode`` counts ``num_points`` in ``"total"`` by default
    (the equal-budget comparison, which also fits the laptop grid, where 4 experts have only
    ~400 interior points each) or ``"per_expert"`` (published: each expert gets as many points
    as PI-HC in total).

    Extrapolation (``t_train``, the paper: 400 of 500): the PDE residual, the IC/BC rows and
    the collocation points are restricted to ``t <= t_train`` in training *and* in the
    constraint layers at test time (:class:`TrainingWindow`); the test error is reported on
    the whole grid and separately on the training window and on ``t > t_train``.
    """

    PDE: ClassVar[str] = "diffusion-sorption"
    SUMMARY: ClassVar[str] = ("1D diffusion-sorption (PDEBench), soft vs hard vs "
                              "mixture-of-experts constraint")
    DESCRIPTION: ClassVar[str] = (
        "Data-free physics-loss training of an FNO on diffusion-sorption with a soft (residual "
        "loss), hard (least-squares layer) or mixture-of-experts hard constraint (one "
        "least-squares layer per subdomain); evaluates the test relative L2 error against our "
        "reference solver and writes results.json.")
    EXPERT_AXES: ClassVar[tuple[str, ...]] = ("t", "x")
    EXPERTS_EXAMPLE: ClassVar[str] = "'1x4' (4 experts along x, the paper's router) or '2x2'"

    nx: int = option(64, "grid points in x (paper 1024)")
    nt: int = option(26, "time levels (paper 101)")
    t_max: float = 500.0
    num_points: int = option(1000, "collocation points m of --method hard/moe (per expert or in "
                             "total, --points-mode; paper 20000)")
    width: int = option(32, "FNO width (paper 64)")
    layers: int = option(4, "FNO Fourier layers (paper 5)")
    row_weight: float = option(10.0, "factor on the initial/boundary-condition rows, in the "
                               "layer and the loss alike", check="positive")
    experts: tuple[int, int] = option(
        (1, 4), "--method moe: experts K_t x K_x along t and x (the paper's: 4 along x; measured "
        "best at laptop scale: --experts 1x2 --overlap 0.9 --boundary-rows touching, see "
        "docs/constraints.md)")
    t_train: float | None = option(
        None, "extrapolation: impose the PDE only for t <= T_TRAIN (training and the constraint "
        "layers) and report the test error on t > T_TRAIN separately (the paper: 400 of t_max "
        "500; default: the whole interval)")

    def validate(self):
        if self.t_train is not None:
            if not 0 < self.t_train < self.t_max:
                raise ValueError(f"t_train must lie in (0, t_max={self.t_max}), got {self.t_train}")
            if self.train_levels < 2 or self.train_levels >= self.nt - 1:
                raise ValueError(
                    f"t_train={self.t_train} keeps {self.train_levels} of the {self.nt - 1} time "
                    "steps for training: it must keep at least 2 and leave at least 1 for testing"
                )

    def grid_note(self) -> str:
        return "" if self.t_train is None else f" (up to t_train={self.t_train})"

    @property
    def train_levels(self) -> int:
        """Time levels j >= 1 with t_j <= t_train (the training window); all without t_train."""
        if self.t_train is None:
            return self.nt - 1
        dt = self.t_max / (self.nt - 1)
        return int(np.floor(self.t_train / dt + 1e-9))

    @property
    def split_level(self) -> int | None:
        return None if self.t_train is None else self.train_levels

    @property
    def problem(self) -> DiffusionSorption:
        """The whole problem (reference data, test errors)."""
        return DiffusionSorption(nx=self.nx, nt=self.nt, t_max=self.t_max,
                                 ic_weight=self.row_weight, bc_weight=self.row_weight)

    def problem_at(self, refine: int = 1) -> DiffusionSorption:
        """The problem the model is trained on: the whole one, or its training window."""
        if refine != 1:
            raise ValueError("diffusion-sorption experiments run on the training grid only "
                             f"(refine=1), got refine={refine}")
        if self.t_train is None:
            return self.problem
        return TrainingWindow(nx=self.nx, nt=self.nt, t_max=self.t_max, ic_weight=self.row_weight,
                              bc_weight=self.row_weight, last_level=self.train_levels)

    def dataset(self, *, num_samples, seed, dtype, progress=False):
        return load_or_generate(self.problem, num_samples, seed, cache_dir=self.cache_dir,
                                dtype=dtype, progress=progress)

    def network(self, key):
        from pdeml.nets import FNO

        out = 1 if self.method == "soft" else self.num_basis
        modes = (min(self.modes, self.nx // 2), min(self.modes, (self.nt + self.padding) // 2))
        return FNO(3, out, modes=modes, width=self.width, n_layers=self.layers,
                   padding=(0, self.padding), key=key)


#: The name this configuration had in earlier versions of :mod:`pdeml.experiments`.
ExperimentConfig = DiffusionSorptionConfig
parse_experts = DiffusionSorptionConfig.parse_experts


def plot_predictions(run_dirs: dict[str, Path], out_png, *, sample: int = 0,
                     title: str | None = None, request=None) -> Path:
    """Reference, predictions and errors of one test sample for several runs (needs matplotlib);
    ``run_dirs``: ``{label: directory holding predictions.npz}``. ``request`` is recorded with
    the PNG (default: this function, the runs and the options); a PNG pdeml wrote for another
    request is not replaced."""
    if request is None:
        request = plot_request("diffusion_sorption.plot_predictions", run_dirs,
                               sample=sample, title=title)
    plt = pyplot()
    loaded = {name: load_predictions(d) for name, d in run_dirs.items()}
    ref = next(iter(loaded.values()))["ref"][sample]
    fig, axes = plt.subplots(2, len(loaded) + 1, figsize=(4 * (len(loaded) + 1), 6), squeeze=False)
    kw = dict(aspect="auto", origin="lower", extent=(0, 1, 0, 1))
    im = axes[0, 0].imshow(ref.T, **kw)
    axes[0, 0].set_title("reference (own BDF2 solver)")
    fig.colorbar(im, ax=axes[0, 0])
    axes[1, 0].axis("off")
    for j, (name, d) in enumerate(loaded.items(), start=1):
        pred = d["pred"][sample]
        err = np.linalg.norm(pred - ref) / np.linalg.norm(ref)
        im = axes[0, j].imshow(pred.T, **kw)
        axes[0, j].set_title(f"{name}: rel. L2 {100 * err:.2f}%")
        fig.colorbar(im, ax=axes[0, j])
        im = axes[1, j].imshow(np.abs(pred - ref).T, cmap="magma", **kw)
        axes[1, j].set_title(f"{name}: |error|")
        fig.colorbar(im, ax=axes[1, j])
    for ax in axes.ravel():
        ax.set_xlabel("x / L")
        ax.set_ylabel("t / T")
    if title is not None:
        fig.suptitle(title)
    return save_figure(fig, out_png, dpi=110, request=request)
