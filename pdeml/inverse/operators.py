"""Linear forward operators with exact adjoints for inverse problems.

Every operator is an :class:`equinox.Module` acting on arrays of shape ``(*batch, *in_shape)``
(any number of leading batch axes) and returning ``(*batch, *out_shape)``:

- ``op(x)`` / ``op.adjoint(y)``: the map and its exact adjoint (``<A x, y> == <x, A^T y>`` to
  rounding; tested by the dot-product test);
- ``op.shape``: ``(out_shape, in_shape)``;
- ``op.gram(x)``: ``A^T A x``;
- ``op.normest(key)``: ``||A^T A||_2`` (largest eigenvalue) by power iteration.

Operators (image operators act on the last two axes; any axes of ``in_shape`` before them are
channels treated independently):

- :class:`GaussianBlur`: convolution with a normalised Gaussian PSF, **periodic** boundary
  (circular convolution, computed with the FFT; the adjoint is the correlation with the same
  PSF, exact for that convention);
- :class:`Inpainting`: multiplication by a 0/1 mask (self-adjoint);
- :class:`CompressedSensing`: ``y = m^{-1/2} S C D x`` on the flattened sample, D random signs,
  C a circulant matrix with random-sign first column, S a random choice of m rows (keyed);
- :class:`Radon`: parallel-beam Radon transform (line integrals through the bilinear
  interpolant of the image on [-1, 1]^2, sampled along each ray), adjoint by
  :func:`jax.linear_transpose` of the same linear map, hence exact;
- :class:`HeatObservation`: initial condition of the heat equation ``u_t = kappa Lap u`` on a
  periodic grid mapped to the solution at time T observed on a sub-grid (exact spectral solve);
- :class:`MatrixOperator`: a dense matrix (small problems, tests).

References: Kak & Slaney, "Principles of Computerized Tomographic Imaging" (1988) for the
Radon transform; Romberg, "Compressive sensing by random convolution", SIAM J. Imaging Sci.
(2009) for random-sign circulant sensing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from pdeml.pde.spectral import rfftn_wavenumbers

__all__ = [
    "LinearOperator",
    "MatrixOperator",
    "GaussianBlur",
    "Inpainting",
    "CompressedSensing",
    "Radon",
    "HeatObservation",
    "measure",
    "dot_product_test",
]


def _as_shape(shape, name) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as e:
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from e
    if len(shape) == 0 or min(shape) < 1:
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape}")
    return shape


def _check_floating(name, x):
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


class LinearOperator(eqx.Module):
    """A linear map ``A: R^{in_shape} -> R^{out_shape}`` with its exact adjoint, batched.

    Subclasses implement ``_apply`` and ``_adjoint`` on ONE sample (shapes ``in_shape`` and
    ``out_shape``) and define the static fields ``in_shape`` / ``out_shape``.
    """

    in_shape: tuple[int, ...] = eqx.field(static=True)
    out_shape: tuple[int, ...] = eqx.field(static=True)

    def _apply(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def _adjoint(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(out_shape, in_shape)``: the shapes of one measurement and one signal."""
        return self.out_shape, self.in_shape

    def _batched(self, fn, v, event, name):
        _check_floating(name, v)
        v = jnp.asarray(v)
        k = len(event)
        if v.ndim < k or tuple(v.shape[v.ndim - k :]) != tuple(event):
            raise ValueError(
                f"{name} must have trailing shape {tuple(event)} for this "
                f"{type(self).__name__}, got shape {v.shape}"
            )
        batch = v.shape[: v.ndim - k]
        flat = v.reshape((-1, *event))
        out = jax.vmap(fn)(flat)
        return out.reshape((*batch, *out.shape[1:]))

    def __call__(self, x):
        """``A x`` for ``x`` of shape ``(*batch, *in_shape)``."""
        return self._batched(self._apply, x, self.in_shape, "x")

    def adjoint(self, y):
        """``A^T y`` for ``y`` of shape ``(*batch, *out_shape)``."""
        return self._batched(self._adjoint, y, self.out_shape, "y")

    def gram(self, x):
        """``A^T A x``."""
        return self.adjoint(self(x))

    def normest(self, key=None, *, iters: int = 200, rtol: float = 1e-7, dtype=None):
        """``||A^T A||_2`` (= ``||A||_2^2``) by power iteration on ``A^T A``.

        Runs until the Rayleigh quotient changes by less than ``rtol`` (relative) or ``iters``
        iterations. The estimate converges from below; callers checking ``rho > ||A^T A||``
        should keep a small margin.

        Args:
            key: PRNG key of the random start (default ``jax.random.key(0)``).
            iters: maximum iterations; rtol: relative stopping tolerance.
            dtype: dtype of the iteration (default: JAX's default float).

        Returns:
            A scalar array.

        Example:
            >>> op = MatrixOperator(jnp.diag(jnp.array([3.0, 1.0])))
            >>> round(float(op.normest()), 4)
            9.0
        """
        key = jax.random.key(0) if key is None else key
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        v0 = jax.random.normal(key, self.in_shape, dtype)
        return _power_iteration(self, v0, iters, rtol)


