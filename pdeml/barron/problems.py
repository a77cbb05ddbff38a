"""Variational problems on the torus: Lagrangians, sources, manufactured solutions.

A problem is a Lagrangian ``L(x, z, p)`` and a source ``f`` on [0, 1)^d; its solution
minimises ``E(u) = int L(x, u, grad u) - f u dx`` and solves the Euler-Lagrange equation
``DE(u) = -div(d_p L) + d_z L - f = 0``. Uniform convexity
``lambda I <= Hess_{(z, p)} L <= Lambda I`` makes the Sobolev-gradient iteration of [Barron]
contract.

Test problems T1-T5 of [Barron]-style studies ship as :func:`make_test_problem`; any
Lagrangian can be paired with any periodic ``u*`` by :func:`manufactured_problem`, which
computes ``f`` from ``u*`` by automatic differentiation (any dimension).

Reference: Marwah, Lipton, Lu, Risteski, ICML 2023, arXiv:2210.12101.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .networks import CosineNetwork
from .norms import cosine_network_barron_norm
from .spectral import check_grid_sizes, spectral_divergence, spectral_gradient, torus_grid
from pdeml.core.validation import check_choice, check_positive_int, check_real_number

__all__ = [
    "Lagrangian",
    "LinearLagrangian",
    "SemilinearLagrangian",
    "QuasilinearLagrangian",
    "PLaplacianLagrangian",
    "PolynomialLagrangian",
    "CallableLagrangian",
    "RidgeSum",
    "ManufacturedSource",
    "VariationalProblem",
    "manufactured_problem",
    "make_test_problem",
    "TEST_PROBLEMS",
    "energy",
    "euler_lagrange",
    "hessian_vector_product",
    "pointwise_residual",
    "ConvexityEstimate",
    "estimate_convexity",
    "check_convexity",
]


class Lagrangian(eqx.Module):
    """Abstract Lagrangian ``L(x, z, p)``: ``x`` a point ``(d,)``, ``z`` scalar, ``p`` ``(d,)``.

    Subclasses implement ``__call__`` and may override :meth:`bounds` (the exact convexity
    constants) and :meth:`barron_growth` (``(B_L, p)`` with ``||d L(u)||_B <= B_L ||u||_B^p``,
    used for the worst-case Barron bound of the iterates).
    """

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " d"], z: Float[Array, ""], p: Float[Array, " d"]) -> Float[Array, ""]:
        ...

    def bounds(self, z_max: float | None = None) -> tuple[float, float] | None:
        """Exact ``(lambda, Lambda)`` if known (``z_max`` bounds |u| where L grows unboundedly)."""
        return None

    def barron_growth(self) -> tuple[float, float]:
        """``(B_L, p)``: the Lagrangian's derivatives map Barron norm b to at most B_L b^p."""
        b = self.bounds(1.0)
        return ((b[1] if b else 1.0), 1.0)


class LinearLagrangian(Lagrangian):
    """T1: ``L = 1/2 p^T A p + c/2 z^2``. The Euler-Lagrange equation is linear, so one
    Newton step solves it exactly.

    Attributes:
        matrix: symmetric positive definite ``A``, shape ``(d, d)``.
        mass: ``c > 0``.
    """

    matrix: Float[Array, "d d"]
    mass: float = 1.0

    def __check_init__(self):
        if jnp.ndim(self.matrix) != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise ValueError(f"matrix must be square (d, d), got shape {jnp.shape(self.matrix)}")

    def __call__(self, x, z, p):
        return 0.5 * p @ (self.matrix @ p) + 0.5 * self.mass * z**2

    def bounds(self, z_max=None):
        ev = np.linalg.eigvalsh(np.asarray(self.matrix))
        return (float(min(ev.min(), self.mass)), float(max(ev.max(), self.mass)))


