"""Input-convex neural networks (ICNNs): scalar potentials psi(x) convex in their input.

Potentials, each an :class:`equinox.Module` evaluated on ONE sample (no batch axis) and
returning a scalar; the first three share one core, :class:`AbstractICNN` (parameters,
initialisation, hidden path):

- :class:`DenseICNN` for vectors ``x`` of shape ``(in_size,)``;
- :class:`ConvICNN` for images of one fixed shape ``(channels, height, width)``: strided
  convolutions with non-negative kernels on the hidden path and linear skip convolutions from
  the input (down-sampled by the same total stride);
- :class:`FullyConvICNN` for images of ANY height and width: a spatial sum of local convex
  potentials (stride 1, ``SAME`` padding), so its gradient is an exact proximal operator for
  every image size;
- :class:`QuadraticICNN`: a :class:`FullyConvICNN` plus a learned convex quadratic
  ``1/2 ||conv(x, Q)||^2``, so that the potential can start at ``1/2 ||x||^2`` (prox = identity).

:func:`center_icnn_biases` is a data-dependent initialisation of the biases.

Structure (Amos, Xu & Kolter 2017, "Input convex neural networks"; Fang, Buchanan & Sulam 2024,
"What's in a prior? Learned proximal networks for inverse problems", arXiv:2310.14344)::

    z_1     = act(W_0 x + b_0)
    z_{k+1} = act(W_k z_k + A_k x + b_k)        W_k >= 0 elementwise (k >= 1)
    psi(x)  = w_out . z_L + a . x + c + (alpha / 2) ||x||^2          w_out >= 0

with ``act(t) = softplus(beta t) / beta`` (convex, non-decreasing; ``beta`` is the sharpness).
Convention: the strong-convexity term is ``(alpha / 2) ||x||^2``, so ``grad psi - alpha x`` is
monotone and ``grad psi`` is invertible with ``||(grad psi)^{-1}||_Lip <= 1 / alpha`` when
``alpha > 0``.

Non-negativity of the hidden-path weights is kept in one of two ways (``nonnegativity=``):

- ``"project"`` (as published): the stored weights are used as they are and an optimiser built
  with :func:`icnn_optimizer` clips them at zero after every step (``optax.keep_params_nonnegative``
  on the constrained leaves). :func:`project_nonnegative` does the same to a model by hand.
- ``"softplus"``: the stored weights are free parameters ``v`` and the network uses
  ``softplus(v)``, so no weight ever dies at zero.

Both start from the same effective weights for a given ``key``. Which trains better is measured
by ``examples/prox_laplace_1d.py`` (see ``docs/prox.md``); the default is the winner.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = [
    "AbstractICNN",
    "DenseICNN",
    "ConvICNN",
    "FullyConvICNN",
    "QuadraticICNN",
    "center_icnn_biases",
    "scaled_softplus",
    "nonnegative_mask",
    "project_nonnegative",
    "icnn_optimizer",
]

_MODES = ("project", "softplus")
DEFAULT_NONNEGATIVITY = "softplus"


def scaled_softplus(t, beta: float):
    """``softplus(beta t) / beta``: convex, non-decreasing, -> relu(t) as beta -> infinity."""
    return jax.nn.softplus(beta * t) / beta


def _inv_softplus(w):
    # log(expm1(w)) written to stay finite for small w > 0
    return w + jnp.log(-jnp.expm1(-w))


def _check_common(beta, alpha, nonnegativity):
    if not isinstance(beta, (int, float)) or not beta > 0:
        raise ValueError(f"beta must be a positive float (softplus sharpness), got {beta!r}")
    if not isinstance(alpha, (int, float)) or not alpha >= 0:
        raise ValueError(
            f"alpha must be a non-negative float (strong convexity, term alpha/2 ||x||^2), "
            f"got {alpha!r}"
        )
    if nonnegativity not in _MODES:
        raise ValueError(f"unknown nonnegativity {nonnegativity!r}; expected one of {list(_MODES)}")


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _positive_init(key, shape, fan_in, dtype, mode):
    # Effective non-negative weights with mean 1/fan_in, so W z keeps the scale of z.
    w = jax.random.uniform(key, shape, dtype, 0.0, 2.0 / fan_in)
    w = jnp.maximum(w, 1e-3 / fan_in)  # strictly positive so the softplus inverse is finite
    return _inv_softplus(w) if mode == "softplus" else w


def _effective(w, mode):
    return jax.nn.softplus(w) if mode == "softplus" else w


def _conv(x, w, stride):
    """x: (C, H, W) one sample; w: (O, C, k, k); SAME padding (zero padding is linear, so
    convexity and non-negativity arguments are unaffected)."""
    y = jax.lax.conv_general_dilated(
        x[None], w, window_strides=(stride, stride), padding="SAME",
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )
    return y[0]


def _check_widths(widths, name):
    widths = tuple(int(h) for h in widths)
    if len(widths) < 1 or min(widths) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {widths}")
    return widths


def _check_kernel_size(kernel_size):
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")


def _check_image_shape(shape, channels, name, fixed_hw=None, cls="ConvICNN"):
    shape = tuple(shape)
    if len(shape) != 3 or shape[0] != channels:
        raise ValueError(
            f"{name} must have trailing shape (channels={channels}, height, width) for this "
            f"{cls}, got {shape}"
        )
    if fixed_hw is not None and shape[1:] != tuple(fixed_hw):
        raise ValueError(
            f"{name} must have image shape {(channels, *fixed_hw)} for this {cls} (it was "
            f"built for that size; use FullyConvICNN for any size), got {shape}"
        )


class AbstractICNN(eqx.Module):
    """The core shared by every ICNN: parameters, initialisation and the hidden path.

    Parameters (pytree leaves, in this order; a subclass may append more): ``W0``, ``b0`` (first
    layer), ``Wz`` (hidden-path weights, kept non-negative), ``Ax`` (skip weights from the
    input), ``bz`` (biases), ``w_out`` (non-negative read-out), ``a_out`` (linear read-out).
    ``W0``, ``Wz`` and ``Ax`` are matrices for vectors and ``(out, in, k, k)`` kernels for images;
    a subclass says how a weight acts (:meth:`_linear`), reads out ``z_L`` (``__call__``) and
    checks its input shape. :meth:`hidden` computes ``z_L``; :meth:`pre_activation` one layer's
    input to ``act`` before its bias (used by :func:`center_icnn_biases`).

    Subclasses: :class:`DenseICNN`, :class:`ConvICNN`, :class:`FullyConvICNN`.
    """

    W0: Array
    b0: Array
    Wz: tuple[Array, ...]
    Ax: tuple[Array, ...]
    bz: tuple[Array, ...]
    w_out: Array
    a_out: Array
    beta: float = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    nonnegativity: str = eqx.field(static=True)

    def __init__(self, key, in_channels, widths, kernel, *, random_bias, readout_size,
                 linear_shape, beta, alpha, nonnegativity, dtype):
        """Initialise the parameters; ``kernel(out, in)`` is a weight's shape, ``random_bias``
        draws the biases (else zeros of shape ``(width, 1, 1)``), ``readout_size`` is the
        length of ``w_out`` and ``linear_shape`` the shape of ``a_out``."""
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        keys = jax.random.split(key, 3 * len(widths) + 3)
        bound = 1.0 / math.prod(kernel(1, in_channels)[1:]) ** 0.5  # 1 / sqrt(fan-in from x)

        def bias(k, width):
            if random_bias:
                return _uniform(k, (width,), bound, dtype)
            return jnp.zeros((width, 1, 1), dtype)

        self.W0 = _uniform(keys[0], kernel(widths[0], in_channels), bound, dtype)
        self.b0 = bias(keys[1], widths[0])
        Wz, Ax, bz = [], [], []
        for i in range(1, len(widths)):
            kw, ka, kb = keys[3 * i : 3 * i + 3]
            shape = kernel(widths[i], widths[i - 1])
            Wz.append(_positive_init(kw, shape, math.prod(shape[1:]), dtype, nonnegativity))
            Ax.append(_uniform(ka, kernel(widths[i], in_channels), bound, dtype))
            bz.append(bias(kb, widths[i]))
        self.Wz, self.Ax, self.bz = tuple(Wz), tuple(Ax), tuple(bz)
        self.w_out = _positive_init(keys[-3], (readout_size,), readout_size, dtype, nonnegativity)
        self.a_out = _uniform(keys[-2], linear_shape, 1.0 / math.prod(linear_shape) ** 0.5, dtype)
        self.beta = float(beta)
        self.alpha = float(alpha)
        self.nonnegativity = nonnegativity

    @abc.abstractmethod
    def _linear(self, w, v, stride: int):
        """``w`` applied to ``v`` (a matrix product or a convolution with this stride)."""

    def _strides(self) -> tuple[int, ...]:
        return (1,) * (len(self.Wz) + 1)

    @property
    @abc.abstractmethod
    def event_ndim(self) -> int:
        """Number of axes of one sample."""

    @abc.abstractmethod
    def check_event_shape(self, shape: tuple[int, ...], name: str = "x") -> None:
        """Raise ``ValueError`` unless ``shape`` is a valid single-sample shape."""

    @abc.abstractmethod
    def __call__(self, x) -> Float[Array, ""]:
        """The scalar potential ``psi(x)`` of one sample."""

    def _constrained(self):
        return (self.Wz, self.w_out)

    def _quadratic(self, x):
        return 0.5 * self.alpha * jnp.vdot(x, x)

    def pre_activation(self, layer: int, z, x):
        """Layer ``layer``'s pre-activation without its bias: ``W_0 x`` for the first layer,
        ``W_k z + A_k x`` (``W_k`` effective, so non-negative) after it; ``z`` is the previous
        layer's output (ignored for ``layer == 0``), ``x`` one sample."""
        strides = self._strides()
        if layer == 0:
            return self._linear(self.W0, x, strides[0])
        W = _effective(self.Wz[layer - 1], self.nonnegativity)
        total = math.prod(strides[: layer + 1])  # the skip from x down-samples by all strides
        return self._linear(W, z, strides[layer]) + self._linear(self.Ax[layer - 1], x, total)

    def hidden(self, x):
        """The last hidden layer ``z_L`` for one sample ``x``."""
        z = None
        for layer, b in enumerate((self.b0, *self.bz)):
            z = scaled_softplus(self.pre_activation(layer, z, x) + b, self.beta)
        return z


