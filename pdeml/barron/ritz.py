"""Deep Ritz on the torus: train a network on the energy, with an energy-gap certificate.

``E(u_theta) = int L(x, u, grad u) - f u dx`` is estimated by Monte Carlo or by a
randomly shifted rank-1 lattice rule (quasi-Monte Carlo, spectrally accurate for the
smooth periodic integrands a periodic-embedding network produces). Optimisers:

- ``"adam"`` and ``"lbfgs"`` (``optax.adam`` / ``optax.lbfgs`` run by :func:`pdeml.train.train`;
  update ``s`` uses the points of ``fold_in(key, s)``);
- ``"natural_gradient"``: damped Gauss-Newton in function space,
  ``theta <- theta - eta (G + eps I)^{-1} grad E`` with the energy Gram matrix
  ``G = mean_m J_m^T Hess_{(z,p)} L J_m`` (energy natural gradient of Mueller & Zeinhofer,
  ICML 2023) or the H^1 Gram matrix (``gram="h1"``, identity weights), ``J_m`` the Jacobian of
  ``(u, grad u)(x_m)`` in theta, ``eta`` by a grid line search on the energy and the damping
  ``eps`` adapted by a Levenberg-Marquardt rule (shrunk after full steps, grown after short ones).

Certificate: for lambda-convex Lagrangians ``||u - u*||_{H^1} <= sqrt(2 (E(u) - E*) / lambda)``.
:func:`pinn` trains the residual-loss baseline on the same problem.

References: [Barron] Marwah, Lipton, Lu, Risteski, ICML 2023 (arXiv:2210.12101); E & Yu,
"The Deep Ritz method", 2018; Mueller & Zeinhofer, "Achieving high accuracy with PINNs via
energy natural gradient descent", ICML 2023.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from pdeml.core.solution import RESULTS, Solution, max_steps_option, raise_if_failed, result_code
from pdeml.core.validation import check_choice, check_positive_int, check_real_number
from pdeml.train import ProgressBar, train

from .problems import VariationalProblem, pointwise_residual

__all__ = [
    "quadrature_points",
    "lattice_points",
    "network_energy",
    "RitzResult",
    "RitzStats",
    "RitzHistory",
    "RITZ_MESSAGES",
    "default_ritz_tolerances",
    "deep_ritz",
    "pinn",
    "energy_certificate",
]

_OPTIMIZERS = ("adam", "lbfgs", "natural_gradient")


@functools.lru_cache(maxsize=64)
def _optax_optimizer(name: str, learning_rate: float | None = None):
    """``optax.adam(learning_rate)`` or ``optax.lbfgs()``, one object per setting: the compiled
    updates of :func:`pdeml.train.train` are cached on the optimiser, so a fresh one per call
    would recompile every run."""
    return optax.adam(learning_rate) if name == "adam" else optax.lbfgs()


def lattice_points(num_points: int, dim: int, *, key: PRNGKeyArray | None = None, num_candidates: int = 64, dtype=None) -> Float[Array, "M d"]:
    """A rank-1 Korobov lattice ``{k z / M + shift}`` on [0, 1)^d.

    The generator ``z = (1, a, a^2, ...) mod M`` minimises the P_2 worst-case criterion over
    ``num_candidates`` values of ``a`` (deterministic); ``key`` draws a uniform random shift
    (an unbiased randomised QMC rule). Integrates trigonometric polynomials whose
    frequencies avoid the dual lattice exactly.
    """
    if num_points < 2 or dim < 1:
        raise ValueError(f"num_points must be >= 2 and dim >= 1, got {num_points}, {dim}")
    m = int(num_points)
    rng = np.random.default_rng(12345)
    cands = np.unique(rng.integers(2, max(m // 2, 3), size=num_candidates))
    k = np.arange(m)

    def crit(a):
        z = np.array([pow(int(a), j, m) for j in range(dim)])
        frac = (np.outer(k, z) % m) / m
        b2 = frac**2 - frac + 1.0 / 6.0
        return np.mean(np.prod(1.0 + 2 * math.pi**2 * b2, axis=1)) - 1.0

    best = min(cands, key=crit) if dim > 1 else 1
    z = np.array([pow(int(best), j, m) for j in range(dim)])
    pts = (np.outer(k, z) % m) / m
    pts = jnp.asarray(pts, dtype or jnp.result_type(float))
    if key is not None:
        pts = jnp.mod(pts + jax.random.uniform(key, (1, dim), pts.dtype), 1.0)
    return pts


def quadrature_points(kind: str, num_points: int, dim: int, *, key: PRNGKeyArray, dtype=None) -> Float[Array, "M d"]:
    """Points of an equal-weight rule: ``"mc"`` (uniform), ``"lattice"`` (shifted rank-1
    lattice) or ``"grid"`` (tensor grid with ``round(num_points^(1/d))`` points per axis)."""
    dtype = dtype or jnp.result_type(float)
    if kind == "mc":
        return jax.random.uniform(key, (num_points, dim), dtype)
    if kind == "lattice":
        return lattice_points(num_points, dim, key=key, dtype=dtype)
    if kind == "grid":
        from .spectral import torus_grid

        n = max(int(round(num_points ** (1.0 / dim))), 2)
        return torus_grid(n, dim=dim, dtype=dtype).reshape(-1, dim)
    raise ValueError(f"unknown quadrature {kind!r}; expected one of ['mc', 'lattice', 'grid']")


def _point_terms(problem, model, x):
    u, g = jax.value_and_grad(model)(x)
    return problem.lagrangian(x, u, g) - problem.source(x) * u


def network_energy(problem: VariationalProblem, model, x: Float[Array, "M d"]) -> Float[Array, ""]:
    """Quadrature estimate of ``E(model) = mean_m L(x_m, u, grad u) - f u``."""
    if x.ndim != 2 or x.shape[1] != problem.dim:
        raise ValueError(f"x must have shape (M, {problem.dim}), got {x.shape}")
    return jnp.mean(jax.vmap(lambda y: _point_terms(problem, model, y))(x))


def energy_certificate(energy_value, optimal_energy, lam) -> Float[Array, ""]:
    """``sqrt(2 max(E - E*, 0) / lambda)``: an upper bound for ``||u - u*||_{H^1}``."""
    return jnp.sqrt(2.0 * jnp.maximum(energy_value - optimal_energy, 0.0) / lam)


class RitzStats(eqx.Module):
    """Diagnostics of :func:`deep_ritz` / :func:`pinn`, measured on fresh evaluation points (a
    shifted rank-1 lattice of ``num_eval_points``).

    Attributes:
        steps: optimisation steps run.
        relative_l2: ``||u - u*|| / ||u*||`` (NaN if u* unknown).
        h1_error: ``||u - u*||_{H^1}`` (NaN if u* unknown).
        energy_gap: ``E(u) - E(u*)`` with the evaluation rule (NaN if u* unknown).
        certificate: ``sqrt(2 max(gap, 0) / lambda)``, a bound for ``||u - u*||_{H^1}`` (NaN
            if lambda or u* unknown).
        residual_bound: ``||-div d_p L + d_z L - f||_{L^2} / lambda``, a bound for ``||u -
            u*||_{H^1}`` that needs no u* (the H^{-1} norm of the Euler-Lagrange residual is at
            most its L^2 norm; NaN if lambda unknown).
        error_bound: the smaller of the two bounds (NaN if neither is known).
        tolerance: ``atol + rtol ||u||_{H^1}``: the stopping test is ``error_bound <=
            tolerance``.
    """

    steps: Array
    relative_l2: Float[Array, ""]
    h1_error: Float[Array, ""]
    energy_gap: Float[Array, ""]
    certificate: Float[Array, ""]
    residual_bound: Float[Array, ""]
    error_bound: Float[Array, ""]
    tolerance: Float[Array, ""]


class RitzHistory(eqx.Module):
    """Per-step records of :func:`deep_ritz` / :func:`pinn`.

    Attributes:
        loss: training loss per step (the energy for Ritz, the mean squared residual for
            PINN; for the natural gradient the better of the current and the line-search
            values on that step's points).
    """

    loss: Float[Array, " T"]


class RitzResult(Solution):
    """The :class:`~pdeml.core.Solution` of :func:`deep_ritz` / :func:`pinn`.

    Fields: ``value`` the trained network (also ``model``); ``result`` a
    :class:`~pdeml.core.RESULTS` code: ``SUCCESS`` when the H^1 error bound
    ``stats.error_bound`` is at most ``atol + rtol ||u||_{H^1}``, ``MAX_STEPS_REACHED`` when it
    is not after ``max_steps`` steps (or no bound is known: the problem has no ``lambda``),
    ``NONFINITE`` when the loss or the network became NaN/inf; messages in ``RITZ_MESSAGES``;
    ``stats`` a :class:`RitzStats`; ``history`` a :class:`RitzHistory`. ``loss``,
    ``relative_l2``, ``h1_error``, ``energy_gap`` and ``certificate`` can also be read
    directly.
    """

    model = property(lambda self: self.value, doc="The trained network (``value``).")
    loss = property(lambda self: self.history.loss, doc="Training loss per step.")
    relative_l2 = property(lambda self: self.stats.relative_l2)
    h1_error = property(lambda self: self.stats.h1_error)
    energy_gap = property(lambda self: self.stats.energy_gap)
    certificate = property(lambda self: self.stats.certificate)


RITZ_MESSAGES = {
    RESULTS.SUCCESS: "converged (error_bound <= atol + rtol ||u||_{H^1})",
    RESULTS.MAX_STEPS_REACHED: "the H^1 error bound is above atol + rtol ||u||_{H^1} after "
                               "max_steps (raise max_steps or num_points, loosen atol/rtol, or "
                               "widen the network; without lambda no bound is known)",
    RESULTS.NONFINITE: "the loss or the network became NaN/inf (lower learning_rate, or raise "
                       "damping)",
}


def _evaluate(problem, model, xe, lam):
    """``(rel, h1, gap, cert, residual_bound, norm_h1)`` on the evaluation points ``xe``."""
    nan = jnp.asarray(jnp.nan, xe.dtype)
    u, gu = jax.vmap(jax.value_and_grad(model))(xe)
    norm_h1 = jnp.sqrt(jnp.mean(u**2) + jnp.mean(jnp.sum(gu**2, axis=1)))
    if lam is None:
        res_bound = nan
    else:
        r = jax.vmap(lambda y: pointwise_residual(problem.lagrangian, model, y, problem.source))(xe)
        res_bound = jnp.sqrt(jnp.mean(r**2)) / lam
    if problem.solution is None:
        return nan, nan, nan, nan, res_bound, norm_h1
    s, gs = jax.vmap(jax.value_and_grad(problem.solution))(xe)
    rel = jnp.sqrt(jnp.sum((u - s) ** 2) / jnp.sum(s**2))
    h1 = jnp.sqrt(jnp.mean((u - s) ** 2) + jnp.mean(jnp.sum((gu - gs) ** 2, axis=1)))
    gap = network_energy(problem, model, xe) - network_energy(problem, problem.solution, xe)
    cert = energy_certificate(gap, 0.0, lam) if lam is not None else nan
    return rel, h1, gap, cert, res_bound, norm_h1


def default_ritz_tolerances(dtype) -> tuple[float, float]:
    """``(atol, rtol)`` defaults of :func:`deep_ritz` / :func:`pinn`: ``(1e-8, 1e-3)`` in
    float64 and ``(1e-4, 1e-2)`` in float32 (a trained network's error is limited by its width
    and the quadrature long before round-off)."""
    if jnp.finfo(dtype).bits >= 64:
        return 1e-8, 1e-3
    return 1e-4, 1e-2


def _ritz_solution(problem, model, hist, steps, xe, lam, atol, rtol):
    rel, h1, gap, cert, res_bound, norm_h1 = eqx.filter_jit(_evaluate)(problem, model, xe, lam)
    dtype = hist.dtype
    d_atol, d_rtol = default_ritz_tolerances(dtype)
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    bound = jnp.fmin(cert, res_bound)  # fmin: the known one where the other is NaN
    tolerance = atol + rtol * norm_h1
    finite = jnp.all(jnp.isfinite(hist)) & jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]))
    finite = finite & jnp.isfinite(norm_h1)
    result = result_code(finite & (bound <= tolerance), ~finite)
    stats = RitzStats(jnp.asarray(steps, jnp.int32), rel, h1, gap, cert, res_bound, bound,
                      tolerance)
    return RitzResult(value=model, result=result, stats=stats, history=RitzHistory(hist))


class _Points(eqx.Module):
    """The quadrature points of update ``step`` (a pure function of its key): a fixed point set
    (``fixed``), a rank-1 lattice with a fresh random shift (``shifted``), or uniform samples."""

    fixed: Array | None
    shifted: Array | None
    num_points: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __call__(self, step, key):
        if self.shifted is not None:
            return jnp.mod(self.shifted + jax.random.uniform(key, (1, self.dim), self.shifted.dtype), 1.0)
        if self.fixed is not None:
            return self.fixed
        return jax.random.uniform(key, (self.num_points, self.dim))


def _points(quadrature, num_points, dim, resample):
    if quadrature == "mc":
        return _Points(None, None, num_points, dim)
    if quadrature == "lattice" and resample:
        return _Points(None, lattice_points(num_points, dim), num_points, dim)
    return _Points(quadrature_points(quadrature, num_points, dim, key=jax.random.key(0)), None, num_points, dim)


class _Loss(eqx.Module):
    """The training loss of the trainable parameters on the points ``x``: the energy (Ritz) or
    the mean squared residual (PINN); called as a :func:`pdeml.train.train` loss."""

    problem: VariationalProblem
    static: eqx.Module
    kind: str = eqx.field(static=True)

    def value(self, params, x):
        m = eqx.combine(params, self.static)
        if self.kind == "ritz":
            return network_energy(self.problem, m, x)
        r = jax.vmap(lambda y: pointwise_residual(self.problem.lagrangian, m, y, self.problem.source))(x)
        return jnp.mean(r**2)

    def __call__(self, params, x, key):
        return self.value(params, x), {}


def _ng_direction(problem, params, static, x, gram, damping):
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def features(f, y):
        m = eqx.combine(unravel(f), static)
        u, g = jax.value_and_grad(m)(y)
        return jnp.concatenate([u[None], g])

    def weights_and_grad(f, y):
        v = features(f, y)
        lz = lambda w: problem.lagrangian(y, w[0], w[1:])
        dl = jax.grad(lz)(v)
        dl = dl.at[0].add(-problem.source(y))
        h = jax.hessian(lz)(v) if gram == "energy" else jnp.eye(v.shape[0], dtype=v.dtype)
        return h, dl

    jac = jax.vmap(jax.jacrev(features), in_axes=(None, 0))(flat, x)  # (M, d+1, P)
    h, dl = jax.vmap(weights_and_grad, in_axes=(None, 0))(flat, x)
    grad = jnp.einsum("mip,mi->p", jac, dl) / x.shape[0]
    hj = jnp.einsum("mij,mjp->mip", h, jac)
    g = jnp.einsum("mip,miq->pq", jac, hj) / x.shape[0]
    scale = jnp.mean(jnp.diag(g))
    direction = -jnp.linalg.solve(g + damping * scale * jnp.eye(g.shape[0], dtype=g.dtype), grad)
    return flat, unravel, direction


@eqx.filter_jit
def _natural_gradient_chunk(loss, points, params, lam, key, *, steps, gram, damping):
    """``steps`` energy natural-gradient steps (grid line search, adaptive damping ``lam``)."""
    dtype = jnp.result_type(*jax.tree.leaves(params))  # the network's (float32 stays float32)
    etas = 2.0 ** -jnp.arange(0, 12, dtype=dtype)

    def step(c, k):
        p, lam = c  # lam: the current (adaptive) relative damping
        x = points(None, k).astype(dtype)
        flat, unravel, dirn = _ng_direction(loss.problem, p, loss.static, x, gram, lam)
        vals = jax.vmap(lambda e: loss.value(unravel(flat + e * dirn), x))(etas)
        cur = loss.value(p, x)
        i = jnp.argmin(vals)
        ok = vals[i] < cur
        new = jnp.where(ok, flat + etas[i] * dirn, flat)
        # Levenberg-Marquardt rule: a full step means the Gauss-Newton model is trusted (less
        # damping, down to ``damping``); a short or failed one means it is not (more damping).
        # A fixed small damping lets the first steps jump into saturated tanh units (measured:
        # T2 d = 2, 512 points, 25 steps: relative L2 0.98 with a fixed 1e-6, 1.1e-4 with this rule).
        lam = jnp.where(ok & (i <= 1), lam / 10, jnp.where(ok & (i <= 3), lam, lam * 4))
        lam = jnp.clip(lam, damping, 1.0)
        return (unravel(new), lam), jnp.minimum(cur, vals[i])

    (params, lam), hist = jax.lax.scan(step, (params, lam), jax.random.split(key, steps))
    return params, lam, hist


def _partition(model, trainable):
    """``(params, static)``: the inexact-array leaves selected by ``trainable`` are trained."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if trainable is None:
        return params, static
    try:
        params, frozen = eqx.partition(params, trainable)
    except ValueError as err:
        raise ValueError("trainable must be a callable on leaves or a pytree of bools with the "
                         f"model's structure (e.g. built with eqx.tree_at): {err}") from None
    if not jax.tree.leaves(params):
        raise ValueError("trainable selects no parameter of the model: nothing to train")
    return params, eqx.combine(static, frozen)


def _run(problem, model, *, key, optimizer, steps, quadrature, num_points, learning_rate, gram, damping, initial_damping, resample, num_eval_points, progress, chunk, loss_kind, trainable=None, atol=None, rtol=None, throw=False, cap="max_steps"):
    if not isinstance(problem, VariationalProblem):
        raise TypeError(f"problem must be a VariationalProblem, got {type(problem).__name__}")
    check_choice("optimizer", optimizer, _OPTIMIZERS)
    check_choice("gram", gram, ("energy", "h1"))
    check_choice("quadrature", quadrature, ("mc", "lattice", "grid"))
    for name, v in (("atol", atol), ("rtol", rtol)):
        if v is not None:
            check_real_number(name, v, minimum=0.0)
    check_positive_int("num_points", num_points)
    check_positive_int("num_eval_points", num_eval_points)
    check_positive_int("chunk", chunk)
    check_real_number("learning_rate", learning_rate, positive=True)
    check_real_number("damping", damping, minimum=0.0)
    check_real_number("initial_damping", initial_damping, minimum=0.0)
    if getattr(model, "dim", problem.dim) != problem.dim:
        raise ValueError(f"model has dim={model.dim} but the problem has dim={problem.dim}")
    params, static = _partition(model, trainable)
    loss = _Loss(problem, static, loss_kind)
    points = _points(quadrature, num_points, problem.dim, resample)
    chunk = min(chunk, steps)
    sizes = [chunk] * (steps // chunk) + ([steps % chunk] if steps % chunk else [])
    desc = f"{loss_kind}/{optimizer}"
    if optimizer == "natural_gradient":
        lam = jnp.asarray(max(initial_damping, damping), jnp.result_type(*jax.tree.leaves(params)))
        hist = []
        with ProgressBar(steps, desc=desc, enabled=progress) as bar:
            for n in sizes:
                key, sub = jax.random.split(key)
                params, lam, h = _natural_gradient_chunk(loss, points, params, lam, sub, steps=n, gram=gram, damping=damping)
                hist.append(h)
                bar.update(n, loss=float(h[-1]))
        hist = jnp.concatenate(hist)
    else:
        opt = _optax_optimizer(optimizer, float(learning_rate) if optimizer == "adam" else None)
        # scan=True: for these small networks a scanned chunk runs as fast as Barron's earlier
        # hand-written scan, while one compiled call per update is 1.5-1.8x slower on CPU
        run = train(params, loss, opt, points, steps=steps, key=key, steps_per_call=chunk, progress=progress, desc=desc, scan=True)
        params = run.model
        dtype = jnp.result_type(*jax.tree.leaves(params))
        hist = jnp.asarray(run.series("loss")[1], dtype)
        for _ in sizes:  # the evaluation key of a run of this length
            key, _sub = jax.random.split(key)
    model = eqx.combine(params, static)
    b = problem.bounds()
    xe = quadrature_points("lattice", num_eval_points, problem.dim, key=jax.random.fold_in(key, 7))
    sol = _ritz_solution(problem, model, hist, steps, xe, None if b is None else b[0], atol, rtol)
    if throw:
        messages = {code: m.replace("max_steps", cap) for code, m in RITZ_MESSAGES.items()}
        sol = raise_if_failed(sol, "deep_ritz" if loss_kind == "ritz" else "pinn", messages)
    return sol


def deep_ritz(
    problem: VariationalProblem,
    model: eqx.Module,
    *,
    key: PRNGKeyArray,
    optimizer: str = "natural_gradient",
    max_steps: int | None = None,
    quadrature: str = "lattice",
    num_points: int = 2048,
    learning_rate: float = 1e-3,
    gram: str = "energy",
    damping: float = 1e-8,
    initial_damping: float = 1e-3,
    resample: bool = True,
    num_eval_points: int = 8192,
    progress: bool = False,
    chunk: int = 50,
    trainable=None,
    atol: float | None = None,
    rtol: float | None = None,
    throw: bool = False,
    steps: int | None = None,
) -> RitzResult:
    """Train ``model`` (a function of one point) by minimising the energy (Deep Ritz).

    Args:
        problem: a :class:`~pdeml.barron.VariationalProblem`.
        model: an Equinox network mapping ``(d,)`` to a scalar, 1-periodic (e.g.
            :class:`~pdeml.barron.PeriodicMLP`).
        key: PRNG key (quadrature shifts / Monte Carlo draws).
        optimizer: ``"adam"``, ``"lbfgs"`` or ``"natural_gradient"``.
        max_steps: optimisation steps (default 200), run in compiled chunks of ``chunk`` steps
            (host round trips); all of them are run (a stochastic loss does not tell when to
            stop), and the stopping test is applied to the final network. ``steps``: the
            deprecated spelling (warns).
        quadrature: ``"mc"``, ``"lattice"`` or ``"grid"``.
        num_points: quadrature points per step.
        learning_rate: Adam's step.
        gram: ``"energy"`` (Hessian-weighted) or ``"h1"`` Gram matrix for the natural gradient.
        damping: the smallest relative Tikhonov damping of the Gram matrix (times its mean
            diagonal); the damping adapts between it and 1 (Levenberg-Marquardt rule on the
            line-search step) and is carried across chunks.
        initial_damping: the damping of the first natural-gradient step.
        resample: draw a fresh lattice shift / MC sample every step. Keep it on for networks
            with hundreds of parameters: on one fixed point set the optimiser fits the
            quadrature instead of the PDE (measured, T2 d = 4, 621-parameter MLP, 4096 fixed
            lattice points: the discrete energy fell from -26 to -44 while the true energy gap
            rose to 58; with a fresh shift per step the relative L2 error reached 2.6e-4).
        num_eval_points: lattice points for the final errors and certificate.
        progress: show a :class:`pdeml.train.ProgressBar` (labelled ``ritz/<optimizer>``).
        chunk: steps per compiled call (the Adam / L-BFGS updates do not depend on it).
        trainable: which parameters to train (default: every floating-point array of
            ``model``); the others stay fixed. An Equinox filter: a callable on leaves, or a
            pytree of bools with the model's structure (``eqx.tree_at`` on
            ``jax.tree.map(lambda _: True, model)``), e.g. to keep a network's frequencies.
        atol, rtol: the network has converged when a bound for ``||u - u*||_{H^1}`` (the
            smaller of the energy certificate, when u* is known, and the residual bound
            ``||DE(u)||_{L^2} / lambda``, see :class:`RitzStats`) is at most ``atol + rtol
            ||u||_{H^1}``. Defaults: :func:`default_ritz_tolerances` of the network's dtype.
        throw: raise ``equinox.EquinoxRuntimeError`` if the network did not pass that test;
            with ``False`` (default) the outcome is reported in ``converged`` / ``result``.

    Returns:
        :class:`RitzResult`, a :class:`~pdeml.core.Solution`: ``value`` (also ``model``) the
        trained network, ``result``, ``stats`` (:class:`RitzStats`: errors, the certificate and
        the error bound) and ``history`` (:class:`RitzHistory`: the loss per step).

    Raises:
        pdeml.train.NonFiniteLossError: Adam / L-BFGS met a non-finite loss or gradient (it
            carries the last good model).

    Example (train only the coefficients and phases of a cosine network, frequencies fixed):
        >>> import jax, jax.numpy as jnp, equinox as eqx
        >>> from pdeml.barron import CosineNetwork, RidgeSum, SemilinearLagrangian, manufactured_problem
        >>> sol = RidgeSum(jnp.array([[0.5]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.3]]))
        >>> problem = manufactured_problem(SemilinearLagrangian(nu=1.0), sol, 2)
        >>> k = jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
        >>> net = CosineNetwork(jnp.zeros(4), k, jnp.zeros(4))
        >>> keep_k = eqx.tree_at(lambda m: m.frequencies, jax.tree.map(lambda _: True, net), False)
        >>> r = deep_ritz(problem, net, key=jax.random.key(0), max_steps=10, num_points=256,
        ...               num_eval_points=512, trainable=keep_k)
        >>> bool(jnp.all(r.model.frequencies == k)), bool(r.relative_l2 < 1e-6), bool(r.converged)
        (True, True, True)
    """
    steps, cap = max_steps_option(max_steps, 200, steps=steps)
    return _run(problem, model, key=key, optimizer=optimizer, steps=steps, quadrature=quadrature, num_points=num_points, learning_rate=learning_rate, gram=gram, damping=damping, initial_damping=initial_damping, resample=resample, num_eval_points=num_eval_points, progress=progress, chunk=chunk, loss_kind="ritz", trainable=trainable, atol=atol, rtol=rtol, throw=throw, cap=cap)


def pinn(
    problem: VariationalProblem,
    model: eqx.Module,
    *,
    key: PRNGKeyArray,
    optimizer: str = "adam",
    max_steps: int | None = None,
    quadrature: str = "mc",
    num_points: int = 1024,
    learning_rate: float = 1e-3,
    num_eval_points: int = 8192,
    progress: bool = False,
    chunk: int = 100,
    trainable=None,
    atol: float | None = None,
    rtol: float | None = None,
    throw: bool = False,
    steps: int | None = None,
) -> RitzResult:
    """The residual-loss (PINN) baseline: minimise ``mean (-div d_p L + d_z L - f)^2``.

    Same arguments (``trainable``, ``atol``, ``rtol``, ``throw`` included; ``max_steps``
    defaults to 1000) and result as :func:`deep_ritz` (``loss`` is the mean squared residual;
    the stopping test is the same H^1 error bound); ``optimizer`` is ``"adam"`` or
    ``"lbfgs"``.
    """
    if optimizer == "natural_gradient":
        raise ValueError("pinn supports optimizer 'adam' or 'lbfgs'")
    steps, cap = max_steps_option(max_steps, 1000, steps=steps)
    return _run(problem, model, key=key, optimizer=optimizer, steps=steps, quadrature=quadrature, num_points=num_points, learning_rate=learning_rate, gram="energy", damping=0.0, initial_damping=0.0, resample=True, num_eval_points=num_eval_points, progress=progress, chunk=chunk, loss_kind="pinn", trainable=trainable, atol=atol, rtol=rtol, throw=throw, cap=cap)
