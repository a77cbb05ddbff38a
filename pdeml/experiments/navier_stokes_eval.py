"""The Navier-Stokes experiment's test data and comparisons: the test set on a finer spatial
grid (references solved on that grid), the trivial baselines every learned method is judged
against, and vorticity snapshot plots."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdeml.constraints import relative_l2
from pdeml.experiments.common import load_predictions, plot_request, pyplot, save_figure
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
from pdeml.pde.navier_stokes_data import MAX_STABLE_CFL
from pdeml.pde.navier_stokes_solver import (
    NavierStokesSolver,
    fourier_upsample,
    vorticity_tendency,
)

__all__ = ["BASELINES", "baseline_prediction", "evaluate_baselines", "fine_test_data",
           "plot_predictions"]

# Problem fields that determine reference data (the fine test set's cache request holds them).
_DATA_FIELDS = ("viscosity", "t_max", "length", "nx", "ny", "nt", "forcing", "forcing_amplitude")


@eqx.filter_jit
def _solve_many(solver, problem, w0s):
    return jax.vmap(lambda w0: solver(problem, w0))(w0s)


def fine_test_data(config, test_set: CachedDataset, *,
                   solver: NavierStokesSolver | None = None) -> CachedDataset:
    """The test initial conditions of a Navier-Stokes ``config`` on the ``test_refine``-times
    finer grid, with references solved on that grid.

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


def plot_predictions(run_dirs: dict, out_png, *, sample: int = 0, fine: bool = False,
                     times=None, request=None) -> Path:
    """Vorticity snapshots of one test sample: reference, each run's prediction and |error|.

    Args:
        run_dirs: ``{label: run_dir}`` of finished runs (their ``predictions.npz``).
        out_png: the PNG to write.
        sample: test sample index.
        fine: show the finer test grid (``pred_fine``/``ref_fine``) instead of the training grid.
        times: time-level indices to show (default: the middle and the last level).
        request: recorded with the PNG (default: this function, the runs and the options); a
            PNG pdeml wrote for another request is not replaced (``FileExistsError``).

    One row per time level: the reference, then each run's prediction and absolute error
    (shared colour scales for the vorticity and for the errors of a row).
    """
    if request is None:
        request = plot_request("navier_stokes_eval.plot_predictions", run_dirs, sample=sample,
                               fine=fine, times=None if times is None else list(times))
    plt = pyplot()
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
    return save_figure(fig, out_png, dpi=100, request=request)