class DenseICNN(AbstractICNN):
    """Dense input-convex potential ``psi: R^n -> R`` (one sample, no batch axis).

    Args:
        in_size: input dimension n.
        hidden: widths of the hidden layers, e.g. ``(50, 50, 50, 50)``.
        key: PRNG key for the initialisation.
        beta: softplus sharpness (10 for small models, 100 for images in the LPN paper).
        alpha: strong convexity; adds ``(alpha / 2) ||x||^2``. Must be >= 0.
        nonnegativity: ``"softplus"`` (reparameterised) or ``"project"`` (clip after each
            optimiser step, as published).
        dtype: parameter dtype (default: JAX's default float).

    Returns the scalar ``psi(x)`` when called on ``x`` of shape ``(in_size,)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> psi = DenseICNN(2, (16, 16), key=jax.random.key(0), beta=10.0, alpha=0.1)
        >>> float(psi(jnp.zeros(2))) == float(psi(jnp.zeros(2)))
        True

    Reference: Amos et al. 2017 (ICNN); Fang, Buchanan & Sulam, ICLR 2024 (LPN).
    """

    c_out: Array
    in_size: int = eqx.field(static=True)

    def __init__(self, in_size: int, hidden: Sequence[int], *, key: PRNGKeyArray,
                 beta: float = 10.0, alpha: float = 0.0,
                 nonnegativity: str = DEFAULT_NONNEGATIVITY, dtype=None):
        _check_common(beta, alpha, nonnegativity)
        if not isinstance(in_size, int) or in_size < 1:
            raise ValueError(f"in_size must be a positive int, got {in_size!r}")
        hidden = _check_widths(hidden, "hidden")
        super().__init__(key, in_size, hidden, lambda o, i: (o, i), random_bias=True,
                         readout_size=hidden[-1], linear_shape=(in_size,), beta=beta,
                         alpha=alpha, nonnegativity=nonnegativity, dtype=dtype)
        self.c_out = jnp.zeros((), self.W0.dtype)
        self.in_size = in_size

    def _linear(self, w, v, stride):
        return w @ v

    @property
    def event_ndim(self) -> int:
        return 1

    def check_event_shape(self, shape, name="x"):
        if tuple(shape) != (self.in_size,):
            raise ValueError(
                f"{name} must have trailing shape ({self.in_size},) for this DenseICNN, "
                f"got {tuple(shape)}"
            )

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        self.check_event_shape(jnp.shape(x))
        z = self.hidden(x)
        out = _effective(self.w_out, self.nonnegativity) @ z + self.a_out @ x + self.c_out
        return out + self._quadratic(x)


