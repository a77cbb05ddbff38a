"""Navier-Stokes reference datasets, stored in the checksummed cache of :mod:`pdeml.pde.cache`.

A dataset is ``num_samples`` initial vorticities drawn from a :class:`GaussianRandomField`
(the [HC-MoE] periodic kernel with length scale 0.8 by default) and their reference solutions
from :class:`NavierStokesSolver` on the problem's ``(nx, ny, nt)`` grid. It is a
:class:`~pdeml.pde.datasets.PDEDataset` with ``u0`` of shape ``(S, nx, ny)`` and ``u`` of shape
``(S, nx, ny, nt)`` (``u[..., 0] == u0``), written and verified by the same cache functions as
diffusion-sorption (:func:`~pdeml.pde.cache.cache_or_generate`:
atomic write, SHA-256 checksum, the full request in the metadata, a stale or damaged file
regenerated with a :class:`~pdeml.pde.cache.CacheWarning`).

References: [HC-MoE] Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412); Li et al.,
ICLR 2021.
"""

from __future__ import annotations

import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from pdeml.pde.cache import CachedDataset, cache_or_generate, check_seed
from pdeml.pde.datasets import PDEDataset, problem_metadata
from pdeml.pde.grf import GaussianRandomField
from pdeml.pde.navier_stokes import NavierStokes2D
from pdeml.pde.navier_stokes_solver import NavierStokesSolver

__all__ = [
    "navier_stokes_request",
    "generate_navier_stokes_dataset",
    "navier_stokes_dataset",
    "MAX_STABLE_CFL",
]

#: Largest advective CFL number accepted in generated data (Heun's stability limit is ~1;
#: a margin keeps the explicit part accurate as well as stable).
MAX_STABLE_CFL = 0.8

# Problem fields that determine the data (the others only configure the constraint layer, so
# changing them must not invalidate cached data).
_DATA_FIELDS = ("class", "viscosity", "t_max", "length", "nx", "ny", "nt", "forcing",
                "forcing_amplitude")


def navier_stokes_request(
    problem: NavierStokes2D,
    num_samples: int,
    key: PRNGKeyArray,
    *,
    solver: NavierStokesSolver | None = None,
    grf: GaussianRandomField | None = None,
    dtype=None,
) -> dict[str, Any]:
    """Everything that determines a dataset of :func:`generate_navier_stokes_dataset` (JSON-able;
    the cache names files by its hash and refuses a file whose stored request differs)."""
    from pdeml import __version__

    solver = NavierStokesSolver() if solver is None else solver
    grf = GaussianRandomField(length=problem.length) if grf is None else grf
    dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.result_type(float)
    return {
        "problem": {k: v for k, v in problem_metadata(problem).items() if k in _DATA_FIELDS},
        "num_samples": num_samples,
        "key_data": np.asarray(jax.random.key_data(key)).ravel().tolist(),
        "initial_conditions": grf.settings(),
        "solver": solver.settings(),
        "dtype": str(dtype),
        "pdeml_version": __version__,
    }


@eqx.filter_jit
def _solve_batch(solver, problem, w0s):
    return jax.vmap(lambda w0: solver(problem, w0))(w0s)


