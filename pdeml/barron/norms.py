"""Spectral Barron norms on the torus and bounds for shallow networks.

On the torus [0, 1)^d with Fourier series ``u(x) = sum_k u_hat_k exp(2 pi i k . x)``,

    ||u||_{B^s} = sum_k (1 + 2 pi |k|)^s |u_hat_k|        (s = 1 is the norm of [Barron]),

so ``||sin(2 pi x_1)||_{B^1} = 1 + 2 pi``. Since ``1 + |a + b| <= (1 + |a|)(1 + |b|)`` the
norm is submultiplicative for s >= 0, and ``(I - Laplacian)^{-1}`` contracts it.

Reference: [Barron] Marwah, Lipton, Lu, Risteski, "Neural Network Approximations of PDEs
Beyond Linearity: A Representational Perspective", ICML 2023, arXiv:2210.12101.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from pdeml.core.validation import check_positive_int, check_real_number

from .networks import CosineNetwork, PeriodicShallowNetwork
from .spectral import torus_grid, wavenumbers

__all__ = [
    "barron_norm",
    "barron_weights",
    "BarronConvergence",
    "barron_norm_convergence",
    "cosine_network_barron_norm",
    "path_norm",
]


def barron_weights(shape: tuple[int, ...], s: float = 1.0, dtype=None) -> Float[Array, "*grid"]:
    """``(1 + 2 pi |k|)^s`` on the ``fftn`` frequency layout of a grid of ``shape``.

    For even sizes the Nyquist coefficient stands for ``cos(pi N x)``, i.e. half at
    ``+N/2`` and half at ``-N/2``; both have ``|k_i| = N/2``, so it gets that weight.
    """
    check_real_number("s", s, minimum=0.0)
    k = wavenumbers(shape)
    w = (1.0 + 2.0 * math.pi * np.sqrt(np.sum(k**2, axis=0))) ** s
    return jnp.asarray(w, dtype=dtype)


def barron_norm(u: Float[Array, "*grid"], s: float = 1.0) -> Float[Array, ""]:
    """Spectral Barron norm ``sum_k (1 + 2 pi |k|)^s |u_hat_k|`` of periodic grid samples.

    Exact for trigonometric polynomials whose frequencies the grid resolves (``|k_i| < N_i/2``);
    otherwise an estimate whose convergence :func:`barron_norm_convergence` checks.

    Args:
        u: samples at ``x_j = j / N`` on a grid of any dimension (shape ``(N_1, ..., N_d)``).
        s: smoothness order (``s = 1`` is the paper's norm).

    Returns:
        A scalar in the dtype of ``u``.

    Example:
        >>> import jax.numpy as jnp
        >>> from pdeml.barron import torus_grid
        >>> x = torus_grid(9, dim=2)
        >>> round(float(barron_norm(jnp.sin(2 * jnp.pi * x[..., 0]))), 4)  # 1 + 2 pi
        7.2832
    """
    u = jnp.asarray(u)
    if u.ndim == 0:
        raise ValueError("u must be grid samples with at least one axis, got a scalar")
    if not jnp.issubdtype(u.dtype, jnp.floating):
        raise TypeError(f"u must be a real floating array, got dtype {u.dtype}")
    uh = jnp.fft.fftn(u) / u.size
    return jnp.sum(barron_weights(u.shape, s, u.dtype) * jnp.abs(uh))


class BarronConvergence(eqx.Module):
    """Barron-norm estimates on a sequence of grids.

    Attributes:
        sizes: grid sizes per axis.
        values: the estimates, one per size.
        relative_changes: ``|v_{i+1} - v_i| / |v_{i+1}|``.
        converged: whether the last relative change is below ``rtol``.
    """

    sizes: tuple = eqx.field(static=True)
    values: np.ndarray
    relative_changes: np.ndarray
    converged: bool = eqx.field(static=True)


def barron_norm_convergence(
    fn: Callable[[Float[Array, " d"]], Float[Array, ""]],
    dim: int,
    sizes: Sequence[int] = (9, 17, 33, 65),
    *,
    s: float = 1.0,
    rtol: float = 1e-6,
    dtype=None,
) -> BarronConvergence:
    """Estimate ``||fn||_{B^s}`` on grids of increasing size and report the convergence.

    Args:
        fn: a 1-periodic function of one point ``x`` of shape ``(dim,)``.
        dim: dimension d.
        sizes: grid sizes (odd sizes recommended), increasing.
        s: smoothness order.
        rtol: the relative change between the last two sizes that counts as converged.

    Returns:
        :class:`BarronConvergence`.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda x: jnp.exp(jnp.sin(2 * jnp.pi * x[0]))
        >>> c = barron_norm_convergence(f, 1, (9, 17, 33), rtol=1e-4)  # 1e-6 needs float64
        >>> c.converged
        True
    """
    check_positive_int("dim", dim)
    check_real_number("s", s, minimum=0.0)
    check_real_number("rtol", rtol, positive=True)
    for n in sizes:
        check_positive_int("sizes", n)
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or any(b <= a for a, b in zip(sizes[:-1], sizes[1:])):
        raise ValueError(f"sizes must be at least two increasing grid sizes, got {sizes}")
    vals = []
    for n in sizes:
        x = torus_grid(n, dim=dim, dtype=dtype)
        u = jax.vmap(fn)(x.reshape(-1, dim)).reshape((n,) * dim)
        vals.append(float(barron_norm(u, s)))
    vals = np.asarray(vals)
    rel = np.abs(np.diff(vals)) / np.maximum(np.abs(vals[1:]), np.finfo(float).tiny)
    return BarronConvergence(sizes, vals, rel, bool(rel[-1] < rtol))


def _canonical_frequencies(k):
    """Map k and -k to one representative (first nonzero entry positive); return sign."""
    nz = k != 0
    first = jnp.argmax(nz, axis=1)
    lead = jnp.take_along_axis(k, first[:, None], axis=1)[:, 0]
    sign = jnp.where(lead < 0, -1.0, 1.0).astype(k.dtype)
    return k * sign[:, None], sign


def cosine_network_barron_norm(net: CosineNetwork, s: float = 1.0, *, merge: bool = True) -> Float[Array, ""]:
    """Exact spectral Barron norm of a cosine network with integer frequencies.

    ``c cos(2 pi k . x + b)`` has Fourier coefficients ``c e^{+-ib} / 2`` at ``+-k``; units
    with equal (or opposite) frequencies are merged first, so the result is the norm of the
    function, not just the upper bound ``sum_j |c_j| (1 + 2 pi |k_j|)^s`` (``merge=False``).

    Raises at run time (``eqx.error_if``) if a frequency is not an integer.

    Example:
        >>> import jax.numpy as jnp
        >>> net = CosineNetwork(jnp.array([1.0, 1.0]), jnp.array([[1.0], [-1.0]]), jnp.array([0.0, 0.0]))
        >>> round(float(cosine_network_barron_norm(net)), 6)  # 2 cos(2 pi x)
        14.566371
    """
    k = net.frequencies
    k = eqx.error_if(k, jnp.any(k != jnp.round(k)), "net.frequencies must be integers for an exact Barron norm")
    weight = (1.0 + 2.0 * math.pi * jnp.sqrt(jnp.sum(k**2, axis=1))) ** s
    if not merge:
        return jnp.sum(jnp.abs(net.coefficients) * weight)
    kc, sign = _canonical_frequencies(k)
    zero = jnp.all(k == 0, axis=1)
    # complex amplitude of each unit at its canonical frequency
    amp = net.coefficients * jnp.exp(1j * sign * net.phases)
    same = jnp.all(kc[:, None, :] == kc[None, :, :], axis=-1)
    group_amp = same.astype(amp.dtype) @ amp
    group_size = jnp.sum(same, axis=1)
    # k != 0: 2 * |sum c e^{ib} / 2| at +k and the conjugate at -k -> |sum c e^{ib}|;
    # k == 0: the constant sum c cos b.
    per_unit = jnp.where(zero, jnp.abs(jnp.real(group_amp)), jnp.abs(group_amp))
    return jnp.sum(per_unit * weight / group_size)


def path_norm(net: PeriodicShallowNetwork) -> Float[Array, ""]:
    """Path norm ``|a_0| + sum_j |a_j| (||w_j||_1 + |b_j|)^p`` of a periodic shallow network.

    For ReLU^p (``p = power``) and tanh (``p = 1``) this is the E-Ma-Wu path norm, an upper
    bound for the Barron-space norm of the network; it also bounds the sup norm of a ReLU^p
    network since ``|w . phi(x) + b| <= ||w||_1 + |b|`` when ``|phi| <= 1``. No exact spectral
    Barron norm is available for these activations (see [Barron] §2).
    """
    p = 1 if net.activation == "tanh" else net.power
    inner = jnp.sum(jnp.abs(net.inner), axis=1) + jnp.abs(net.bias)
    return jnp.abs(net.offset) + jnp.sum(jnp.abs(net.outer) * inner**p)