class _ConvCore(AbstractICNN):
    """Convolutional layers: ``W0``, ``Wz``, ``Ax`` are ``(out, in, k, k)`` kernels."""

    @property
    def K0(self) -> Array:
        """The first-layer kernel (the same array as ``W0``)."""
        return self.W0

    def _linear(self, w, v, stride):
        return _conv(v, w, stride)

    @property
    def event_ndim(self) -> int:
        return 3


class ConvICNN(_ConvCore):
    """Convolutional input-convex potential for images of one fixed shape ``(C, H, W)``.

    Hidden path: ``z_1 = act(conv(x, K_0, s_0))``, ``z_{k+1} = act(conv(z_k, W_k, s_k) +
    conv(x, A_k, s_0 ... s_k) + b_k)`` with ``W_k >= 0``; the skip convolution from the input
    uses the total stride so far (a linear down-sampling of x). Output: a non-negative dense
    read-out of ``z_L`` plus a linear term and ``(alpha / 2) ||x||^2``.

    Args:
        image_shape: ``(channels, height, width)`` of one sample.
        channels: hidden channels per layer, e.g. ``(32, 32, 64)``.
        strides: stride per layer (same length as ``channels``), e.g. ``(1, 2, 2)``.
        key, beta, alpha, nonnegativity, dtype: as in :class:`DenseICNN`.
        kernel_size: odd convolution kernel size (default 3).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> psi = ConvICNN((1, 8, 8), (4, 4), (1, 2), key=jax.random.key(0))
        >>> psi(jnp.zeros((1, 8, 8))).shape
        ()

    Reference: Fang, Buchanan & Sulam, ICLR 2024 (LPN), convolutional variant.
    """

    c_out: Array
    image_shape: tuple[int, int, int] = eqx.field(static=True)
    strides: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int],
                 strides: Sequence[int], *, key: PRNGKeyArray, beta: float = 100.0,
                 alpha: float = 0.0, nonnegativity: str = DEFAULT_NONNEGATIVITY,
                 kernel_size: int = 3, dtype=None):
        _check_common(beta, alpha, nonnegativity)
        image_shape = tuple(int(s) for s in image_shape)
        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape}")
        if len(channels) < 1 or len(channels) != len(strides):
            raise ValueError(
                f"channels and strides must be non-empty and of equal length, got {channels} "
                f"and {strides}"
            )
        _check_widths(channels, "channels")
        _check_kernel_size(kernel_size)
        k = kernel_size
        h, w = image_shape[1:]
        for s in strides:
            h, w = -(-h // s), -(-w // s)
        super().__init__(key, image_shape[0], channels, lambda o, i: (o, i, k, k),
                         random_bias=False, readout_size=channels[-1] * h * w,
                         linear_shape=image_shape, beta=beta, alpha=alpha,
                         nonnegativity=nonnegativity, dtype=dtype)
        self.c_out = jnp.zeros((), self.W0.dtype)
        self.image_shape = image_shape
        self.strides = strides

    def _strides(self):
        return self.strides

    def check_event_shape(self, shape, name="x"):
        _check_image_shape(shape, self.image_shape[0], name, self.image_shape[1:], "ConvICNN")

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, ""]:
        self.check_event_shape(jnp.shape(x))
        z = self.hidden(x)
        out = jnp.vdot(_effective(self.w_out, self.nonnegativity), z.reshape(-1))
        out = out + jnp.vdot(self.a_out, x) + self.c_out
        return out + self._quadratic(x)


