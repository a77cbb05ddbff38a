"""Flax NNX modules around the hard-constraint layer (``pip install 'pdeml[flax]'``).

:class:`pdeml.constraints.HardConstraint` is an Equinox module without parameters: its
problem, solver and back-end settings are static configuration. :class:`HardConstraintNNX`
holds it as a static attribute of an ``nnx.Module``, so a flax model can contain the layer and
``nnx.jit`` / ``nnx.grad`` / ``nnx.Optimizer`` see only the network's parameters. The solve
and its implicit gradients are exactly those of the Equinox layer (same code path).

:class:`BasisMLP` is a small nnx basis network (channels-last MLP on the (x, t) grid, the same
architecture and initialisation as :class:`pdeml.nets.MLP`), and :class:`HardConstrainedNNX`
pairs a basis network with the layer (the nnx counterpart of
:class:`pdeml.constraints.HardConstrainedModel`, PI-HC).

Reference: Chalapathi, Du, Krishnapriyan, "Scaling physics-informed hard constraints with
mixture-of-experts", ICLR 2024 (arXiv:2402.13412).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, Int

from pdeml.constraints.hard import ConstraintInfo, HardConstraint
from pdeml.constraints.models import network_input
from pdeml.nets.mlp import MLP, gelu
from pdeml.pde.base import PDEProblem

__all__ = ["BasisMLP", "HardConstrainedNNX", "HardConstraintNNX"]


class HardConstraintNNX(nnx.Module):
    """The hard-constraint layer as an ``nnx.Module`` (no parameters, static configuration).

    Solves for the basis weights w so that the PDE holds at sampled collocation points and
    returns ``u = basis @ w`` with the diagnostics, exactly as
    :class:`pdeml.constraints.HardConstraint` (which it calls).

    Args:
        layer: a :class:`~pdeml.constraints.HardConstraint`, or a
            :class:`~pdeml.pde.PDEProblem` from which one is built with ``**options``.
        **options: ``HardConstraint`` fields (``num_points``, ``solver``, ``adjoint``,
            ``backend``, ``ridge``, ``throw``), only when ``layer`` is a problem.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from pdeml.core import LevenbergMarquardt
        >>> from pdeml.pde import DiffusionSorption
        >>> prob = DiffusionSorption(nx=16, nt=6)
        >>> hc = HardConstraintNNX(prob, num_points=40, solver=LevenbergMarquardt(max_steps=300))
        >>> x, t = prob.grid.mesh()
        >>> basis = jnp.stack([x**k * (1 + t / 500) ** j for k in range(4) for j in range(2)], -1)
        >>> u, info = hc(basis, jnp.full(16, 0.1), key=jax.random.key(0))  # u0 = 0.1
        >>> u.shape, info.w.shape
        ((16, 6), (8,))
    """

    def __init__(self, layer: HardConstraint | PDEProblem, **options):
        if isinstance(layer, HardConstraint):
            if options:
                raise TypeError(
                    "options (num_points=..., backend=..., ...) are only accepted with a "
                    f"PDEProblem; got a HardConstraint and {sorted(options)}"
                )
        elif isinstance(layer, PDEProblem):
            layer = HardConstraint(layer, **options)
        else:
            raise TypeError(
                f"layer must be a pdeml HardConstraint or PDEProblem, got {type(layer).__name__}"
            )
        # A parameter-free, hashable Equinox module: nnx keeps it in the graph definition
        # (static), so transformations never see it as state.
        self.layer = layer

    @property
    def problem(self) -> PDEProblem:
        return self.layer.problem

    def __call__(
        self,
        basis: Float[Array, "*grid n"],
        data,
        *,
        key=None,
        points: Int[Array, "m ndim"] | None = None,
    ) -> tuple[Float[Array, "*grid"], ConstraintInfo]:
        """``(u, info)`` for one problem instance; see :meth:`HardConstraint.__call__`."""
        return self.layer(basis, data, key=key, points=points)


def _param_dtype(dtype):
    if dtype is None:
        return jnp.zeros(()).dtype  # float64 when x64 is enabled, else float32
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"param_dtype must be a real floating dtype, got {dtype}")
    return dtype


def _uniform_fan_in(fan_in: int):
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, the ``torch.nn.Linear`` (and pdeml.nets) init."""
    lim = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -lim, lim)

    return init


