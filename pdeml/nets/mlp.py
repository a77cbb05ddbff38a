"""Channels-last building blocks: a pointwise linear map and a multilayer perceptron.

Both act on the *last* axis and broadcast over all leading axes, so the same module maps a
vector ``(in,)``, a batch ``(batch, in)`` or a whole grid of features ``(nx, nt, in)`` without
``vmap``. They are the lifting, skip and projection maps of the FNO and the plain MLP used by
the soft-constraint baseline and Deep Ritz.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["MLP", "PointwiseLinear", "gelu"]


def gelu(x):
    """Exact (erf) GELU, as in the FNO paper's PyTorch code (``torch.nn.functional.gelu``)."""
    return jax.nn.gelu(x, approximate=False)


def _float_dtype(dtype):
    if dtype is None:
        return jnp.zeros(()).dtype  # float64 when x64 is enabled, else float32
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a real floating dtype, got {dtype}")
    return dtype


_INITS = ("uniform", "glorot_normal")


def _check_init(init):
    if init not in _INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {list(_INITS)}")


def _check_size(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class PointwiseLinear(eqx.Module):
    """``y = x @ weight + bias`` over the last (channel) axis.

    Initialised like ``torch.nn.Linear`` (``init="uniform"``, the default): entries uniform in
    ``+-1/sqrt(in_channels)``. ``init="glorot_normal"``: weights normal with variance
    ``2 / (in_channels + out_channels)`` (drawn from ``key`` in the ``(out, in)`` layout of
    ``torch.nn.Linear`` and stored transposed), zero bias.

    Arguments:
        in_channels, out_channels: channel counts.
        use_bias: add a bias.
        init: ``"uniform"`` or ``"glorot_normal"``.
        key: PRNG key.
        dtype: parameter dtype (default: JAX's default float).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> lin = PointwiseLinear(3, 5, key=jax.random.key(0))
        >>> lin(jnp.ones((10, 7, 3))).shape
        (10, 7, 5)
    """

    weight: Float[Array, "in out"]
    bias: Float[Array, " out"] | None
    in_channels: int = eqx.field(static=True)
    out_channels: int = eqx.field(static=True)

    def __init__(self, in_channels: int, out_channels: int, *, use_bias: bool = True,
                 init: str = "uniform", key: PRNGKeyArray, dtype=None):
        _check_size("in_channels", in_channels)
        _check_size("out_channels", out_channels)
        _check_init(init)
        dtype = _float_dtype(dtype)
        kw, kb = jax.random.split(key)
        shape = (in_channels, out_channels)
        if init == "uniform":
            lim = 1.0 / math.sqrt(in_channels)
            self.weight = jax.random.uniform(kw, shape, dtype, -lim, lim)
            self.bias = jax.random.uniform(kb, (out_channels,), dtype, -lim, lim) if use_bias else None
        else:
            # drawn in the (out, in) layout of torch / eqx.nn.Linear from the layer's key, so a
            # network built that way with the same keys starts from the same weights
            std = math.sqrt(2.0 / (in_channels + out_channels))
            self.weight = std * jax.random.normal(key, shape[::-1], dtype).T
            self.bias = jnp.zeros((out_channels,), dtype) if use_bias else None
        self.in_channels = in_channels
        self.out_channels = out_channels

    def __call__(self, x: Float[Array, "*grid in"]) -> Float[Array, "*grid out"]:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels on its last axis, got shape {jnp.shape(x)}"
            )
        y = x @ self.weight
        if self.bias is not None:
            y = y + jnp.broadcast_to(self.bias, y.shape)
        return y


class MLP(eqx.Module):
    """Multilayer perceptron over the last axis: ``depth`` hidden layers of ``width`` units.

    ``y = L_out(act(L_depth(... act(L_1(x)))))`` followed by ``final_activation``.

    Arguments:
        in_size, out_size: input and output channels.
        width: hidden width.
        depth: number of hidden layers (``0`` gives a single linear map).
        activation: hidden nonlinearity (default exact GELU); stored as a static field, so pass
            a module-level function (not a fresh ``lambda``/``partial``) to share compilations.
        final_activation: applied to the output (default identity).
        init: parameter initialisation of every layer, ``"uniform"`` (``torch.nn.Linear``'s,
            the default) or ``"glorot_normal"`` (zero biases), see :class:`PointwiseLinear`.
        key: PRNG key.
        dtype: parameter dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mlp = MLP(2, 1, width=16, depth=2, key=jax.random.key(0))
        >>> mlp(jnp.ones((100, 2))).shape
        (100, 1)
        >>> tanh_net = MLP(4, 1, width=8, depth=2, activation=jnp.tanh, init="glorot_normal",
        ...                key=jax.random.key(0))
        >>> tanh_net(jnp.zeros(4)).shape
        (1,)
    """

    layers: tuple[PointwiseLinear, ...]
    activation: Callable = eqx.field(static=True)
    final_activation: Callable | None = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, *, width: int, depth: int,
                 activation: Callable = gelu, final_activation: Callable | None = None,
                 init: str = "uniform", key: PRNGKeyArray, dtype=None):
        _check_size("width", width)
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer, got {depth!r}")
        sizes = [in_size] + [width] * depth + [out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            PointwiseLinear(a, b, init=init, key=k, dtype=dtype) for a, b, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.final_activation = final_activation

    def __call__(self, x: Float[Array, "*batch in"]) -> Float[Array, "*batch out"]:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        x = self.layers[-1](x)
        return x if self.final_activation is None else self.final_activation(x)