class FullyConvICNN(_ConvCore):
    """Fully convolutional input-convex potential for images of any height and width.

    ``psi(x) = sum_p phi(x restricted to a window around pixel p) + (alpha / 2) ||x||^2``: every
    layer is a stride-1 ``SAME`` convolution (non-negative kernels on the hidden path, linear
    skip convolutions from x), the last one a non-negative 1x1 read-out to one channel, summed
    over pixels. A spatial *sum* (the mean times the pixel count) is used rather than the mean so
    that ``grad psi`` at a pixel does not shrink with the image size: the learned prox of an
    image is the same operator whatever the image's size, and it is exact for every size
    (unlike the published patch averaging, which is not the gradient of any potential).

    Args:
        channels: number of image channels.
        hidden: hidden channels per layer, e.g. ``(32, 32, 32)``.
        key, beta, alpha, nonnegativity, kernel_size, dtype: as in :class:`ConvICNN`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> psi = FullyConvICNN(1, (4, 4), key=jax.random.key(0))
        >>> psi(jnp.zeros((1, 5, 7))).shape, psi(jnp.zeros((1, 9, 3))).shape
        ((), ())

    Reference: Fang, Buchanan & Sulam, ICLR 2024 (LPN); our fully convolutional variant.
    """

    channels: int = eqx.field(static=True)

    def __init__(self, channels: int, hidden: Sequence[int], *, key: PRNGKeyArray,
                 beta: float = 100.0, alpha: float = 0.0,
                 nonnegativity: str = DEFAULT_NONNEGATIVITY, kernel_size: int = 3, dtype=None):
        _check_common(beta, alpha, nonnegativity)
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        hidden = _check_widths(hidden, "hidden")
        _check_kernel_size(kernel_size)
        k = kernel_size
        super().__init__(key, channels, hidden, lambda o, i: (o, i, k, k), random_bias=False,
                         readout_size=hidden[-1], linear_shape=(channels,), beta=beta,
                         alpha=alpha, nonnegativity=nonnegativity, dtype=dtype)
        self.channels = channels

    def check_event_shape(self, shape, name="x"):
        _check_image_shape(shape, self.channels, name, None, "FullyConvICNN")

    def local_potentials(self, x: Float[Array, "c h w"]) -> Float[Array, "h w"]:
        """The per-pixel convex potentials phi_p(x) whose sum (plus the quadratic) is psi."""
        self.check_event_shape(jnp.shape(x))
        z = self.hidden(x)
        w = _effective(self.w_out, self.nonnegativity)
        return jnp.tensordot(w, z, axes=1) + jnp.tensordot(self.a_out, x, axes=1)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, ""]:
        return jnp.sum(self.local_potentials(x)) + self._quadratic(x)