@eqx.filter_jit
def _power_iteration(op, v0, iters, rtol):
    v0 = v0 / jnp.linalg.norm(v0)

    def cond(s):
        _, lam, lam_old, k = s
        return (k < iters) & (jnp.abs(lam - lam_old) > rtol * jnp.abs(lam))

    def body(s):
        v, lam, _, k = s
        w = op._adjoint(op._apply(v))
        lam_new = jnp.vdot(v, w)
        return w / jnp.linalg.norm(w), lam_new, lam, k + 1

    one = jnp.asarray(1.0, v0.dtype)
    _, lam, _, _ = jax.lax.while_loop(cond, body, (v0, one, -one, 0))
    return lam


class MatrixOperator(LinearOperator):
    """``A x`` for a dense matrix ``A`` of shape ``(m, n)``: in_shape ``(n,)``, out ``(m,)``.

    Example:
        >>> op = MatrixOperator(jnp.array([[1.0, 2.0]]))
        >>> op(jnp.array([1.0, 1.0])).tolist(), op.adjoint(jnp.array([1.0])).tolist()
        ([3.0], [1.0, 2.0])
    """

    matrix: Array

    def __init__(self, matrix):
        matrix = jnp.asarray(matrix)
        _check_floating("matrix", matrix)
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-dimensional (m, n), got shape {matrix.shape}")
        self.matrix = matrix
        self.out_shape, self.in_shape = (matrix.shape[0],), (matrix.shape[1],)

    def _apply(self, x):
        return self.matrix.astype(x.dtype) @ x

    def _adjoint(self, y):
        return self.matrix.astype(y.dtype).T @ y


def _image_shape(in_shape, name="in_shape"):
    in_shape = _as_shape(in_shape, name)
    if len(in_shape) < 2:
        raise ValueError(f"{name} must end with (height, width), got {in_shape}")
    return in_shape


def _per_channel(fn, v, n_event_tail):
    """Apply ``fn`` (acting on the last ``n_event_tail`` axes) to every leading channel."""
    lead = v.shape[: v.ndim - n_event_tail]
    out = jax.vmap(fn)(v.reshape((-1, *v.shape[v.ndim - n_event_tail :])))
    return out.reshape((*lead, *out.shape[1:]))


def _wrapped_distance(n):
    i = np.arange(n)
    return np.minimum(i, n - i).astype(np.float64)


