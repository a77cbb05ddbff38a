"""Public hypothesis strategies and property checkers for users' own solvers.

Example: testing the constraint layer on your own PDE (see docs/testing.md)::

    from hypothesis import given
    from pdeml.testing import well_conditioned_bases, check_basis_change_invariance
"""

from pdeml.testing.checks import (
    check_basis_change_invariance,
    check_constraint_satisfied,
    check_features_act_columnwise,
    check_implicit_gradients,
)
from pdeml.testing.strategies import (
    collocation_points,
    invertible_matrices,
    unit_vectors,
    well_conditioned_bases,
    well_conditioned_matrix,
)

__all__ = [
    "check_basis_change_invariance",
    "check_constraint_satisfied",
    "check_features_act_columnwise",
    "check_implicit_gradients",
    "collocation_points",
    "invertible_matrices",
    "unit_vectors",
    "well_conditioned_bases",
    "well_conditioned_matrix",
]

from pdeml.testing.problems import (  # noqa: E402
    ReactionDiffusion1D,
    ReactionDiffusionData,
    smooth_fields,
)

__all__ += ["ReactionDiffusion1D", "ReactionDiffusionData", "smooth_fields"]

# Proximal operators (learned or classical) and Barron-norm / variational solvers.
from pdeml.testing.barron import (  # noqa: E402
    check_contraction,
    check_energy_decrease,
    check_euler_lagrange_gradient,
    cosine_networks,
    manufactured_problems,
    ridge_sum_solutions,
)
from pdeml.testing.prox import (  # noqa: E402
    arrays_of_shape,
    check_convex_along_lines,
    check_inversion_round_trip,
    check_moreau_identity,
    check_prox_brute_force,
    check_regularizer_gradient,
    check_symmetric_psd_jacobian,
    dense_icnns,
    seeds,
)

__all__ += [
    "check_contraction",
    "check_energy_decrease",
    "check_euler_lagrange_gradient",
    "cosine_networks",
    "manufactured_problems",
    "ridge_sum_solutions",
    "arrays_of_shape",
    "check_convex_along_lines",
    "check_inversion_round_trip",
    "check_moreau_identity",
    "check_prox_brute_force",
    "check_regularizer_gradient",
    "check_symmetric_psd_jacobian",
    "dense_icnns",
    "seeds",
]
