"""Pretrained LPN priors shipped with pdeml, loadable by name and checked on every load.

The files live in ``pdeml/inverse/weights/`` (package data): per prior a ``model.eqx``
(parameters) and a ``config.json`` (the constructor arguments of
:func:`pdeml.inverse.near_identity_lpn`), and one ``manifest.json`` with each file's SHA-256,
how the prior was trained and the PSNR ``benchmarks/inverse.py`` measured with it
(``benchmarks/publish_results.py`` writes them from the benchmark's results).

==========================  =========  =====  ==========================================
name                        images     sigma  measured (32x32 test images, mean PSNR dB)
==========================  =========  =====  ==========================================
``lpn_j_natural``           natural    0.02   denoising 36.2 (noisy 34.0); PnP deblurring
                                              sigma_b 1, noise 0.02: 28.3 (TV 28.3)
``lpn_j_ct``                CT         0.004  PnP sparse-view CT (16 angles): 23.7
``lpn_j_ct_sigma0.02``      CT         0.02   ``lpn_map`` sparse-view CT: 28.7 (TV 25.9)
==========================  =========  =====  ==========================================

:func:`pretrained_info` returns every number (all tasks, their hyper-parameters).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import jax.numpy as jnp

__all__ = ["available_priors", "pretrained", "pretrained_info"]

_PACKAGE = "pdeml.inverse"
_DIR = "weights"


@lru_cache(maxsize=1)
def _manifest() -> dict:
    return json.loads(resources.files(_PACKAGE).joinpath(_DIR, "manifest.json").read_text())


def available_priors() -> list[str]:
    """Names of the shipped priors.

    Example:
        >>> available_priors()
        ['lpn_j_ct', 'lpn_j_ct_sigma0.02', 'lpn_j_natural']
    """
    return sorted(_manifest())


def pretrained_info(name: str) -> dict:
    """The manifest entry of a prior: ``description``, ``training`` (data, loss, noise level,
    seconds), ``measured`` (PSNR per task, with the hyper-parameters used), ``sha256``.

    Example:
        >>> info = pretrained_info("lpn_j_natural")
        >>> info["training"]["noise_sigma"], info["measured"]["denoising"]["psnr_db"]
        (0.02, 36.17)
    """
    manifest = _manifest()
    if name not in manifest:
        raise ValueError(f"no pretrained prior {name!r}; available: {', '.join(sorted(manifest))}")
    return manifest[name]


def _read_checked(name: str, filename: str) -> bytes:
    want = pretrained_info(name)["sha256"][filename]
    data = resources.files(_PACKAGE).joinpath(_DIR, name, filename).read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ValueError(f"pretrained prior {name!r}: {filename} is damaged (SHA-256 {got[:12]}..., "
                         f"expected {want[:12]}...); reinstall pdeml")
    return data


def pretrained(name: str, *, dtype=jnp.float32):
    """Load a shipped prior by name: an :class:`pdeml.prox.LPN` for 1-channel images.

    Both files are checked against the SHA-256 in the manifest before they are used (a damaged
    or altered file raises ``ValueError``).

    Args:
        name: one of :func:`available_priors`.
        dtype: dtype of the returned parameters (stored in float32).

    Example:
        >>> import jax.numpy as jnp
        >>> lpn = pretrained("lpn_j_natural")
        >>> x = jnp.full((1, 1, 8, 8), 0.5)
        >>> lpn.prox(x).shape
        (1, 1, 8, 8)
    """
    import io

    import equinox as eqx
    import jax

    from pdeml.inverse.priors import near_identity_lpn

    config = json.loads(_read_checked(name, "config.json"))
    model = _read_checked(name, "model.eqx")
    want = config["want"]
    skeleton = near_identity_lpn(
        1, want["hidden"], key=jax.random.key(want.get("seed", 0)), alpha=want["alpha"],
        beta=want["beta"], quadratic_channels=want["quadratic_channels"],
        nonnegativity=want.get("nonnegativity", "softplus"),
        kernel_size=want.get("kernel_size", 3), dtype=jnp.float32,
    )
    lpn = eqx.tree_deserialise_leaves(io.BytesIO(model), skeleton)
    if jnp.dtype(dtype) != jnp.float32:
        lpn = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, lpn)
    return lpn
