"""Mesh-free approximators on the torus: Maurey sampling, random features, orthogonal
greedy and trained shallow networks.

Barron's theorem: a function of spectral Barron norm B has a width-n two-layer network
within ``B / sqrt(n)`` in L^2 (we plot the classical ``2B / sqrt(n)``). The proof samples
units from the spectrum (:func:`maurey_sample`); the mean-square error of that estimator
has the closed form :func:`maurey_mse`. Random features with fixed isotropic frequencies
(:func:`random_features_fit`) lack the learned inner weights and fail in high d; the
orthogonal greedy algorithm (:func:`orthogonal_greedy`) and trained networks
(:func:`fit_shallow`) choose them.

Reference: [Barron] Marwah, Lipton, Lu, Risteski, ICML 2023, arXiv:2210.12101; Barron,
"Universal approximation bounds for superpositions of a sigmoidal function", 1993.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import jax.flatten_util
from jaxtyping import Array, Float, PRNGKeyArray

from pdeml.core.solution import RESULTS, Solution, max_steps_option, raise_if_failed, result_code
from pdeml.core.validation import check_choice, check_positive_int, check_real_number
from pdeml.train import train

from .networks import CosineNetwork, PeriodicShallowNetwork
from .norms import _canonical_frequencies
from .ritz import _optax_optimizer
from .spectral import wavenumbers

__all__ = [
    "spectrum_from_grid",
    "merge_frequencies",
    "maurey_sample",
    "maurey_mse",
    "random_features_fit",
    "sparse_frequency_dictionary",
    "orthogonal_greedy",
    "fit_shallow",
    "FitResult",
    "FitStats",
    "FitHistory",
    "FIT_MESSAGES",
    "default_fit_tolerances",
    "relative_l2_error",
]


def spectrum_from_grid(u: Float[Array, "*grid"], *, threshold: float = 0.0) -> CosineNetwork:
    """The trigonometric interpolant of grid samples as a :class:`CosineNetwork`.

    One unit per pair ``+-k`` (and one for k = 0) whose amplitude exceeds ``threshold``.
    Not jittable (the width depends on the data). Even sizes: the Nyquist mode is kept as
    ``cos(pi N x)``-type units.
    """
    u = np.asarray(u)
    uh = np.fft.fftn(u) / u.size
    k = wavenumbers(u.shape).reshape(u.ndim, -1).T
    c = uh.reshape(-1)
    freqs, coefs, phases, seen = [], [], [], set()
    for kk, cc in zip(k, c):
        key = tuple(kk)
        if key in seen:
            continue
        neg = tuple(-kk)
        seen.add(key)
        seen.add(neg)
        nyq = all(int(abs(a)) * 2 == n or a == 0 for a, n in zip(kk, u.shape)) and any(a != 0 for a in kk)
        if not any(kk):
            amp, ph = float(np.real(cc)), 0.0
        elif nyq:
            amp, ph = float(np.real(cc)), 0.0  # self-conjugate: the mode is cos(2 pi k x) * c
        else:
            amp, ph = 2 * float(np.abs(cc)), float(np.angle(cc))
        if abs(amp) > threshold:
            freqs.append(kk)
            coefs.append(amp)
            phases.append(ph)
    dt = u.dtype
    return CosineNetwork(jnp.asarray(coefs, dt), jnp.asarray(np.array(freqs), dt).reshape(-1, u.ndim), jnp.asarray(phases, dt))


def merge_frequencies(net: CosineNetwork) -> CosineNetwork:
    """Merge units with equal or opposite integer frequencies (not jittable)."""
    kc, sign = _canonical_frequencies(net.frequencies)
    kc = np.asarray(kc)
    amp = np.asarray(net.coefficients) * np.exp(1j * np.asarray(sign) * np.asarray(net.phases))
    groups: dict[tuple, complex] = {}
    for k, a in zip(map(tuple, kc), amp):
        groups[k] = groups.get(k, 0.0) + a
    freqs, coefs, phases = [], [], []
    for k, a in groups.items():
        if not any(k):
            coefs.append(float(np.real(a)))
            phases.append(0.0)
        else:
            coefs.append(float(np.abs(a)))
            phases.append(float(np.angle(a)))
        freqs.append(k)
    dt = net.coefficients.dtype
    return CosineNetwork(jnp.asarray(coefs, dt), jnp.asarray(np.array(freqs), dt), jnp.asarray(phases, dt))


def _check_merged(net: CosineNetwork):
    kc, _ = _canonical_frequencies(net.frequencies)
    kc = np.asarray(kc)
    if len({tuple(r) for r in kc}) != kc.shape[0]:
        raise ValueError("target must have distinct frequencies (up to sign): call merge_frequencies first")


def maurey_sample(target: CosineNetwork, width: int, *, key: PRNGKeyArray) -> CosineNetwork:
    """Barron/Maurey sampling: ``width`` units drawn with probability ``|c_j| / A``.

    With ``A = sum_j |c_j|``, the estimator ``(A / n) sum_i sign(c_{j_i}) cos(2 pi k_{j_i} . x
    + b_{j_i})`` is unbiased for the target; its mean-square L^2 error is :func:`maurey_mse`.

    Args:
        target: a cosine network with distinct frequencies (see :func:`merge_frequencies`,
            :func:`spectrum_from_grid`).
        width: number n of sampled units.
        key: PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> t = CosineNetwork(jnp.array([1.0, -0.5]), jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.zeros(2))
        >>> maurey_sample(t, 100, key=jax.random.key(0)).width
        100
    """
    check_positive_int("width", width)
    c = target.coefficients
    a = jnp.sum(jnp.abs(c))
    idx = jax.random.choice(key, c.shape[0], (width,), p=jnp.abs(c) / a)
    coef = a * jnp.sign(c[idx]) / width
    return CosineNetwork(coef, target.frequencies[idx], target.phases[idx])


def maurey_mse(target: CosineNetwork, width: int) -> Float[Array, ""]:
    """Closed-form ``E ||u_n - u||^2_{L^2}`` of :func:`maurey_sample` with n = ``width``.

    ``(A^2 sum_j p_j q_j - ||u||^2) / n`` with ``q_j = 1/2`` (mean of cos^2 over the torus)
    for k_j != 0 and ``cos^2 b_j`` for k_j = 0. Requires distinct frequencies.
    """
    check_positive_int("width", width)
    _check_merged(target)
    c = target.coefficients
    zero = jnp.all(target.frequencies == 0, axis=1)
    a = jnp.sum(jnp.abs(c))
    q = jnp.where(zero, jnp.cos(target.phases) ** 2, 0.5)
    norm2 = jnp.sum(jnp.where(zero, (c * jnp.cos(target.phases)) ** 2, 0.5 * c**2))
    return (a * jnp.sum(jnp.abs(c) * q) - norm2) / width


def _ls_solve(features, y, ridge):
    """Least squares ``min ||F c - y||^2 + ridge ||c||^2`` via SVD (rank-safe)."""
    if ridge > 0:
        n = features.shape[1]
        features = jnp.concatenate([features, math.sqrt(ridge) * jnp.eye(n, dtype=features.dtype)])
        y = jnp.concatenate([y, jnp.zeros((n,), y.dtype)])
    return jnp.linalg.lstsq(features, y)[0]


def _fit_cos_sin(freqs, x, y, ridge):
    """Fit ``sum_j alpha_j cos(2 pi k_j x) + beta_j sin(2 pi k_j x)``; return a CosineNetwork."""
    theta = 2 * math.pi * x @ freqs.T  # (M, n)
    feats = jnp.concatenate([jnp.cos(theta), jnp.sin(theta)], axis=1)
    sol = _ls_solve(feats, y, ridge)
    n = freqs.shape[0]
    alpha, beta = sol[:n], sol[n:]
    # alpha cos t + beta sin t = c cos(t + b) with c cos b = alpha, c sin b = -beta
    return CosineNetwork(jnp.hypot(alpha, beta), freqs, jnp.arctan2(-beta, alpha))


def _check_data(x, y):
    if jnp.ndim(x) != 2:
        raise ValueError(f"x must have shape (M, d), got {jnp.shape(x)}")
    if jnp.shape(y) != (jnp.shape(x)[0],):
        raise ValueError(f"y must have shape ({jnp.shape(x)[0]},) to match x, got {jnp.shape(y)}")


def random_features_fit(
    x: Float[Array, "M d"],
    y: Float[Array, " M"],
    width: int,
    *,
    key: PRNGKeyArray,
    frequency_scale: float = 1.5,
    ridge: float = 1e-10,
) -> CosineNetwork:
    """Random Fourier features with fixed isotropic integer frequencies, fitted by least squares.

    Frequencies ``round(frequency_scale * N(0, I_d))`` (isotropic, fixed), phases uniform;
    each unit gets its amplitude and phase from a least-squares fit of cos and sin columns
    (so the parameter count matches a cosine network of the same width).
    """
    check_positive_int("width", width)
    check_real_number("ridge", ridge, minimum=0.0)
    check_real_number("frequency_scale", frequency_scale, positive=True)
    _check_data(x, y)
    d = x.shape[1]
    freqs = jnp.round(frequency_scale * jax.random.normal(key, (width, d), x.dtype))
    return _fit_cos_sin(freqs, x, y, ridge)


def sparse_frequency_dictionary(dim: int, *, max_order: int = 3, max_frequency: int = 2, dtype=None) -> Float[Array, "K d"]:
    """All integer frequencies with at most ``max_order`` nonzero entries in
    ``[-max_frequency, max_frequency]``, one per ``+-k`` pair, zero excluded.

    This is the dictionary of low-order interactions (ridge directions mixing few
    coordinates); its size grows polynomially in d.
    """
    vals = [v for v in range(-max_frequency, max_frequency + 1) if v != 0]
    out = []
    for r in range(1, min(max_order, dim) + 1):
        for idx in itertools.combinations(range(dim), r):
            for entries in itertools.product(vals, repeat=r):
                if entries[0] < 0:  # canonical sign: first nonzero positive
                    continue
                k = np.zeros(dim)
                k[list(idx)] = entries
                out.append(k)
    return jnp.asarray(np.array(out), dtype or jnp.result_type(float))


def orthogonal_greedy(
    x: Float[Array, "M d"],
    y: Float[Array, " M"],
    width: int,
    *,
    dictionary: Float[Array, "K d"] | None = None,
    ridge: float = 1e-12,
) -> CosineNetwork:
    """Orthogonal greedy algorithm over integer frequencies (a learned cosine network).

    At each step the frequency whose cos/sin pair correlates most with the current residual
    is added and all amplitudes/phases are refitted by least squares (the "orthogonal" step).

    Args:
        x, y: samples on the torus, shapes ``(M, d)`` and ``(M,)``.
        width: number of units (frequencies) to select.
        dictionary: candidate frequencies ``(K, d)``; default
            :func:`sparse_frequency_dictionary` with order 3 and entries up to 2.

    Returns:
        A :class:`CosineNetwork` with integer frequencies (exactly periodic, exact Barron norm).
    """
    check_positive_int("width", width)
    check_real_number("ridge", ridge, minimum=0.0)
    _check_data(x, y)
    if dictionary is None:
        dictionary = sparse_frequency_dictionary(x.shape[1], dtype=x.dtype)
    if width > dictionary.shape[0]:
        raise ValueError(f"width {width} exceeds the dictionary size {dictionary.shape[0]}")
    return _oga_impl(x, y, dictionary, width=width, ridge=ridge)


@eqx.filter_jit
def _oga_impl(x, y, dictionary, *, width, ridge):
    theta = 2 * math.pi * x @ dictionary.T  # (M, K)
    cos_d, sin_d = jnp.cos(theta), jnp.sin(theta)
    m = x.shape[0]

    def body(carry, t):
        chosen, order, resid = carry
        score = (cos_d.T @ resid) ** 2 + (sin_d.T @ resid) ** 2
        score = jnp.where(chosen, -jnp.inf, score)
        j = jnp.argmax(score)
        chosen = chosen.at[j].set(True)
        order = order.at[t].set(j.astype(order.dtype))
        # orthogonal step: least squares on the selected columns (later slots masked to zero;
        # the ridge keeps the normal equations nonsingular)
        mask = (jnp.arange(width) <= t).astype(x.dtype)
        feats = jnp.concatenate([cos_d[:, order] * mask[None, :], sin_d[:, order] * mask[None, :]], axis=1)
        gram = feats.T @ feats / m + ridge * jnp.eye(2 * width, dtype=x.dtype)
        coef = jnp.linalg.solve(gram, feats.T @ y / m)
        resid = y - feats @ coef
        return (chosen, order, resid), None

    k = dictionary.shape[0]
    init = (jnp.zeros((k,), bool), jnp.zeros((width,), jnp.int32), y)
    (_, order, _), _ = jax.lax.scan(body, init, jnp.arange(width))
    freqs = dictionary[order]
    return _fit_cos_sin(freqs, x, y, ridge)


class FitStats(eqx.Module):
    """Diagnostics of :func:`fit_shallow` at the fitted parameters.

    Attributes:
        iterations: optimisation steps taken (1 for ``"lstsq"``).
        rms_residual: ``||r||_rms``, the root mean square of ``model(x) - y``.
        stationarity: ``max_j |(J^T r)_j| / (||J_j|| sqrt(M))`` (J the Jacobian of the
            residual in the trained parameters, M the number of samples): the largest
            projection of the residual on a parameter direction, 0 at a stationary point
            (NaN for ``"lstsq"``, an exact solve).
        tolerance: ``atol + rtol ||r||_rms``: the stopping test is ``stationarity <=
            tolerance``.
    """

    iterations: Array
    rms_residual: Float[Array, ""]
    stationarity: Float[Array, ""]
    tolerance: Float[Array, ""]


class FitHistory(eqx.Module):
    """Per-step records of :func:`fit_shallow`.

    Attributes:
        loss: mean squared error per step (NaN after the last step of a Gauss-Newton fit that
            stopped early; one entry for ``"lstsq"``).
    """

    loss: Float[Array, " T"]


class FitResult(Solution):
    """The :class:`~pdeml.core.Solution` of :func:`fit_shallow`.

    Fields: ``value`` the fitted network (also ``model``); ``result`` a
    :class:`~pdeml.core.RESULTS` code: ``SUCCESS`` (first-order stationary:
    ``stats.stationarity <= atol + rtol ||r||_rms``, which includes a fit with
    ``||r||_rms <= atol``), ``MAX_STEPS_REACHED``, ``NONFINITE`` or ``STAGNATED``
    (Gauss-Newton: no damping makes a step reduce the error any more); messages in
    ``FIT_MESSAGES``; ``stats`` a :class:`FitStats`; ``history`` a :class:`FitHistory`.

    ``loss`` reads the loss history with the final value repeated after an early stop (the
    shape stays ``(max_steps,)``).
    """

    model = property(lambda self: self.value, doc="The fitted network (``value``).")

    @property
    def loss(self):
        """Mean squared error per step, the last value repeated after an early stop."""
        h = self.history.loss
        k = jnp.clip(self.stats.iterations, 1, h.shape[0]) - 1
        return jnp.where(jnp.arange(h.shape[0]) <= k, h, h[k])


FIT_MESSAGES = {
    RESULTS.SUCCESS: "converged (stationarity <= atol + rtol ||r||_rms)",
    RESULTS.MAX_STEPS_REACHED: "not stationary within max_steps (raise max_steps, loosen "
                               "atol/rtol, or use method='gauss_newton')",
    RESULTS.NONFINITE: "the fit became NaN/inf (lower learning_rate, or check x and y)",
    RESULTS.STAGNATED: "stopped: no Gauss-Newton step reduces the error any more (round-off "
                       "limited, or a rank-deficient Jacobian)",
}


def default_fit_tolerances(dtype) -> tuple[float, float]:
    """``(atol, rtol)`` defaults of :func:`fit_shallow`: ``(1e-10, 1e-6)`` in float64,
    ``(1e-5, 1e-2)`` in float32."""
    if jnp.finfo(dtype).bits >= 64:
        return 1e-10, 1e-6
    return 1e-5, 1e-2


def _mse(model, x, y):
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _stationarity(resid, flat):
    """``(rms, measure)`` of the residual function ``resid`` at the flat parameters."""
    r = resid(flat)
    m = r.shape[0]
    jac = jax.jacfwd(resid)(flat)
    colnorm = jnp.sqrt(jnp.sum(jac**2, axis=0))
    proj = jnp.abs(jac.T @ r) / jnp.where(colnorm > 0, colnorm, 1.0)
    return jnp.sqrt(jnp.mean(r**2)), jnp.max(jnp.where(colnorm > 0, proj, 0.0)) / math.sqrt(m)


def _fit_solution(model, x, y, hist, iterations, atol, rtol, stagnated=False, *, exact=False):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)

    def resid(f):
        return jax.vmap(eqx.combine(unravel(f), static))(x) - y

    if exact:
        rms = jnp.sqrt(jnp.mean(resid(flat) ** 2))
        measure = jnp.asarray(jnp.nan, rms.dtype)
        passed = jnp.asarray(True)
    else:
        rms, measure = _stationarity(resid, flat)
    tolerance = atol + rtol * rms
    if not exact:
        passed = measure <= tolerance
    finite = jnp.all(jnp.isfinite(flat)) & jnp.isfinite(rms)
    result = result_code(finite & passed, ~finite, stagnated)
    stats = FitStats(jnp.asarray(iterations, jnp.int32), rms, measure, tolerance)
    return FitResult(value=model, result=result, stats=stats, history=FitHistory(hist))


def fit_shallow(
    model: CosineNetwork | PeriodicShallowNetwork,
    x: Float[Array, "M d"],
    y: Float[Array, " M"],
    *,
    method: str = "gauss_newton",
    max_steps: int | None = None,
    learning_rate: float = 1e-2,
    damping: float = 1e-3,
    ridge: float = 1e-12,
    atol: float | None = None,
    rtol: float | None = None,
    throw: bool = False,
    steps: int | None = None,
) -> FitResult:
    """Fit a shallow network to samples by least squares, Adam, L-BFGS or Gauss-Newton.

    ``method="lstsq"`` refits only the outer layer (amplitudes and phases of a cosine network
    for its current frequencies, or the outer weights of a periodic shallow network); the
    others train all parameters on the mean squared error. Gauss-Newton is
    Levenberg-Marquardt with an adaptive damping (accepts a step only if the loss drops).

    Args:
        model: the network to fit (its parameters are the starting point).
        x, y: samples, shapes ``(M, d)`` and ``(M,)``.
        method: ``"lstsq"``, ``"adam"``, ``"lbfgs"`` or ``"gauss_newton"``.
        max_steps: iteration cap (default 200; ``steps``: the deprecated spelling). Adam and
            L-BFGS run all of them; Gauss-Newton stops as soon as the stopping test passes.
        learning_rate: Adam's step. damping: initial Levenberg-Marquardt damping. ridge:
            Tikhonov weight of ``"lstsq"``.
        atol, rtol: the fit has converged when it is first-order stationary,
            ``max_j |(J^T r)_j| / (||J_j|| sqrt(M)) <= atol + rtol ||r||_rms`` (the largest
            cosine between the residual and a parameter direction at most ``rtol``, or a
            residual below ``atol``). Defaults: :func:`default_fit_tolerances` of the dtype.
            ``"lstsq"`` is an exact solve and always converges (unless NaN/inf).
        throw: raise ``equinox.EquinoxRuntimeError`` if the fit did not converge; with
            ``False`` (default) the outcome is reported in ``converged`` / ``result``.

    Returns:
        :class:`FitResult`, a :class:`~pdeml.core.Solution`: ``value`` (also ``model``),
        ``result``, ``stats`` (:class:`FitStats`) and ``history`` (:class:`FitHistory`, the
        loss per step; for ``lstsq`` one entry).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> true = CosineNetwork(jnp.array([1.0, 0.5]), jnp.array([[1.0, 0.0], [1.0, 2.0]]),
        ...                      jnp.array([0.3, -0.2]))
        >>> x = jax.random.uniform(jax.random.key(0), (256, 2))
        >>> start = CosineNetwork(jnp.array([0.8, 0.6]), true.frequencies + 0.02, jnp.zeros(2))
        >>> fit = fit_shallow(start, x, jax.vmap(true)(x), max_steps=50)
        >>> bool(fit.converged), float(fit.stats.rms_residual) < 1e-4
        (True, True)
    """
    steps, cap = max_steps_option(max_steps, 200, steps=steps)
    check_real_number("learning_rate", learning_rate, positive=True)
    check_real_number("damping", damping, minimum=0.0)
    check_real_number("ridge", ridge, minimum=0.0)
    _check_data(x, y)
    check_choice("method", method, ("lstsq", "adam", "lbfgs", "gauss_newton"))
    if x.shape[1] != model.dim:
        raise ValueError(f"x has dimension {x.shape[1]} but the model has dim={model.dim}")
    d_atol, d_rtol = default_fit_tolerances(x.dtype)
    atol = d_atol if atol is None else atol
    rtol = d_rtol if rtol is None else rtol
    check_real_number("atol", atol, minimum=0.0)
    check_real_number("rtol", rtol, minimum=0.0)
    if method == "lstsq":
        if isinstance(model, CosineNetwork):
            fitted = _fit_cos_sin(model.frequencies, x, y, ridge)
        else:
            feats = jax.vmap(model.features)(x)
            feats = jnp.concatenate([feats, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
            sol = _ls_solve(feats, y, ridge)
            fitted = eqx.tree_at(lambda m: (m.outer, m.offset), model, (sol[:-1], sol[-1]))
        res = _fit_solution(fitted, x, y, _mse(fitted, x, y)[None], 1, atol, rtol, exact=True)
    else:
        res = _fit_iterative(model, x, y, method=method, steps=steps, learning_rate=learning_rate,
                             damping=damping, atol=atol, rtol=rtol)
    if throw:
        res = raise_if_failed(res, f"fit_shallow ({method})",
                              {c: m.replace("max_steps", cap) for c, m in FIT_MESSAGES.items()})
    return res


class _MSE(eqx.Module):
    """The mean squared error of the trainable parameters on the samples (a
    :func:`pdeml.train.train` loss)."""

    static: eqx.Module

    def __call__(self, params, batch, key):
        return _mse(eqx.combine(params, self.static), *batch), {}


class _Samples(eqx.Module):
    """The full batch ``(x, y)`` at every step."""

    x: Array
    y: Array

    def __call__(self, step, key):
        return self.x, self.y


def _fit_iterative(model, x, y, *, method, steps, learning_rate, damping, atol, rtol):
    if method == "gauss_newton":
        return _fit_gauss_newton(model, x, y, steps=steps, damping=damping,
                                 test=(jnp.asarray(atol, x.dtype), jnp.asarray(rtol, x.dtype)))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt = _optax_optimizer(method, float(learning_rate) if method == "adam" else None)
    run = train(params, _MSE(static), opt, _Samples(x, y), steps=steps, key=jax.random.key(0),
                steps_per_call=steps, progress=False, scan=True)  # one compiled loop, as fast as a hand-written scan
    hist = jnp.asarray(run.series("loss")[1], x.dtype)
    return eqx.filter_jit(_fit_solution)(eqx.combine(run.model, static), x, y, hist, steps, atol, rtol)


@eqx.filter_jit
def _fit_gauss_newton(model, x, y, *, steps, damping, test):
    """Levenberg-Marquardt (Marquardt's diagonal scaling, damping x0.3 after an accepted step,
    x10 after a rejected one) until the stationarity test of :func:`_fit_solution` passes."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    atol, rtol = test

    def resid(f):
        return jax.vmap(eqx.combine(unravel(f), static))(x) - y

    def passed(f):
        rms, measure = _stationarity(resid, f)
        return measure <= atol + rtol * rms

    def cond(c):
        k, f, mu, _, done = c
        return (k < steps) & ~done & (mu < 1e12) & jnp.all(jnp.isfinite(f))

    def body(c):
        k, f, mu, hist, _ = c
        r = resid(f)
        jac = jax.jacfwd(resid)(f)
        jtj = jac.T @ jac
        jtr = jac.T @ r
        scale = jnp.diag(jtj) + 1e-12
        delta = jnp.linalg.solve(jtj + mu * jnp.diag(scale), -jtr)
        old = jnp.mean(r**2)
        new = jnp.mean(resid(f + delta) ** 2)
        ok = new < old
        f = jnp.where(ok, f + delta, f)
        mu = jnp.clip(jnp.where(ok, mu * 0.3, mu * 10.0), 1e-12, 1e12)
        return k + 1, f, mu, hist.at[k].set(jnp.minimum(old, new)), passed(f)

    hist = jnp.full((steps,), jnp.nan, x.dtype)
    init = (jnp.asarray(0, jnp.int32), flat, jnp.asarray(damping, x.dtype), hist, passed(flat))
    k, flat, mu, hist, done = jax.lax.while_loop(cond, body, init)
    # the damping at its cap: no step reduces the error any more
    return _fit_solution(eqx.combine(unravel(flat), static), x, y, hist, k, atol, rtol,
                         stagnated=mu >= 1e12)


def relative_l2_error(model: Callable, target: Callable, x: Float[Array, "M d"]) -> Float[Array, ""]:
    """``||model - target|| / ||target||`` estimated on the points ``x`` (use fresh points)."""
    a = jax.vmap(model)(x)
    b = jax.vmap(target)(x)
    return jnp.sqrt(jnp.sum((a - b) ** 2) / jnp.sum(b**2))
