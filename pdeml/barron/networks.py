"""Shallow (two-layer) networks on the torus [0, 1)^d used as Barron approximators.

- :class:`CosineNetwork`: ``u(x) = sum_j c_j cos(2 pi k_j . x + b_j)``. With integer
  frequencies ``k_j`` it is exactly periodic and its spectral Barron norm is known in closed
  form (:func:`pdeml.barron.cosine_network_barron_norm`).
- :class:`PeriodicShallowNetwork`: ``u(x) = sum_j a_j sigma(w_j . phi(x) + b_j)`` with the
  periodic embedding ``phi(x) = (cos 2 pi x, sin 2 pi x)`` and ``sigma`` = tanh or ReLU^k;
  only path-norm upper bounds of its Barron norm are available.
- :class:`PeriodicMLP`: a deep tanh :class:`pdeml.nets.MLP` on the same embedding (the Deep
  Ritz default).

Reference: [Barron] Marwah, Lipton, Lu, Risteski, ICML 2023 (arXiv:2210.12101); Barron 1993.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from pdeml.core.validation import check_positive_int
from pdeml.nets import MLP

__all__ = ["CosineNetwork", "PeriodicShallowNetwork", "PeriodicMLP", "periodic_embedding"]


def periodic_embedding(x: Float[Array, " d"]) -> Float[Array, " 2d"]:
    """``(cos 2 pi x, sin 2 pi x)``: makes any network exactly 1-periodic in every x_i."""
    return jnp.concatenate([jnp.cos(2 * math.pi * x), jnp.sin(2 * math.pi * x)])


def _check_point(x, dim):
    if jnp.ndim(x) != 1 or jnp.shape(x)[0] != dim:
        raise ValueError(f"x must be one point of shape ({dim},), got {jnp.shape(x)}; vmap over points")


class CosineNetwork(eqx.Module):
    """``u(x) = sum_j c_j cos(2 pi k_j . x + b_j)`` (width n, dimension d).

    Attributes:
        coefficients: ``c``, shape ``(n,)``.
        frequencies: ``k``, shape ``(n, d)``; integer-valued for exact periodicity (they are
            stored as floats so that they can be trained and then rounded).
        phases: ``b``, shape ``(n,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> net = CosineNetwork(jnp.array([1.0]), jnp.array([[1.0, 0.0]]), jnp.array([-jnp.pi / 2]))
        >>> float(net(jnp.array([0.25, 0.0])))  # sin(2 pi / 4)
        1.0
    """

    coefficients: Float[Array, " n"]
    frequencies: Float[Array, "n d"]
    phases: Float[Array, " n"]

    def __check_init__(self):
        n = jnp.shape(self.coefficients)
        if jnp.ndim(self.coefficients) != 1:
            raise ValueError(f"coefficients must have shape (n,), got {n}")
        if jnp.ndim(self.frequencies) != 2 or jnp.shape(self.frequencies)[0] != n[0]:
            raise ValueError(
                f"frequencies must have shape ({n[0]}, d), got {jnp.shape(self.frequencies)}"
            )
        if jnp.shape(self.phases) != n:
            raise ValueError(f"phases must have shape {n}, got {jnp.shape(self.phases)}")

    @property
    def width(self) -> int:
        return self.coefficients.shape[0]

    @property
    def dim(self) -> int:
        return self.frequencies.shape[1]

    @property
    def num_parameters(self) -> int:
        return self.width * (self.dim + 2)

    def features(self, x: Float[Array, " d"]) -> Float[Array, " n"]:
        """The n unit features ``cos(2 pi k_j . x + b_j)`` at one point."""
        _check_point(x, self.dim)
        return jnp.cos(2 * math.pi * (self.frequencies @ x) + self.phases)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.features(x) @ self.coefficients

    def round_frequencies(self) -> "CosineNetwork":
        """The same network with frequencies rounded to the nearest integers."""
        return eqx.tree_at(lambda m: m.frequencies, self, jnp.round(self.frequencies))

    @classmethod
    def random(
        cls, width: int, dim: int, *, key: PRNGKeyArray, max_frequency: int = 3, scale: float = 1.0, dtype=None
    ) -> "CosineNetwork":
        """Random integer frequencies in ``[-max_frequency, max_frequency]^d``, phases in
        ``[0, 2 pi)`` and normal coefficients of standard deviation ``scale / width``."""
        dtype = dtype or jnp.result_type(float)
        k1, k2, k3 = jax.random.split(key, 3)
        freq = jax.random.randint(k1, (width, dim), -max_frequency, max_frequency + 1).astype(dtype)
        phases = jax.random.uniform(k2, (width,), dtype, 0.0, 2 * math.pi)
        coef = scale * jax.random.normal(k3, (width,), dtype) / width
        return cls(coef, freq, phases)


_ACTIVATIONS = ("tanh", "relu")


class PeriodicShallowNetwork(eqx.Module):
    """``u(x) = sum_j a_j sigma(w_j . phi(x) + b_j) + a_0`` with ``phi`` the periodic embedding.

    ``sigma`` is ``tanh`` or ``ReLU^power`` (``activation="relu"``). The embedding makes u
    exactly 1-periodic in every coordinate.

    Attributes:
        outer: ``a``, shape ``(n,)``.
        inner: ``w``, shape ``(n, 2d)``.
        bias: ``b``, shape ``(n,)``.
        offset: ``a_0``, scalar.
        activation: ``"tanh"`` or ``"relu"`` (static).
        power: ReLU power k (static; ignored for tanh).
    """

    outer: Float[Array, " n"]
    inner: Float[Array, "n e"]
    bias: Float[Array, " n"]
    offset: Float[Array, ""]
    activation: str = eqx.field(static=True, default="tanh")
    power: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; expected one of {list(_ACTIVATIONS)}")
        if self.power < 1:
            raise ValueError(f"power must be >= 1, got {self.power}")
        n = jnp.shape(self.outer)
        if jnp.ndim(self.inner) != 2 or jnp.shape(self.inner)[0] != n[0] or jnp.shape(self.inner)[1] % 2:
            raise ValueError(f"inner must have shape ({n[0]}, 2d), got {jnp.shape(self.inner)}")

    @property
    def dim(self) -> int:
        return self.inner.shape[1] // 2

    @property
    def width(self) -> int:
        return self.outer.shape[0]

    @property
    def num_parameters(self) -> int:
        return self.width * (2 * self.dim + 2) + 1

    def sigma(self, t):
        if self.activation == "tanh":
            return jnp.tanh(t)
        return jnp.maximum(t, 0.0) ** self.power

    def features(self, x: Float[Array, " d"]) -> Float[Array, " n"]:
        _check_point(x, self.dim)
        return self.sigma(self.inner @ periodic_embedding(x) + self.bias)

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        return self.features(x) @ self.outer + self.offset

    @classmethod
    def random(
        cls, width: int, dim: int, *, key: PRNGKeyArray, activation: str = "tanh", power: int = 1, dtype=None
    ) -> "PeriodicShallowNetwork":
        """Glorot-style initialisation."""
        dtype = dtype or jnp.result_type(float)
        k1, k2, k3 = jax.random.split(key, 3)
        inner = jax.random.normal(k1, (width, 2 * dim), dtype) / math.sqrt(2 * dim)
        bias = 0.1 * jax.random.normal(k2, (width,), dtype)
        outer = jax.random.normal(k3, (width,), dtype) / math.sqrt(width)
        return cls(outer, inner, bias, jnp.zeros((), dtype), activation, power)


class PeriodicMLP(eqx.Module):
    """A tanh :class:`pdeml.nets.MLP` on the periodic embedding: ``x -> phi(x) -> MLP -> scalar``,
    ``depth`` hidden tanh layers of ``width`` units.

    Attributes:
        mlp: the network on the embedding (``2d`` inputs, one output).

    Example:
        >>> import jax
        >>> net = PeriodicMLP.random(2, width=8, depth=2, key=jax.random.key(0))
        >>> net(jax.numpy.zeros(2)).shape, net.num_parameters
        ((), 121)
    """

    mlp: MLP

    def __check_init__(self):
        first, last = self.mlp.layers[0], self.mlp.layers[-1]
        if first.in_channels % 2 or last.out_channels != 1:
            raise ValueError(
                f"mlp must map 2d embedding features to one output, got {first.in_channels} -> "
                f"{last.out_channels}"
            )

    @property
    def dim(self) -> int:
        return self.mlp.layers[0].in_channels // 2

    @property
    def num_parameters(self) -> int:
        return sum(leaf.size for leaf in jax.tree.leaves(eqx.filter(self.mlp, eqx.is_array)))

    def __call__(self, x: Float[Array, " d"]) -> Float[Array, ""]:
        _check_point(x, self.dim)
        return self.mlp(periodic_embedding(x))[0]

    @classmethod
    def random(cls, dim: int, *, width: int, depth: int, key: PRNGKeyArray, dtype=None) -> "PeriodicMLP":
        """Glorot-normal weights, zero biases; ``depth`` hidden layers of ``width`` units."""
        check_positive_int("dim", dim)
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        mlp = MLP(2 * dim, 1, width=width, depth=depth, activation=jnp.tanh, init="glorot_normal",
                  key=key, dtype=dtype)
        return cls(mlp)