class SemilinearLagrangian(Lagrangian):
    """T2: ``L = 1/2 |p|^2 + 1/2 z^2 + nu log cosh z`` (lambda = 1, Lambda = 1 + nu)."""

    nu: float = 1.0

    def __check_init__(self):
        check_real_number("nu", self.nu, minimum=0.0)  # nu < 0: not convex, Lambda < lambda

    def __call__(self, x, z, p):
        # log cosh z = |z| + log1p(exp(-2|z|)) - log 2, stable for large |z|
        a = jnp.abs(z)
        return 0.5 * p @ p + 0.5 * z**2 + self.nu * (a + jnp.log1p(jnp.exp(-2 * a)) - math.log(2.0))

    def bounds(self, z_max=None):
        return (1.0, 1.0 + self.nu)


class QuasilinearLagrangian(Lagrangian):
    """T3: ``L = 1/2 |p|^2 + mu (sqrt(1 + |p|^2) - 1) + 1/2 z^2`` (lambda = 1, Lambda = 1 + mu).

    With ``nu > 0`` the semilinear term ``nu log cosh z`` is added (the prototype's problem,
    lambda = 1, Lambda = 1 + max(mu, nu)).
    """

    mu: float = 1.0
    nu: float = 0.0

    def __check_init__(self):
        check_real_number("mu", self.mu, minimum=0.0)
        check_real_number("nu", self.nu, minimum=0.0)

    def __call__(self, x, z, p):
        a = jnp.abs(z)
        lc = a + jnp.log1p(jnp.exp(-2 * a)) - math.log(2.0)
        return 0.5 * p @ p + self.mu * (jnp.sqrt(1.0 + p @ p) - 1.0) + 0.5 * z**2 + self.nu * lc

    def bounds(self, z_max=None):
        return (1.0, 1.0 + max(self.mu, self.nu))


class PLaplacianLagrangian(Lagrangian):
    """T4: ``L = 1/2 |p|^2 + (delta / q) (eps^2 + |p|^2)^(q/2) + 1/2 z^2``, q in (1, 2].

    lambda = 1, Lambda = 1 + delta eps^(q - 2) (the largest Hessian eigenvalue of the
    regularised p-Laplacian term sits at p = 0).
    """

    delta: float = 1.0
    q: float = 1.5
    eps: float = 1.0

    def __check_init__(self):
        if not (1.0 < self.q <= 2.0):
            raise ValueError(f"q must be in (1, 2], got {self.q}")
        if self.eps <= 0:
            raise ValueError(f"eps must be positive, got {self.eps}")

    def __call__(self, x, z, p):
        return 0.5 * p @ p + (self.delta / self.q) * (self.eps**2 + p @ p) ** (self.q / 2) + 0.5 * z**2

    def bounds(self, z_max=None):
        return (1.0, 1.0 + self.delta * self.eps ** (self.q - 2.0))


class PolynomialLagrangian(Lagrangian):
    """T5: ``L = 1/2 |p|^2 + 1/2 z^2 + gamma/4 z^4`` (growth exponent p = 3).

    Lambda depends on the range of u: ``Lambda = 1 + 3 gamma z_max^2``.
    """

    gamma: float = 1.0

    def __call__(self, x, z, p):
        return 0.5 * p @ p + 0.5 * z**2 + 0.25 * self.gamma * z**4

    def bounds(self, z_max=None):
        if z_max is None:
            return None
        return (1.0, 1.0 + 3.0 * self.gamma * z_max**2)

    def barron_growth(self):
        return (1.0 + self.gamma, 3.0)


class CallableLagrangian(Lagrangian):
    """Wrap a plain function ``fn(x, z, p)`` as a Lagrangian (convexity then estimated)."""

    fn: Callable = eqx.field(static=True)

    def __call__(self, x, z, p):
        return self.fn(x, z, p)


# ---------------------------------------------------------------------------------------
# manufactured solutions


