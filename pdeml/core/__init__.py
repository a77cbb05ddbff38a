"""Shared numerics: the solver convention (Solution, RESULTS), least squares, conjugate
gradients, line search, implicit differentiation, diagnostics, validation."""

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
from pdeml.core.solution import (
    RESULTS,
    Solution,
    max_steps_option,
    raise_if_failed,
    result_code,
    tolerance_option,
)

__all__ = [
    "BACKENDS",
    "CGStats",
    "LINEAR_SOLVERS",
    "MAX_STEPS_REACHED",
    "NONFINITE",
    "RESULTS",
    "RESULT_MESSAGES",
    "STAGNATED",
    "SUCCESS",
    "ImplicitAdjoint",
    "LineSearchResult",
    "LeastSquaresSolution",
    "LevenbergMarquardt",
    "Solution",
    "SolveStats",
    "StructuredLeastSquares",
    "UnrolledAdjoint",
    "armijo_accepts",
    "backtracking_line_search",
    "cg_solve",
    "conjugate_gradient",
    "implicit_solution",
    "max_steps_option",
    "raise_if_failed",
    "result_code",
    "solve_least_squares",
    "stationarity_test",
    "stop_gradient_arrays",
    "tolerance_option",
]
