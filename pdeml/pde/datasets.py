"""Random initial conditions and reference datasets for diffusion-sorption.

*Initial conditions as in PDEBench.* PDEBench's simulator (``sim_diff_sorp.py``) draws one
number per sample, ``u0 ~ Uniform(0, 0.2)``, and uses the *constant* profile ``u0(x) = u0``
(the Dirichlet value 1 at x = 0 then enters as a boundary layer). ``kind="pdebench"`` does
exactly that, with an explicit JAX key instead of NumPy's global seed (so the numbers differ
from PDEBench's files, not their distribution). ``kind="fourier"`` is our extension for a
richer family: the same uniform level plus a smooth random perturbation
``sum_k a_k sin(k pi x / L) / k`` (``a_k ~ N(0, 1)``), mapped into ``(low, high)`` through a
logistic function so that it stays in range.

Other differences from PDEBench: PDEBench integrates a cell-centred grid (1024 cells) with an
explicit adaptive RK45 and stores 501 time levels (the [HC-MoE] paper uses 101 of them); we use
a vertex-centred grid containing x = 0 and x = 1, the implicit conservative solver of
:mod:`pdeml.pde.diffusion_sorption_solver`, the well-posed outflow condition u = -D u_x
(PDEBench's ghost cell realises the same condition to first order), and store the requested
``(nx, nt)`` grid directly.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from pdeml.core.validation import check_choice
from pdeml.pde.diffusion_sorption import DiffusionSorption
from pdeml.pde.diffusion_sorption_solver import DiffusionSorptionSolver

__all__ = ["IC_KINDS", "PDEDataset", "random_initial_conditions", "generate_dataset",
           "dataset_request", "problem_metadata"]

IC_KINDS = ("pdebench", "fourier")


class PDEDataset(NamedTuple):
    """Reference dataset: NumPy arrays ``u0`` ``(S, nx)`` and ``u`` ``(S, nx, nt)`` (space first,
    ``u[:, :, 0] == u0``) and a JSON-able ``metadata`` dict."""

    u0: Float[Array, "S nx"]
    u: Float[Array, "S nx nt"]
    metadata: dict[str, Any]


def random_initial_conditions(
    key: PRNGKeyArray,
    num_samples: int,
    problem: DiffusionSorption,
    *,
    kind: str = "pdebench",
    low: float = 0.0,
    high: float = 0.2,
    num_modes: int = 4,
    dtype=None,
) -> Float[Array, "S nx"]:
    """Random initial conditions on the problem grid, values in ``[low, high]``.

    Args:
        key: JAX PRNG key.
        num_samples: S.
        problem: gives the grid (``nx``, ``length``).
        kind: ``"pdebench"`` (constant profiles, level ~ U(low, high)) or ``"fourier"``
            (level plus a smooth random perturbation, see the module docstring).
        low, high: the range (PDEBench: 0 and 0.2).
        num_modes: number of sine modes for ``kind="fourier"``.
        dtype: floating dtype (default: JAX's default float).

    Returns:
        Array ``(num_samples, nx)``.

    Example:
        >>> u0 = random_initial_conditions(jax.random.key(0), 3, DiffusionSorption(nx=8))
        >>> u0.shape, bool(jnp.all(u0 == u0[:, :1]))
        ((3, 8), True)
    """
    check_choice("kind", kind, IC_KINDS)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not low < high:
        raise ValueError(f"need low < high, got low={low!r}, high={high!r}")
    if not isinstance(num_modes, int) or num_modes < 1:
        raise ValueError(f"num_modes must be a positive integer, got {num_modes!r}")
    dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.result_type(float)
    return _initial_conditions(key, low, high, num_samples=num_samples, nx=problem.nx,
                               kind=kind, num_modes=num_modes, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("num_samples", "nx", "kind", "num_modes", "dtype"))
def _initial_conditions(key, low, high, *, num_samples, nx, kind, num_modes, dtype):
    k_level, k_modes = jax.random.split(key)
    level = jax.random.uniform(k_level, (num_samples, 1), dtype, minval=low, maxval=high)
    if kind == "pdebench":
        return jnp.broadcast_to(level, (num_samples, nx))
    # x / L on the vertex-centred grid; the sine modes vanish at both ends.
    x = jnp.arange(nx, dtype=dtype) / (nx - 1)
    modes = jnp.arange(1, num_modes + 1, dtype=dtype)
    amps = jax.random.normal(k_modes, (num_samples, num_modes), dtype) / modes[None, :]
    pert = amps @ jnp.sin(jnp.pi * modes[:, None] * x[None, :])
    frac = (level - low) / (high - low)
    # Clip the fraction away from 0/1 so the logit stays finite for a level drawn at an end.
    tiny = jnp.finfo(dtype).eps
    frac = jnp.clip(frac, tiny, 1 - tiny)
    logit = jnp.log(frac) - jnp.log1p(-frac)
    return low + (high - low) * jax.nn.sigmoid(logit + pert)


def problem_metadata(problem: DiffusionSorption) -> dict[str, Any]:
    """All fields of ``problem`` (constants, grid, options) as a JSON-able dict."""
    out = {"class": type(problem).__name__}
    for f in dataclasses.fields(problem):
        out[f.name] = getattr(problem, f.name)
    return out


def dataset_request(
    problem: DiffusionSorption,
    num_samples: int,
    key: PRNGKeyArray,
    *,
    solver: DiffusionSorptionSolver | None = None,
    ic_kind: str = "pdebench",
    ic_low: float = 0.0,
    ic_high: float = 0.2,
    dtype=None,
) -> dict[str, Any]:
    """Everything that determines a dataset of :func:`generate_dataset`, as a JSON-able dict.

    The on-disk cache (:mod:`pdeml.pde.cache`) names files by a hash of this dict and refuses a
    file whose stored request differs from it.
    """
    from pdeml import __version__

    solver = DiffusionSorptionSolver() if solver is None else solver
    dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.result_type(float)
    return {
        "problem": problem_metadata(problem),
        "num_samples": num_samples,
        "key_data": np.asarray(jax.random.key_data(key)).ravel().tolist(),
        "initial_conditions": {"kind": ic_kind, "low": ic_low, "high": ic_high},
        "solver": solver.settings(),
        "dtype": str(dtype),
        "pdeml_version": __version__,
    }


@eqx.filter_jit
def _solve_batch(solver, problem, u0s):
    return jax.vmap(lambda u0: solver(problem, u0))(u0s)


def generate_dataset(
    problem: DiffusionSorption,
    num_samples: int,
    key: PRNGKeyArray,
    *,
    solver: DiffusionSorptionSolver | None = None,
    ic_kind: str = "pdebench",
    ic_low: float = 0.0,
    ic_high: float = 0.2,
    batch_size: int = 32,
    dtype=None,
    progress: bool = False,
) -> PDEDataset:
    """Random initial conditions and their reference solutions on the problem grid.

    Initial conditions come from :func:`random_initial_conditions` with ``key``; solutions from
    ``solver`` (default :class:`DiffusionSorptionSolver()`), vmapped over batches of
    ``batch_size`` initial conditions (the last batch is padded so that one compiled program
    serves all batches).

    Args:
        problem: the :class:`DiffusionSorption` problem (grid, constants).
        num_samples: number S of samples.
        key: JAX PRNG key for the initial conditions.
        solver: reference solver settings.
        ic_kind, ic_low, ic_high: passed to :func:`random_initial_conditions`.
        batch_size: initial conditions solved per vmapped call.
        dtype: compute/storage dtype (default: JAX's default float; float64 recommended).
        progress: show a tqdm progress bar over batches.

    Returns:
        :class:`PDEDataset` with ``u0`` ``(S, nx)``, ``u`` ``(S, nx, nt)`` and ``metadata``
        (``"request"``: everything that determines the data; ``"result"``: solver diagnostics
        and wall time).

    Raises:
        RuntimeError: if the Newton iteration failed to converge for some sample (their
            indices are listed), so that unconverged data are never used silently.

    Example:
        >>> ds = generate_dataset(DiffusionSorption(nx=16, nt=6), 2, jax.random.key(0))
        >>> ds.u.shape
        (2, 16, 6)
    """
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    solver = DiffusionSorptionSolver() if solver is None else solver
    u0 = random_initial_conditions(key, num_samples, problem, kind=ic_kind, low=ic_low,
                                   high=ic_high, dtype=dtype)
    batch = min(batch_size, num_samples)
    n_batches = -(-num_samples // batch)
    padded = jnp.concatenate(
        [u0, jnp.broadcast_to(u0[:1], (n_batches * batch - num_samples, problem.nx))]
    )
    start = time.perf_counter()
    outs, iters, steps, ok = [], [], [], []
    batches = range(n_batches)
    if progress:  # the shared progress bar: tqdm on a terminal, plain log lines otherwise
        from pdeml.train.progress import progress_iter

        batches = progress_iter(batches, n_batches, desc="solving")
    for b in batches:
        sol = _solve_batch(solver, problem, padded[b * batch:(b + 1) * batch])
        outs.append(np.asarray(sol.u))
        iters.append(np.asarray(sol.newton_iterations))
        steps.append(np.asarray(sol.newton_step))
        ok.append(np.asarray(sol.converged))
    elapsed = time.perf_counter() - start
    u = np.concatenate(outs)[:num_samples]
    ok = np.concatenate(ok)[:num_samples]
    if not ok.all():
        bad = np.flatnonzero(~ok).tolist()
        raise RuntimeError(
            f"reference solver did not converge for samples {bad[:20]} "
            f"({len(bad)} of {num_samples}); increase substeps or max_newton"
        )
    metadata = {
        "request": dataset_request(problem, num_samples, key, solver=solver, ic_kind=ic_kind,
                                   ic_low=ic_low, ic_high=ic_high, dtype=u0.dtype),
        "result": {
            "newton_iterations_max": int(np.concatenate(iters).max()),
            "newton_step_max": float(np.concatenate(steps)[:num_samples].max()),
            "wall_time_s": elapsed,
            "jax_version": jax.__version__,
        },
    }
    return PDEDataset(u0=np.asarray(u0), u=u, metadata=metadata)
