"""Plug-and-play solvers (PnP-PGD, PnP-ADMM) for linear inverse problems with any prox, and
:func:`lpn_map` (the same objective for an LPN by L-BFGS, guaranteed for any ``rho``).

Problem: recover ``x`` from ``y = A x + noise``. With a proximal operator ``prox = prox_R``
(unit step, the :class:`pdeml.prox.ProximalOperator` interface: an
:class:`~pdeml.prox.LPN`, a classical prox, or a denoiser with a ``prox`` method), both solvers
minimise

    F(x) = h(x) + R(x),        h(x) = ||A x - y||^2 / (2 rho)

where ``rho > 0`` is the penalty (the inverse data weight; tune it like a regularisation
parameter: larger rho = stronger prior).

**PnP-PGD** (step ``1 / rho``): ``x_{k+1} = prox(x_k - A^T (A x_k - y) / rho)``.

**PnP-ADMM** (scaled form, prox first, then the data block, then the dual)::

    z_{k+1} = prox(x_k - u_k)
    x_{k+1} = argmin_x h(x) + 1/2 ||x - z_{k+1} - u_k||^2     i.e. (A^T A + rho I) x = A^T y + rho (z + u)
    u_{k+1} = u_k + z_{k+1} - x_{k+1}

The x-update is a conjugate-gradient solve (warm-started from the previous x, differentiable
through :func:`jax.lax.custom_linear_solve`, so gradients use the implicit function theorem and
never unroll CG). The whole iteration is one ``lax.while_loop`` with history arrays.

**Convergence conditions** (for an LPN: softplus ICNN with strong convexity ``0 < alpha < 1``,
so R is the exact, possibly non-convex, regulariser of an exact prox):

- PGD: ``rho >= ||A^T A||`` makes F(x_k) non-increasing:
  ``F(x_{k+1}) <= F(x_k) - (rho - ||A^T A||) / (2 rho) ||x_{k+1} - x_k||^2`` (the prox step is a
  global minimiser of ``R(z) + 1/2 ||z - v||^2`` even for non-convex R).
- ADMM: ``rho > ||A^T A||`` (i.e. ``h`` has gradient Lipschitz constant ``L = ||A^T A|| / rho <
  1`` = the ADMM penalty) makes the augmented Lagrangian
  ``L_k = R(z_k) + h(x_k) + 1/2 ||z_k - x_k + u_k||^2 - 1/2 ||u_k||^2`` non-increasing: the
  z-step does not increase it, the x-step decreases it by ``1/2 ||dx||^2 + 1/(2L) ||du||^2``
  (h convex and L-smooth, and ``u_{k+1} = grad h(x_{k+1})``), the dual step increases it by
  ``||du||^2 <= L^2 ||dx||^2``; the net change is ``<= 0`` iff ``L < 1``. At a fixed point
  ``z = x`` and ``L_k = F``. The objective ``F(z_k)`` itself is recorded too but ADMM theory
  does not make it monotone.

The history records, per iteration and per sample: ``primal_residual`` (ADMM ``||z - x||``,
PGD ``||x_{k+1} - x_k||``), ``dual_residual`` (ADMM ``||x_{k+1} - x_k||`` (penalty 1), PGD
the optimality residual ``||rho (x_k - x_{k+1}) - A^T A (x_k - x_{k+1})|| / rho``, an element of
the subdifferential of F at ``x_{k+1}``), ``objective`` F at the prox output and (ADMM)
``lagrangian``; both need R: for an LPN, R at a prox output is exact and free through
``R(f(v)) = <f(v), v> - psi(v) - 1/2 ||f(v)||^2`` (no inversion; the same formula as
:meth:`LPN.regularizer` since ``f^{-1}(f(v)) = v``); for a classical prox, ``prox.regularizer``;
otherwise NaN.

References: Venkatakrishnan, Bouman & Wohlberg, "Plug-and-play priors for model based
reconstruction" (2013); Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 4; the
nonconvex ADMM descent argument follows Li & Pong, SIAM J. Optim. 25 (2015) and Wang, Yin & Zeng,
J. Sci. Comput. 78 (2019).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from pdeml.core import (
    RESULTS,
    Solution,
    backtracking_line_search,
    cg_solve,
    conjugate_gradient,
    max_steps_option,
    raise_if_failed,
    result_code,
    tolerance_option,
)
from pdeml.inverse.operators import LinearOperator

__all__ = [
    "PnPResult",
    "PnPStats",
    "PnPHistory",
    "LPNMapResult",
    "LPNMapStats",
    "LPNMapHistory",
    "PNP_MESSAGES",
    "pnp_messages",
    "ConvergenceConditions",
    "conjugate_gradient",
    "convergence_conditions",
    "lpn_map",
    "pnp_pgd",
    "pnp_admm",
    "tikhonov",
]


class PnPStats(eqx.Module):
    """Diagnostics of :func:`pnp_pgd` / :func:`pnp_admm`.

    Attributes:
        iterations: iterations run (scalar int; the batch is iterated together).
    """

    iterations: Array


class PnPHistory(eqx.Module):
    """Per-iteration records of :func:`pnp_pgd` / :func:`pnp_admm`, each ``(max_steps,
    *batch)``, NaN after the last iteration (and wherever not defined).

    Attributes:
        primal_residual: ADMM ``||z - x||``, PGD ``||x_{k+1} - x_k||``.
        dual_residual: ADMM ``||x_{k+1} - x_k||``, PGD the optimality residual (see the module
            docstring).
        objective: ``F`` at the prox output.
        lagrangian: the augmented Lagrangian (ADMM; NaN for PGD).
        cg_iterations: CG iterations of each x-update (ADMM; zeros for PGD), int.
    """

    primal_residual: Array
    dual_residual: Array
    objective: Array
    lagrangian: Array
    cg_iterations: Array


class PnPResult(Solution):
    """The :class:`~pdeml.core.Solution` of :func:`pnp_pgd` / :func:`pnp_admm`.

    Fields: ``value`` the estimate ``(*batch, *in_shape)`` (ADMM: the prox output z, PGD: x_k);
    ``result`` a :class:`~pdeml.core.RESULTS` code (scalar): ``SUCCESS``,
    ``MAX_STEPS_REACHED`` or ``NONFINITE`` (the prox or the data step returned NaN/inf; the
    iteration stops at once), messages in ``PNP_MESSAGES``; ``stats`` a :class:`PnPStats`;
    ``history`` a :class:`PnPHistory`. ``x``, ``iterations`` and the history's fields
    (``primal_residual``, ``dual_residual``, ``objective``, ``lagrangian``, ``cg_iterations``)
    can also be read directly.
    """

    x = property(lambda self: self.value, doc="The estimate (``value``).")
    iterations = property(lambda self: self.stats.iterations,
                          doc="Iterations run (``stats.iterations``).")
    primal_residual = property(lambda self: self.history.primal_residual)
    dual_residual = property(lambda self: self.history.dual_residual)
    objective = property(lambda self: self.history.objective)
    lagrangian = property(lambda self: self.history.lagrangian)
    cg_iterations = property(lambda self: self.history.cg_iterations)


class LPNMapStats(eqx.Module):
    """Diagnostics of :func:`lpn_map`.

    Attributes:
        iterations: L-BFGS iterations, the largest over the batch (scalar int).
        sample_iterations: L-BFGS iterations per sample ``(*batch)``.
        sample_result: :class:`~pdeml.core.RESULTS` code per sample ``(*batch)``
            (``Solution.result`` is the largest of them).
    """

    iterations: Array
    sample_iterations: Array
    sample_result: Array


class LPNMapHistory(eqx.Module):
    """Per-iteration records of :func:`lpn_map`, each ``(max_steps, *batch)``, NaN (zeros for
    the counts) after a sample's last iteration.

    Attributes:
        objective: ``F(x_k)``.
        gradient_norm: ``||grad F(x_k)||`` (the exact gradient, an optimality measure).
        step_norm: ``||x_k - x_{k-1}||``.
        line_search_halvings: halvings of the step the Armijo line search took, int.
    """

    objective: Array
    gradient_norm: Array
    step_norm: Array
    line_search_halvings: Array


class LPNMapResult(Solution):
    """The :class:`~pdeml.core.Solution` of :func:`lpn_map`: ``value`` the estimate (also
    ``x``), ``result`` the largest per-sample code (``SUCCESS``, ``MAX_STEPS_REACHED``,
    ``NONFINITE`` or ``STAGNATED``: no step decreases F), ``stats`` an :class:`LPNMapStats`,
    ``history`` an :class:`LPNMapHistory`.

    For code written against the PnP result, ``primal_residual`` reads ``gradient_norm``,
    ``dual_residual`` reads ``step_norm``, ``cg_iterations`` reads ``line_search_halvings`` and
    ``lagrangian`` is NaN (deprecated names; read the history's own fields).
    """

    x = property(lambda self: self.value, doc="The estimate (``value``).")
    iterations = property(lambda self: self.stats.iterations,
                          doc="L-BFGS iterations, the largest over the batch.")
    objective = property(lambda self: self.history.objective)
    primal_residual = property(lambda self: self.history.gradient_norm)
    dual_residual = property(lambda self: self.history.step_norm)
    cg_iterations = property(lambda self: self.history.line_search_halvings)

    @property
    def lagrangian(self):
        return jnp.full_like(self.history.objective, jnp.nan)


def pnp_messages(cap: str = "max_steps") -> dict[int, str]:
    """Messages of the :class:`~pdeml.core.RESULTS` codes of the PnP solvers and
    :func:`lpn_map`; ``cap`` names the iteration-cap keyword the caller used."""
    return {
        RESULTS.SUCCESS: "converged (the stopping test passed)",
        RESULTS.MAX_STEPS_REACHED: f"did not pass the stopping test within {cap} (raise {cap} "
                                   "or loosen atol/rtol)",
        RESULTS.NONFINITE: "an iterate became NaN/inf (the prox returned a non-finite value, or "
                           "the data step diverged): check the prox on inputs of this size",
        RESULTS.STAGNATED: "stopped: no step decreases the objective any more (round-off "
                           "limited)",
    }


PNP_MESSAGES = pnp_messages()


def _finish(res: Solution, throw: bool, what: str, cap: str) -> Solution:
    if not throw:
        return res
    return raise_if_failed(res, what, pnp_messages(cap))


class ConvergenceConditions(eqx.Module):
    """Which of the stated convergence conditions hold (see the module docstring)."""

    is_lpn: bool = eqx.field(static=True)
    alpha_ok: bool = eqx.field(static=True)
    rho_ok: bool = eqx.field(static=True)
    norm: float = eqx.field(static=True)
    rho: float = eqx.field(static=True)
    alpha: float | None = eqx.field(static=True)

    @property
    def holds(self) -> bool:
        return self.is_lpn and self.alpha_ok and self.rho_ok

    def explain(self) -> str:
        parts = []
        if not self.is_lpn:
            parts.append("the prox is not an LPN (no convergence guarantee for it)")
        elif not self.alpha_ok:
            parts.append(f"the LPN's strong convexity alpha must be in (0, 1), got {self.alpha}")
        if not self.rho_ok:
            parts.append(f"rho must exceed ||A^T A|| = {self.norm:.6g}, got rho = {self.rho:.6g}")
        return "; ".join(parts) if parts else "all convergence conditions hold"


def _is_lpn(prox) -> bool:
    """Whether ``prox`` is a learned proximal network ``prox = grad psi``, by the protocol of
    :class:`pdeml.prox.LPN`: it exposes ``potential`` (``psi`` of one sample), ``psi`` (one value
    per sample of a batch), ``alpha`` (the strong convexity of ``psi``) and ``event_ndim``. Such
    a prox gets the LPN convergence conditions, the exact regulariser at its outputs and
    :func:`lpn_map`."""
    return (callable(getattr(prox, "potential", None)) and callable(getattr(prox, "psi", None))
            and getattr(prox, "alpha", None) is not None
            and getattr(prox, "event_ndim", None) is not None)


def convergence_conditions(prox, op: LinearOperator, rho: float, *, norm: float | None = None,
                           margin: float = 1e-6) -> ConvergenceConditions:
    """Check the stated sufficient conditions: ``prox`` is an LPN with ``0 < alpha < 1`` and
    ``rho > ||A^T A||`` (``norm``, estimated with :meth:`LinearOperator.normest` if not given;
    ``margin`` is a relative safety margin since power iteration converges from below)."""
    norm = float(op.normest()) if norm is None else float(norm)
    is_lpn = _is_lpn(prox)
    alpha = float(prox.alpha) if is_lpn else None
    return ConvergenceConditions(
        is_lpn=is_lpn,
        alpha_ok=bool(is_lpn and 0 < alpha < 1),
        rho_ok=bool(float(rho) > norm * (1 + margin)),
        norm=norm,
        rho=float(rho),
        alpha=alpha,
    )


# ----------------------------------------------------------------------------- helpers


def _check_rho(rho, dtype):
    if isinstance(rho, (int, float, np.floating, np.integer)):
        if not np.isfinite(rho) or not rho > 0:
            raise ValueError(f"rho must be a finite float > 0, got {rho!r}")
        return jnp.asarray(rho, dtype)
    rho = jnp.asarray(rho, dtype)
    if rho.ndim != 0:
        raise ValueError(f"rho must be a scalar, got shape {rho.shape}")
    return eqx.error_if(rho, ~(jnp.isfinite(rho) & (rho > 0)), "rho must be a finite float > 0")


def _check_inputs(op, prox, y, x0, rho):
    if not isinstance(op, LinearOperator):
        raise TypeError(f"op must be a pdeml.inverse LinearOperator, got {type(op).__name__}")
    if not callable(getattr(prox, "prox", None)):
        raise TypeError(f"prox must have a prox(x) method (the ProximalOperator interface), "
                        f"got {type(prox).__name__}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"y must be a floating-point array, got dtype {y.dtype}")
    k = len(op.out_shape)
    if y.ndim < k or tuple(y.shape[y.ndim - k :]) != tuple(op.out_shape):
        raise ValueError(
            f"y must have trailing shape {op.out_shape} (the operator's out_shape), got {y.shape}"
        )
    batch = y.shape[: y.ndim - k]
    if x0 is not None:
        x0 = jnp.asarray(x0, y.dtype)
        if x0.shape != (*batch, *op.in_shape):
            raise ValueError(f"x0 must have shape {(*batch, *op.in_shape)}, got {x0.shape}")
    y = eqx.error_if(y, ~jnp.all(jnp.isfinite(y)), "y (the measurements) contains NaN or inf")
    return y, x0, _check_rho(rho, y.dtype), batch


def _sum_event(v, n_event):
    return jnp.sum(v, axis=tuple(range(v.ndim - n_event, v.ndim)))


def _norm(v, n_event):
    return jnp.sqrt(_sum_event(v * v, n_event))


def _prox_and_reg(prox, v, n_event, track):
    """``(z, R(z))`` with ``z = prox(v)``; R exact for an LPN via ``v = f^{-1}(z)``."""
    batch = v.shape[: v.ndim - n_event]
    nan = jnp.full(batch, jnp.nan, v.dtype)
    if _is_lpn(prox):
        z = _checked_prox(prox, v)
        if not track:
            return z, nan
        e = prox.event_ndim
        R = _sum_event(z * v, e) - prox.psi(v) - 0.5 * _sum_event(z * z, e)
        return z, _sum_event(R, R.ndim - len(batch)).astype(v.dtype)
    z = _checked_prox(prox, v)
    if not track or not callable(getattr(prox, "regularizer", None)):
        return z, nan
    R = prox.regularizer(z)  # a prox may treat channels as samples: sum them
    return z, _sum_event(R, R.ndim - len(batch)).astype(v.dtype)


def _checked_prox(prox, v):
    """``prox.prox(v)``, refusing (at trace time) an output of another shape or dtype."""
    z = prox.prox(v)
    if jnp.shape(z) != v.shape or jnp.result_type(z) != v.dtype:
        raise TypeError(
            f"prox.prox must return an array of its input's shape and dtype, {v.shape} "
            f"{v.dtype}; {type(prox).__name__}.prox returned {jnp.shape(z)} "
            f"{jnp.result_type(z)}"
        )
    return z


def _history(max_steps, batch, dtype):
    return jnp.full((max_steps, *batch), jnp.nan, dtype)


# ----------------------------------------------------------------------------- PGD


_PGD_TEST = "||x_{k+1} - x_k|| <= atol + rtol ||x_{k+1}|| for every sample"
_ADMM_TEST = "max(||z - x||, ||x_{k+1} - x_k||) <= atol + rtol ||z|| for every sample"
_MAP_TEST = "||grad F(x_k)|| <= atol + rtol ||x_k|| for each sample"
_PNP_TOLERANCES = (0.0, 1e-5)  # (atol, rtol) defaults of PnP-PGD / PnP-ADMM
_MAP_TOLERANCES = (0.0, 1e-4)  # of lpn_map


def pnp_pgd(op: LinearOperator, prox, y, rho, *, x0=None, max_steps: int | None = None,
            atol: float | None = None, rtol: float | None = None, track_objective: bool = True,
            throw: bool = False, tol: float | None = None,
            max_iter: int | None = None) -> PnPResult:
    """Plug-and-play proximal gradient descent: ``x <- prox(x - A^T (A x - y) / rho)``.

    Args:
        op: the forward operator A (:class:`~pdeml.inverse.operators.LinearOperator`).
        prox: anything with ``prox(x)`` on ``(*batch, *in_shape)`` arrays (an LPN, a classical
            prox, a denoiser).
        y: measurements ``(*batch, *out_shape)``; NaN/inf are refused at run time.
        rho: penalty > 0 (step ``1/rho``); the objective is non-increasing for an LPN when
            ``rho >= ||A^T A||`` (see :func:`convergence_conditions`). Python float or traced
            scalar (no recompilation across values).
        x0: start (default ``A^T y``).
        max_steps: iteration cap (default 100; ``max_iter``: its deprecated spelling).
        atol, rtol: stop when ``||x_{k+1} - x_k|| <= atol + rtol ||x_{k+1}||`` for every
            sample (defaults ``atol = 0``, ``rtol = 1e-5``).
        tol: deprecated (warns): the former relative test, the same as ``atol=0, rtol=tol``.
        track_objective: record ``F = h + R`` (needs R, see the module docstring).
        throw: raise ``equinox.EquinoxRuntimeError`` (at run time) if the result is not
            ``SUCCESS``; with ``False`` (default: a fixed iteration budget is a normal use)
            the outcome is reported in ``converged`` / ``result``. A prox that returns NaN/inf
            stops the iteration with ``result = NONFINITE`` either way.

    Returns:
        :class:`PnPResult`, a :class:`~pdeml.core.Solution` (``value``/``x``, ``result``,
        ``stats``: :class:`PnPStats`, ``history``: :class:`PnPHistory`).

    Example:
        >>> import jax.numpy as jnp
        >>> from pdeml.inverse.operators import MatrixOperator
        >>> from pdeml.prox import SoftThreshold
        >>> op = MatrixOperator(jnp.eye(2))
        >>> res = pnp_pgd(op, SoftThreshold(0.5), jnp.array([2.0, 0.1]), 1.0)
        >>> res.x.tolist()
        [1.5, 0.0]
    """
    max_steps, cap = max_steps_option(max_steps, 100, max_iter=max_iter)
    atol, rtol = tolerance_option(atol, rtol, _PNP_TOLERANCES, test=_PGD_TEST, tol=tol)
    y, x0, rho, batch = _check_inputs(op, prox, y, x0, rho)
    res = _pgd(op, prox, y, rho, x0, max_steps, atol, rtol, bool(track_objective))
    return _finish(res, throw, "pnp_pgd", cap)


@eqx.filter_jit
def _pgd(op, prox, y, rho, x0, max_steps, atol, rtol, track):
    n_event = len(op.in_shape)
    batch = y.shape[: y.ndim - len(op.out_shape)]
    x = op.adjoint(y) if x0 is None else x0
    dt = y.dtype

    def h(x):
        r = op(x) - y
        return _sum_event(r * r, len(op.out_shape)) / (2 * rho)

    def cond(s):
        return (s["k"] < max_steps) & ~s["done"] & ~s["nonfinite"]

    def body(s):
        x, k = s["x"], s["k"]
        g = op.adjoint(op(x) - y)
        v = x - g / rho
        x_new, R = _prox_and_reg(prox, v, n_event, track)
        dx = x - x_new
        step = _norm(dx, n_event)
        opt = _norm(dx - op.gram(dx) / rho, n_event)
        F = h(x_new) + R
        scale = jnp.maximum(_norm(x_new, n_event), jnp.finfo(dt).tiny)
        return {
            "x": x_new, "k": k + 1, "done": jnp.all(step <= atol + rtol * scale),
            "nonfinite": ~jnp.all(jnp.isfinite(x_new)),
            "pr": s["pr"].at[k].set(step), "dr": s["dr"].at[k].set(opt),
            "obj": s["obj"].at[k].set(F),
        }

    init = {"x": x, "k": jnp.asarray(0, jnp.int32), "done": jnp.asarray(False),
            "nonfinite": jnp.asarray(False),
            "pr": _history(max_steps, batch, dt), "dr": _history(max_steps, batch, dt),
            "obj": _history(max_steps, batch, dt)}
    s = jax.lax.while_loop(cond, body, init)
    history = PnPHistory(primal_residual=s["pr"], dual_residual=s["dr"], objective=s["obj"],
                         lagrangian=_history(max_steps, batch, dt),
                         cg_iterations=jnp.zeros((max_steps, *batch), jnp.int32))
    return PnPResult(value=s["x"], result=result_code(s["done"], s["nonfinite"]),
                     stats=PnPStats(iterations=s["k"]), history=history)


# ----------------------------------------------------------------------------- ADMM


def pnp_admm(op: LinearOperator, prox, y, rho, *, x0=None, max_steps: int | None = None,
             atol: float | None = None, rtol: float | None = None, cg_tol: float | None = None,
             cg_max_steps: int | None = None, track_objective: bool = True, throw: bool = False,
             tol: float | None = None, max_iter: int | None = None,
             cg_maxiter: int | None = None) -> PnPResult:
    """Plug-and-play ADMM with a CG data step (see the module docstring for the iteration).

    Args:
        op, prox, y, rho, x0, max_steps, track_objective: as in :func:`pnp_pgd` (the augmented
            Lagrangian is non-increasing for an LPN when ``rho > ||A^T A||``).
        atol, rtol: stop when ``max(||z - x||, ||x_{k+1} - x_k||) <= atol + rtol ||z||`` for
            every sample (defaults ``atol = 0``, ``rtol = 1e-5``).
        tol: deprecated (warns): the former relative test, the same as ``atol=0, rtol=tol``.
        cg_tol: relative residual of each CG solve, ``||r|| <= cg_tol ||b||`` (default 1e-10
            in float64, 1e-5 in float32);
            cg_max_steps: CG iteration cap (default 100; ``cg_maxiter``: its deprecated
            spelling). CG is warm-started from the previous x.
        throw: raise ``equinox.EquinoxRuntimeError`` (at run time) if the result is not
            ``SUCCESS``; with ``False`` (default: a fixed iteration budget is a normal use)
            the outcome is reported in ``converged`` / ``result``. A prox that returns NaN/inf
            stops the iteration with ``result = NONFINITE`` either way.

    The dual starts at ``u_0 = grad h(x_0) = A^T (A x_0 - y) / rho`` (the value every later
    iterate satisfies), which makes the Lagrangian decrease from the first iteration.

    Returns:
        :class:`PnPResult`, a :class:`~pdeml.core.Solution` (``value``/``x`` is the last prox
        output z).

    Example:
        >>> import jax.numpy as jnp
        >>> from pdeml.inverse.operators import MatrixOperator
        >>> from pdeml.prox import SoftThreshold
        >>> res = pnp_admm(MatrixOperator(jnp.eye(2)), SoftThreshold(0.5), jnp.array([2.0, 0.1]),
        ...                2.0, max_steps=500, rtol=1e-10)
        >>> [round(v, 4) for v in res.x.tolist()]  # argmin |x - y|^2 / (2 rho) + 0.5 |x|_1 = y - 1
        [1.0, 0.0]
    """
    max_steps, cap = max_steps_option(max_steps, 100, max_iter=max_iter)
    cg_max_steps, _ = max_steps_option(cg_max_steps, 100, cg_maxiter=cg_maxiter)
    atol, rtol = tolerance_option(atol, rtol, _PNP_TOLERANCES, test=_ADMM_TEST, tol=tol)
    y, x0, rho, batch = _check_inputs(op, prox, y, x0, rho)
    if cg_tol is None:
        cg_tol = 1e-10 if y.dtype == jnp.float64 else 1e-5
    if not cg_tol > 0:
        raise ValueError(f"cg_tol must be > 0, got {cg_tol!r}")
    res = _admm(op, prox, y, rho, x0, max_steps, atol, rtol, float(cg_tol), cg_max_steps,
                bool(track_objective))
    return _finish(res, throw, "pnp_admm", cap)


@eqx.filter_jit
def _admm(op, prox, y, rho, x0, max_steps, atol, rtol, cg_tol, cg_max_steps, track):
    n_event = len(op.in_shape)
    n_out = len(op.out_shape)
    batch = y.shape[: y.ndim - n_out]
    dt = y.dtype
    Aty = op.adjoint(y)
    x = Aty if x0 is None else x0
    u = op.adjoint(op(x) - y) / rho

    def h(x):
        r = op(x) - y
        return _sum_event(r * r, n_out) / (2 * rho)

    flat_in = (-1, *op.in_shape)

    def data_step(rhs, xw):
        def one(b, w):
            x, stats = cg_solve(lambda v: op._adjoint(op._apply(v)) + rho * v, b, w,
                                rtol=cg_tol, max_steps=cg_max_steps)
            return x, stats.iterations

        xs, ks = jax.vmap(one)(rhs.reshape(flat_in), xw.reshape(flat_in))
        return xs.reshape(rhs.shape), ks.reshape(batch)

    def cond(s):
        return (s["k"] < max_steps) & ~s["done"] & ~s["nonfinite"]

    def body(s):
        x, u, k = s["x"], s["u"], s["k"]
        z, R = _prox_and_reg(prox, x - u, n_event, track)
        x_new, kcg = data_step(Aty + rho * (z + u), x)
        u_new = u + z - x_new
        r = _norm(z - x_new, n_event)
        d = _norm(x_new - x, n_event)
        lag = R + h(x_new) + 0.5 * _sum_event((z - x_new + u_new) ** 2, n_event) \
            - 0.5 * _sum_event(u_new**2, n_event)
        scale = jnp.maximum(_norm(z, n_event), jnp.finfo(dt).tiny)
        done = jnp.all(jnp.maximum(r, d) <= atol + rtol * scale)
        return {
            "x": x_new, "u": u_new, "z": z, "k": k + 1, "done": done,
            "nonfinite": ~(jnp.all(jnp.isfinite(z)) & jnp.all(jnp.isfinite(x_new))),
            "pr": s["pr"].at[k].set(r), "dr": s["dr"].at[k].set(d),
            "obj": s["obj"].at[k].set(h(z) + R), "lag": s["lag"].at[k].set(lag),
            "cg": s["cg"].at[k].set(kcg),
        }

    init = {"x": x, "u": u, "z": x, "k": jnp.asarray(0, jnp.int32), "done": jnp.asarray(False),
            "nonfinite": jnp.asarray(False),
            "pr": _history(max_steps, batch, dt), "dr": _history(max_steps, batch, dt),
            "obj": _history(max_steps, batch, dt), "lag": _history(max_steps, batch, dt),
            "cg": jnp.zeros((max_steps, *batch), jnp.int32)}
    s = jax.lax.while_loop(cond, body, init)
    history = PnPHistory(primal_residual=s["pr"], dual_residual=s["dr"], objective=s["obj"],
                         lagrangian=s["lag"], cg_iterations=s["cg"])
    return PnPResult(value=s["z"], result=result_code(s["done"], s["nonfinite"]),
                     stats=PnPStats(iterations=s["k"]), history=history)


# ----------------------------------------------------------------------------- LPN MAP


def lpn_map(op: LinearOperator, lpn, y, rho, *, x0=None, max_steps: int | None = None,
            atol: float | None = None, rtol: float | None = None, memory: int = 10,
            max_backtrack: int = 30, throw: bool = False, tol: float | None = None,
            max_iter: int | None = None) -> LPNMapResult:
    """MAP with an LPN's explicit regulariser, guaranteed for ANY data weight ``rho > 0``.

    Minimises the same ``F(x) = ||A x - y||^2 / (2 rho) + R(x)`` as :func:`pnp_pgd` /
    :func:`pnp_admm`, but without their condition ``rho > ||A^T A||`` (which ties the data
    weight to the noise level the LPN was trained at). Every point ``x = f(w)`` in the range of
    the prox ``f = grad psi`` (all of R^n) has ``R(f(w)) = <f(w), w> - psi(w) - ||f(w)||^2 / 2``
    exactly, so ``G(w) = F(f(w))`` is an explicit smooth function of ``w`` with gradient

        grad G(w) = Hess psi(w) d,      d = grad F(f(w)) = A^T (A f(w) - y) / rho + w - f(w)

    (``grad R(f(w)) = w - f(w)``; one Hessian-vector product). ``Hess psi >= alpha I`` makes
    ``d = 0`` exactly the stationary points of F. G is minimised per sample by L-BFGS (two-loop
    recursion, ``memory`` pairs, cautious updates that skip pairs with ``<s, y> <= 1e-6
    ||s||^2``, a steepest-descent fallback when the direction is not a descent direction) with an
    Armijo backtracking line search. So ``F(x_k)`` is non-increasing, and every limit point is
    stationary (gradient-related directions with Armijo steps: Bertsekas, *Nonlinear
    Programming*, Prop. 1.2.1; cautious L-BFGS: Li & Fukushima, SIAM J. Optim. 11 (2001)), given F
    bounded below. The fixed points of PnP-ADMM / PnP-PGD at the same rho are the same stationary
    points.

    Args:
        op: forward operator; lpn: an :class:`~pdeml.prox.LPN` (strongly convex, alpha > 0).
        y: measurements ``(*batch, *out_shape)``; rho: data weight > 0 (any value).
        x0: start, as a prox input: ``x_0 = f(x0)`` (default ``x0 = A^T y``).
        max_steps: L-BFGS iterations per sample (default 300; ``max_iter``: its deprecated
            spelling).
        atol, rtol: stop a sample when ``||grad F(x_k)|| <= atol + rtol ||x_k||`` (defaults
            ``atol = 0``, ``rtol = 1e-4``).
        tol: deprecated (warns): the former relative test, the same as ``atol=0, rtol=tol``.
        memory: L-BFGS pairs; max_backtrack: halvings of the step before giving up (then the
            sample stops with ``converged`` reporting the stationarity test and ``result =
            STAGNATED``).
        throw: raise ``equinox.EquinoxRuntimeError`` (at run time) if the result is not
            ``SUCCESS``; with ``False`` (default: a fixed iteration budget is a normal use)
            the outcome is reported in ``converged`` / ``result``.

    Returns:
        :class:`LPNMapResult`, a :class:`~pdeml.core.Solution`: ``value`` (also ``x``);
        ``result`` the largest per-sample code (``converged``: every sample passed the test);
        ``stats`` (:class:`LPNMapStats`): ``iterations`` (the largest over the batch) and the
        per-sample iterations and codes; ``history`` (:class:`LPNMapHistory`): ``objective``
        F(x_k), ``gradient_norm`` ``||grad F(x_k)||`` (the exact gradient, an optimality
        measure), ``step_norm`` ``||x_k - x_{k-1}||`` and ``line_search_halvings``.
    """
    if not _is_lpn(lpn):
        raise TypeError(f"lpn_map needs an LPN (its explicit regulariser), got {type(lpn).__name__}")
    if not lpn.alpha > 0:
        raise ValueError(f"lpn_map needs a strongly convex potential (alpha > 0), got {lpn.alpha}")
    for name, v in (("memory", memory), ("max_backtrack", max_backtrack)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    max_steps, cap = max_steps_option(max_steps, 300, max_iter=max_iter)
    atol, rtol = tolerance_option(atol, rtol, _MAP_TOLERANCES, test=_MAP_TEST, tol=tol)
    y, x0, rho, batch = _check_inputs(op, lpn, y, x0, rho)
    res = _lpn_map(op, lpn, y, rho, x0, max_steps, atol, rtol, memory, max_backtrack)
    return _finish(res, throw, "lpn_map", cap)


_CAUTIOUS = 1e-6  # an L-BFGS pair (s, y) is kept only if <s, y> > _CAUTIOUS ||s||^2


def _dot(a, b):
    return jnp.sum(a * b)


def _two_loop(g, S, Y, valid, newest):
    """L-BFGS direction ``-H g`` from the pairs in the circular buffers ``S``, ``Y``."""
    m = S.shape[0]
    dot = _dot
    rhos = jnp.where(valid, 1.0 / jnp.where(valid, jax.vmap(dot)(S, Y), 1.0), 0.0)

    def back(i, carry):
        q, a = carry
        j = (newest - i) % m
        aj = rhos[j] * dot(S[j], q)
        return q - aj * Y[j], a.at[j].set(aj)

    q, a = jax.lax.fori_loop(0, m, back, (g, jnp.zeros(m, g.dtype)))
    yy = dot(Y[newest], Y[newest])
    gamma = jnp.where(valid[newest] & (yy > 0), dot(S[newest], Y[newest]) / jnp.where(yy > 0, yy, 1.0), 1.0)
    r = gamma * q

    def fwd(i, r):
        j = (newest + 1 + i) % m  # oldest first
        b = rhos[j] * dot(Y[j], r)
        return r + (a[j] - b) * S[j]

    return -jax.lax.fori_loop(0, m, fwd, r)


@eqx.filter_jit
def _lpn_map(op, lpn, y, rho, x0, max_steps, atol, rtol, memory, max_backtrack):
    n_out = len(op.out_shape)
    batch = y.shape[: y.ndim - n_out]
    dt = y.dtype
    psi = lpn.potential
    grad_psi = jax.grad(psi)
    vg_psi = jax.value_and_grad(psi)
    flat_in, flat_out = (-1, *op.in_shape), (-1, *op.out_shape)
    yf = y.reshape(flat_out)
    wf = (op.adjoint(y) if x0 is None else x0).reshape(flat_in)
    dot = _dot

    def single(yi, w0):
        def value(w):
            """G(w) = F(f(w)), f(w), and the size of the terms (for the round-off test)."""
            p, z = vg_psi(w)
            r = op(z) - yi
            h, zw, zz = dot(r, r) / (2 * rho), dot(z, w), 0.5 * dot(z, z)
            return h + zw - p - zz, z, jnp.abs(h) + jnp.abs(zw) + jnp.abs(p) + zz

        def full(w):
            G, z, scale = value(w)
            d = op.adjoint(op(z) - yi) / rho + w - z
            g = jax.jvp(grad_psi, (w,), (d,))[1]
            return G, z, d, g, scale

        G0, z0, d0, g0, _ = full(w0)
        S = jnp.zeros((memory, *w0.shape), dt)
        hist = jnp.full((max_steps,), jnp.nan, dt)
        st = dict(w=w0, z=z0, G=G0, d=d0, g=g0, S=S, Y=jnp.zeros_like(S),
                  valid=jnp.zeros(memory, bool), newest=jnp.asarray(memory - 1, jnp.int32),
                  k=jnp.asarray(0, jnp.int32), stop=jnp.asarray(False),
                  obj=hist, gn=hist, step=hist, bt=jnp.zeros(max_steps, jnp.int32))

        def stationary(s):
            scale = jnp.maximum(jnp.linalg.norm(s["z"]), jnp.finfo(dt).tiny)
            return jnp.linalg.norm(s["d"]) <= atol + rtol * scale

        def cond(s):
            return (s["k"] < max_steps) & ~s["stop"] & ~stationary(s)

        def body(s):
            g = s["g"]
            p = _two_loop(g, s["S"], s["Y"], s["valid"], s["newest"])
            slope = dot(g, p)
            descent = slope < -1e-10 * jnp.linalg.norm(g) * jnp.linalg.norm(p)
            p = jnp.where(descent, p, -g)
            slope = jnp.where(descent, slope, -dot(g, g))
            # the full step first, with its gradient (the common case costs one evaluation).
            # Near the solution F changes by less than its round-off and Armijo fails
            # spuriously: the full step is then also accepted if F rises by no more than
            # round-off and the gradient norm drops (as in pdeml.prox.inversion).
            G1, z1, d1, g1, scale = full(s["w"] + p)
            roundoff = 8 * jnp.finfo(dt).eps * scale
            ok1 = jnp.isfinite(G1) & ((G1 <= s["G"] + 1e-4 * slope)
                                      | ((G1 <= s["G"] + roundoff)
                                         & (jnp.linalg.norm(d1) < jnp.linalg.norm(s["d"]))))

            ls = backtracking_line_search(lambda t: (value(s["w"] + t * p)[0], None), s["G"],
                                          slope, max_steps=max_backtrack, first=(G1, None, ok1))
            t, j, ok = ls.step, ls.num_backtracks, ls.accepted
            w_new = s["w"] + t * p
            G1, z1, d1, g1, _ = jax.lax.cond(j > 0, lambda: full(w_new), lambda: (G1, z1, d1, g1, scale))
            sv, yv = w_new - s["w"], g1 - g
            keep = ok & (dot(sv, yv) > _CAUTIOUS * dot(sv, sv))
            slot = (s["newest"] + 1) % memory
            k = s["k"]
            new = dict(
                w=w_new, z=z1, G=G1, d=d1, g=g1,
                S=jnp.where(keep, s["S"].at[slot].set(sv), s["S"]),
                Y=jnp.where(keep, s["Y"].at[slot].set(yv), s["Y"]),
                valid=jnp.where(keep, s["valid"].at[slot].set(True), s["valid"]),
                newest=jnp.where(keep, slot, s["newest"]), k=k + 1, stop=jnp.asarray(False),
                obj=s["obj"].at[k].set(G1), gn=s["gn"].at[k].set(jnp.linalg.norm(d1)),
                step=s["step"].at[k].set(jnp.linalg.norm(z1 - s["z"])), bt=s["bt"].at[k].set(j),
            )
            # no acceptable step: keep the last iterate (F never increases) and stop
            old = dict(s, k=k + 1, stop=jnp.asarray(True), bt=s["bt"].at[k].set(j))
            return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

        s = jax.lax.while_loop(cond, body, st)
        conv = stationary(s)
        code = result_code(conv, ~(jnp.all(jnp.isfinite(s["z"])) & jnp.isfinite(s["G"])),
                            s["stop"])
        return s["z"], s["k"], conv, s["obj"], s["gn"], s["step"], s["bt"], code

    z, k, conv, obj, gn, step, bt, code = jax.vmap(single)(yf, wf)
    hist = lambda a: jnp.moveaxis(a, 0, 1).reshape((max_steps, *batch))  # noqa: E731
    stats = LPNMapStats(iterations=jnp.max(k), sample_iterations=k.reshape(batch),
                        sample_result=code.reshape(batch))
    history = LPNMapHistory(objective=hist(obj), gradient_norm=hist(gn), step_norm=hist(step),
                            line_search_halvings=hist(bt))
    return LPNMapResult(value=z.reshape((*batch, *op.in_shape)), result=jnp.max(code),
                        stats=stats, history=history)


# ----------------------------------------------------------------------------- Tikhonov


def tikhonov(op: LinearOperator, y, lam, *, regularizer: str = "identity", x0=None,
             atol: float | None = None, rtol: float | None = None, max_steps: int | None = None,
             tol: float | None = None, maxiter: int | None = None):
    """Tikhonov-regularised least squares ``argmin ||A x - y||^2 + lam ||L x||^2`` by CG.

    Args:
        op: forward operator; y: measurements ``(*batch, *out_shape)``.
        lam: weight > 0.
        regularizer: ``"identity"`` (L = I) or ``"gradient"`` (L = periodic forward differences
            along the last two axes, or the last axis for 1D signals: an H^1 seminorm).
        x0: warm start.
        atol, rtol: CG stops when the residual of the normal equations
            ``||A^T y - (A^T A + lam L^T L) x|| <= atol + rtol ||A^T y||`` per sample (defaults
            ``atol = 0``, ``rtol`` 1e-10 in float64 / 1e-5 in float32).
        max_steps: CG iteration cap (default 500).
        tol, maxiter: deprecated (warn): ``tol`` is ``atol=0, rtol=tol``; ``maxiter`` is
            ``max_steps``.

    Returns:
        ``x`` of shape ``(*batch, *in_shape)`` (differentiable in ``y`` and ``lam``).

    Example:
        >>> from pdeml.inverse.operators import MatrixOperator
        >>> x = tikhonov(MatrixOperator(jnp.eye(2)), jnp.array([2.0, 4.0]), 1.0)
        >>> x.tolist()
        [1.0, 2.0]
    """
    if isinstance(lam, (int, float)) and not lam > 0:
        raise ValueError(f"lam must be a float > 0, got {lam!r}")
    max_steps, _ = max_steps_option(max_steps, 500, maxiter=maxiter)
    y, x0, lam, batch = _check_inputs(op, _HasProx(), y, x0, lam)
    if regularizer not in ("identity", "gradient"):
        raise ValueError(f"unknown regularizer {regularizer!r}; expected 'identity' or 'gradient'")
    default = (0.0, 1e-10 if y.dtype == jnp.float64 else 1e-5)
    atol, rtol = tolerance_option(atol, rtol, default, test=_TIKHONOV_TEST, tol=tol)
    return _tikhonov(op, y, lam, regularizer, x0, atol, rtol, max_steps)


_TIKHONOV_TEST = "||A^T y - (A^T A + lam L^T L) x|| <= atol + rtol ||A^T y|| (CG)"


@eqx.filter_jit
def _tikhonov(op, y, lam, regularizer, x0, atol, rtol, max_steps):
    batch = y.shape[: y.ndim - len(op.out_shape)]
    nd = min(2, len(op.in_shape))
    axes = tuple(range(-nd, 0))

    def LtL(v):
        if regularizer == "identity":
            return v
        out = jnp.zeros_like(v)
        for a in axes:
            d = jnp.roll(v, -1, axis=a) - v
            out = out + jnp.roll(d, 1, axis=a) - d
        return out

    flat = (-1, *op.in_shape)
    b = op.adjoint(y).reshape(flat)
    w = jnp.zeros_like(b) if x0 is None else x0.reshape(flat)

    def one(bi, wi):
        return cg_solve(lambda v: op._adjoint(op._apply(v)) + lam * LtL(v), bi, wi,
                        rtol=rtol, atol=atol, max_steps=max_steps)[0]

    return jax.vmap(one)(b, w).reshape((*batch, *op.in_shape))


class _HasProx:
    def prox(self, x):  # pragma: no cover - placeholder for the shared input checks
        return x
