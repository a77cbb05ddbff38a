"""Probing a learned prior: R under noise, blur and interpolation; building LPNs from configs.

The LPN paper's qualitative findings on images: the learned regulariser R increases
monotonically with Gaussian noise and with blur, and is non-convex along the segment between two
clean images. :func:`perturbation_study` and :func:`interpolation_profile` measure these on
held-out images; :func:`build_lpn` / :func:`save_lpn` / :func:`load_lpn` make a trained model
reloadable from a small JSON config (used by the ``pdeml prox`` command).

Reference: Fang, Buchanan & Sulam, ICLR 2024 (arXiv:2310.14344), Sec. 5.2-5.3.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdeml.core.io import (
    ChecksumError,
    check_overwrite,
    is_checksummed,
    read_checksummed,
    request_record,
    sidecar_path,
    write_checksummed,
    write_json,
)
from pdeml.nets.icnn import ConvICNN, DenseICNN, FullyConvICNN
from pdeml.prox.lpn import LPN, evaluate_regularizer

__all__ = [
    "gaussian_blur",
    "perturbation_study",
    "interpolation_profile",
    "build_lpn",
    "save_lpn",
    "check_lpn_overwrite",
    "load_lpn",
]


def gaussian_blur(images, sigma_b: float):
    """Blur ``(..., C, H, W)`` images with a Gaussian PSF of std ``sigma_b`` pixels (separable,
    kernel radius ``ceil(3 sigma_b)``, reflect padding). ``sigma_b = 0`` returns the input."""
    if sigma_b < 0:
        raise ValueError(f"sigma_b must be >= 0, got {sigma_b}")
    if sigma_b == 0:
        return images
    r = int(np.ceil(3 * sigma_b))
    t = jnp.arange(-r, r + 1, dtype=images.dtype)
    k = jnp.exp(-0.5 * (t / sigma_b) ** 2)
    k = k / jnp.sum(k)
    pad = [(0, 0)] * (images.ndim - 2) + [(r, r), (r, r)]
    x = jnp.pad(images, pad, mode="reflect")
    h, w = images.shape[-2:]
    # separable: rows then columns, as sums of shifted copies (small kernels)
    x = sum(k[i] * x[..., i : i + h, :] for i in range(2 * r + 1))
    return sum(k[i] * x[..., :, i : i + w] for i in range(2 * r + 1))


def perturbation_study(lpn: LPN, images, *, noise_levels, blur_levels, key, **inverse_options):
    """Mean and std of R over ``images`` for each Gaussian noise level and each blur level.

    Returns ``{"noise": [(sigma, mean, std, all_converged)], "blur": [(sigma_b, mean, std,
    all_converged)]}``; level 0 is the clean images.
    """
    f = eqx.filter_jit(lambda m, v: evaluate_regularizer(m, v, **inverse_options))
    out = {"noise": [], "blur": []}
    for s in noise_levels:
        noisy = images + s * jax.random.normal(key, images.shape, images.dtype)
        R, info = f(lpn, noisy)
        out["noise"].append((float(s), float(R.mean()), float(R.std()), bool(info.converged.all())))
    for b in blur_levels:
        R, info = f(lpn, gaussian_blur(images, float(b)))
        out["blur"].append((float(b), float(R.mean()), float(R.std()), bool(info.converged.all())))
    return out


def interpolation_profile(lpn: LPN, a, b, ts, **inverse_options):
    """R along ``(1 - t) a + t b`` for each ``t`` in ``ts``, and the largest violation of
    convexity ``max_t [R(t) - ((1 - t) R(0) + t R(1))]`` (positive = non-convex). ``ts`` must
    include 0 and 1."""
    ts = jnp.asarray(ts, a.dtype)
    pts = (1 - ts)[:, None, None, None] * a[None] + ts[:, None, None, None] * b[None]
    R, info = eqx.filter_jit(lambda m, v: evaluate_regularizer(m, v, **inverse_options))(lpn, pts)
    i0, i1 = int(jnp.argmin(jnp.abs(ts))), int(jnp.argmin(jnp.abs(ts - 1)))
    chord = (1 - ts) * R[i0] + ts * R[i1]
    return np.asarray(R), float(jnp.max(R - chord)), bool(info.converged.all())


_KINDS = {"dense": DenseICNN, "conv": ConvICNN, "fully_conv": FullyConvICNN}


def build_lpn(config: dict, *, key=None) -> LPN:
    """An LPN from a JSON-able config ``{"kind": "dense"|"conv"|"fully_conv", ...kwargs}``.

    Example:
        >>> lpn = build_lpn({"kind": "dense", "in_size": 1, "hidden": [8], "alpha": 0.1})
    """
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"config 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    key = jax.random.key(config.pop("seed", 0)) if key is None else key
    config.pop("dtype", None)
    return LPN(_KINDS[kind](**config, key=key))


_LPN_KIND = "lpn"  # model.eqx: magic b"PDEML-LPN 1\n", header with the config, checksum


def _lpn_recorded(path):
    """The request record in a saved ``model.eqx``'s verified header (None: none, or unreadable)."""
    try:
        header, _ = read_checksummed(path, _LPN_KIND, what="LPN model file")
    except ChecksumError:
        return None
    record = header.get("request")
    return record if isinstance(record, dict) else None