class GaussianBlur(LinearOperator):
    """Gaussian blur with a **periodic** boundary (circular convolution via the FFT).

    The PSF is ``exp(-(d_i^2 + d_j^2) / (2 sigma^2))`` with ``d`` the wrapped (periodic) pixel
    distance, normalised to sum 1, so constants are preserved and ``||A||_2 = 1``. The adjoint is
    the circular correlation with the same PSF (the PSF is symmetric, so ``A`` is
    self-adjoint); both are exact for the periodic convention.

    Args:
        in_shape: ``(..., height, width)`` of one sample (leading axes are channels).
        sigma: PSF standard deviation in pixels (> 0).

    Example:
        >>> op = GaussianBlur((1, 16, 16), sigma=1.0)
        >>> bool(jnp.allclose(op(jnp.ones((2, 1, 16, 16))), 1.0))
        True
    """

    sigma: float = eqx.field(static=True)

    def __init__(self, in_shape: Sequence[int], sigma: float):
        in_shape = _image_shape(in_shape)
        if not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma must be a positive float (pixels), got {sigma!r}")
        self.in_shape = self.out_shape = in_shape
        self.sigma = float(sigma)

    def transfer_function(self, dtype=None):
        """The real FFT of the PSF, shape ``(H, W // 2 + 1)``."""
        H, W = self.in_shape[-2:]
        di, dj = _wrapped_distance(H), _wrapped_distance(W)
        psf = np.exp(-(di[:, None] ** 2 + dj[None, :] ** 2) / (2 * self.sigma**2))
        psf = psf / psf.sum()
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        return jnp.fft.rfft2(jnp.asarray(psf, dtype))

    def _filter(self, v, conj):
        K = self.transfer_function(v.dtype)
        K = jnp.conj(K) if conj else K
        H, W = self.in_shape[-2:]
        fn = lambda u: jnp.fft.irfft2(jnp.fft.rfft2(u) * K, s=(H, W)).astype(v.dtype)  # noqa: E731
        return _per_channel(fn, v, 2)

    def _apply(self, x):
        return self._filter(x, conj=False)

    def _adjoint(self, y):
        return self._filter(y, conj=True)


class Inpainting(LinearOperator):
    """Multiplication by a 0/1 mask: ``(A x)_i = m_i x_i`` (self-adjoint, ``||A^T A|| = 1``).

    Args:
        mask: array of shape ``in_shape`` (bool or 0/1 floats).

    Use :meth:`random` for a keyed random mask keeping a fraction of the pixels.

    Example:
        >>> op = Inpainting(jnp.array([1.0, 0.0, 1.0]))
        >>> op(jnp.array([1.0, 2.0, 3.0])).tolist()
        [1.0, 0.0, 3.0]
    """

    mask: Array

    def __init__(self, mask):
        mask = jnp.asarray(mask)
        if mask.ndim == 0:
            raise ValueError("mask must have at least one axis")
        if mask.dtype != jnp.bool_:
            mask_np = np.asarray(mask)
            if not np.all((mask_np == 0) | (mask_np == 1)):
                raise ValueError("mask must hold only 0 and 1 (or booleans)")
            mask = mask != 0
        self.mask = mask
        self.in_shape = self.out_shape = tuple(mask.shape)

    @classmethod
    def random(cls, in_shape: Sequence[int], keep: float, *, key) -> "Inpainting":
        """A mask keeping each pixel independently with probability ``keep`` in (0, 1]."""
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        return cls(jax.random.bernoulli(key, keep, _as_shape(in_shape, "in_shape")))

    def _apply(self, x):
        return jnp.where(self.mask, x, jnp.zeros((), x.dtype))

    def _adjoint(self, y):
        return jnp.where(self.mask, y, jnp.zeros((), y.dtype))


