"""Training recipes for image priors, hyper-parameter selection on validation data, and a
checksummed cache of trained priors.

- :class:`PriorRecipe`: how each prior of the inverse-problem benchmark is built and trained:
  the LPN (a :func:`near_identity_lpn`, l2 pre-training then proximal matching), the LPN-J
  (the same network and schedule from scratch, with the expansiveness penalty of
  :func:`pdeml.prox.train_lpn`) and the MSE-trained CNN of the same parameter budget
  (:func:`pdeml.inverse.matched_cnn`). Its methods build the untrained networks, the patch
  sampler, the schedules and the cache keys, and train each prior; the same recipe, data and
  noise level give bit-identical parameters.
- Training data: :func:`natural_training_patches` (scikit-image's bundled images, down-sampled
  2x), :func:`natural_test_crops` (the held-out images), :func:`ct_training_patches` (random
  ellipse phantoms).
- :func:`select_on_validation`: the candidate (a data weight rho, a prox, ...) whose
  reconstruction of validation data scores best; :func:`rho_grid` and the grids
  :data:`LPN_RHO_FACTORS` (``rho > ||A^T A||``, the LPN's PnP convergence condition),
  :data:`FREE_RHO_FACTORS`, :data:`MAP_RHO_FACTORS`.
- :class:`PriorCache`: trained priors on disk, one directory per prior holding ``model.eqx``
  and ``config.json`` (the recipe's key), each written atomically with a ``.sha256`` sidecar
  (:mod:`pdeml.core.io`); a read verifies both, a write refuses to replace files the cache did
  not write, and :func:`prior_set` trains what is missing.

Example:
    >>> import numpy as np
    >>> recipe = PriorRecipe(hidden=(4,), patch=8, batch=4, l2_steps=2)
    >>> patches = np.random.default_rng(0).uniform(size=(8, 1, 8, 8))
    >>> lpn = recipe.train_l2(patches, 0.05)
    >>> lpn.prox(np.zeros((1, 1, 8, 8), np.float32)).shape
    (1, 1, 8, 8)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pdeml.core.io import (
    ChecksumError,
    atomic_write,
    check_overwrite,
    read_json,
    sidecar_path,
    verify_sidecar,
    write_json,
    write_with_sidecar,
)
from pdeml.inverse.denoisers import matched_cnn, train_denoiser
from pdeml.inverse.metrics import psnr
from pdeml.inverse.operators import GaussianBlur
from pdeml.inverse.phantoms import random_ellipses
from pdeml.inverse.priors import near_identity_lpn

__all__ = [
    "FREE_RHO_FACTORS",
    "LPN_RHO_FACTORS",
    "MAP_NOISE",
    "MAP_RHO_FACTORS",
    "TRAINING_NOISE",
    "PriorCache",
    "PriorRecipe",
    "ct_training_patches",
    "natural_test_crops",
    "natural_training_patches",
    "patch_sampler",
    "prior_set",
    "rho_grid",
    "select_on_validation",
]

# Training noise per image domain. With an LPN, PnP-ADMM needs rho > ||A^T A|| (= 1 for blur),
# and MAP with a prior trained at sigma_t corresponds to rho = noise^2 / sigma_t^2, so
# sigma_t <= noise / sqrt(||A^T A||) keeps the MAP weighting reachable: 0.02 for the natural
# images (deblurring noise 0.02 / 0.04); 0.004 for CT (noise 0.01, ||A^T A|| = 4.25; at 0.02 the
# LPN was held to rho >= 4.5, an effective noise level 4x the real one).
TRAINING_NOISE = {"natural": 0.02, "ct": 0.004}
# lpn_map has no condition on rho, so its priors are trained at one noise level in both domains:
# a CT LPN-J at 0.004 makes MAP ill-posed (F far below its value at the phantoms on null-space
# checkerboards), at 0.02 it is not.
MAP_NOISE = 0.02

# Validation grids, as multiples of ||A^T A||: the LPN's PnP convergence needs rho > ||A^T A||;
# other priors are free; lpn_map converges for every rho.
LPN_RHO_FACTORS = (1.02, 1.2, 1.5, 2.5, 5.0, 10.0)
FREE_RHO_FACTORS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
MAP_RHO_FACTORS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.02, 2.5, 5.0)


# ----------------------------------------------------------------------------- data


def _down2(img):
    c, h, w = img.shape
    return img[:, : h // 2 * 2, : w // 2 * 2].reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def natural_training_patches(patch: int = 16) -> np.ndarray:
    """``(n, 1, patch, patch)`` float64 patches (stride ``patch // 2``) of the bundled training
    images (:data:`pdeml.data.images.PATCH_TRAIN_IMAGES`), grey and down-sampled 2x by block
    means. Needs scikit-image."""
    from pdeml.data.images import (
        PATCH_TRAIN_IMAGES,
        bundled_image_names,
        extract_patches,
        load_bundled_image,
    )

    have = bundled_image_names()
    train = [_down2(load_bundled_image(n, dtype=np.float64)) for n in PATCH_TRAIN_IMAGES if n in have]
    return extract_patches(train, patch, patch // 2)


def natural_test_crops(size: int = 32) -> np.ndarray:
    """Every non-overlapping ``size x size`` crop of the held-out images
    (:data:`pdeml.data.images.PATCH_TEST_IMAGES`, never used for training), down-sampled 2x:
    ``(n, 1, size, size)`` float64."""
    from pdeml.data.images import PATCH_TEST_IMAGES, load_bundled_image

    crops = []
    for name in PATCH_TEST_IMAGES:
        img = _down2(load_bundled_image(name, dtype=np.float64))
        _, h, w = img.shape
        for i in range(0, h - size + 1, size):
            for j in range(0, w - size + 1, size):
                crops.append(img[:, i : i + size, j : j + size])
    return np.stack(crops)


def ct_training_patches(size: int = 32, phantoms: int = 200, patch: int = 16) -> np.ndarray:
    """Patches (stride ``patch // 2``) of ``phantoms`` random ellipse phantoms of ``size``
    (seed 0), without the empty background ones (std <= 0.01)."""
    train = random_ellipses(size, phantoms, seed=0)[:, None]
    step = patch // 2
    patches = np.concatenate([train[:, :, i : i + patch, j : j + patch]
                              for i in range(0, size - patch + 1, step)
                              for j in range(0, size - patch + 1, step)])
    return patches[patches.std(axis=(1, 2, 3)) > 0.01]


def patch_sampler(patches, batch: int, dtype=jnp.float32) -> Callable:
    """``sample(key)``: ``batch`` patches drawn with replacement, each flipped horizontally with
    probability 1/2."""
    data = jnp.asarray(patches, dtype)

    def sample(key):
        k1, k2 = jax.random.split(key)
        x = data[jax.random.randint(k1, (batch,), 0, data.shape[0])]
        flip = jax.random.bernoulli(k2, 0.5, (batch, 1, 1, 1))
        return jnp.where(flip, x[..., ::-1], x)

    return sample


# ----------------------------------------------------------------------------- recipe


@dataclasses.dataclass(frozen=True)
class PriorRecipe:
    """How the image priors are trained (defaults: the benchmark's full sizes, ~37 min on a
    2-core CPU for both domains).

    LPN: :func:`near_identity_lpn` with ``hidden`` channels, strong convexity ``alpha``,
    ``quadratic_channels``, projected ICNN weights, read-out scaled by ``readout_scale``, ICNN
    biases centred on 256 noisy training patches (seed 9); trained with the l2 loss for
    ``l2_steps`` (learning rate ``l2_lr``, key 1), then proximal matching in one stage of
    ``pm_stage_steps`` per gamma = ``gamma_multiples`` x sigma sqrt(patch^2) (learning rate
    ``pm_lr`` geometrically, key 4). LPN-J: the same network and both stages from scratch (key
    7) with the expansiveness penalty (``expansiveness_weight``, ``probes`` noisy patches at
    noise in [sigma, 15 sigma], and as many blurred by ``probe_blurs``, ``power_iterations``).
    CNN: :func:`matched_cnn` to the LPN's parameter count (key 2), MSE for ``cnn_steps`` (key
    3). ``train_sigma``: a (low, high) range of training noise drawn per sample instead of
    sigma (the key of the cache records it).
    """

    hidden: tuple[int, ...] = (32, 32, 32)
    patch: int = 16
    batch: int = 16
    l2_steps: int = 10000
    pm_stage_steps: int = 300
    cnn_steps: int = 11200
    alpha: float = 0.05
    beta: float = 100.0
    quadratic_channels: int = 4
    nonnegativity: str = "project"
    readout_scale: float = 0.1
    l2_lr: tuple[float, float] = (2e-3, 4e-4)
    pm_lr: tuple[float, float] = (2e-4, 2e-5)
    gamma_multiples: tuple[float, ...] = (8, 4, 2, 1)
    expansiveness_weight: float = 10.0
    probes: int = 4
    probe_blurs: tuple[float, ...] = (1.0, 2.0)
    power_iterations: int = 8
    train_sigma: tuple[float, float] | None = None
    dtype: object = jnp.float32

    def noise(self, sigma):
        """The training noise argument: ``sigma``, or the ``train_sigma`` range."""
        return sigma if self.train_sigma is None else tuple(self.train_sigma)

    def sampler(self, patches) -> Callable:
        return patch_sampler(patches, self.batch, self.dtype)

    def skeleton(self, patches=None, sigma=None):
        """The untrained LPN; with ``patches``, its ICNN biases are centred on the first 256 of
        them plus noise ``sigma`` (seed 9), as for training; without, the structure only (for
        loading)."""
        center = None
        if patches is not None:
            x = jnp.asarray(patches[:256], self.dtype)
            center = x + sigma * jax.random.normal(jax.random.key(9), x.shape, self.dtype)
        return near_identity_lpn(1, self.hidden, key=jax.random.key(0), alpha=self.alpha,
                                 beta=self.beta, quadratic_channels=self.quadratic_channels,
                                 nonnegativity=self.nonnegativity,
                                 readout_scale=self.readout_scale, center_on=center,
                                 dtype=self.dtype)

    def cnn_skeleton(self, lpn):
        """The untrained CNN with ``lpn``'s parameter budget; depth = the ICNN's convolutions
        on its main path + the read-out; parameters in the recipe's dtype."""
        cnn = matched_cnn(lpn, depth=len(self.hidden) + 1, key=jax.random.key(2))
        return jax.tree.map(lambda a: a.astype(self.dtype) if eqx.is_inexact_array(a) else a, cnn)

    def gammas(self, sigma) -> list[float]:
        gmin = sigma * math.sqrt(self.patch**2)  # about the norm of one patch's noise
        return [m * gmin for m in self.gamma_multiples]

    def l2_schedule(self):
        from pdeml.prox import Schedule, Stage

        return Schedule((Stage("l2", self.l2_steps, self.l2_lr),))

    def pm_schedule(self, sigma):
        """Proximal matching: one stage per gamma, learning rate ``pm_lr`` geometrically."""
        from pdeml.prox import Schedule, Stage

        gammas = self.gammas(sigma)
        lrs = np.geomspace(*self.pm_lr, len(gammas) + 1)
        return Schedule(tuple(Stage("pm", self.pm_stage_steps, (float(lrs[i]), float(lrs[i + 1])),
                                    gamma=float(g)) for i, g in enumerate(gammas)))

    # ---- cache keys (what a cached prior must match to be reused)

    def _extra(self) -> dict:
        return {} if self.train_sigma is None else {"train_sigma": list(self.train_sigma)}

    def l2_key(self, sigma, n_patches: int) -> dict:
        return {"kind": "QuadraticICNN(FullyConvICNN)", "hidden": list(self.hidden),
                "beta": self.beta, "alpha": self.alpha,
                "quadratic_channels": self.quadratic_channels, "nonnegativity": self.nonnegativity,
                "readout_scale": self.readout_scale, "centred_biases": True, "seed": 0,
                "sigma": sigma, **self._extra(), "batch": self.batch, "patch": self.patch,
                "n_patches": int(n_patches), "l2_steps": self.l2_steps, "l2_lr": list(self.l2_lr)}

    def pm_key(self, sigma, n_patches: int) -> dict:
        return dict(self.l2_key(sigma, n_patches), pm_stage_steps=self.pm_stage_steps,
                    gammas=self.gammas(sigma), pm_lr=list(self.pm_lr))

    def lpn_j_key(self, sigma, n_patches: int) -> dict:
        return dict(self.pm_key(sigma, n_patches), expansiveness_weight=self.expansiveness_weight,
                    probes=self.probes, probe_sigma=[sigma, 15 * sigma],
                    probe_blur=list(self.probe_blurs), power_iterations=self.power_iterations)

    def cnn_key(self, cnn, sigma, n_patches: int) -> dict:
        return {"width": cnn.layers[0].out_channels, "depth": len(cnn.layers), "sigma": sigma,
                **self._extra(), "steps": self.cnn_steps, "batch": self.batch,
                "patch": self.patch, "n_patches": int(n_patches)}

    # ---- training

    def train_l2(self, patches, sigma):
        """The LPN after l2 pre-training at noise ``sigma``."""
        from pdeml.prox import train_lpn

        return train_lpn(self.skeleton(patches, sigma), self.sampler(patches), self.l2_schedule(),
                         key=jax.random.key(1), sigma=self.noise(sigma), steps_per_call=50,
                         progress=False).model

    def train_pm(self, lpn, patches, sigma):
        """``lpn`` (pre-trained with l2) after the proximal-matching stages."""
        from pdeml.prox import train_lpn

        return train_lpn(lpn, self.sampler(patches), self.pm_schedule(sigma),
                         key=jax.random.key(4), sigma=self.noise(sigma),
                         steps_per_call=self.pm_stage_steps, progress=False).model

    def probe_fn(self, sigma) -> Callable:
        """Extra expansiveness probes: training patches blurred (``probe_blurs``) plus noise
        ``sigma``, i.e. smooth images such as PnP iterations start from; ``probes //
        len(probe_blurs)`` per blur width."""
        shape = (1, self.patch, self.patch)
        blurs = [GaussianBlur(shape, float(b)) for b in self.probe_blurs]
        k = max(1, self.probes // len(blurs))

        def probe(key, batch):
            x = batch["x"]
            smooth = jnp.concatenate([op(x[i * k:(i + 1) * k]) for i, op in enumerate(blurs)])
            return smooth + sigma * jax.random.normal(key, smooth.shape, smooth.dtype)

        return probe

    def train_lpn_j(self, patches, sigma, *, augment: bool = True):
        """LPN-J at noise ``sigma``: l2 then proximal matching from scratch, with the
        expansiveness penalty from the first step. ``augment=False`` trains at ``sigma`` even
        with a ``train_sigma`` range."""
        from pdeml.prox import Schedule, train_lpn

        schedule = Schedule((*self.l2_schedule().stages, *self.pm_schedule(sigma).stages))
        return train_lpn(self.skeleton(patches, sigma), self.sampler(patches), schedule,
                         key=jax.random.key(7), sigma=self.noise(sigma) if augment else sigma,
                         steps_per_call=50, expansiveness_weight=self.expansiveness_weight,
                         probes=self.probes, probe_sigma=(sigma, 15 * sigma),
                         probe_fn=self.probe_fn(sigma), power_iterations=self.power_iterations,
                         progress=False).model

    def train_cnn(self, lpn, patches, sigma):
        """The MSE-trained CNN with ``lpn``'s parameter budget."""
        return train_denoiser(self.cnn_skeleton(lpn), self.sampler(patches),
                              sigma=self.noise(sigma), steps=self.cnn_steps, key=jax.random.key(3),
                              steps_per_call=50, progress=False).model


# ----------------------------------------------------------------------------- cache


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PriorCache:
    """Trained priors under ``directory``: ``<name>/model.eqx`` (equinox leaves) and
    ``<name>/config.json`` (``{field: key, "train_seconds": ..., "model_sha256": ...}``), each
    with a ``.sha256`` sidecar.

    Writes are atomic (:func:`pdeml.core.io.write_with_sidecar`); the model goes first and the
    configuration, which names the model's checksum, last, so an interrupted write is seen as a
    miss. :meth:`load` verifies both files and raises :class:`pdeml.core.io.ChecksumError` on a
    corrupt one; :meth:`save` refuses to replace files without a sidecar (not written here).
    An entry written before the cache had checksums (no sidecars) still loads, with a warning
    that names :meth:`adopt`.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> cache = PriorCache(tempfile.mkdtemp())
        >>> _ = cache.save("w", jnp.arange(3.0), {"want": {"n": 3}})
        >>> model, config = cache.load("w", {"n": 3}, jnp.zeros(3))
        >>> model.tolist(), cache.load("w", {"n": 4}, jnp.zeros(3))
        ([0.0, 1.0, 2.0], None)
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        return self.directory / name

    def load(self, name: str, want: dict, skeleton, *, field: str = "want"):
        """``(model, config)`` if entry ``name`` was trained with key ``want`` (``config[field]``),
        else None (absent, another key, or an interrupted write)."""
        path = self.path(name)
        cfg_path, model_path = path / "config.json", path / "model.eqx"
        if not cfg_path.exists() or not model_path.exists():
            return None
        checked = verify_sidecar(cfg_path, what="cached prior configuration", required=False)
        if checked:
            config = read_json(cfg_path, what="cached prior configuration")
        else:
            config = json.loads(cfg_path.read_text())
        if config.get(field) != want:
            return None
        if not verify_sidecar(model_path, what="cached prior", required=checked):
            warnings.warn(f"cached prior {str(path)!r} has no checksums (written before the cache "
                          f"had them); check it and call PriorCache({str(self.directory)!r})"
                          f".adopt({name!r}) to record them", stacklevel=2)
        data = model_path.read_bytes()
        if "model_sha256" in config and config["model_sha256"] != _sha256(data):
            return None  # model replaced after this configuration (interrupted save)
        return eqx.tree_deserialise_leaves(io.BytesIO(data), skeleton), config

    def save(self, name: str, model, config: dict) -> Path:
        """Write ``model`` and ``config`` (plus the model's checksum) as entry ``name``."""
        path = self.path(name)
        targets = (path / "model.eqx", path / "config.json")
        for target in targets:
            check_overwrite(target, what="cached prior")
        buf = io.BytesIO()
        eqx.tree_serialise_leaves(buf, model)
        data = buf.getvalue()
        write_with_sidecar(targets[0], data)
        write_json(targets[1], dict(config, model_sha256=_sha256(data)))
        return path

    def adopt(self, name: str) -> None:
        """Record checksums (sidecars) for an entry written without them; only for files you
        trust (e.g. unchanged in version control)."""
        path = self.path(name)
        for target in (path / "model.eqx", path / "config.json"):
            if not target.is_file():
                raise ChecksumError(f"cached prior {str(path)!r} has no {target.name}")
            if not verify_sidecar(target, what="cached prior", required=False):
                line = f"{_sha256(target.read_bytes())}  {target.name}\n"
                atomic_write(sidecar_path(target), line.encode())

    def get(self, name: str, want: dict, skeleton, train: Callable, *, field: str = "want",
            seconds_before: float = 0.0, log: Callable = print):
        """:meth:`load`, or ``train()`` and :meth:`save` (config ``{field: want, "train_seconds":
        seconds_before + the training time}``)."""
        got = self.load(name, want, skeleton, field=field)
        if got is not None:
            log(f"reusing {self.path(name)}")
            return got
        t0 = time.perf_counter()
        model = train()
        config = {field: want, "train_seconds": seconds_before + time.perf_counter() - t0}
        self.save(name, model, config)
        log(f"trained {name}: {config['train_seconds']:.0f} s")
        return model, config


def prior_set(cache: PriorCache, domain: str, patches, recipe: PriorRecipe, sigma: float, *,
              map_sigma: float | None = None, log: Callable = print) -> dict:
    """Every prior of one image domain, loaded from ``cache`` or trained (and saved).

    Returns a dict with ``lpn_l2``, ``lpn`` (after proximal matching), ``lpn_j`` (all at noise
    ``sigma``), ``lpn_j_map`` (an LPN-J at ``map_sigma``; ``lpn_j`` itself when that is
    ``sigma`` or None), ``cnn``, and their configurations ``lpn_l2_config``, ``lpn_config``,
    ``lpn_j_config``, ``lpn_j_map_config`` (None when it is ``lpn_j``), ``cnn_config``. Cache
    entries: ``lpn_l2_<domain>``, ``lpn_pm_<domain>``, ``lpn_j_<domain>``,
    ``lpn_j_<domain>_sigma<map_sigma>``, ``cnn_<domain>``.
    """
    n = int(patches.shape[0])
    skel = recipe.skeleton()
    out = {}
    out["lpn_l2"], out["lpn_l2_config"] = cache.get(
        f"lpn_l2_{domain}", recipe.l2_key(sigma, n), skel,
        lambda: recipe.train_l2(patches, sigma), log=log)
    out["lpn"], out["lpn_config"] = cache.get(
        f"lpn_pm_{domain}", recipe.pm_key(sigma, n), skel,
        lambda: recipe.train_pm(out["lpn_l2"], patches, sigma),
        seconds_before=out["lpn_l2_config"]["train_seconds"], log=log)
    out["lpn_j"], out["lpn_j_config"] = cache.get(
        f"lpn_j_{domain}", recipe.lpn_j_key(sigma, n), skel,
        lambda: recipe.train_lpn_j(patches, sigma), log=log)
    if map_sigma is None or map_sigma == sigma:
        out["lpn_j_map"], out["lpn_j_map_config"] = out["lpn_j"], None
    else:
        out["lpn_j_map"], out["lpn_j_map_config"] = cache.get(
            f"lpn_j_{domain}_sigma{map_sigma:g}", recipe.lpn_j_key(map_sigma, n), skel,
            lambda: recipe.train_lpn_j(patches, map_sigma, augment=False), log=log)
    cnn = recipe.cnn_skeleton(out["lpn"])
    out["cnn"], out["cnn_config"] = cache.get(
        f"cnn_{domain}", recipe.cnn_key(cnn, sigma, n), cnn,
        lambda: recipe.train_cnn(out["lpn"], patches, sigma), field="cnn", log=log)
    return out


# ----------------------------------------------------------------------------- selection


def rho_grid(norm: float, factors: Sequence[float]) -> list[float]:
    """``[f * norm for f in factors]``: a grid of data weights relative to ``||A^T A||``."""
    return [f * norm for f in factors]


def select_on_validation(candidates: Sequence, reconstruct: Callable, truth, *,
                         metric: Callable = psnr) -> tuple[int, list[float]]:
    """``(index, scores)``: the candidate whose reconstruction ``reconstruct(candidate)`` of
    the validation data has the best mean ``metric(x, truth)`` (NaN scores never win), and
    every score. A single candidate is returned without a run (index 0, no scores).

    Example:
        >>> import jax.numpy as jnp
        >>> truth = jnp.ones((1, 1, 4, 4))
        >>> select_on_validation([0.5, 0.9, 2.0], lambda s: s * truth, truth)[0]
        1
    """
    if len(candidates) <= 1:
        return 0, []
    scores = [float(metric(reconstruct(c), truth).mean()) for c in candidates]
    return int(np.nanargmax(scores)), scores