def check_lpn_overwrite(path, request) -> None:
    """Raise ``FileExistsError`` if :func:`save_lpn` into directory ``path`` for ``request``
    would be refused: a ``model.eqx`` or ``config.json`` there that pdeml did not write, or
    wrote for another request. Writes nothing (commands call it before training)."""
    path = Path(path)
    check_overwrite(path / "model.eqx", ours=lambda p: is_checksummed(p, _LPN_KIND),
                    what="LPN model", request=request, recorded=_lpn_recorded)
    check_overwrite(path / "config.json", ours=lambda p: sidecar_path(p).exists(),
                    what="LPN config", request=request)


def save_lpn(path, lpn: LPN, config: dict, *, request=None) -> None:
    """Write ``model.eqx`` (parameters, with ``config`` in its checksummed header) and a
    readable copy ``config.json`` into directory ``path``.

    ``model.eqx`` is written atomically (a crash leaves the previous model or the new one) in
    the checksummed format of :mod:`pdeml.core.io`; :func:`load_lpn` verifies it. Both files
    record ``request`` (default ``{"function": "save_lpn", "config": config}``; ``pdeml prox
    train`` passes its command): a directory whose ``model.eqx`` or ``config.json`` was not
    written by pdeml, or was written for another request, is refused (``FileExistsError``
    naming the file and that request) rather than overwritten; saving again for the same
    request replaces them.
    """
    if not isinstance(lpn, LPN):
        raise TypeError(f"lpn must be an LPN, got {type(lpn).__name__}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"save_lpn needs a directory; {str(path)!r} is a file")
    try:
        config = json.loads(json.dumps(config))
    except TypeError as e:
        raise TypeError(f"config must be JSON-serialisable: {e}") from None
    if request is None:
        request = {"function": "save_lpn", "config": config}
    model, cfg = path / "model.eqx", path / "config.json"
    check_lpn_overwrite(path, request)
    header = {"config": config, "request": request_record(request)}
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, lpn)
    write_checksummed(model, _LPN_KIND, buf.getvalue(), header)
    write_json(cfg, config, request=request)


def load_lpn(path) -> tuple[LPN, dict]:
    """Inverse of :func:`save_lpn`: ``(lpn, config)``, after verifying the checksum.

    The configuration comes from ``model.eqx``'s verified header; ``config.json`` must agree
    with it.

    Raises:
        FileNotFoundError: ``path`` holds no saved LPN.
        ChecksumError: ``model.eqx`` is truncated, corrupt, or not a pdeml LPN file (e.g. one
            written by an older pdeml without a checksum), or ``config.json`` disagrees with it.
    """
    path = Path(path)
    if not (path / "model.eqx").exists():
        raise FileNotFoundError(f"{path} does not hold a saved LPN (config.json + model.eqx)")
    header, payload = read_checksummed(path / "model.eqx", _LPN_KIND, what="LPN model file")
    config = header.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise ChecksumError(f"LPN model file {str(path / 'model.eqx')!r} has no model "
                            "configuration in its header")
    cfg_path = path / "config.json"
    if cfg_path.exists():
        try:
            readable = json.loads(cfg_path.read_text())
        except (ValueError, UnicodeDecodeError):
            readable = None
        if readable != config:
            raise ChecksumError(
                f"{str(cfg_path)!r} differs from the configuration stored in model.eqx (which is "
                "verified and authoritative); restore config.json or save the model again"
            )
    skeleton = build_lpn(config["model"])
    try:
        lpn = eqx.tree_deserialise_leaves(io.BytesIO(payload), skeleton)
    except Exception as e:  # numpy raises several types for mismatched records
        raise ChecksumError(f"LPN model file {str(path / 'model.eqx')!r} does not match its "
                            f"configuration: {e}") from None
    return lpn, config