class RidgeSum(eqx.Module):
    """``u*(x) = sum_j sum_h a_{jh} cos(2 pi h w_j . x + theta_{jh})``, h = 1..H.

    A sum of ridge functions with integer directions ``w_j`` and trigonometric profiles: its
    Barron norm is known exactly and does not depend on d (only on ``|w_j|``).

    Attributes:
        amplitudes: ``a``, shape ``(m, H)``.
        directions: integer ``w``, shape ``(m, d)``.
        phases: ``theta``, shape ``(m, H)``.
    """

    amplitudes: Float[Array, "m h"]
    directions: Float[Array, "m d"]
    phases: Float[Array, "m h"]

    @property
    def dim(self) -> int:
        return self.directions.shape[1]

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        if jnp.shape(x) != (self.dim,):
            raise ValueError(f"x must have shape ({self.dim},), got {jnp.shape(x)}")
        t = self.directions @ x  # (m,)
        h = jnp.arange(1, self.amplitudes.shape[1] + 1, dtype=x.dtype)
        return jnp.sum(self.amplitudes * jnp.cos(2 * math.pi * t[:, None] * h[None, :] + self.phases))

    def to_cosine_network(self) -> CosineNetwork:
        """The same function as a :class:`CosineNetwork` (frequencies ``h w_j``)."""
        m, nh = self.amplitudes.shape
        h = jnp.arange(1, nh + 1, dtype=self.directions.dtype)
        freq = (h[None, :, None] * self.directions[:, None, :]).reshape(m * nh, self.dim)
        return CosineNetwork(self.amplitudes.reshape(-1), freq, self.phases.reshape(-1))

    def barron_norm(self, s: float = 1.0) -> Float[Array, ""]:
        """The exact spectral Barron norm (merged frequencies)."""
        return cosine_network_barron_norm(self.to_cosine_network(), s)

    @classmethod
    def random(
        cls,
        dim: int,
        *,
        key: PRNGKeyArray,
        num_ridges: int = 3,
        harmonics: int = 2,
        nonzeros: int = 3,
        scale: float = 1.0,
        dtype=None,
    ) -> "RidgeSum":
        """Directions with ``min(nonzeros, d)`` entries of +-1 (so ``|w|`` is independent of d),
        amplitudes ``scale * N(0,1) / h^2`` for harmonic h, uniform phases."""
        check_positive_int("dim", dim)
        dtype = dtype or jnp.result_type(float)
        nz = min(nonzeros, dim)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        idx = jax.vmap(lambda k: jax.random.permutation(k, dim)[:nz])(jax.random.split(k1, num_ridges))
        signs = jnp.where(jax.random.bernoulli(k2, 0.5, (num_ridges, nz)), 1.0, -1.0).astype(dtype)
        w = jnp.zeros((num_ridges, dim), dtype).at[jnp.arange(num_ridges)[:, None], idx].set(signs)
        h = jnp.arange(1, harmonics + 1, dtype=dtype)
        amp = scale * jax.random.normal(k3, (num_ridges, harmonics), dtype) / h[None, :] ** 2
        ph = jax.random.uniform(k4, (num_ridges, harmonics), dtype, 0.0, 2 * math.pi)
        return cls(amp, w, ph)


def pointwise_residual(
    lagrangian: Lagrangian, fn: Callable, x: Float[Array, " d"], source: Callable | None = None
) -> Float[Array, ""]:
    """Euler-Lagrange residual ``-div(d_p L) + d_z L - f`` of a function at one point, by autodiff.

    ``div`` is the total x-derivative of ``x -> d_p L(x, u(x), grad u(x))`` (explicit x
    dependence included). With ``source=None`` the source term is omitted (so this returns
    the ``f`` that makes ``fn`` a solution).
    """

    def flux(y):
        u, g = jax.value_and_grad(fn)(y)
        return jax.grad(lagrangian, argnums=2)(y, u, g)

    div = jnp.trace(jax.jacfwd(flux)(x))
    u, g = jax.value_and_grad(fn)(x)
    r = -div + jax.grad(lagrangian, argnums=1)(x, u, g)
    if source is not None:
        r = r - source(x)
    return r