class BasisMLP(nnx.Module):
    """Channels-last MLP producing N basis functions on a grid (nnx).

    ``y = L_out(act(L_depth(... act(L_1(x)))))`` over the last axis, broadcasting over the grid
    axes, so ``(nx, nt, in_size) -> (nx, nt, out_size)``. Same architecture and initialisation
    (uniform in ``+-1/sqrt(fan_in)`` for weights and biases) as :class:`pdeml.nets.MLP`;
    :meth:`from_equinox` copies the weights of one.

    Args:
        in_size: input channels (e.g. 3 for ``(u0(x), x, t)``).
        out_size: output channels N (the number of basis functions).
        width: hidden width.
        depth: number of hidden layers (``0``: a single linear map).
        activation: hidden nonlinearity (default exact GELU).
        rngs: ``nnx.Rngs`` for the initialisation (stream ``params``).
        param_dtype: parameter dtype (default: JAX's default float).

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> net = BasisMLP(3, 8, width=16, depth=2, rngs=nnx.Rngs(0))
        >>> net(jnp.ones((16, 6, 3))).shape
        (16, 6, 8)
    """

    def __init__(self, in_size: int, out_size: int, *, width: int, depth: int,
                 activation: Callable = gelu, rngs: nnx.Rngs, param_dtype=None):
        for name, v, least in (("in_size", in_size, 1), ("out_size", out_size, 1),
                               ("width", width, 1), ("depth", depth, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
        dtype = _param_dtype(param_dtype)
        sizes = [in_size] + [width] * depth + [out_size]
        self.layers = nnx.List(
            nnx.Linear(a, b, param_dtype=dtype, kernel_init=_uniform_fan_in(a),
                       bias_init=_uniform_fan_in(a), rngs=rngs)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.activation = activation
        self.in_size = in_size
        self.out_size = out_size

    def __call__(self, x: Float[Array, "*grid in"]) -> Float[Array, "*grid out"]:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.in_size:
            raise ValueError(
                f"x must have {self.in_size} channels on its last axis, got shape {jnp.shape(x)}"
            )
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)

    @classmethod
    def from_equinox(cls, mlp: MLP) -> BasisMLP:
        """A :class:`BasisMLP` with the weights (copies) and activation of a ``pdeml.nets.MLP``."""
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a pdeml.nets.MLP, got {type(mlp).__name__}")
        if mlp.final_activation is not None:
            raise ValueError("BasisMLP has no final activation; got an MLP with one")
        if any(layer.bias is None for layer in mlp.layers):
            raise ValueError("BasisMLP layers have biases; got an MLP without")
        first, last = mlp.layers[0], mlp.layers[-1]
        width = first.out_channels
        net = cls(first.in_channels, last.out_channels, width=width, depth=len(mlp.layers) - 1,
                  activation=mlp.activation, rngs=nnx.Rngs(0), param_dtype=first.weight.dtype)
        for dst, src in zip(net.layers, mlp.layers):
            dst.kernel[...] = jnp.array(src.weight)
            dst.bias[...] = jnp.array(src.bias)
        return net


class HardConstrainedNNX(nnx.Module):
    """PI-HC in flax: a basis network followed by the hard-constraint layer.

    ``b = net(inputs)`` (N channels on the grid), ``u, info = constraint(b, data)``; the nnx
    counterpart of :class:`pdeml.constraints.HardConstrainedModel`. Train it on
    :func:`pdeml.constraints.physics_loss` with ``nnx.Optimizer``.

    Args:
        net: any nnx module mapping ``(*grid, C)`` inputs to ``(*grid, N)`` basis functions.
        constraint: a :class:`HardConstraintNNX` (or a ``HardConstraint``, wrapped).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from pdeml.pde import DiffusionSorption
        >>> prob = DiffusionSorption(nx=16, nt=6)
        >>> model = HardConstrainedNNX(BasisMLP(3, 8, width=16, depth=1, rngs=nnx.Rngs(0)),
        ...                            HardConstraintNNX(prob, num_points=40, throw=False))
        >>> u, info = model(jnp.full((16,), 0.1), key=jax.random.key(0))
        >>> u.shape
        (16, 6)
    """

    def __init__(self, net: nnx.Module, constraint: HardConstraintNNX | HardConstraint):
        if not isinstance(net, nnx.Module):
            raise TypeError(f"net must be an nnx.Module, got {type(net).__name__}")
        if isinstance(constraint, HardConstraint):
            constraint = HardConstraintNNX(constraint)
        if not isinstance(constraint, HardConstraintNNX):
            raise TypeError(
                f"constraint must be a HardConstraintNNX or HardConstraint, got "
                f"{type(constraint).__name__}"
            )
        self.net = net
        self.constraint = constraint

    @property
    def problem(self) -> PDEProblem:
        return self.constraint.problem

    def basis(self, data, *, inputs=None) -> Float[Array, "*grid n"]:
        """``net(inputs)``; ``inputs`` defaults to :func:`pdeml.constraints.network_input`."""
        if inputs is None:
            inputs = network_input(self.problem, data)
        return self.net(inputs)

    def __call__(self, data, *, key=None, points=None, inputs=None
                 ) -> tuple[Float[Array, "*grid"], ConstraintInfo]:
        """``(u, info)``. ``inputs``: the network input on the grid, for problems whose data is
        not an initial condition that :func:`~pdeml.constraints.network_input` understands."""
        return self.constraint(self.basis(data, inputs=inputs), data, key=key, points=points)
