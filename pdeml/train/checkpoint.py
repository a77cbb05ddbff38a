"""Atomic, checksummed checkpoints of arbitrary pytrees, and a keep-last-k manager.

File format (one file per checkpoint, extension ``.eqx``)::

    line 1   b"PDEML-CHECKPOINT 1\\n"                      (magic + format version)
    line 2   one line of UTF-8 JSON, then b"\\n":
               {"format": 1,
                "payload_bytes": <int>,                    (length of the payload)
                "sha256": <hex>,                           (of canonical metadata JSON + payload)
                "metadata": {...}}                         (JSON-serialisable, user + loop data)
    rest     payload: the array leaves of the pytree in flattening order, written by
             :func:`equinox.tree_serialise_leaves` (one ``.npy`` record per leaf).

Restoring needs a *template* pytree with the same structure (``like``), as for
:func:`equinox.tree_deserialise_leaves`; the shapes and dtypes read back are checked against
it. Typed PRNG keys (``jax.random.key``) are stored as their raw ``key_data`` and re-wrapped
with the template's implementation.

Writes are atomic: the bytes go to a temporary file in the same directory, are flushed and
``fsync``-ed, then ``os.replace``-d onto the final name (and the directory is ``fsync``-ed), so
a crash leaves either the old file or the complete new one. Truncation or bit flips are
detected by the length and SHA-256 checks and reported as :class:`CheckpointError` naming the
file; :class:`CheckpointManager` then falls back to the previous good checkpoint.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pdeml.core.io import ChecksumError, read_checksummed, write_checksummed

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]

_KIND = "checkpoint"  # magic line b"PDEML-CHECKPOINT 1\n", see pdeml.core.io


class CheckpointError(ChecksumError):
    """A checkpoint file is missing, truncated, corrupt, or does not match its template."""


def _is_typed_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _strip_keys(tree):
    return jax.tree_util.tree_map(
        lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree
    )


def save_checkpoint(path, tree, *, metadata: dict | None = None) -> Path:
    """Atomically write ``tree`` (any pytree of arrays/scalars) and JSON ``metadata`` to ``path``.

    Arguments:
        path: destination file (parent directories are created).
        tree: pytree to store, e.g. ``{"model": model, "opt_state": opt_state, "key": key}``.
            Non-array leaves (functions, strings) are not stored; they come from the template
            when loading.
        metadata: JSON-serialisable dict stored in the header (readable without the template).

    Returns:
        The path written.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> d = tempfile.mkdtemp()
        >>> p = save_checkpoint(d + "/a.eqx", {"w": jnp.ones(3)}, metadata={"step": 7})
        >>> tree, meta = load_checkpoint(p, {"w": jnp.zeros(3)})
        >>> int(tree["w"].sum()), meta["step"]
        (3, 7)
    """
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, _strip_keys(tree))
    return write_checksummed(path, _KIND, buf.getvalue(), metadata)


def _read_verified(path: Path) -> tuple[dict, bytes]:
    try:
        return read_checksummed(path, _KIND, what="checkpoint file")
    except CheckpointError:
        raise
    except ChecksumError as e:
        raise CheckpointError(str(e)) from None


def read_checkpoint_metadata(path) -> dict:
    """Return the metadata dict of the checkpoint at ``path`` after verifying its checksum.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt (the message names it).
    """
    return _read_verified(Path(path))[0]


def load_checkpoint(path, like) -> tuple[Any, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`, verifying length and checksum.

    Arguments:
        path: checkpoint file.
        like: template pytree with the same structure, shapes and dtypes as the saved tree
            (e.g. a freshly initialised model and optimiser state); its non-array leaves are
            kept as they are.

    Returns:
        ``(tree, metadata)``.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or its leaves do not match
            ``like`` (shape/dtype/count); the message names the file.
    """
    path = Path(path)
    metadata, payload = _read_verified(path)
    like_flat = _strip_keys(like)
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like_flat)
    except Exception as e:  # numpy raises several types for mismatched records
        raise CheckpointError(
            f"checkpoint file {str(path)!r} does not match the template `like`: {e}"
        ) from None
    got = jax.tree_util.tree_leaves_with_path(tree)
    want = jax.tree_util.tree_leaves_with_path(like_flat)
    for (kp, a), (_, b) in zip(got, want):
        if hasattr(b, "shape") and hasattr(b, "dtype"):
            if np.shape(a) != np.shape(b) or np.asarray(a).dtype != np.dtype(b.dtype):
                raise CheckpointError(
                    f"checkpoint file {str(path)!r} does not match the template `like` at leaf "
                    f"{jax.tree_util.keystr(kp)}: stored {np.asarray(a).dtype}{list(np.shape(a))}, "
                    f"template {np.dtype(b.dtype)}{list(np.shape(b))}"
                )
    # Re-wrap typed PRNG keys with the template's implementation.
    tree = jax.tree_util.tree_map(
        lambda t, x: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
        if _is_typed_key(t)
        else x,
        like,
        tree,
    )
    return tree, metadata


