"""Shared numerics: least squares, conjugate gradients, line search, implicit differentiation,
diagnostics, validation."""

from pdeml.core.implicit import implicit_solution
from pdeml.core.krylov import CGStats, cg_solve, conjugate_gradient
from pdeml.core.least_squares import (
    BACKENDS,
    LINEAR_SOLVERS,
    MAX_STEPS_REACHED,
    NONFINITE,
    RESULT_MESSAGES,
    STAGNATED,
    SUCCESS,
    ImplicitAdjoint,
    LeastSquaresSolution,
    LevenbergMarquardt,
    SolveStats,
    StructuredLeastSquares,
    UnrolledAdjoint,
    solve_least_squares,
    stationarity_test,
    stop_gradient_arrays,
)
from pdeml.core.linesearch import LineSearchResult, armijo_accepts, backtracking_line_search

__all__ = [
    "BACKENDS",
    "CGStats",
    "LINEAR_SOLVERS",
    "MAX_STEPS_REACHED",
    "NONFINITE",
    "RESULT_MESSAGES",
    "STAGNATED",
    "SUCCESS",
    "ImplicitAdjoint",
    "LineSearchResult",
    "LeastSquaresSolution",
    "LevenbergMarquardt",
    "SolveStats",
    "StructuredLeastSquares",
    "UnrolledAdjoint",
    "armijo_accepts",
    "backtracking_line_search",
    "cg_solve",
    "conjugate_gradient",
    "implicit_solution",
    "solve_least_squares",
    "stationarity_test",
    "stop_gradient_arrays",
]