class QuadraticICNN(eqx.Module):
    """``psi(x) = icnn(x) + 1/2 ||conv(x, Q)||^2`` for images ``(C, H, W)`` of any size.

    ``conv(x, Q)`` is a multi-channel stride-1 ``SAME`` convolution, so the quadratic is convex
    for ANY kernel ``Q``, and ``grad psi = grad icnn + Q^T Q x`` is the gradient of an
    ``alpha``-strongly convex potential: its gradient is still an exact proximal operator.
    :func:`pdeml.inverse.near_identity_lpn` builds one whose prox starts near the identity.

    Args:
        icnn: a :class:`FullyConvICNN` (its ``alpha`` is the strong convexity of the whole
            potential, since the quadratic is only positive semi-definite).
        Q: ``(m, C, k, k)`` convolution kernel (free, any sign), ``k`` odd.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> icnn = FullyConvICNN(1, (4,), key=jax.random.key(0), alpha=0.1)
        >>> psi = QuadraticICNN(icnn, jnp.ones((2, 1, 3, 3)))
        >>> x = jnp.ones((1, 5, 5))
        >>> bool(psi(x) > icnn(x))
        True
    """

    icnn: FullyConvICNN
    Q: Array

    def __init__(self, icnn: FullyConvICNN, Q):
        if not isinstance(icnn, FullyConvICNN):
            raise TypeError(f"icnn must be a FullyConvICNN, got {type(icnn).__name__}")
        Q = jnp.asarray(Q)
        if Q.ndim != 4 or Q.shape[1] != icnn.channels or Q.shape[2] != Q.shape[3] or Q.shape[2] % 2 == 0:
            raise ValueError(
                f"Q must have shape (m, channels={icnn.channels}, k, k) with k odd, got {Q.shape}"
            )
        self.icnn = icnn
        self.Q = Q

    # The LPN protocol (event_ndim, check_event_shape, alpha) and the optimiser wrapper's
    # (nonnegativity, _constrained) go to the ICNN: with "project" weights, icnn_optimizer must
    # find the constrained leaves through this wrapper, or it would train a non-convex potential.
    alpha = property(lambda self: self.icnn.alpha)
    channels = property(lambda self: self.icnn.channels)
    nonnegativity = property(lambda self: self.icnn.nonnegativity)
    event_ndim = property(lambda self: self.icnn.event_ndim)

    def _constrained(self):
        return self.icnn._constrained()

    def check_event_shape(self, shape, name="x"):
        self.icnn.check_event_shape(shape, name)

    def __call__(self, x: Float[Array, "c h w"]) -> Float[Array, ""]:
        q = _conv(x, self.Q.astype(x.dtype), 1)
        return self.icnn(x) + 0.5 * jnp.vdot(q, q)