class ManufacturedSource(eqx.Module):
    """``f = -div(d_p L(x, u*, grad u*)) + d_z L(x, u*, grad u*)`` computed by autodiff."""

    lagrangian: Lagrangian
    solution: Callable

    def __call__(self, x):
        return pointwise_residual(self.lagrangian, self.solution, x)


class VariationalProblem(eqx.Module):
    """``min_u int_{[0,1)^d} L(x, u, grad u) - f u dx`` on the torus.

    Attributes:
        lagrangian: a :class:`Lagrangian`.
        source: ``f``, a function of one point ``(d,)``.
        dim: d (static).
        solution: the exact solution ``u*`` if known (a function of one point), else None.

    Example:
        >>> problem = make_test_problem("T2", dim=2)
        >>> x, f = problem.on_grid(9)
        >>> f.shape
        (9, 9)
    """

    lagrangian: Lagrangian
    source: Callable
    dim: int = eqx.field(static=True)
    solution: Callable | None = None

    def on_grid(self, shape: int | tuple[int, ...], dtype=None):
        """Grid points ``(*shape, d)`` and the source sampled there."""
        if isinstance(shape, int):
            shape = (shape,) * self.dim
        if len(shape) != self.dim:
            raise ValueError(f"grid shape {shape} has {len(shape)} axes but the problem has dim={self.dim}")
        x = torus_grid(tuple(shape), dtype=dtype)
        f = jax.vmap(self.source)(x.reshape(-1, self.dim)).reshape(shape)
        return x, f

    def solution_on_grid(self, shape, dtype=None):
        """``u*`` sampled on the grid (raises if no exact solution is attached)."""
        if self.solution is None:
            raise ValueError("this problem has no exact solution attached")
        if isinstance(shape, int):
            shape = (shape,) * self.dim
        x = torus_grid(tuple(shape), dtype=dtype)
        return jax.vmap(self.solution)(x.reshape(-1, self.dim)).reshape(shape)

    def bounds(self, z_max: float | None = None):
        """Exact ``(lambda, Lambda)`` of the Lagrangian if known (see :meth:`Lagrangian.bounds`)."""
        return self.lagrangian.bounds(z_max)


def manufactured_problem(lagrangian: Lagrangian, solution: Callable, dim: int) -> VariationalProblem:
    """Problem whose exact solution is ``solution`` (a 1-periodic function of one point).

    Example:
        >>> import jax
        >>> u = RidgeSum.random(3, key=jax.random.key(0))
        >>> p = manufactured_problem(SemilinearLagrangian(nu=1.0), u, 3)
        >>> abs(float(pointwise_residual(p.lagrangian, u, jax.numpy.full(3, 0.3), p.source))) < 1e-12
        True
    """
    if not isinstance(lagrangian, Lagrangian):
        raise TypeError(f"lagrangian must be a pdeml.barron.Lagrangian, got {type(lagrangian).__name__}")
    if getattr(solution, "dim", dim) != dim:
        raise ValueError(f"solution has dim={solution.dim} but dim={dim} was requested")
    return VariationalProblem(lagrangian, ManufacturedSource(lagrangian, solution), dim, solution)


TEST_PROBLEMS = ("T1", "T2", "T3", "T4", "T5")


