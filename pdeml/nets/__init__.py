"""Network building blocks (Equinox, channels last).

- :class:`FNO`, :class:`FourierLayer`, :class:`SpectralConv`: Fourier Neural Operator on
  n-dimensional grids (Li et al. 2021), the basis network of the hard-constraint layers.
- :func:`grid_features`: build an FNO input from problem data and grid coordinates.
- :class:`MLP`, :class:`PointwiseLinear`: channel-last perceptron and linear map.
- :class:`DenseICNN`, :class:`ConvICNN`, :class:`FullyConvICNN`: input-convex networks (the
  potentials of learned proximal networks) on one core, :class:`AbstractICNN`;
  :class:`QuadraticICNN` adds a learned convex quadratic; :func:`center_icnn_biases` initialises
  the biases from data; :func:`icnn_optimizer` / :func:`project_nonnegative` keep the
  hidden-path weights non-negative.
"""

from pdeml.nets.fno import FNO, PAPER_CONFIGS, FourierLayer, SpectralConv, grid_features
from pdeml.nets.icnn import (
    AbstractICNN,
    ConvICNN,
    DenseICNN,
    FullyConvICNN,
    QuadraticICNN,
    center_icnn_biases,
    icnn_optimizer,
    nonnegative_mask,
    project_nonnegative,
    scaled_softplus,
)
from pdeml.nets.mlp import MLP, PointwiseLinear, gelu

__all__ = [
    "AbstractICNN",
    "ConvICNN",
    "DenseICNN",
    "FullyConvICNN",
    "QuadraticICNN",
    "center_icnn_biases",
    "icnn_optimizer",
    "nonnegative_mask",
    "project_nonnegative",
    "scaled_softplus",
    "FNO",
    "MLP",
    "PAPER_CONFIGS",
    "FourierLayer",
    "PointwiseLinear",
    "SpectralConv",
    "gelu",
    "grid_features",
]