def center_icnn_biases(icnn: AbstractICNN, x, quantile: float = 0.5) -> AbstractICNN:
    """Data-dependent initialisation: shift every hidden unit's bias so that its
    pre-activation has its ``quantile`` at 0 on the samples ``x`` ``(n, *event)``, layer by
    layer (a unit of a convolutional layer is a channel, over all samples and pixels).

    A bias is a free parameter of an ICNN, so the potential stays convex. Why: with
    non-negative hidden-path weights acting on non-negative activations, pre-activations of deep
    layers are all positive at a random start, every softplus is in its linear regime and the
    potential is nearly quadratic (its gradient nearly linear); centring puts the kinks where
    the data are (measured in :func:`pdeml.inverse.near_identity_lpn`'s docstring).

    Args:
        icnn: a :class:`DenseICNN`, :class:`ConvICNN` or :class:`FullyConvICNN`.
        x: a batch of samples, ``(n, *event)``.
        quantile: in (0, 1); 0.5 makes every unit active on half of ``x``.

    Returns:
        ``icnn`` with new biases ``b0`` and ``bz``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> icnn = DenseICNN(2, (8, 8), key=jax.random.key(0))
        >>> x = jax.random.normal(jax.random.key(1), (64, 2))
        >>> c = center_icnn_biases(icnn, x)
        >>> pre = jax.vmap(lambda v: c.pre_activation(0, None, v) + c.b0)(x)
        >>> bool(jnp.all(jnp.mean(pre > 0, axis=0) == 0.5))
        True
    """
    if not isinstance(icnn, AbstractICNN):
        raise TypeError(
            f"icnn must be a DenseICNN, ConvICNN or FullyConvICNN, got {type(icnn).__name__}"
        )
    x = jnp.asarray(x)
    if x.ndim != icnn.event_ndim + 1:
        raise ValueError(f"x must have shape (n, *event) with {icnn.event_ndim} event axes, "
                         f"got {x.shape}")
    icnn.check_event_shape(x.shape[1:], "x[i]")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    biases, z = [], None
    for layer, b_old in enumerate((icnn.b0, *icnn.bz)):
        pre = jax.vmap(lambda zz, v, k=layer: icnn.pre_activation(k, zz, v))(z, x)
        axes = (0, *range(2, pre.ndim))  # all but the unit (channel) axis
        b = -jnp.quantile(pre, quantile, axis=axes).reshape(b_old.shape)
        biases.append(b.astype(b_old.dtype))
        z = scaled_softplus(pre + b[None], icnn.beta)
    icnn = eqx.tree_at(lambda m: m.b0, icnn, biases[0])
    return eqx.tree_at(lambda m: m.bz, icnn, tuple(biases[1:]))


