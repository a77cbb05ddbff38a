"""Shared numerics: least squares, implicit differentiation, diagnostics, validation."""

from pdeml.core.implicit import implicit_solution
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

__all__ = [
    "BACKENDS",
    "LINEAR_SOLVERS",
    "MAX_STEPS_REACHED",
    "NONFINITE",
    "RESULT_MESSAGES",
    "STAGNATED",
    "SUCCESS",
    "ImplicitAdjoint",
    "LeastSquaresSolution",
    "LevenbergMarquardt",
    "SolveStats",
    "StructuredLeastSquares",
    "UnrolledAdjoint",
    "implicit_solution",
    "solve_least_squares",
    "stationarity_test",
    "stop_gradient_arrays",
]