def make_test_problem(
    name: str, dim: int, *, solution: Callable | None = None, key: PRNGKeyArray | None = None, **params
) -> VariationalProblem:
    """The ready-made test problems T1-T5 with a manufactured ridge-sum solution.

    T1 linear (``matrix``, ``mass``), T2 semilinear (``nu``), T3 quasilinear (``mu``, ``nu``),
    T4 regularised p-Laplacian (``delta``, ``q``, ``eps``), T5 polynomial (``gamma``). Without
    ``solution`` a :class:`RidgeSum` drawn from ``key`` (default ``jax.random.key(0)``) is used.
    """
    check_choice("test problem", name, TEST_PROBLEMS)
    check_positive_int("dim", dim)
    if name == "T1":
        dtype = jnp.result_type(float)
        default_a = jnp.eye(dim, dtype=dtype) + 0.25 * (jnp.ones((dim, dim), dtype) - jnp.eye(dim, dtype=dtype)) / max(dim - 1, 1)
        lag = LinearLagrangian(jnp.asarray(params.pop("matrix", default_a)), params.pop("mass", 1.0))
    else:
        cls = {"T2": SemilinearLagrangian, "T3": QuasilinearLagrangian, "T4": PLaplacianLagrangian, "T5": PolynomialLagrangian}[name]
        lag = cls(**params)
        params = {}
    if params:
        raise ValueError(f"unexpected parameters for {name}: {sorted(params)}")
    if solution is None:
        # T3/T4 fluxes have complex singularities near |grad u| ~ 1, so their default
        # solution is kept gentle enough for a spectral grid to resolve the flux.
        scale = 0.1 if name in ("T3", "T4") else 1.0
        solution = RidgeSum.random(dim, key=jax.random.key(0) if key is None else key, scale=scale)
    return manufactured_problem(lag, solution, dim)


# ---------------------------------------------------------------------------------------
# grid energy, Euler-Lagrange operator, Hessian-vector products


def _check_field(problem: VariationalProblem, u):
    if jnp.ndim(u) != problem.dim:
        raise ValueError(f"u must be a grid field with {problem.dim} axes (problem dim), got shape {jnp.shape(u)}")


def _pointwise_derivs(problem, x, u, p):
    """d_z L and d_p L at every grid point: shapes ``grid`` and ``(d, *grid)``."""
    d = problem.dim
    flat_x = x.reshape(-1, d)
    flat_p = jnp.moveaxis(p, 0, -1).reshape(-1, d)
    dz, dp = jax.vmap(jax.grad(problem.lagrangian, argnums=(1, 2)))(flat_x, u.reshape(-1), flat_p)
    return dz.reshape(u.shape), jnp.moveaxis(dp.reshape(*u.shape, d), -1, 0)


def energy(problem: VariationalProblem, u: Float[Array, "*grid"], f: Float[Array, "*grid"] | None = None) -> Float[Array, ""]:
    """Discrete energy ``mean_j L(x_j, u_j, (D u)_j) - f_j u_j`` (spectral gradient D)."""
    _check_field(problem, u)
    x = torus_grid(u.shape, dtype=u.dtype)
    if f is None:
        f = problem.on_grid(u.shape, u.dtype)[1]
    p = spectral_gradient(u)
    d = problem.dim
    vals = jax.vmap(problem.lagrangian)(x.reshape(-1, d), u.reshape(-1), jnp.moveaxis(p, 0, -1).reshape(-1, d))
    return jnp.mean(vals) - jnp.mean(f * u)


def euler_lagrange(problem: VariationalProblem, u: Float[Array, "*grid"], f: Float[Array, "*grid"] | None = None) -> Float[Array, "*grid"]:
    """``DE(u) = -div(d_p L) + d_z L - f`` on the grid (the L^2 gradient of :func:`energy`).

    Equals ``N^d * grad_u energy(u)``: the spectral divergence is minus the adjoint of the
    spectral gradient.
    """
    _check_field(problem, u)
    x = torus_grid(u.shape, dtype=u.dtype)
    if f is None:
        f = problem.on_grid(u.shape, u.dtype)[1]
    dz, dp = _pointwise_derivs(problem, x, u, spectral_gradient(u))
    return -spectral_divergence(dp) + dz - f