def _mask_like(tree, model):
    """Boolean tree shaped like ``tree`` (a model or its filtered parameters): True on the
    leaves that must stay non-negative under ``"project"``."""
    mask = jax.tree.map(lambda _: False, tree)
    if getattr(model, "nonnegativity", None) != "project":
        return mask
    return eqx.tree_at(
        lambda m: jax.tree.leaves(m._constrained()),
        mask,
        replace_fn=lambda _: True,
    )


def nonnegative_mask(model) -> Callable:
    """A mask function for :func:`optax.masked`: True on ``model``'s constrained weights.

    Works on the parameter tree the optimiser sees (the model itself, or
    ``eqx.filter(model, eqx.is_inexact_array)``). All False for ``"softplus"`` models, which
    need no projection. ``model`` may be an ICNN or anything with a ``.potential`` ICNN (an LPN).
    """
    icnn = getattr(model, "potential", model)
    if hasattr(model, "potential"):
        def fn(params):
            mask = jax.tree.map(lambda _: False, params)
            inner = _mask_like(params.potential, icnn)
            return eqx.tree_at(lambda m: m.potential, mask, inner)
        return fn
    return lambda params: _mask_like(params, icnn)


def icnn_optimizer(optimizer: optax.GradientTransformation, model) -> optax.GradientTransformation:
    """Wrap ``optimizer`` so that a ``"project"``-mode ICNN keeps its hidden-path weights >= 0.

    After the wrapped update, every constrained weight is clipped to stay >= 0 (exactly the
    published projection after each step); free weights are untouched. For ``"softplus"`` mode
    the optimiser is returned unchanged.

    Example:
        >>> import jax, optax
        >>> psi = DenseICNN(1, (8, 8), key=jax.random.key(0), nonnegativity="project")
        >>> opt = icnn_optimizer(optax.adam(1e-3), psi)
    """
    icnn = getattr(model, "potential", model)
    if getattr(icnn, "nonnegativity", None) != "project":
        return optimizer
    return optax.chain(optimizer, optax.masked(optax.keep_params_nonnegative(), nonnegative_mask(model)))


def project_nonnegative(model):
    """Return ``model`` with its constrained weights clipped at zero (``"project"`` mode; a
    no-op for ``"softplus"``). Accepts an ICNN or anything with a ``.potential`` ICNN."""
    if hasattr(model, "potential"):
        return eqx.tree_at(lambda m: m.potential, model, project_nonnegative(model.potential))
    if model.nonnegativity != "project":
        return model
    return eqx.tree_at(
        lambda m: jax.tree.leaves(m._constrained()),
        model,
        replace_fn=lambda w: jnp.maximum(w, 0),
    )
