"""On-disk cache of reference datasets.

A cached dataset is one ``.npz`` file holding the arrays ``u0`` and ``u`` and a JSON string
``metadata_json`` with

- ``request``: everything that determines the data (problem constants and grid, number of
  samples, PRNG key / seed, initial-condition family, solver settings, dtype, pdeml version);
- ``result``: solver diagnostics and generation wall time;
- ``checksum``: SHA-256 of the arrays (names, dtypes, shapes and bytes).

Files are named by a hash of the request, in ``$PDEML_CACHE_DIR`` or ``~/.cache/pdeml``.
A file that cannot be read, whose checksum does not match its arrays, or whose stored request
differs from the one asked for is reported with a :class:`CacheWarning` naming the file and
the reason, and is regenerated; it is never used. Writes go to a temporary file in the same
directory, are flushed to disk and then moved into place with :func:`os.replace` (and the
directory is fsync'ed), so a reader never sees a half-written file.
"""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from pdeml.pde.datasets import PDEDataset, dataset_request, generate_dataset
from pdeml.pde.diffusion_sorption import DiffusionSorption
from pdeml.pde.diffusion_sorption_solver import DiffusionSorptionSolver
from pdeml.core.io import atomic_write, check_overwrite, request_record

__all__ = [
    "CacheError",
    "CacheWarning",
    "CachedDataset",
    "array_checksum",
    "dataset_path",
    "default_cache_dir",
    "is_pdeml_dataset",
    "load_dataset",
    "load_or_generate",
    "save_dataset",
]

_ARRAYS = ("u0", "u")


class CacheWarning(UserWarning):
    """A cache file was unusable (unreadable, wrong checksum or metadata) and is regenerated."""


class CacheError(Exception):
    """Raised by :func:`load_dataset` when a file is unusable; the message says why."""


class RequestMismatchError(CacheError):
    """A readable, intact dataset file pdeml wrote, but for another request (the message
    names the differing keys)."""


class CachedDataset(NamedTuple):
    """Result of :func:`load_or_generate`."""

    dataset: PDEDataset
    path: Path
    checksum: str
    from_cache: bool


