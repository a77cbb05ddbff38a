"""Sparse-view CT with a pretrained learned proximal network (LPN) against total variation.

A 32 x 32 Shepp-Logan phantom is measured by a 16-angle parallel-beam Radon transform with
noise 0.01. The LPN prior shipped with pdeml (``lpn_j_ct_sigma0.02``, trained on random
ellipse phantoms) is used through its MAP problem, solved by ``pdeml.inverse.lpn_map``;
the baseline is PnP-ADMM with the total-variation prox. The data weights are the ones
``benchmarks/inverse.py`` chose on a validation phantom.

    python examples/inverse_pretrained_prior.py
"""

import jax
import jax.numpy as jnp

from pdeml.inverse import (
    Radon,
    lpn_map,
    measure,
    pnp_admm,
    pretrained,
    pretrained_info,
    psnr,
    shepp_logan,
)
from pdeml.prox import TotalVariationProx

x = jnp.asarray(shepp_logan(32), jnp.float32)[None, None]  # (batch, channel, H, W)
op = Radon(x.shape[1:], 16)
y = measure(op, x, 0.01, key=jax.random.key(0))
norm = float(op.normest())  # ||A^T A||

# Total variation, PnP-ADMM (lambda 1e-3, rho = 0.2 ||A^T A||)
rho = 0.2 * norm
tv = pnp_admm(op, TotalVariationProx(1e-3 / rho, ndim=2, atol=1e-7, max_steps=100), y, rho,
              max_steps=150, rtol=1e-4)

# The pretrained LPN prior, MAP estimate (rho = 0.05 ||A^T A||)
prior = pretrained("lpn_j_ct_sigma0.02")
lpn = lpn_map(op, prior, y, 0.05 * norm, max_steps=150, rtol=1e-4)

info = pretrained_info("lpn_j_ct_sigma0.02")
print(f"prior: {info['description']}")
print(f"back-projection A^T y: PSNR {float(psnr(op.adjoint(y) / norm, x)[0, 0]):5.2f} dB")
print(f"total variation:       PSNR {float(psnr(tv.x, x)[0, 0]):5.2f} dB")
print(f"LPN prior (MAP):       PSNR {float(psnr(lpn.x, x)[0, 0]):5.2f} dB")
assert float(psnr(lpn.x, x)[0, 0]) > float(psnr(tv.x, x)[0, 0])
