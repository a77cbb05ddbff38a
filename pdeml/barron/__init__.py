"""Barron-norm PDE approximators [Barron].

Spectral Barron norms on the torus, variational (Lagrangian) problems with manufactured
solutions, the Sobolev-gradient and Newton-Krylov grid solvers, mesh-free approximators
(Maurey sampling, random features, orthogonal greedy, trained shallow networks) and Deep
Ritz training with Adam, L-BFGS and natural-gradient optimisers.

Reference: Marwah, Lipton, Lu, Risteski, "Neural Network Approximations of PDEs Beyond
Linearity: A Representational Perspective", ICML 2023, arXiv:2210.12101.
"""

from .networks import CosineNetwork, PeriodicMLP, PeriodicShallowNetwork, periodic_embedding
from .norms import (
    BarronConvergence,
    barron_norm,
    barron_norm_convergence,
    barron_weights,
    cosine_network_barron_norm,
    path_norm,
)
from .problems import (
    TEST_PROBLEMS,
    CallableLagrangian,
    ConvexityEstimate,
    Lagrangian,
    LinearLagrangian,
    ManufacturedSource,
    PLaplacianLagrangian,
    PolynomialLagrangian,
    QuasilinearLagrangian,
    RidgeSum,
    SemilinearLagrangian,
    VariationalProblem,
    check_convexity,
    energy,
    estimate_convexity,
    euler_lagrange,
    hessian_vector_product,
    make_test_problem,
    manufactured_problem,
    pointwise_residual,
)
from .ritz import (
    RITZ_MESSAGES,
    RitzHistory,
    RitzResult,
    RitzStats,
    default_ritz_tolerances,
    deep_ritz,
    energy_certificate,
    lattice_points,
    network_energy,
    pinn,
    quadrature_points,
)
from .solvers import (
    TRAJECTORY_MESSAGES,
    GridSolveHistory,
    GridSolveStats,
    Trajectory,
    default_grid_tolerances,
    newton_krylov,
    sobolev_gradient_descent,
    worst_case_barron_bound,
)
from .spectral import (
    l2_norm,
    sobolev_inverse,
    sobolev_multiply,
    sobolev_norm,
    spectral_divergence,
    spectral_gradient,
    torus_grid,
    wavenumbers,
)
from .approximators import (
    FIT_MESSAGES,
    FitHistory,
    FitResult,
    FitStats,
    default_fit_tolerances,
    fit_shallow,
    maurey_mse,
    maurey_sample,
    merge_frequencies,
    orthogonal_greedy,
    random_features_fit,
    relative_l2_error,
    sparse_frequency_dictionary,
    spectrum_from_grid,
)