class CompressedSensing(LinearOperator):
    """Random-sign circulant compressed sensing ``y = m^{-1/2} S C D x`` (x flattened).

    D = diag(random signs), C = circulant matrix whose first column has random signs (applied
    with the FFT), S keeps ``m`` distinct rows chosen at random; the ``m^{-1/2}`` scaling makes
    ``E ||A x||^2 = ||x||^2``. Keyed: the same key gives the same operator.

    Args:
        in_shape: shape of one signal (flattened to ``n = prod(in_shape)``).
        m: number of measurements, or ``ratio`` (m = round(ratio n)); give exactly one.
        key: PRNG key.

    Example:
        >>> import jax
        >>> op = CompressedSensing((1, 8, 8), ratio=0.25, key=jax.random.key(0))
        >>> op.out_shape
        (16,)

    Reference: Romberg, SIAM J. Imaging Sci. 2 (2009) 1098-1128.
    """

    signs: Array
    kernel: Array
    rows: Array

    def __init__(self, in_shape: Sequence[int], m: int | None = None, *, ratio: float | None = None,
                 key):
        in_shape = _as_shape(in_shape, "in_shape")
        n = int(np.prod(in_shape))
        if (m is None) == (ratio is None):
            raise ValueError("give exactly one of m (number of measurements) or ratio")
        if ratio is not None:
            if not 0 < ratio <= 1:
                raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
            m = max(1, int(round(ratio * n)))
        if not isinstance(m, (int, np.integer)) or not 1 <= m <= n:
            raise ValueError(f"m must be an int in [1, {n}], got {m!r}")
        k1, k2, k3 = jax.random.split(key, 3)
        self.signs = jax.random.rademacher(k1, (n,), jnp.int8)
        self.kernel = jax.random.rademacher(k2, (n,), jnp.int8)
        self.rows = jnp.sort(jax.random.choice(k3, n, (int(m),), replace=False))
        self.in_shape, self.out_shape = in_shape, (int(m),)

    def _apply(self, x):
        n = x.size
        v = x.reshape(-1) * self.signs.astype(x.dtype)
        c = jnp.fft.irfft(jnp.fft.rfft(v) * jnp.fft.rfft(self.kernel.astype(x.dtype)), n=n)
        return (c[self.rows] / jnp.sqrt(jnp.asarray(self.rows.size, x.dtype))).astype(x.dtype)

    def _adjoint(self, y):
        n = int(np.prod(self.in_shape))
        v = jnp.zeros((n,), y.dtype).at[self.rows].set(y)
        c = jnp.fft.irfft(jnp.fft.rfft(v) * jnp.conj(jnp.fft.rfft(self.kernel.astype(y.dtype))), n=n)
        out = c * self.signs.astype(y.dtype) / jnp.sqrt(jnp.asarray(self.rows.size, y.dtype))
        return out.reshape(self.in_shape).astype(y.dtype)