def hessian_vector_product(
    problem: VariationalProblem, u: Float[Array, "*grid"], v: Float[Array, "*grid"], f=None
) -> Float[Array, "*grid"]:
    """``D^2E(u)[v]`` by forward-mode differentiation of :func:`euler_lagrange`."""
    if jnp.shape(u) != jnp.shape(v):
        raise ValueError(f"u and v must have the same shape, got {jnp.shape(u)} and {jnp.shape(v)}")
    if f is None:
        f = problem.on_grid(u.shape, u.dtype)[1]
    return jax.jvp(lambda w: euler_lagrange(problem, w, f), (u,), (v,))[1]


# ---------------------------------------------------------------------------------------
# convexity constants


class ConvexityEstimate(eqx.Module):
    """Empirical convexity constants of a Lagrangian.

    Attributes:
        lam: smallest Hessian eigenvalue seen (an upper bound for the true lambda).
        Lam: largest Hessian eigenvalue seen (a lower bound for the true Lambda).
        worst_point: ``(x, z, p)`` where ``lam`` was attained.
        convex: ``lam > 0`` (static Python bool is not possible under jit: an array).
    """

    lam: Float[Array, ""]
    Lam: Float[Array, ""]
    worst_point: tuple
    convex: Array


def estimate_convexity(
    lagrangian: Lagrangian,
    dim: int,
    *,
    key: PRNGKeyArray,
    num_samples: int = 2048,
    z_scale: float = 3.0,
    p_scale: float = 3.0,
    dtype=None,
) -> ConvexityEstimate:
    """Sample ``(x, z, p)`` and take the extreme eigenvalues of ``Hess_{(z, p)} L``.

    ``x`` is uniform on the torus, ``z ~ z_scale * N(0, 1)``, ``p ~ p_scale * N(0, I)``; half
    of the samples are scaled down by 100 to probe the neighbourhood of 0 as well.

    Example:
        >>> import jax
        >>> est = estimate_convexity(SemilinearLagrangian(nu=1.0), 2, key=jax.random.key(0))
        >>> 0.99 < float(est.lam) <= 1.0 + 1e-12 and 1.9 < float(est.Lam) <= 2.0 + 1e-12
        True
    """
    dtype = dtype or jnp.result_type(float)
    kx, kz, kp = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (num_samples, dim), dtype)
    shrink = jnp.where(jnp.arange(num_samples) % 2 == 0, 1.0, 0.01).astype(dtype)
    z = z_scale * shrink * jax.random.normal(kz, (num_samples,), dtype)
    p = p_scale * shrink[:, None] * jax.random.normal(kp, (num_samples, dim), dtype)

    def hess(xi, zi, pi):
        def l_of(y):
            return lagrangian(xi, y[0], y[1:])

        return jnp.linalg.eigvalsh(jax.hessian(l_of)(jnp.concatenate([zi[None], pi])))

    ev = jax.vmap(hess)(x, z, p)
    i = jnp.argmin(ev[:, 0])
    lam = ev[i, 0]
    return ConvexityEstimate(lam, jnp.max(ev[:, -1]), (x[i], z[i], p[i]), lam > 0)


def check_convexity(lagrangian: Lagrangian, dim: int, *, key: PRNGKeyArray | None = None, **kwargs) -> ConvexityEstimate:
    """:func:`estimate_convexity`, raising ``ValueError`` if the Lagrangian is not uniformly convex."""
    est = estimate_convexity(lagrangian, dim, key=jax.random.key(0) if key is None else key, **kwargs)
    if not bool(est.convex):
        x, z, p = est.worst_point
        raise ValueError(
            f"lagrangian is not uniformly convex in (z, p): Hessian eigenvalue {float(est.lam):.3g} <= 0 "
            f"at z={float(z):.3g}, |p|={float(jnp.linalg.norm(p)):.3g}; the Sobolev descent needs lambda > 0"
        )
    return est