def default_cache_dir() -> Path:
    """``$PDEML_CACHE_DIR`` if set, else ``~/.cache/pdeml``."""
    env = os.environ.get("PDEML_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pdeml"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and C-order bytes (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(_canonical([name, a.dtype.str, list(a.shape)]).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def dataset_path(request: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache file for a request: ``<cache_dir>/<problem class>-<16 hex digits of its hash>.npz``."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    name = request.get("problem", {}).get("class", "dataset")
    digest = hashlib.sha256(_canonical(request).encode()).hexdigest()[:16]
    return cache_dir / f"{name}-{digest}.npz"




def is_pdeml_dataset(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable ``.npz`` written by :func:`save_dataset` (it holds a
    ``metadata_json`` entry with a checksum); the checksum itself is not verified here."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "metadata_json" not in z.files:
                return False
            return "checksum" in json.loads(str(z["metadata_json"]))
    except Exception:  # not a zip, damaged, not JSON: not recognisably ours
        return False


def _recorded_dataset_request(path) -> dict | None:
    """The request stored in a dataset file's metadata, as a request record (None: none)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            request = json.loads(str(z["metadata_json"])).get("request")
    except Exception:  # damaged: nothing proves which request wrote it
        return None
    return None if request is None else request_record(request)


def save_dataset(path: str | os.PathLike, dataset: PDEDataset) -> str:
    """Write ``dataset`` atomically to ``path`` (``.npz``); returns the arrays' checksum.

    An existing ``path`` is only replaced if it is a dataset file pdeml wrote
    (:func:`is_pdeml_dataset`) for the same request (``dataset.metadata["request"]``, the
    parameters that determine the data, compared with the one stored in the file); any other
    file raises ``FileExistsError`` naming it. A dataset without a ``request`` in its metadata
    is only checked for being pdeml's.
    """
    path = Path(path)
    check_overwrite(path, ours=is_pdeml_dataset, what="dataset",
                    request=dataset.metadata.get("request"), recorded=_recorded_dataset_request)
    return _write_dataset(path, dataset)


def _write_dataset(path: Path, dataset: PDEDataset) -> str:
    arrays = {name: np.asarray(getattr(dataset, name)) for name in _ARRAYS}
    checksum = array_checksum(arrays)
    metadata = dict(dataset.metadata, checksum=checksum)

    def chunks():
        buf = io.BytesIO()
        np.savez_compressed(buf, metadata_json=np.asarray(_canonical(metadata)), **arrays)
        yield buf.getvalue()

    atomic_write(path, chunks())
    return checksum


def load_dataset(
    path: str | os.PathLike, expected_request: dict[str, Any] | None = None
) -> PDEDataset:
    """Read and verify a cached dataset.

    Args:
        path: the ``.npz`` file.
        expected_request: if given, the stored ``metadata["request"]`` must equal it (after a
            JSON round trip).

    Returns:
        The :class:`PDEDataset` (``metadata`` includes ``"checksum"``).

    Raises:
        CacheError: the file is missing, unreadable or truncated, lacks an entry, its checksum
            does not match its arrays, or its request differs (the message names the keys).
    """
    path = Path(path)
    if not path.exists():
        raise CacheError("file does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: np.array(z[name]) for name in _ARRAYS}
            metadata = json.loads(str(z["metadata_json"]))
    except Exception as e:  # a damaged zip can fail in many ways (zip, zlib, header, key)
        raise CacheError(f"unreadable ({type(e).__name__}: {e})") from e
    stored = metadata.get("checksum")
    actual = array_checksum(arrays)
    if stored != actual:
        raise CacheError(f"checksum mismatch (stored {stored}, computed {actual})")
    if expected_request is not None:
        want = json.loads(_canonical(expected_request))
        have = metadata.get("request")
        if have != want:
            keys = sorted(
                k for k in set(want) | set(have or {})
                if (have or {}).get(k) != want.get(k)
            )
            raise RequestMismatchError(f"metadata mismatch in {keys}")
    return PDEDataset(u0=arrays["u0"], u=arrays["u"], metadata=metadata)


def load_or_generate(
    problem: DiffusionSorption,
    num_samples: int,
    seed: int,
    *,
    solver: DiffusionSorptionSolver | None = None,
    ic_kind: str = "pdebench",
    ic_low: float = 0.0,
    ic_high: float = 0.2,
    dtype=None,
    cache_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> CachedDataset:
    """The dataset of :func:`~pdeml.pde.datasets.generate_dataset` for ``jax.random.key(seed)``,
    read from the cache when a valid file exists, otherwise generated and written.

    Args:
        problem, num_samples, solver, ic_kind, ic_low, ic_high, dtype, batch_size, progress:
            as in :func:`~pdeml.pde.datasets.generate_dataset`.
        seed: integer seed of the initial conditions (recorded in the metadata).
        cache_dir: directory (default :func:`default_cache_dir`); ignored if ``path`` is given.
        path: explicit file to use instead of the hashed name in ``cache_dir``.

    Returns:
        :class:`CachedDataset` (dataset, path, checksum, whether it came from the cache).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> p = DiffusionSorption(nx=16, nt=6)
        >>> first = load_or_generate(p, 2, seed=0, cache_dir=d)
        >>> again = load_or_generate(p, 2, seed=0, cache_dir=d)
        >>> first.from_cache, again.from_cache, first.checksum == again.checksum
        (False, True, True)
    """
    key = jax.random.key(check_seed(seed))
    request = dataset_request(problem, num_samples, key, solver=solver, ic_kind=ic_kind,
                              ic_low=ic_low, ic_high=ic_high, dtype=dtype)
    request["seed"] = seed
    return cache_or_generate(
        request,
        lambda: generate_dataset(problem, num_samples, key, solver=solver, ic_kind=ic_kind,
                                 ic_low=ic_low, ic_high=ic_high, batch_size=batch_size,
                                 dtype=dtype, progress=progress),
        cache_dir=cache_dir, path=path,
    )


def check_seed(seed) -> int:
    """``seed`` if it is a non-negative Python integer (recorded in cache metadata), else raise."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def cache_or_generate(
    request: dict[str, Any],
    generate: Callable[[], PDEDataset],
    *,
    cache_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> CachedDataset:
    """The cache protocol shared by every dataset: read the file for ``request`` if it is valid,
    otherwise call ``generate()`` and write its result atomically with a checksum.

    The file name is a hash of ``request`` in ``cache_dir`` (or the explicit ``path``). A
    file that cannot be read, fails its checksum or was made for another request is reported
    with a :class:`CacheWarning` and regenerated -- never silently used. An explicit ``path``
    that exists and is not a dataset pdeml wrote (:func:`is_pdeml_dataset`), or is an intact
    one pdeml wrote for another request, is never replaced: ``FileExistsError`` names it (a
    damaged pdeml dataset there is regenerated, with a warning).
    """
    explicit = path is not None
    path = dataset_path(request, cache_dir) if path is None else Path(path)
    if explicit:
        check_overwrite(path, ours=is_pdeml_dataset, what="dataset (--out)")
    if path.exists():
        try:
            ds = load_dataset(path, expected_request=request)
            return CachedDataset(ds, path, ds.metadata["checksum"], True)
        except RequestMismatchError as e:
            if explicit:
                raise FileExistsError(
                    f"{str(path)!r} holds a dataset pdeml generated for another request ({e}); "
                    "refusing to overwrite it: choose another --out or delete the file"
                ) from None
            warnings.warn(f"cache file {path} is unusable: {e}; regenerating it", CacheWarning,
                          stacklevel=3)
        except CacheError as e:
            warnings.warn(f"cache file {path} is unusable: {e}; regenerating it", CacheWarning,
                          stacklevel=3)
    ds = generate()
    metadata = dict(ds.metadata, request=request)
    ds = ds._replace(metadata=metadata)
    # An explicit path was checked above; a file in the cache directory under its hashed name
    # is the cache's own (possibly damaged) copy.
    checksum = _write_dataset(path, ds)
    ds = ds._replace(metadata=dict(metadata, checksum=checksum))
    return CachedDataset(ds, path, checksum, False)
