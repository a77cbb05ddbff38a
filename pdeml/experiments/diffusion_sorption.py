"""Soft constraint (PI-SC) vs hard constraint (PI-HC) vs mixture of experts (PI-HC-MoE) on
1D diffusion-sorption.

One function, :func:`run_experiment`, does the whole job for one method: reference data from
our own stiff solver (cached on disk), an FNO basis network, data-free physics-loss training
with :func:`pdeml.train.train` (progress bar, JSON-lines metrics, checkpoints, resume), and
evaluation of the test relative L2 error against the reference solutions. Everything it
measured is written to ``run_dir/results.json``.

Reference: Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import dataclasses
import json
import time
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
from pdeml.pde import DiffusionSorption, load_or_generate
from pdeml.train import train

METHODS = ("soft", "hard", "moe")
ASSIGNMENTS = ("spatial", "random")
BOUNDARY_ROWS = ("all", "touching")
POINTS_MODES = ("per_expert", "total")


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


def parse_experts(spec) -> tuple[int, int]:
    """``"2x4"`` (or ``(2, 4)``) -> ``(K_t, K_x)``: experts along t and along x."""
    if isinstance(spec, str):
        parts = spec.lower().split("x")
        try:
            spec = tuple(int(p) for p in parts)
        except ValueError:
            spec = ()
    spec = tuple(spec)
    if len(spec) != 2 or not all(isinstance(k, int) and k >= 1 for k in spec):
        raise ValueError(
            f"experts must be K_t x K_x with positive integers, e.g. '1x4' (4 experts along x, "
            f"the paper's router) or '2x2', got {spec!r}"
        )
    return spec


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Configuration of one run (defaults: a laptop-scale version of the paper's setting).

    The paper uses a 1024 x 101 grid, 20k collocation points, N = 16 basis functions and an
    FNO with 5 layers, 8 modes, width 64; the defaults here keep the structure at a size that
    trains in minutes on a laptop CPU.

    ``row_weight`` multiplies the IC/BC rows (in the layer's least squares and, identically,
    in the physics loss of both methods). With weight 1 the 114 rows are outvoted by the 1000
    PDE rows and the layer satisfies the boundary data poorly (measured at 300 steps: PI-HC
    20.6% test error, LM converged in 69% of solves); with 10: 2.8%, 100% converged.

    Mixture of experts (``method="moe"``): ``experts = (K_t, K_x)`` experts along t and x
    (the paper: ``(1, 4)``); ``overlap`` the blending band of the partition of unity as a
    fraction of one expert's width (0: block-wise, as published); ``assignment="random"``
    gives each grid point to a random expert instead (ablation); ``boundary_rows`` gives the
    IC/BC rows to ``"all"`` experts (published) or only to those they ``"touch"``;
    ``points_mode`` counts ``num_points`` in ``"total"`` (default: the equal-budget comparison,
    which also fits the laptop grid, where 4 experts have only ~400 interior points each) or
    ``"per_expert"`` (published: each expert gets as many points as PI-HC in total).

    Extrapolation (``t_train``, the paper: 400 of 500): the PDE residual, the IC/BC rows and
    the collocation points are restricted to ``t <= t_train`` in training *and* in the
    constraint layers at test time (:class:`TrainingWindow`); the test error is reported on
    the whole grid and separately on the training window and on ``t > t_train``.
    """

    method: str = "hard"
    nx: int = 64
    nt: int = 26
    t_max: float = 500.0
    train_samples: int = 32
    test_samples: int = 16
    data_seed: int = 0
    seed: int = 0
    steps: int = 300
    batch_size: int = 4
    learning_rate: float = 1e-3
    lr_decay: float = 0.1
    num_basis: int = 16
    num_points: int = 1000
    width: int = 32
    modes: int = 8
    layers: int = 4
    padding: int = 6
    max_lm_steps: int = 100
    constraint_weight: float = 1.0
    row_weight: float = 10.0
    cache_dir: str | None = None
    experts: tuple[int, int] = (1, 4)
    overlap: float = 0.0
    assignment: str = "spatial"
    boundary_rows: str = "all"
    points_mode: str = "total"
    t_train: float | None = None
    carry_start: bool = False  # see NSConfig.carry_start

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {list(METHODS)}")
        check_carry_start(self.carry_start, self.method)
        # JSON gives a list back: store the normalised tuple so configs compare equal.
        object.__setattr__(self, "experts", parse_experts(self.experts))
        for name, choices in (("assignment", ASSIGNMENTS), ("boundary_rows", BOUNDARY_ROWS),
                              ("points_mode", POINTS_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of "
                                 f"{list(choices)}")
        if not (isinstance(self.overlap, (int, float)) and 0 <= self.overlap < 1):
            raise ValueError(f"overlap must be a number in [0, 1), got {self.overlap!r}")
        if self.assignment == "random" and self.overlap > 0:
            raise ValueError("overlap needs assignment='spatial' (random experts are not "
                             "contiguous, so there is no seam to blend)")
        for name in ("nx", "nt", "train_samples", "test_samples", "batch_size", "num_basis",
                     "num_points", "width", "modes", "layers", "max_lm_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size > self.train_samples:
            raise ValueError(
                f"batch_size ({self.batch_size}) exceeds train_samples ({self.train_samples})"
            )
        if self.t_train is not None:
            if not 0 < self.t_train < self.t_max:
                raise ValueError(f"t_train must lie in (0, t_max={self.t_max}), got {self.t_train}")
            if self.train_levels < 2 or self.train_levels >= self.nt - 1:
                raise ValueError(
                    f"t_train={self.t_train} keeps {self.train_levels} of the {self.nt - 1} time "
                    "steps for training: it must keep at least 2 and leave at least 1 for testing"
                )
        interior = (self.nx - 2) * self.train_levels
        if self.method in ("hard", "moe") and self.num_points > interior:
            window = "" if self.t_train is None else f" (up to t_train={self.t_train})"
            raise ValueError(
                f"num_points={self.num_points} exceeds the {interior} interior points of the "
                f"{self.nx} x {self.nt} grid{window}"
            )
        k_t, k_x = self.experts
        if self.method == "moe" and (k_t > self.nt or k_x > self.nx):
            raise ValueError(f"experts {k_t}x{k_x} (K_t x K_x) exceed the {self.nt} x {self.nx} "
                             "time levels x grid points")
        if self.method == "moe":
            # Fail before any data is generated: too many experts or points per expert.
            MoEHardConstraint(self.model_problem, self.partition(), num_points=self.num_points,
                              points=self.points_mode)

    @property
    def train_levels(self) -> int:
        """Time levels j >= 1 with t_j <= t_train (the training window); all without t_train."""
        if self.t_train is None:
            return self.nt - 1
        dt = self.t_max / (self.nt - 1)
        return int(np.floor(self.t_train / dt + 1e-9))

    @property
    def model_problem(self) -> DiffusionSorption:
        """The problem the model is trained on: the full one, or its training window."""
        if self.t_train is None:
            return self.problem
        return TrainingWindow(nx=self.nx, nt=self.nt, t_max=self.t_max, ic_weight=self.row_weight,
                              bc_weight=self.row_weight, last_level=self.train_levels)

    @property
    def num_experts(self) -> int:
        return self.experts[0] * self.experts[1]

    def partition(self) -> Partition:
        """The expert partition of ``method="moe"`` on the (x, t) grid."""
        k_t, k_x = self.experts
        shape = self.model_problem.grid_shape
        if self.assignment == "random":
            key = jax.random.fold_in(jax.random.key(self.seed), 2)
            return Partition.random(shape, k_t * k_x, key, boundary_rows=self.boundary_rows)
        return Partition.uniform(shape, (k_x, k_t), overlap=self.overlap,
                                 boundary_rows=self.boundary_rows)

    @property
    def problem(self) -> DiffusionSorption:
        return DiffusionSorption(nx=self.nx, nt=self.nt, t_max=self.t_max,
                                 ic_weight=self.row_weight, bc_weight=self.row_weight)


def load_data(config: ExperimentConfig, *, progress: bool = False):
    """Train and test sets (u0, u) from the cache, generated by the reference solver if absent.

    The two sets use different seeds (``data_seed`` and ``data_seed + 1``), so no test initial
    condition is seen in training.
    """
    prob = config.problem
    dtype = jnp.result_type(float)
    train_set = load_or_generate(prob, config.train_samples, config.data_seed,
                                 cache_dir=config.cache_dir, dtype=dtype, progress=progress)
    test_set = load_or_generate(prob, config.test_samples, config.data_seed + 1,
                                cache_dir=config.cache_dir, dtype=dtype, progress=progress)
    return train_set, test_set


def build_model(config: ExperimentConfig, key):
    """The FNO basis network wrapped as a soft- or hard-constrained model."""
    prob = config.model_problem
    out = 1 if config.method == "soft" else config.num_basis
    modes = (min(config.modes, config.nx // 2), min(config.modes, (config.nt + config.padding) // 2))
    net = FNO(3, out, modes=modes, width=config.width, n_layers=config.layers,
              padding=(0, config.padding), key=key)
    if config.method == "soft":
        return SoftConstrainedModel(net, prob)
    solver = LevenbergMarquardt(max_steps=config.max_lm_steps)
    if config.method == "moe":
        layer = MoEHardConstraint(prob, config.partition(), num_points=config.num_points,
                                  points=config.points_mode, solver=solver, throw=False)
    else:
        layer = HardConstraint(prob, num_points=config.num_points, solver=solver, throw=False)
    return HardConstrainedModel(net, layer)


def config_dict(config: ExperimentConfig) -> dict:
    """The configuration as stored in ``config.json`` (JSON types: tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def load_run(run_dir):
    """``(config, model, step)`` of the newest good checkpoint in ``run_dir``."""
    return restore_run(run_dir, ExperimentConfig, build_model,
                       lambda c: jnp.zeros((c.nx,)))


def evaluate(model, u0s, us, *, key=None, batch: int = 4, split_level: int | None = None) -> dict:
    """Relative L2 error per test sample against the reference, plus solver diagnostics.

    With ``split_level`` (the last training time level) the error is also reported separately
    on ``t_j, j <= split_level`` (``"train_window"``) and ``j > split_level``
    (``"extrapolation"``).
    """
    key = jax.random.key(12345) if key is None else key

    @eqx.filter_jit
    def predict(m, u0_batch, k):
        keys = jax.random.split(k, u0_batch.shape[0])
        return jax.vmap(lambda d, kk: m(d, key=kk))(u0_batch, keys)

    errs, conv, iters, preds = [], [], [], []
    for i in range(0, u0s.shape[0], batch):
        u, info = predict(model, u0s[i : i + batch], jax.random.fold_in(key, i))
        preds.append(np.asarray(u))
        errs.append(np.asarray(jax.vmap(relative_l2)(u, us[i : i + batch])))
        if info is not None:
            conv.append(np.asarray(info.stats.converged))
            iters.append(np.asarray(info.stats.iterations))
    errs = np.concatenate(errs)
    out = {
        "rel_l2_mean": float(errs.mean()),
        "rel_l2_std": float(errs.std()),
        "rel_l2_per_sample": errs.tolist(),
    }
    if split_level is not None:
        pred, ref = np.concatenate(preds), np.asarray(us)
        for name, cols in (("train_window", slice(0, split_level + 1)),
                           ("extrapolation", slice(split_level + 1, None))):
            e = (np.linalg.norm((pred - ref)[:, :, cols], axis=(1, 2))
                 / np.linalg.norm(ref[:, :, cols], axis=(1, 2)))
            out[name] = {"rel_l2_mean": float(e.mean()), "rel_l2_std": float(e.std()),
                         "rel_l2_per_sample": e.tolist()}
    if conv:
        conv, iters = np.concatenate(conv), np.concatenate(iters)
        out["lm_converged_fraction"] = float(conv.mean())
        out["lm_iterations_mean"] = float(iters.mean())
        out["lm_iteration_histogram"] = np.bincount(iters.ravel()).tolist()
        if iters.ndim == 2:  # (samples, experts): the per-expert view of a mixture
            out["lm_iterations_per_expert"] = iters.mean(0).tolist()
            out["lm_converged_per_expert"] = conv.mean(0).tolist()
    return out, np.concatenate(preds)


def run_experiment(config: ExperimentConfig, run_dir, *, progress: bool = True) -> dict:
    """Train one method on diffusion-sorption and evaluate it; resumes if ``run_dir`` has a checkpoint.

    Writes ``run_dir/config.json``, ``metrics.jsonl``, ``checkpoints/``, ``results.json`` and
    ``predictions.npz`` (test predictions and references for plotting).
    """
    run_dir = Path(run_dir)
    cfg = config_dict(config)
    defaults = config_dict(ExperimentConfig(method=config.method))
    # Nothing is written before the run is known to be valid: a rejected run leaves no trace.
    check_run_config(run_dir, cfg, defaults)

    t0 = time.perf_counter()
    train_set, test_set = load_data(config, progress=progress)
    t_data = time.perf_counter() - t0
    u0_train = jnp.asarray(train_set.dataset.u0)

    key = jax.random.key(config.seed)
    model = build_model(config, jax.random.fold_in(key, 0))
    optimizer = make_optimizer(config)

    batch_fn, loss_fn = training_functions(u0_train, config)
    state = initial_state(config, model, u0_train[0], u0_train.shape[0])

    with run_lock(run_dir):  # one process trains in a run directory at a time
        check_run_config(run_dir, cfg, defaults)
        write_run_config(run_dir, cfg)
        t1 = time.perf_counter()
        result = train(model, loss_fn, optimizer, batch_fn, steps=config.steps,
                       key=jax.random.fold_in(key, 1), run_dir=run_dir,
                       checkpoint_every=max(1, min(100, config.steps)), log_every=10,
                       progress=progress, metadata={"config": cfg}, state=state)
        t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    metrics, preds = evaluate(result.model, jnp.asarray(test_set.dataset.u0),
                              jnp.asarray(test_set.dataset.u),
                              split_level=None if config.t_train is None else config.train_levels)
    t_eval = time.perf_counter() - t2
    final_loss = result.history[-1]["loss"] if result.history else None
    results = {
        "method": config.method,
        "config": cfg,
        "test": metrics,
        "final_train_loss": final_loss,
        "seconds": {"data": t_data, "train": t_train, "eval": t_eval},
        "dataset_checksums": {"train": train_set.checksum, "test": test_set.checksum},
        "environment": {"jax": jax.__version__, "backend": jax.default_backend(),
                        "x64": bool(jax.config.jax_enable_x64)},
    }
    write_run_outputs(run_dir, results, {"pred": preds, "ref": np.asarray(test_set.dataset.u),
                                         "u0": np.asarray(test_set.dataset.u0)})
    return results


def plot_predictions(run_dirs: dict[str, Path], out_png, *, sample: int = 0) -> Path:
    """Reference, predictions and errors of one test sample for several runs (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'pdeml[plot]'") from e
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
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