class Radon(LinearOperator):
    """Parallel-beam Radon transform of images on ``[-1, 1]^2``, sampled along each ray.

    Geometry: pixel ``(i, j)`` of an ``H x W`` image (``H == W == n``) has its centre at
    ``(x, y) = (-1 + h (j + 1/2), -1 + h (i + 1/2))``, ``h = 2 / n``, and the image is the
    bilinear interpolant of the pixel values (zero outside). For angle ``theta`` and detector
    offset ``s``, the ray is ``s (cos, sin) + t (-sin, cos)``; its line integral is the
    midpoint sum over ``t`` in ``[-sqrt 2, sqrt 2]`` with step ``h / oversample``. Detector
    offsets are ``n_det`` points spaced ``h`` apart, centred on 0. A disc of radius ``r`` and
    unit density projects to ``2 sqrt(r^2 - s^2)``.

    The adjoint is :func:`jax.linear_transpose` of the same (linear) interpolate-and-sum map,
    so ``<A x, y> = <x, A^T y>`` holds to rounding.

    Args:
        in_shape: ``(..., n, n)``; leading axes are channels.
        angles: projection angles in radians (e.g. ``jnp.linspace(0, pi, 30, endpoint=False)``),
            or an int: that many equispaced angles in ``[0, pi)``.
        n_det: detector bins (default ``ceil(sqrt(2) n)``, enough to cover the square).
        oversample: ray samples per pixel width (default 2).

    Example:
        >>> op = Radon((1, 32, 32), angles=8)
        >>> op.out_shape
        (1, 8, 46)

    Reference: Kak & Slaney (1988), ch. 3.
    """

    angles: Array
    n_det: int = eqx.field(static=True)
    oversample: int = eqx.field(static=True)

    def __init__(self, in_shape: Sequence[int], angles, *, n_det: int | None = None,
                 oversample: int = 2):
        in_shape = _image_shape(in_shape)
        n = in_shape[-1]
        if in_shape[-2] != n:
            raise ValueError(f"Radon needs square images (..., n, n), got {in_shape}")
        if isinstance(angles, (int, np.integer)):
            if angles < 1:
                raise ValueError(f"angles must be >= 1, got {angles}")
            angles = np.linspace(0.0, np.pi, int(angles), endpoint=False)
        angles = np.asarray(angles, np.float64)
        if angles.ndim != 1 or angles.size < 1:
            raise ValueError(f"angles must be a non-empty 1D array, got shape {angles.shape}")
        n_det = int(math.ceil(math.sqrt(2) * n)) if n_det is None else int(n_det)
        if n_det < 1 or oversample < 1:
            raise ValueError(f"n_det and oversample must be >= 1, got {n_det}, {oversample}")
        self.angles = jnp.asarray(angles)
        self.n_det, self.oversample = n_det, int(oversample)
        self.in_shape = in_shape
        self.out_shape = (*in_shape[:-2], angles.size, n_det)

    def _rays(self, dtype):
        n = self.in_shape[-1]
        h = 2.0 / n
        s = (jnp.arange(self.n_det, dtype=dtype) - (self.n_det - 1) / 2) * h
        dt = h / self.oversample
        n_t = int(math.ceil(2 * math.sqrt(2) / dt))
        t = (jnp.arange(n_t, dtype=dtype) - (n_t - 1) / 2) * dt
        th = self.angles.astype(dtype)
        c, sn = jnp.cos(th)[:, None, None], jnp.sin(th)[:, None, None]
        px = s[None, :, None] * c - t[None, None, :] * sn
        py = s[None, :, None] * sn + t[None, None, :] * c
        # fractional pixel indices (pixel centres at integers)
        return (py + 1) / h - 0.5, (px + 1) / h - 0.5, jnp.asarray(dt, dtype)

    def _project(self, img):
        n = img.shape[-1]
        fi, fj, dt = self._rays(img.dtype)
        pad = jnp.pad(img, 1)  # zero outside the square; index k of img is k + 1 in pad
        i0, j0 = jnp.floor(fi), jnp.floor(fj)
        wi, wj = fi - i0, fj - j0
        i0 = jnp.clip(i0.astype(jnp.int32) + 1, 0, n + 1)
        j0 = jnp.clip(j0.astype(jnp.int32) + 1, 0, n + 1)
        i1, j1 = jnp.clip(i0 + 1, 0, n + 1), jnp.clip(j0 + 1, 0, n + 1)
        # rays leaving the padded frame land on its zero border, so they add nothing
        val = ((1 - wi) * (1 - wj) * pad[i0, j0] + (1 - wi) * wj * pad[i0, j1]
               + wi * (1 - wj) * pad[i1, j0] + wi * wj * pad[i1, j1])
        return jnp.sum(val, axis=-1) * dt

    def _apply(self, x):
        return _per_channel(self._project, x, 2)

    def _adjoint(self, y):
        n = self.in_shape[-1]

        def back(sino):
            (out,) = jax.linear_transpose(self._project, jnp.zeros((n, n), sino.dtype))(sino)
            return out

        return _per_channel(back, y, 2)


