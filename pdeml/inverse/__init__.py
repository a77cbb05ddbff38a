"""Inverse problems with learned priors: forward operators, plug-and-play solvers, baselines.

- Operators with exact adjoints (:mod:`pdeml.inverse.operators`): :class:`GaussianBlur`
  (periodic), :class:`Inpainting`, :class:`CompressedSensing`, :class:`Radon` (parallel beam),
  :class:`HeatObservation` (heat-equation initial condition -> later observations),
  :class:`MatrixOperator`; ``normest`` = ||A^T A|| by power iteration.
- Solvers (:mod:`pdeml.inverse.solvers`): :func:`pnp_pgd`, :func:`pnp_admm` (CG data step,
  one compiled loop, residual / objective / Lagrangian histories), :func:`lpn_map` (an LPN's
  MAP problem by L-BFGS in the prox's input, guaranteed for any data weight), :func:`tikhonov`,
  :func:`convergence_conditions`, :func:`conjugate_gradient`.
- Baselines (:mod:`pdeml.inverse.denoisers`): :class:`CNNDenoiser` (MSE-trained),
  :class:`BM3DDenoiser` (optional extra ``bm3d``); TV is :class:`pdeml.prox.TotalVariationProx`.
- Pretrained priors (:mod:`pdeml.inverse.pretrained_priors`): :func:`pretrained` loads a shipped LPN
  prior by name (checksummed), :func:`available_priors`, :func:`pretrained_info` (how it was
  trained, the PSNR measured with it).
- Recipes (:mod:`pdeml.inverse.recipes`): :class:`PriorRecipe` (how the LPN, LPN-J and MSE-CNN
  image priors are built and trained), the training data (:func:`natural_training_patches`,
  :func:`natural_test_crops`, :func:`ct_training_patches`, :func:`patch_sampler`),
  :class:`PriorCache` (trained priors on disk, atomic and checksummed), :func:`prior_set` (every
  prior of an image domain, cached), :func:`select_on_validation` and :func:`rho_grid`
  (hyper-parameters chosen on validation data).
- Metrics and phantoms: :func:`psnr`, :func:`ssim`, :func:`shepp_logan`, :func:`disc`,
  :func:`random_ellipses`.

Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 4-5.
"""

from pdeml.inverse.denoisers import (
    BM3DDenoiser,
    CNNDenoiser,
    count_parameters,
    matched_cnn,
    train_denoiser,
)
from pdeml.inverse.metrics import psnr, ssim
from pdeml.inverse.operators import (
    CompressedSensing,
    GaussianBlur,
    HeatObservation,
    Inpainting,
    LinearOperator,
    MatrixOperator,
    Radon,
    dot_product_test,
    measure,
)
from pdeml.inverse.phantoms import disc, random_ellipses, render_ellipses, shepp_logan
from pdeml.inverse.pretrained_priors import available_priors, pretrained, pretrained_info
from pdeml.inverse.priors import (
    QuadraticICNN,
    center_icnn_biases,
    load_near_identity_lpn,
    near_identity_lpn,
)
from pdeml.inverse.recipes import (
    PriorCache,
    PriorRecipe,
    ct_training_patches,
    natural_test_crops,
    natural_training_patches,
    patch_sampler,
    prior_set,
    rho_grid,
    select_on_validation,
)
from pdeml.inverse.solvers import (
    ConvergenceConditions,
    LPNMapHistory,
    LPNMapResult,
    LPNMapStats,
    PnPHistory,
    PnPResult,
    PnPStats,
    pnp_messages,
    conjugate_gradient,
    convergence_conditions,
    lpn_map,
    pnp_admm,
    pnp_pgd,
    tikhonov,
)

__all__ = [
    "BM3DDenoiser",
    "CNNDenoiser",
    "CompressedSensing",
    "ConvergenceConditions",
    "GaussianBlur",
    "HeatObservation",
    "Inpainting",
    "LinearOperator",
    "MatrixOperator",
    "LPNMapHistory",
    "LPNMapResult",
    "LPNMapStats",
    "PnPHistory",
    "PnPResult",
    "PnPStats",
    "pnp_messages",
    "PriorCache",
    "PriorRecipe",
    "QuadraticICNN",
    "Radon",
    "available_priors",
    "conjugate_gradient",
    "convergence_conditions",
    "count_parameters",
    "ct_training_patches",
    "disc",
    "dot_product_test",
    "matched_cnn",
    "center_icnn_biases",
    "load_near_identity_lpn",
    "lpn_map",
    "measure",
    "natural_test_crops",
    "natural_training_patches",
    "near_identity_lpn",
    "patch_sampler",
    "pnp_admm",
    "pnp_pgd",
    "pretrained",
    "pretrained_info",
    "prior_set",
    "psnr",
    "random_ellipses",
    "render_ellipses",
    "rho_grid",
    "select_on_validation",
    "shepp_logan",
    "ssim",
    "tikhonov",
    "train_denoiser",
]
