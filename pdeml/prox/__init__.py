"""Learned proximal networks (LPN), proximal matching, regulariser evaluation, classical proxes.

- :class:`LPN`: ``prox(x) = grad psi(x)`` for an input-convex potential psi
  (:mod:`pdeml.nets.icnn`), with ``psi``, ``regularizer`` (custom gradient, never through the
  solver) and ``inverse`` (batched, jitted Newton-CG or L-BFGS to a stated tolerance).
- Proximal matching: :func:`proximal_matching_loss`, :class:`Stage` / :class:`Schedule`,
  :func:`train_lpn` on :func:`pdeml.train.train`.
- Classical proximal operators with the same interface: :class:`SoftThreshold`,
  :class:`L2NormProx`, :class:`SquaredL2Prox`, :class:`BoxProx`, :class:`TotalVariationProx`.

Reference: Fang, Buchanan & Sulam, "What's in a prior? Learned proximal networks for inverse
problems", ICLR 2024, arXiv:2310.14344.
"""

from pdeml.prox.base import ProximalOperator
from pdeml.prox.classical import (
    BoxProx,
    L2BallProjection,
    L2NormProx,
    SoftThreshold,
    SquaredL2Prox,
    TotalVariationProx,
    soft_threshold,
)
from pdeml.prox.inversion import (
    InversionResult,
    InversionStats,
    invert_adam,
    invert_potential,
    inversion_messages,
)
from pdeml.prox.lpn import LPN, ScaledLPN, evaluate_regularizer
from pdeml.prox.training import (
    Schedule,
    Stage,
    add_noise,
    l1_loss,
    l2_loss,
    laplace_posterior_sampler,
    laplace_schedule,
    lpn_loss_fn,
    make_batch_fn,
    paper_image_schedule,
    proximal_matching_loss,
    sample_laplace_posterior,
    expansiveness,
    expansiveness_penalty,
    train_lpn,
)

__all__ = [
    "BoxProx",
    "InversionResult",
    "InversionStats",
    "inversion_messages",
    "L2BallProjection",
    "L2NormProx",
    "LPN",
    "ProximalOperator",
    "ScaledLPN",
    "Schedule",
    "SoftThreshold",
    "SquaredL2Prox",
    "Stage",
    "TotalVariationProx",
    "add_noise",
    "evaluate_regularizer",
    "invert_adam",
    "invert_potential",
    "l1_loss",
    "l2_loss",
    "laplace_schedule",
    "lpn_loss_fn",
    "make_batch_fn",
    "laplace_posterior_sampler",
    "sample_laplace_posterior",
    "paper_image_schedule",
    "proximal_matching_loss",
    "soft_threshold",
    "expansiveness",
    "expansiveness_penalty",
    "train_lpn",
]
