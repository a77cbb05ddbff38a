"""Flax NNX interop: the hard-constraint layer inside flax models (``pip install 'pdeml[flax]'``).

Importing this package imports flax; nothing else in pdeml does, so flax stays optional.

- :class:`HardConstraintNNX`: :class:`pdeml.constraints.HardConstraint` as an ``nnx.Module``.
- :class:`BasisMLP`: an nnx basis network (channels-last MLP on the (x, t) grid).
- :class:`HardConstrainedNNX`: basis network + layer (PI-HC), trained with ``nnx.Optimizer``.

- :class:`NNXLPN`, :func:`nnx_lpn_optimizer`: a learned proximal network as an nnx module
  (defined in :mod:`pdeml.interop.flax_lpn`).
"""

from pdeml.interop.flax.hard_constraint import BasisMLP, HardConstrainedNNX, HardConstraintNNX
from pdeml.interop.flax_lpn import NNXLPN, nnx_lpn_optimizer

__all__ = ["BasisMLP", "HardConstrainedNNX", "HardConstraintNNX", "NNXLPN", "nnx_lpn_optimizer"]