def generate_navier_stokes_dataset(
    problem: NavierStokes2D,
    num_samples: int,
    key: PRNGKeyArray,
    *,
    solver: NavierStokesSolver | None = None,
    grf: GaussianRandomField | None = None,
    batch_size: int = 8,
    dtype=None,
    progress: bool = False,
) -> PDEDataset:
    """Random initial vorticities and their reference solutions on the problem grid.

    Args:
        problem: the :class:`NavierStokes2D` problem (grid, viscosity, horizon, forcing).
        num_samples: number S of samples.
        key: JAX PRNG key of the initial conditions.
        solver: :class:`NavierStokesSolver` settings (default ``NavierStokesSolver()``).
        grf: initial-condition distribution (default ``GaussianRandomField()``: periodic kernel,
            length scale 0.8, unit variance, zero mean).
        batch_size: initial conditions solved per vmapped call (the last batch is padded so
            that one compiled program serves all batches).
        dtype: compute/storage dtype (default JAX's default float; float64 recommended).
        progress: show a tqdm progress bar over batches.

    Returns:
        :class:`~pdeml.pde.datasets.PDEDataset` with ``u0`` ``(S, nx, ny)``, ``u``
        ``(S, nx, ny, nt)`` and ``metadata`` (``"request"``; ``"result"``: largest CFL number,
        steps per sample, wall time).

    Raises:
        RuntimeError: if a solution is not finite or the CFL number exceeded
            :data:`MAX_STABLE_CFL` (the indices are listed), so that unstable data are never
            used silently; decrease ``solver.dt``.

    Example:
        >>> p = NavierStokes2D(nx=16, ny=16, nt=5, t_max=1.0)
        >>> ds = generate_navier_stokes_dataset(p, 2, jax.random.key(0))
        >>> ds.u0.shape, ds.u.shape
        ((2, 16, 16), (2, 16, 16, 5))
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    solver = NavierStokesSolver() if solver is None else solver
    grf = GaussianRandomField(length=problem.length) if grf is None else grf
    if grf.length != problem.length:
        raise ValueError(f"grf.length ({grf.length}) must equal problem.length ({problem.length})")
    w0 = grf.sample(key, problem.nx, problem.ny, num_samples=num_samples, dtype=dtype)
    batch = min(batch_size, num_samples)
    n_batches = -(-num_samples // batch)
    pad = jnp.broadcast_to(w0[:1], (n_batches * batch - num_samples,) + w0.shape[1:])
    padded = jnp.concatenate([w0, pad])
    start = time.perf_counter()
    outs, cfls, finite = [], [], []
    steps = 0
    batches = range(n_batches)
    if progress:  # the shared progress bar: tqdm on a terminal, plain log lines otherwise
        from pdeml.train.progress import progress_iter

        batches = progress_iter(batches, n_batches, desc="solving")
    for b in batches:
        sol = _solve_batch(solver, problem, padded[b * batch:(b + 1) * batch])
        outs.append(np.asarray(sol.w))
        cfls.append(np.asarray(sol.cfl_max))
        finite.append(np.asarray(sol.finite))
        steps = int(np.asarray(sol.num_steps)[0])
    elapsed = time.perf_counter() - start
    u = np.concatenate(outs)[:num_samples]
    cfl = np.concatenate(cfls)[:num_samples]
    finite = np.concatenate(finite)[:num_samples]
    bad = np.flatnonzero(~finite | ~(cfl <= MAX_STABLE_CFL)).tolist()
    if bad:
        raise RuntimeError(
            f"reference solver unstable for samples {bad[:20]} ({len(bad)} of {num_samples}; "
            f"largest CFL number {float(np.nanmax(cfl)):.3g} > {MAX_STABLE_CFL} or non-finite "
            f"output); decrease the solver's dt (now {solver.time_step(problem)})"
        )
    metadata = {
        "request": navier_stokes_request(problem, num_samples, key, solver=solver, grf=grf,
                                         dtype=w0.dtype),
        "result": {
            "cfl_max": float(cfl.max()),
            "steps_per_sample": steps,
            "dt": solver.time_step(problem),
            "wall_time_s": elapsed,
            "jax_version": jax.__version__,
        },
    }
    return PDEDataset(u0=np.asarray(w0), u=u, metadata=metadata)


def navier_stokes_dataset(
    problem: NavierStokes2D,
    num_samples: int,
    seed: int,
    *,
    solver: NavierStokesSolver | None = None,
    grf: GaussianRandomField | None = None,
    dtype=None,
    cache_dir=None,
    path=None,
    batch_size: int = 8,
    progress: bool = False,
) -> CachedDataset:
    """The dataset of :func:`generate_navier_stokes_dataset` for ``jax.random.key(seed)``, read
    from the cache when a valid file exists, otherwise generated and written.

    Same protocol as :func:`pdeml.pde.load_or_generate` (diffusion-sorption): the file name is a
    hash of the request (``NavierStokes2D-<hash>.npz`` in ``cache_dir``, default
    ``$PDEML_CACHE_DIR`` or ``~/.cache/pdeml``), the request and a checksum are stored with the
    arrays, and an unreadable, corrupted or mismatching file is reported with a
    :class:`~pdeml.pde.cache.CacheWarning` and regenerated.

    Args:
        problem, num_samples, solver, grf, dtype, batch_size, progress: as in
            :func:`generate_navier_stokes_dataset`.
        seed: integer seed of the initial conditions.
        cache_dir: cache directory (ignored if ``path`` is given).
        path: explicit ``.npz`` file instead of the hashed name.

    Returns:
        :class:`~pdeml.pde.cache.CachedDataset` (dataset, path, checksum, from_cache).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> p = NavierStokes2D(nx=16, ny=16, nt=5, t_max=1.0)
        >>> first = navier_stokes_dataset(p, 2, seed=0, cache_dir=d)
        >>> again = navier_stokes_dataset(p, 2, seed=0, cache_dir=d)
        >>> first.from_cache, again.from_cache, first.checksum == again.checksum
        (False, True, True)
    """
    key = jax.random.key(check_seed(seed))
    request = navier_stokes_request(problem, num_samples, key, solver=solver, grf=grf,
                                    dtype=dtype)
    request["seed"] = seed
    return cache_or_generate(
        request,
        lambda: generate_navier_stokes_dataset(problem, num_samples, key, solver=solver,
                                               grf=grf, batch_size=batch_size, dtype=dtype,
                                               progress=progress),
        cache_dir=cache_dir, path=path,
    )