_NAME = re.compile(r"^(?P<prefix>.+)_(?P<step>\d{10})\.eqx$")


class CheckpointManager:
    """Numbered checkpoints ``<prefix>_<step:010d>.eqx`` in one directory, keeping the last ``keep``.

    Arguments:
        directory: where checkpoints live (created on first save).
        keep: how many of the newest checkpoints to keep (>= 1); older ones are deleted after
            each successful save. Keeping more than one lets :meth:`restore` fall back when
            the newest file is damaged.
        prefix: file-name prefix.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> m = CheckpointManager(tempfile.mkdtemp(), keep=2)
        >>> for s in (10, 20, 30):
        ...     _ = m.save(s, {"w": jnp.full(2, s)})
        >>> m.steps()
        [20, 30]
        >>> step, tree, meta = m.restore({"w": jnp.zeros(2, jnp.int32)})
        >>> step, int(tree["w"][0])
        (30, 30)
    """

    def __init__(self, directory, *, keep: int = 3, prefix: str = "ckpt"):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        if not prefix or "/" in prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a non-empty file-name prefix, got {prefix!r}")
        self.directory = Path(directory)
        self.keep = keep
        self.prefix = prefix

    def path(self, step: int) -> Path:
        """The file name used for ``step``."""
        return self.directory / f"{self.prefix}_{int(step):010d}.eqx"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file present, ascending (files are not verified here)."""
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m and m["prefix"] == self.prefix:
                out.append(int(m["step"]))
        return sorted(out)

    def latest_step(self) -> int | None:
        """Newest step with a checkpoint file, or ``None``."""
        s = self.steps()
        return s[-1] if s else None

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by saves that crashed before ``os.replace``.

        Only call this when no other process is saving into the same directory.

        Returns:
            The number of files removed.
        """
        if not self.directory.is_dir():
            return 0
        n = 0
        for p in self.directory.glob(f".{self.prefix}_*.eqx.*.tmp"):
            try:
                p.unlink()
                n += 1
            except FileNotFoundError:
                pass
        return n

    def save(self, step: int, tree, *, metadata: dict | None = None) -> Path:
        """Atomically save ``tree`` for ``step`` (``metadata["step"]`` is set), then prune."""
        metadata = dict(metadata or {})
        metadata["step"] = int(step)
        path = save_checkpoint(self.path(step), tree, metadata=metadata)
        for old in self.steps()[: -self.keep]:
            try:
                self.path(old).unlink()
            except FileNotFoundError:
                pass
        return path

    def restore(self, like, *, step: int | None = None) -> tuple[int, Any, dict]:
        """Load the newest good checkpoint (or exactly ``step``).

        A damaged newest file is reported with a :class:`UserWarning` naming it and the next
        older one is tried.

        Returns:
            ``(step, tree, metadata)``.

        Raises:
            CheckpointError: no checkpoint exists, ``step`` is damaged, or every file is
                damaged (the message lists each file and its problem).
        """
        if step is not None:
            tree, meta = load_checkpoint(self.path(step), like)
            return int(step), tree, meta
        candidates = self.steps()[::-1]
        if not candidates:
            raise CheckpointError(f"no checkpoint named {self.prefix}_*.eqx in {str(self.directory)!r}")
        problems = []
        for s in candidates:
            try:
                tree, meta = load_checkpoint(self.path(s), like)
            except CheckpointError as e:
                problems.append(str(e))
                warnings.warn(f"{e}; trying the previous checkpoint", UserWarning, stacklevel=2)
                continue
            return s, tree, meta
        raise CheckpointError(
            "every checkpoint in "
            + repr(str(self.directory))
            + " is unreadable:\n  "
            + "\n  ".join(problems)
        )
