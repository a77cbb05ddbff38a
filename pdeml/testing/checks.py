"""Property checkers for constrained solvers, used by our tests and by users' tests.

Each checker raises ``AssertionError`` with the measured numbers when the property fails and
returns those numbers when it holds, so a test can also report them.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _tree_axpy(alpha, x, y):
    return jax.tree.map(lambda xi, yi: yi + alpha * xi, x, y)


def check_constraint_satisfied(stats, *, tol: float) -> dict:
    """Assert a solve converged and its PDE residual norm at the sampled points is <= ``tol``.

    Args:
        stats: :class:`pdeml.core.SolveStats` (possibly batched: every entry must pass).
        tol: bound on ``stats.residual_norm`` (2-norm over the sampled points).
    """
    converged = np.asarray(stats.converged)
    res = np.asarray(stats.residual_norm)
    out = {"max_residual_norm": float(res.max()), "all_converged": bool(converged.all())}
    if not converged.all():
        raise AssertionError(f"solve did not converge: {out}, result codes {np.asarray(stats.result)}")
    if not res.max() <= tol:
        raise AssertionError(f"residual norm {res.max():.3e} exceeds tolerance {tol:.3e}")
    return out


def check_implicit_gradients(
    fn: Callable,
    theta,
    direction,
    *,
    unrolled_fn: Callable | None = None,
    eps: float = 1e-4,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> dict:
    """Check derivatives of ``fn(theta)`` (implicit differentiation) in both modes.

    Compares, along ``direction`` (a pytree like ``theta``):
      * forward mode ``jax.jvp`` against fourth-order central finite differences with
        step ``eps`` (truncation error O(eps^4), round-off O(macheps / eps): use float64);
      * reverse mode against forward mode through the identity
        ``<vjp(c), direction> = <c, jvp(direction)>`` for a random cotangent ``c``
        (this is exact up to round-off, so it is checked at ``1e-10`` relative);
      * if ``unrolled_fn`` is given (the same computation differentiated through the
        iterations), its jvp against the implicit one.

    The solver inside ``fn`` must converge far below ``eps * rtol`` (relative to w), or the
    finite differences measure the solver's stopping noise rather than the derivative.

    Returns the relative errors measured.
    """
    fn = jax.jit(fn)
    f0, jvp = jax.jvp(fn, (theta,), (direction,))
    f1p, f1m, f2p, f2m = (fn(_tree_axpy(s * eps, direction, theta)) for s in (1, -1, 2, -2))
    fd = jax.tree.map(
        lambda a, b, c, d: (8 * (a - b) - (c - d)) / (12 * eps), f1p, f1m, f2p, f2m
    )
    scale = float(jnp.sqrt(_tree_dot(jvp, jvp))) + atol

    def rel(a, b):
        d = jax.tree.map(jnp.subtract, a, b)
        return float(jnp.sqrt(_tree_dot(d, d))) / scale

    errors = {"fd": rel(jvp, fd)}
    cot = jax.tree.map(
        lambda x: jax.random.normal(jax.random.key(0), jnp.shape(x), jnp.result_type(x)), f0
    )
    _, vjp_fn = jax.vjp(fn, theta)
    (g,) = vjp_fn(cot)
    lhs, rhs = float(_tree_dot(g, direction)), float(_tree_dot(cot, jvp))
    errors["reverse_vs_forward"] = abs(lhs - rhs) / (abs(rhs) + atol)
    if unrolled_fn is not None:
        _, jvp_unrolled = jax.jvp(jax.jit(unrolled_fn), (theta,), (direction,))
        errors["unrolled"] = rel(jvp, jvp_unrolled)
    failed = {
        k: v
        for k, v in errors.items()
        if not v <= (1e-10 if k == "reverse_vs_forward" else rtol)
    }
    if failed:
        raise AssertionError(f"implicit gradients disagree: {failed} (all: {errors})")
    return errors


def check_basis_change_invariance(
    solve_u: Callable, basis, matrix, *, rtol: float = 1e-8
) -> float:
    """Assert ``solve_u(basis @ matrix) == solve_u(basis)`` for an invertible ``matrix``.

    ``solve_u(basis)`` must return the constrained field u = basis @ w*. The hard constraint
    determines u by the span of the basis, not by its coordinates, so any invertible change
    of basis must leave u unchanged (up to the solver tolerance and conditioning).
    Returns the relative difference.
    """
    u1 = solve_u(basis)
    u2 = solve_u(jnp.einsum("...n,nk->...k", basis, matrix))
    err = float(jnp.linalg.norm(u1 - u2) / (jnp.linalg.norm(u1) + 1e-300))
    if not err <= rtol:
        raise AssertionError(f"u changed under a basis change: relative difference {err:.3e} > {rtol:.1e}")
    return err


def check_features_act_columnwise(features_at: Callable, basis, points, *, seed: int = 0,
                                  rtol: float = 1e-12) -> float:
    """Assert the contract of :meth:`pdeml.pde.PDEProblem.features_at` that the layers rely on.

    ``StructuredLeastSquares.from_basis`` (used by ``HardConstraint`` and the experts)
    differentiates through the basis in closed form, which is correct only if
    ``features_at(basis, points)`` is linear in the basis and acts on every basis function
    alike: ``features_at(b @ M) == features_at(b) @ M`` for any matrix ``M`` (mixing columns),
    and ``features_at(b)[..., n] == features_at(b[..., n:n+1])[..., 0]``. A PDE problem whose
    features mix basis functions, or are not linear in them, would get wrong gradients; this
    checker catches it. Returns the largest relative error.
    """
    n = basis.shape[-1]
    rng = np.random.default_rng(seed)
    mix = jnp.asarray(rng.standard_normal((n, n + 1)), basis.dtype)
    features_at = jax.jit(features_at)
    feats = features_at(basis, points)
    if feats.ndim != 3 or feats.shape[-1] != n:
        raise AssertionError(f"features_at must return (K, m, N) with N = {n}, got {feats.shape}")
    scale = float(jnp.max(jnp.abs(feats))) + 1e-300
    mixed = features_at(jnp.einsum("...n,nk->...k", basis, mix), points)
    err_mix = float(jnp.max(jnp.abs(mixed - jnp.einsum("kmn,nj->kmj", feats, mix)))) / (
        scale * float(jnp.max(jnp.abs(mix))) * n)
    single = jax.jit(jax.vmap(lambda col: features_at(col[..., None], points)[..., 0],
                              in_axes=-1, out_axes=-1))(basis)
    err_single = float(jnp.max(jnp.abs(single - feats))) / scale
    err = max(err_mix, err_single)
    if not err <= rtol:
        raise AssertionError(
            f"features_at does not act on each basis function alike and linearly: relative "
            f"error {err:.3e} (mixing {err_mix:.3e}, one column at a time {err_single:.3e}) "
            f"> {rtol:.1e}")
    return err