class HeatObservation(LinearOperator):
    """Initial condition -> solution of the heat equation at time T on a sub-grid.

    ``u_t = kappa Lap u`` on the periodic box ``[0, length)^d`` (d = 1 or 2, ``grid_shape`` points
    per axis, samples at ``x_j = j length / n``); the solution at time ``T`` is exact for the
    grid's trigonometric interpolant: Fourier coefficient k is multiplied by
    ``exp(-kappa |k|^2 T)``. The observation keeps every ``stride``-th grid point per axis.
    The adjoint zero-fills the sub-grid and applies the same (symmetric) Fourier multiplier.

    Args:
        grid_shape: ``(n,)`` or ``(n1, n2)`` (the last 1 or 2 axes of a sample; leading axes are
            channels, e.g. ``(1, 64, 64)`` with ``ndim=2``).
        time: T > 0; kappa: diffusivity > 0 (default 1); length: period (default 1).
        stride: observe every ``stride``-th point along each spatial axis (default 1).
        ndim: number of spatial axes (1 or 2, default ``min(2, len(grid_shape))``).

    Example:
        >>> op = HeatObservation((32,), time=1e-3, stride=2)
        >>> op.out_shape
        (16,)
    """

    time: float = eqx.field(static=True)
    kappa: float = eqx.field(static=True)
    length: float = eqx.field(static=True)
    stride: int = eqx.field(static=True)
    ndim: int = eqx.field(static=True)

    def __init__(self, grid_shape: Sequence[int], *, time: float, kappa: float = 1.0,
                 length: float = 1.0, stride: int = 1, ndim: int | None = None):
        grid_shape = _as_shape(grid_shape, "grid_shape")
        ndim = min(2, len(grid_shape)) if ndim is None else ndim
        if ndim not in (1, 2) or ndim > len(grid_shape):
            raise ValueError(f"ndim must be 1 or 2 and <= len(grid_shape), got {ndim}")
        for name, v in (("time", time), ("kappa", kappa), ("length", length)):
            if not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a positive float, got {v!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        self.time, self.kappa, self.length = float(time), float(kappa), float(length)
        self.stride, self.ndim = stride, ndim
        self.in_shape = grid_shape
        lead, space = grid_shape[: len(grid_shape) - ndim], grid_shape[len(grid_shape) - ndim :]
        self.out_shape = (*lead, *(-(-s // stride) for s in space))

    def multiplier(self, dtype=None, time: float | None = None):
        """``exp(-kappa |k|^2 t)`` on the rfft grid of the spatial axes (``t`` = T by default)."""
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        t = self.time if time is None else float(time)
        space = self.in_shape[len(self.in_shape) - self.ndim :]
        ks = rfftn_wavenumbers(space, self.length)
        k2 = sum(np.meshgrid(*[k**2 for k in ks], indexing="ij"))
        return jnp.asarray(np.exp(-self.kappa * k2 * t), dtype)

    def solve(self, u0, time: float | None = None):
        """The full solution field at ``time`` (default T, must be >= 0) for ``u0`` of shape
        ``(*batch, *grid_shape)`` (no sub-sampling)."""
        t = self.time if time is None else float(time)
        if not t >= 0:
            raise ValueError(f"time must be >= 0, got {time!r}")
        return self._batched(lambda u: self._evolve(u, t), u0, self.in_shape, "u0")

    def _evolve(self, u, time=None):
        M = self.multiplier(u.dtype, time)
        M = M.reshape((1,) * (u.ndim - self.ndim) + M.shape)
        axes = tuple(range(-self.ndim, 0))
        space = u.shape[u.ndim - self.ndim :]
        return jnp.fft.irfftn(jnp.fft.rfftn(u, axes=axes) * M, s=space, axes=axes).astype(u.dtype)

    def _sub(self):
        lead = len(self.in_shape) - self.ndim
        return (slice(None),) * lead + (slice(None, None, self.stride),) * self.ndim

    def _apply(self, x):
        return self._evolve(x)[self._sub()]

    def _adjoint(self, y):
        full = jnp.zeros(self.in_shape, y.dtype).at[self._sub()].set(y)
        return self._evolve(full)


def measure(op: LinearOperator, x, noise_std: float, *, key):
    """Noisy measurements ``A x + noise_std * e``, ``e ~ N(0, I)`` (keyed).

    Example:
        >>> import jax
        >>> op = GaussianBlur((8, 8), sigma=1.0)
        >>> measure(op, jnp.zeros((8, 8)), 0.0, key=jax.random.key(0)).shape
        (8, 8)
    """
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
    Ax = op(x)
    return Ax + noise_std * jax.random.normal(key, Ax.shape, Ax.dtype)


def dot_product_test(op: LinearOperator, key, *, batch: tuple[int, ...] = (), dtype=None):
    """``(<A x, y>, <x, A^T y>)`` for random Gaussian ``x``, ``y``: equal iff the adjoint is
    exact (up to rounding). Useful for checking user-defined operators. Compiled (one
    compilation per operator structure and shape)."""
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    return _dot_product_test(op, key, tuple(batch), dtype)


@eqx.filter_jit
def _dot_product_test(op, key, batch, dtype):
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (*batch, *op.in_shape), dtype)
    y = jax.random.normal(ky, (*batch, *op.out_shape), dtype)
    return jnp.vdot(op(x), y), jnp.vdot(x, op.adjoint(y))
