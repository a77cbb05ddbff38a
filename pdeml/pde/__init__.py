"""PDE problems, derivative operators, reference solvers and datasets.

- :class:`PDEProblem`: the interface used by the hard-constraint layer and the soft baseline.
- :class:`DiffusionSorption`: PDEBench's 1D diffusion-sorption problem ([HC-MoE] benchmark).
- :func:`fd_derivative`, :func:`fd_derivative_at`, :func:`spectral_derivative`: operators.
- :class:`SpaceTimeGrid`, :class:`PeriodicSpaceTimeGrid`, :func:`grid_points`: regular grids,
  their interior points and Dirichlet/initial rows.
- :class:`DirichletData`, :func:`manufactured_data`: data for which a chosen field is an exact
  discrete solution (defining and testing a new PDE).
- :class:`DiffusionSorptionSolver`, :func:`solve_diffusion_sorption`: stiff reference solver.
- :func:`random_initial_conditions`, :func:`generate_dataset`, :func:`load_or_generate`:
  PDEBench-style data with an on-disk cache.
- :class:`NavierStokes2D`, :class:`NavierStokesSolver`, :class:`GaussianRandomField`,
  :func:`navier_stokes_dataset`: 2D periodic Navier-Stokes (vorticity form, [HC-MoE] benchmark).
"""

from pdeml.pde.base import PDEProblem
from pdeml.pde.cache import (
    CachedDataset,
    CacheError,
    CacheWarning,
    RequestMismatchError,
    array_checksum,
    dataset_path,
    default_cache_dir,
    load_dataset,
    load_or_generate,
    save_dataset,
)
from pdeml.pde.datasets import (
    IC_KINDS,
    PDEDataset,
    dataset_request,
    generate_dataset,
    problem_metadata,
    random_initial_conditions,
)
from pdeml.pde.diffusion_sorption import DiffusionSorption
from pdeml.pde.diffusion_sorption_solver import (
    DiffusionSorptionSolver,
    ReferenceSolution,
    boundary_fluxes,
    discrete_mass,
    solve_diffusion_sorption,
)
from pdeml.pde.grids import PeriodicSpaceTimeGrid, SpaceTimeGrid, grid_points
from pdeml.pde.grf import GRF_KINDS, GaussianRandomField
from pdeml.pde.manufactured import DirichletData, manufactured_data
from pdeml.pde.navier_stokes import FORCINGS, NavierStokes2D, NavierStokesData
from pdeml.pde.navier_stokes_data import (
    generate_navier_stokes_dataset,
    navier_stokes_dataset,
    navier_stokes_request,
)
from pdeml.pde.navier_stokes_solver import (
    NavierStokesSolution,
    NavierStokesSolver,
    fourier_upsample,
    solve_navier_stokes,
    velocity_from_vorticity,
    vorticity_features,
)
from pdeml.pde.operators import (
    fd_derivative,
    fd_derivative_at,
    spectral_derivative,
    spectral_wavenumbers,
)

__all__ = [
    "IC_KINDS",
    "CacheError",
    "RequestMismatchError",
    "CacheWarning",
    "CachedDataset",
    "DiffusionSorption",
    "DiffusionSorptionSolver",
    "DirichletData",
    "FORCINGS",
    "GRF_KINDS",
    "GaussianRandomField",
    "NavierStokes2D",
    "NavierStokesData",
    "NavierStokesSolution",
    "NavierStokesSolver",
    "fourier_upsample",
    "generate_navier_stokes_dataset",
    "navier_stokes_dataset",
    "navier_stokes_request",
    "solve_navier_stokes",
    "velocity_from_vorticity",
    "vorticity_features",
    "PDEDataset",
    "PDEProblem",
    "PeriodicSpaceTimeGrid",
    "ReferenceSolution",
    "SpaceTimeGrid",
    "array_checksum",
    "boundary_fluxes",
    "dataset_path",
    "dataset_request",
    "default_cache_dir",
    "discrete_mass",
    "fd_derivative",
    "fd_derivative_at",
    "generate_dataset",
    "grid_points",
    "load_dataset",
    "load_or_generate",
    "manufactured_data",
    "problem_metadata",
    "random_initial_conditions",
    "save_dataset",
    "solve_diffusion_sorption",
    "spectral_derivative",
    "spectral_wavenumbers",
]
