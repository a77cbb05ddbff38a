"""Inverting a learned proximal network: y = f^{-1}(x) with f = grad psi, psi strongly convex.

``y`` minimises the strongly convex ``phi(y) = psi(y) - <x, y>`` whose gradient is
``f(y) - x`` and whose Hessian is ``Hess psi(y) >= alpha I``. We solve it per sample, vmapped over
the batch and jitted, with

- ``"newton_cg"`` (default): Newton steps whose direction comes from conjugate gradients on
  Hessian-vector products (forward-over-reverse, never a dense Hessian), an inexact forcing term
  ``eta_k = min(0.5, sqrt(||g_k||)) ||g_k||`` (superlinear local convergence) and a backtracking
  line search on ``phi``;
- ``"lbfgs"``: optax's L-BFGS with its zoom line search on ``phi``.

Both stop when the residual ``||f(y) - x||_2 <= atol + rtol ||x||_2`` (per sample) and report the
residual, the iteration count and a converged flag; nothing is silently accepted.

The published approach (:func:`invert_adam`) runs a fixed number of Adam steps with no
convergence test; it is kept as the baseline for ``benchmarks/lpn.py``.

Reference: Fang, Buchanan & Sulam, ICLR 2024 (LPN), Sec. 3 ("recovering the regulariser");
Nocedal & Wright, *Numerical Optimization*, Ch. 7 (Newton-CG) and Ch. 7.2 (L-BFGS).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax
from jaxtyping import Array, Float, Int

from pdeml.core.krylov import cg_solve
from pdeml.core.linesearch import backtracking_line_search
from pdeml.core.solution import (
    RESULTS,
    Solution,
    max_steps_option,
    raise_if_failed,
    result_code,
)

__all__ = ["InversionResult", "InversionStats", "invert_potential", "invert_adam", "METHODS",
           "default_tolerance", "INVERSION_MESSAGES", "inversion_messages"]


def inversion_messages(cap: str = "max_steps") -> dict[int, str]:
    """Messages of the :class:`~pdeml.core.RESULTS` codes an inversion can end with; ``cap``
    names the iteration-cap keyword the caller used."""
    return {
        RESULTS.SUCCESS: "converged (||f(y) - x|| <= atol + rtol ||x||)",
        RESULTS.MAX_STEPS_REACHED: "did not reach the tolerance ||f(y) - x|| <= atol + rtol ||x|| "
                                   f"within {cap} (raise {cap}, loosen atol/rtol, or start "
                                   "closer: y0=)",
        RESULTS.NONFINITE: "produced NaN/inf (the potential or its gradient is not finite at the "
                           "iterate)",
    }


INVERSION_MESSAGES = inversion_messages()

METHODS = ("newton_cg", "lbfgs")


class InversionStats(eqx.Module):
    """Diagnostics of an inversion, per sample.

    Attributes:
        residual: ``||f(y) - x||_2``.
        iterations: outer (Newton / L-BFGS / Adam) iterations.
    """

    residual: Float[Array, "..."]
    iterations: Int[Array, "..."]


class InversionResult(Solution):
    """The :class:`~pdeml.core.Solution` of inverting ``f = grad psi`` at a batch of points.

    Fields: ``value`` the inverse ``y`` (same shape as ``x``); ``result`` a
    :class:`~pdeml.core.RESULTS` code per sample (``SUCCESS``, ``MAX_STEPS_REACHED`` or
    ``NONFINITE``; messages in ``INVERSION_MESSAGES``); ``stats`` an :class:`InversionStats`
    (``residual`` and ``iterations`` per sample); ``history`` ``None``. ``converged`` is
    ``residual <= atol + rtol ||x||`` per sample; ``y``, ``residual`` and ``iterations`` read
    ``value`` and ``stats``; :meth:`check` raises if any sample failed.
    """

    @classmethod
    def build(cls, y, residual, iterations, converged) -> InversionResult:
        """The result from per-sample arrays (the code: ``NONFINITE`` where the residual is not
        finite, ``MAX_STEPS_REACHED`` where it is finite but above the tolerance)."""
        return cls(value=y, result=result_code(converged, ~jnp.isfinite(residual)),
                   stats=InversionStats(residual=residual, iterations=iterations))

    def reshape(self, batch: tuple[int, ...], event: tuple[int, ...]) -> InversionResult:
        """The same result with the samples laid out as ``batch`` (``value``: ``(*batch,
        *event)``)."""
        return type(self)(value=self.value.reshape((*batch, *event)),
                          result=self.result.reshape(batch),
                          stats=jax.tree.map(lambda a: a.reshape(batch), self.stats))

    @property
    def y(self) -> Array:
        """The inverse (``value``)."""
        return self.value

    @property
    def residual(self) -> Float[Array, "..."]:
        """``||f(y) - x||_2`` per sample (``stats.residual``)."""
        return self.stats.residual

    @property
    def iterations(self) -> Int[Array, "..."]:
        """Outer iterations per sample (``stats.iterations``)."""
        return self.stats.iterations

    def check(self, value, what: str = "inverting the LPN", cap: str = "max_steps"):
        """Return ``value``; raise at run time (also under jit) if any sample failed to converge,
        with the reason (:func:`pdeml.core.raise_if_failed`; ``cap`` names the iteration-cap
        keyword in the message)."""
        return raise_if_failed(self, what, inversion_messages(cap), target=value)


def default_tolerance(dtype) -> tuple[float, float]:
    """``(atol, rtol)`` defaults: about ``sqrt(eps)``-level for float32, ``1e-10`` for float64."""
    if jnp.finfo(dtype).bits >= 64:
        return 1e-10, 1e-10
    return 1e-4, 1e-4


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def _newton_step_fn(psi, max_cg, max_backtrack, hvp_dtype):
    """One damped inexact Newton step for ONE sample: ``step(x, y, f, g) -> (y, f, g)`` with
    ``f = phi(y) = psi(y) - <x, y>`` and ``g = grad phi(y) = f(y) - x`` carried between steps
    (one value-and-gradient evaluation per accepted step; the line search only runs when the
    full step is rejected)."""
    lo = None if hvp_dtype is None else jnp.dtype(hvp_dtype)
    grad_psi = jax.grad(psi)
    psi_lo = _cast_floats(psi, lo) if lo is not None else None
    grad_lo = jax.grad(psi_lo) if lo is not None else None
    vg = jax.value_and_grad(psi)

    def obj_and_grad(y, x):
        v, gp = vg(y)
        return v - jnp.vdot(x, y), gp - x

    def step(x, y, f0, g):
        gnorm = jnp.linalg.norm(g)
        forcing = jnp.minimum(0.5, jnp.sqrt(gnorm))
        if lo is None or lo == y.dtype:
            hvp = lambda v: jax.jvp(grad_psi, (y,), (v,))[1]  # noqa: E731
            p, _ = cg_solve(hvp, -g, atol=forcing * gnorm, rtol=0, max_steps=max_cg)
        else:
            # Mixed precision: the Newton direction only has to be accurate to the forcing
            # term, so CG runs on low-precision Hessian-vector products for the normalised
            # right-hand side (relative tolerance floored at 10 eps of the low dtype); the
            # gradient, line search and residual stay in x's precision.
            y_lo = y.astype(lo)
            hvp = lambda v: jax.jvp(grad_lo, (y_lo,), (v,))[1]  # noqa: E731
            rel = jnp.maximum(forcing, 10 * jnp.finfo(lo).eps).astype(lo)
            scale = jnp.where(gnorm > 0, gnorm, 1.0)
            p, _ = cg_solve(hvp, (-g / scale).astype(lo), atol=rel, rtol=0, max_steps=max_cg)
            p = p.astype(y.dtype) * scale
        slope = jnp.vdot(g, p)
        # CG on an SPD system gives a descent direction; fall back to -g if round-off says not.
        p = jnp.where(slope < 0, p, -g)
        slope = jnp.where(slope < 0, slope, -(gnorm**2))
        f1, g1 = obj_and_grad(y + p, x)
        # Near the solution phi changes by less than round-off and Armijo can fail spuriously;
        # the full Newton step is then accepted if it reduces the residual and phi rises by
        # no more than round-off (a larger rise would let the two tests cycle).
        roundoff = 4 * jnp.finfo(y.dtype).eps * (1 + jnp.abs(f0))
        ok = jnp.isfinite(f1) & (
            (f1 <= f0 + 1e-4 * slope)
            | ((jnp.linalg.norm(g1) < gnorm) & (f1 <= f0 + roundoff))
        )
        ls = backtracking_line_search(lambda t: obj_and_grad(y + t * p, x), f0, slope,
                                      max_steps=max_backtrack, first=(f1, g1, ok))
        return y + ls.step * p, ls.value, ls.aux

    return obj_and_grad, step


def _bcast(mask, a):
    return mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))


def _newton_cg_batched(psi, x, y0, atol, rtol, max_iter, max_cg, max_backtrack, hvp_dtype=None,
                       shrink=4):
    """Newton-CG for a batch ``x`` (batch, *event), jitted as one loop with compaction.

    A vmapped ``while_loop`` costs, per iteration, the whole batch until its SLOWEST sample
    converges. Here the loop runs in phases of decreasing static size ``B, ceil(B / shrink),
    ..., 1``: each phase stops as soon as the unconverged samples fit the next size, which then
    gathers them (plus already-converged fillers, left untouched) and continues. Every sample
    still gets up to ``max_iter`` iterations and its own stopping test.
    """
    obj_and_grad, step = _newton_step_fn(psi, max_cg, max_backtrack, hvp_dtype)
    B = x.shape[0]
    axes = tuple(range(1, x.ndim))
    norm = lambda a: jnp.sqrt(jnp.sum(a * a, axis=axes))  # noqa: E731
    tol = atol + rtol * norm(x)
    f0, g0 = jax.vmap(obj_and_grad)(y0, x)
    k0 = jnp.zeros((B,), jnp.int32)

    def done_of(g, k, tol):
        r = norm(g)
        return (r <= tol) | (k >= max_iter) | ~jnp.isfinite(r)

    def run_phase(xs, tols, y, f, g, k, leave):
        def cond(s):
            y, f, g, k = s
            return jnp.sum(~done_of(g, k, tols)) > leave

        def body(s):
            y, f, g, k = s
            done = done_of(g, k, tols)
            y1, f1, g1 = jax.vmap(step)(xs, y, f, g)
            return (jnp.where(_bcast(done, y), y, y1), jnp.where(done, f, f1),
                    jnp.where(_bcast(done, g), g, g1), jnp.where(done, k, k + 1))

        return lax.while_loop(cond, body, (y, f, g, k))

    sizes = [B]
    while sizes[-1] > 1:
        sizes.append(-(-sizes[-1] // shrink))
    y, f, g, k = y0, f0, g0, k0
    for i, m in enumerate(sizes):
        leave = sizes[i + 1] if i + 1 < len(sizes) else 0
        if m == B:
            y, f, g, k = run_phase(x, tol, y, f, g, k, leave)
            continue
        # the (at most m) unconverged samples first, stable order
        idx = jnp.argsort(done_of(g, k, tol), stable=True)[:m]
        ys, fs, gs, ks = run_phase(x[idx], tol[idx], y[idx], f[idx], g[idx], k[idx], leave)
        y, f, g, k = y.at[idx].set(ys), f.at[idx].set(fs), g.at[idx].set(gs), k.at[idx].set(ks)
    res = norm(g)
    return y, res, k, res <= tol


def _lbfgs_single(psi, x, y0, atol, rtol, max_iter, memory):
    obj = lambda y: psi(y) - jnp.vdot(x, y)  # noqa: E731
    opt = optax.lbfgs(memory_size=memory)
    value_and_grad = optax.value_and_grad_from_state(obj)
    tol = atol + rtol * jnp.linalg.norm(x)

    def cond(s):
        _, _, g, k = s
        return (jnp.linalg.norm(g) > tol) & (k < max_iter) & jnp.all(jnp.isfinite(g))

    def body(s):
        y, state, _, k = s
        v, g = value_and_grad(y, state=state)
        updates, state = opt.update(g, state, y, value=v, grad=g, value_fn=obj)
        y = optax.apply_updates(y, updates)
        return y, state, jax.grad(obj)(y), k + 1

    g0 = jax.grad(obj)(y0)
    y, _, g, k = lax.while_loop(cond, body, (y0, opt.init(y0), g0, jnp.asarray(0)))
    res = jnp.linalg.norm(g)
    return y, res, k, res <= tol


def invert_potential(
    psi: Callable,
    x: Array,
    *,
    y0: Array | None = None,
    method: str = "newton_cg",
    atol: float | None = None,
    rtol: float | None = None,
    max_steps: int | None = None,
    cg_max_steps: int | None = None,
    lbfgs_memory: int = 20,
    hvp_dtype=None,
    max_iter: int | None = None,
    max_cg: int | None = None,
) -> InversionResult:
    """Solve ``grad psi(y) = x`` for a batch ``x`` of shape ``(batch, *event)``.

    ``psi`` maps ONE sample to a scalar and must be strongly convex (an ICNN with alpha > 0).
    Vmapped over the batch; each sample stops on its own tolerance (the loop runs until the
    slowest one is done). Compiled with ``eqx.filter_jit`` (``psi`` should be an equinox module,
    or the same function object between calls, to hit the compilation cache).

    Args:
        psi: scalar potential of one sample.
        x: points to invert, shape ``(batch, *event)``.
        y0: starting points (default ``x``).
        method: ``"newton_cg"`` or ``"lbfgs"``.
        atol, rtol: stop when ``||f(y) - x|| <= atol + rtol ||x||`` (defaults from
            :func:`default_tolerance` for x's dtype).
        max_steps: outer iterations (default 100); ``cg_max_steps``: CG iterations per Newton
            step (default 200); ``max_iter`` / ``max_cg``: their deprecated spellings.
        lbfgs_memory: L-BFGS history length.
        hvp_dtype: Newton-CG only: run the CG solves on Hessian-vector products in this
            (lower) precision, e.g. ``jnp.float32`` for a float64 solve (``psi`` must be an
            equinox module / pytree so its parameters can be cast). The gradient, the line
            search and the stopping test stay in ``x``'s precision, so the stated tolerance is
            still certified; on CPU this makes each HVP about 3x cheaper for conv potentials.

    Returns:
        :class:`InversionResult` (a :class:`~pdeml.core.Solution`) with per-sample result
        codes, residual and iterations.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    max_steps, _ = max_steps_option(max_steps, 100, max_iter=max_iter)
    cg_max_steps, _ = max_steps_option(cg_max_steps, 200, max_cg=max_cg)
    d_atol, d_rtol = default_tolerance(jnp.result_type(x))
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    if not (atol >= 0 and rtol >= 0 and atol + rtol > 0):
        raise ValueError(f"atol and rtol must be >= 0 and not both 0, got {atol}, {rtol}")
    return _invert_potential(psi, x, y0, method, atol, rtol, max_steps, cg_max_steps,
                             lbfgs_memory, hvp_dtype)


@eqx.filter_jit
def _invert_potential(psi, x, y0, method, atol, rtol, max_steps, cg_max_steps, lbfgs_memory,
                      hvp_dtype) -> InversionResult:
    y0 = x if y0 is None else y0
    if method == "newton_cg":
        y, res, k, conv = _newton_cg_batched(psi, x, y0, atol, rtol, max_steps, cg_max_steps, 40,
                                             hvp_dtype)
    else:
        single = lambda xi, yi: _lbfgs_single(psi, xi, yi, atol, rtol, max_steps, lbfgs_memory)  # noqa: E731
        y, res, k, conv = jax.vmap(single)(x, y0)
    return InversionResult.build(y, res, k, conv)


@eqx.filter_jit
def invert_adam(
    psi: Callable,
    x: Array,
    *,
    steps: int = 1000,
    learning_rate: float = 1e-2,
    objective: str = "convex",
    y0: Array | None = None,
    atol: float | None = None,
    rtol: float | None = None,
) -> InversionResult:
    """The published baseline: a FIXED number of Adam steps, no convergence test.

    ``objective="convex"`` minimises ``psi(y) - <x, y>``; ``"least_squares"`` minimises
    ``||grad psi(y) - x||^2`` as in the LPN authors' ``invert_ls`` (needs second derivatives).
    Both start from zero, as published, unless ``y0`` is given. ``converged`` is reported with
    the same tolerance rule as :func:`invert_potential`, only for comparison.
    """
    if objective not in ("convex", "least_squares"):
        raise ValueError(f"unknown objective {objective!r}; expected 'convex' or 'least_squares'")
    d_atol, d_rtol = default_tolerance(jnp.result_type(x))
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    grad_psi = jax.grad(psi)
    opt = optax.adam(learning_rate)

    def loss(y, xi):
        if objective == "convex":
            return psi(y) - jnp.vdot(xi, y)
        return jnp.sum((grad_psi(y) - xi) ** 2)

    def single(xi, yi):
        def step(carry, _):
            y, state = carry
            g = jax.grad(loss)(y, xi)
            upd, state = opt.update(g, state, y)
            return (optax.apply_updates(y, upd), state), None

        (y, _), _ = lax.scan(step, (yi, opt.init(yi)), None, length=steps)
        res = jnp.linalg.norm(grad_psi(y) - xi)
        return y, res, res <= atol + rtol * jnp.linalg.norm(xi)

    y0 = jnp.zeros_like(x) if y0 is None else y0
    y, res, conv = jax.vmap(single)(x, y0)
    iters = jnp.full(res.shape, steps)
    return InversionResult.build(y, res, iters, conv)
