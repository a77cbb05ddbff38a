"""Hypothesis strategies and property checkers for proximal operators and convex potentials.

Use them to property-test your own proximal operators, the same way pdeml tests its own:

- strategies: :func:`seeds`, :func:`arrays_of_shape` (values vary, shapes do not, so JAX
  compiles once), :func:`dense_icnns` (random dense ICNN potentials of a fixed architecture);
- checkers (raise ``AssertionError`` explicitly, so ``python -O`` keeps them, with a message on
  failure; return a diagnostic number):
  :func:`check_convex_along_lines`, :func:`check_symmetric_psd_jacobian`,
  :func:`check_inversion_round_trip`, :func:`check_prox_brute_force`,
  :func:`check_moreau_identity`, :func:`check_regularizer_gradient`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from pdeml.prox import SoftThreshold
    >>> x = jnp.array([[0.3, -2.0]])
    >>> err = check_prox_brute_force(SoftThreshold(1.0).prox, SoftThreshold(1.0).regularizer, x)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "seeds",
    "arrays_of_shape",
    "dense_icnns",
    "check_convex_along_lines",
    "check_symmetric_psd_jacobian",
    "check_inversion_round_trip",
    "check_prox_brute_force",
    "check_moreau_identity",
    "check_regularizer_gradient",
]


def _st():
    try:
        from hypothesis import strategies as st
    except ModuleNotFoundError as e:  # pragma: no cover
        raise ModuleNotFoundError(
            "pdeml.testing strategies need hypothesis: pip install 'pdeml[test]'"
        ) from e
    return st


def seeds(max_value: int = 2**31 - 1):
    """Integer seeds for ``jax.random.key``."""
    return _st().integers(0, max_value)


def arrays_of_shape(shape, *, low: float = -3.0, high: float = 3.0, dtype=np.float64):
    """Numpy arrays of a FIXED ``shape`` with finite values in ``[low, high]``."""
    st = _st()
    n = int(np.prod(shape))
    elems = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    return st.lists(elems, min_size=n, max_size=n).map(
        lambda v: np.asarray(v, dtype=dtype).reshape(shape)
    )


def dense_icnns(in_size: int, hidden=(16, 16), *, alpha: float = 0.1, beta: float = 10.0,
                nonnegativity: str = "softplus"):
    """Random :class:`~pdeml.nets.icnn.DenseICNN` potentials (seed varies, shapes fixed)."""
    from pdeml.nets.icnn import DenseICNN

    return seeds().map(
        lambda s: DenseICNN(in_size, hidden, key=jax.random.key(s), alpha=alpha, beta=beta,
                            nonnegativity=nonnegativity)
    )


def check_convex_along_lines(psi: Callable, x, direction, *, t_max: float = 2.0, n: int = 41,
                             rtol: float = 1e-9) -> float:
    """Assert ``t -> psi(x + t d)`` is convex on ``[-t_max, t_max]`` (second differences >= 0).

    ``psi`` maps one sample to a scalar; ``x`` and ``direction`` are single samples. The
    tolerance is relative to the size of psi's values (round-off in the differences).
    Returns the most negative second difference found (>= the tolerance).
    """
    t = jnp.linspace(-t_max, t_max, n, dtype=jnp.result_type(x))
    pts = x[None] + t.reshape((-1,) + (1,) * jnp.ndim(x)) * direction[None]
    vals = np.asarray(jax.vmap(psi)(pts), dtype=np.float64)
    second = vals[:-2] - 2 * vals[1:-1] + vals[2:]
    tol = rtol * max(1.0, float(np.max(np.abs(vals))))
    worst = float(second.min())
    if not (worst >= -tol):
        raise AssertionError(f"psi is not convex along the line: second difference {worst} < -{tol}")
    return worst


def check_symmetric_psd_jacobian(prox: Callable, x, *, atol: float = 1e-8) -> tuple[float, float]:
    """Assert the Jacobian of ``prox`` at ONE sample ``x`` is symmetric and positive semi-definite.

    ``prox`` maps one sample to one sample. Returns ``(asymmetry, min_eigenvalue)``; a gradient
    of a convex function passes, a generic denoiser does not.
    """
    n = int(np.prod(jnp.shape(x)))
    flat = lambda v: prox(v.reshape(jnp.shape(x))).reshape(-1)  # noqa: E731
    J = np.asarray(jax.jacfwd(flat)(jnp.reshape(x, -1)), dtype=np.float64).reshape(n, n)
    scale = max(1.0, float(np.abs(J).max()))
    asym = float(np.abs(J - J.T).max())
    if not (asym <= atol * scale):
        raise AssertionError(f"Jacobian of prox is not symmetric: max |J - J^T| = {asym}")
    lam_min = float(np.linalg.eigvalsh(0.5 * (J + J.T)).min())
    if not (lam_min >= -atol * scale):
        raise AssertionError(f"Jacobian of prox is not PSD: min eigenvalue {lam_min}")
    return asym, lam_min


def check_inversion_round_trip(lpn, x, *, atol: float = 1e-8, **inverse_options) -> float:
    """Assert ``lpn.prox(lpn.inverse(x).y) == x`` to ``atol`` and that the solver says converged.

    Returns the max round-trip error.
    """
    res = lpn.inverse(x, **inverse_options)
    if not bool(np.all(np.asarray(res.converged))):
        raise AssertionError(f"inversion did not converge: residuals {np.asarray(res.residual)}")
    err = float(jnp.max(jnp.abs(lpn.prox(res.y) - x)))
    if not (err <= atol):
        raise AssertionError(f"prox(inverse(x)) differs from x by {err} > {atol}")
    return err


def check_prox_brute_force(prox: Callable, regularizer: Callable, x, *, atol: float = 1e-6,
                           n_starts: int = 4, seed: int = 0) -> float:
    """Assert ``prox(x)`` minimises ``1/2 ||z - x||^2 + R(z)`` against a brute-force search.

    For every sample of ``x`` (shape ``(batch, *event)``), the objective is minimised by
    derivative-free Powell searches (scipy) from ``x``, ``prox(x)`` perturbed and random
    starts; the check asserts the objective at ``prox(x)`` is no larger than the best found
    minus ``atol``. ``prox`` and ``regularizer`` take batched inputs. Returns the largest excess
    ``obj(prox(x)) - obj(best)`` (<= ``atol``). Works for nonconvex R too (it tests global
    minimality against the starts tried). Needs scipy.
    """
    import equinox as eqx
    from scipy.optimize import minimize

    regularizer = eqx.filter_jit(regularizer)  # thousands of evaluations: compile once
    x = np.asarray(x, dtype=np.float64)
    z_ours = np.asarray(prox(jnp.asarray(x)), dtype=np.float64)
    rng = np.random.default_rng(seed)
    event = x.shape[1:]

    def obj(z, xi):
        r = float(np.asarray(regularizer(jnp.asarray(z.reshape((1, *event))))).reshape(()))
        return 0.5 * float(np.sum((z - xi.ravel()) ** 2)) + r

    worst = -np.inf
    for xi, zi in zip(x, z_ours):
        starts = [xi.ravel(), zi.ravel() + 0.1 * rng.standard_normal(zi.size)]
        starts += [xi.ravel() + rng.standard_normal(xi.size) for _ in range(n_starts)]
        best = np.inf
        for s in starts:
            r = minimize(obj, s, args=(xi,), method="Powell",
                         options={"xtol": 1e-10, "ftol": 1e-14, "maxfev": 20000})
            best = min(best, r.fun)
        excess = obj(zi.ravel(), xi) - best
        worst = max(worst, excess)
    if not (worst <= atol):
        raise AssertionError(f"prox(x) is not a minimiser: objective exceeds brute force by {worst}")
    return float(worst)


def check_moreau_identity(prox: Callable, prox_conjugate: Callable, x, *, atol: float = 1e-10) -> float:
    """Assert ``prox_R(x) + prox_{R*}(x) == x`` (Moreau decomposition, unit step)."""
    err = float(jnp.max(jnp.abs(prox(x) + prox_conjugate(x) - x)))
    if not (err <= atol):
        raise AssertionError(f"Moreau identity violated by {err}")
    return err


def check_regularizer_gradient(regularizer: Callable, x, *, h: float = 1e-5, rtol: float = 1e-5,
                               seed: int = 0) -> float:
    """Assert the autodiff gradient of ``sum(regularizer(x))`` matches central finite
    differences along a random direction. Returns the relative error."""
    d = jax.random.normal(jax.random.key(seed), jnp.shape(x), jnp.result_type(x))
    f = lambda v: jnp.sum(regularizer(v))  # noqa: E731
    g = jax.grad(f)(x)
    ad = float(jnp.vdot(g, d))
    fd = float((f(x + h * d) - f(x - h * d)) / (2 * h))
    err = abs(ad - fd) / max(1.0, abs(fd))
    if not (err <= rtol):
        raise AssertionError(f"gradient of R disagrees with finite differences: {ad} vs {fd}")
    return err
