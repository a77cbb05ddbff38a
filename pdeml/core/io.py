"""File-system helpers shared by every file pdeml writes (checkpoints, caches, models, results).

- :func:`atomic_write`: bytes go to a temporary file in the destination's directory, are
  flushed and ``fsync``-ed, then :func:`os.replace`-d onto the final name (and the directory is
  ``fsync``-ed): a crash leaves either the old file or the complete new one, never a mixture.
- :func:`write_checksummed` / :func:`read_checksummed`: a self-describing file with a magic
  line, a one-line JSON header (format, payload length, SHA-256 of metadata + payload, the
  metadata) and the payload. Truncation and bit flips are detected on read and reported as
  :class:`ChecksumError` naming the file.
- :func:`write_with_sidecar` / :func:`verify_sidecar`: files that keep their own format (JSON,
  ``.npz``) get a ``<name>.sha256`` beside them (``sha256sum`` format); :func:`write_json` /
  :func:`read_json` for JSON documents (results, configurations).
- :func:`check_overwrite`: refuse to replace a file that pdeml did not write or, given a
  ``request``, wrote for another request; :func:`write_protected` checks and writes in one call.
  A *request* is what the caller asked for: a JSON-serialisable description of the command or
  function and its configuration (:func:`request_fingerprint` hashes it). It is recorded with
  the file (a ``# pdeml-request`` comment line in the sidecar, which ``sha256sum -c`` skips; in
  the header of a checksummed file) and a rerun of the same request may replace the file, any
  other may not.
- :class:`DirectoryLock`: an exclusive ``flock`` on a lock file, for one writer per directory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "ChecksumError",
    "DirectoryLock",
    "DirectoryLockedError",
    "atomic_write",
    "check_overwrite",
    "describe_request",
    "fsync_dir",
    "is_checksummed",
    "read_checksummed",
    "read_json",
    "recorded_request",
    "request_differences",
    "request_fingerprint",
    "request_record",
    "sidecar_path",
    "verify_sidecar",
    "write_checksummed",
    "write_json",
    "write_protected",
    "write_with_sidecar",
]


class ChecksumError(RuntimeError):
    """A pdeml file is missing, truncated, corrupt, foreign or of another kind."""


class DirectoryLockedError(RuntimeError):
    """Another process holds the lock on a directory (e.g. trains in the same run directory)."""


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX); a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, chunks: bytes | Iterable[bytes]) -> Path:
    """Write ``chunks`` (bytes or an iterable of bytes) to ``path`` atomically.

    The parent directory is created. On any error (a full disk included) the temporary file is
    removed and the previous content of ``path``, if any, is left untouched. The file gets the
    usual mode for new files (``0o666`` less the umask), not the temporary file's ``0o600``.
    """
    path = Path(path)
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        chunks = [bytes(chunks)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def _canonical(metadata: dict) -> bytes:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _magic(kind: str) -> bytes:
    if not kind or any(c.isspace() for c in kind):
        raise ValueError(f"kind must be a non-empty word, got {kind!r}")
    return f"PDEML-{kind.upper()} 1\n".encode("ascii")


def checksummed_bytes(kind: str, payload: bytes, metadata: dict | None = None) -> list[bytes]:
    """The chunks of a checksummed file of ``kind`` (see :func:`write_checksummed`)."""
    metadata = {} if metadata is None else dict(metadata)
    try:
        meta_bytes = _canonical(metadata)
    except TypeError as e:
        raise TypeError(f"metadata must be JSON-serialisable: {e}") from None
    header = {
        "format": 1,
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(meta_bytes + payload).hexdigest(),
        "metadata": metadata,
    }
    return [_magic(kind), json.dumps(header, sort_keys=True).encode("utf-8") + b"\n", payload]


def write_checksummed(path, kind: str, payload: bytes, metadata: dict | None = None) -> Path:
    """Atomically write a checksummed file: magic ``PDEML-<KIND> 1``, a JSON header, payload.

    ``metadata`` (JSON-serialisable) is stored in the header and covered by the checksum.
    """
    return atomic_write(path, checksummed_bytes(kind, payload, metadata))


def is_checksummed(path, kind: str | None = None) -> bool:
    """Whether ``path`` starts like a pdeml checksummed file (of ``kind``, if given); the
    checksum itself is not verified here."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if kind is not None:
        return head.startswith(_magic(kind))
    return head.startswith(b"PDEML-") and b" 1\n" in head


def read_checksummed(path, kind: str, *, what: str | None = None) -> tuple[dict, bytes]:
    """``(metadata, payload)`` of a file written by :func:`write_checksummed`, verified.

    Raises:
        ChecksumError: the file is missing, is not a pdeml ``kind`` file, or is truncated or
            corrupt (length or SHA-256 mismatch); the message names the file.
    """
    path = Path(path)
    what = what or f"pdeml {kind} file"
    magic = _magic(kind)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ChecksumError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ChecksumError(f"{what} {str(path)!r} is a directory") from None
    if not raw.startswith(magic):
        raise ChecksumError(
            f"{what} {str(path)!r} is corrupt or not a pdeml file: it does not start with the "
            f"magic {magic!r} (wrong file or damaged header)"
        )
    end = raw.find(b"\n", len(magic))
    if end < 0:
        raise ChecksumError(f"{what} {str(path)!r} is truncated inside its header")
    try:
        header = json.loads(raw[len(magic) : end].decode("utf-8"))
        n_payload = int(header["payload_bytes"])
        digest = str(header["sha256"])
        metadata = dict(header["metadata"])
        fmt = int(header["format"])
    except (ValueError, KeyError, TypeError) as e:
        raise ChecksumError(f"{what} {str(path)!r} is corrupt: unreadable header ({e})") from None
    if fmt != 1:
        raise ChecksumError(f"{what} {str(path)!r} has format {fmt}; this pdeml reads format 1")
    payload = raw[end + 1 :]
    if len(payload) != n_payload:
        raise ChecksumError(
            f"{what} {str(path)!r} is truncated or corrupt: payload has {len(payload)} bytes, "
            f"header says {n_payload}"
        )
    if hashlib.sha256(_canonical(metadata) + payload).hexdigest() != digest:
        raise ChecksumError(f"{what} {str(path)!r} is corrupt: SHA-256 checksum mismatch")
    return metadata, payload


def sidecar_path(path) -> Path:
    """``<path>.sha256``: the checksum file written beside ``path`` by :func:`write_with_sidecar`."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


_REQUEST_TAG = "# pdeml-request"


def request_fingerprint(request) -> str:
    """SHA-256 of ``request`` as canonical JSON (sorted keys; paths and other non-JSON values
    as their ``str``): the identity of a request, recorded with the files written for it."""
    try:
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as e:
        raise TypeError(f"request must be JSON-serialisable: {e}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_record(request) -> dict:
    """``{"sha256": fingerprint, "request": request as JSON}``: what is stored with a file."""
    return {"sha256": request_fingerprint(request),
            "request": json.loads(json.dumps(request, sort_keys=True, default=str))}


def write_with_sidecar(path, data: bytes, *, request=None) -> Path:
    """Atomically write ``data`` to ``path`` and its SHA-256 to ``<path>.sha256`` (the
    ``sha256sum`` format, so ``sha256sum -c`` verifies it too). For files people open with
    other tools (JSON, ``.npz``), which must stay in their own format.

    With ``request``, the sidecar gets a second line ``# pdeml-request <json>`` (fingerprint
    and request; ``sha256sum -c`` skips comment lines) read by :func:`recorded_request`. This
    writes unconditionally: :func:`write_protected` checks before writing."""
    lines = None
    if request is not None:
        record = request_record(request)
        lines = f"{_REQUEST_TAG} {json.dumps(record, sort_keys=True, separators=(',', ':'))}\n"
    path = atomic_write(path, data)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(sidecar_path(path), (f"{digest}  {path.name}\n" + (lines or "")).encode())
    return path


def recorded_request(path) -> dict | None:
    """The request record (``{"sha256": ..., "request": ...}``) in ``path``'s sidecar, or
    None when the sidecar is absent, unreadable, or was written without a request (by a
    pdeml before requests were recorded, or by a content-addressed cache)."""
    try:
        text = sidecar_path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith(_REQUEST_TAG + " "):
            try:
                record = json.loads(line[len(_REQUEST_TAG) + 1:])
            except ValueError:
                return None
            if isinstance(record, dict) and isinstance(record.get("sha256"), str):
                return record
            return None
    return None


def verify_sidecar(path, *, what: str = "file", required: bool = True) -> bool:
    """Check ``path`` against its ``<path>.sha256``.

    Returns True when it matches, False when there is no sidecar and ``required`` is False.

    Raises:
        ChecksumError: the file is missing, its checksum differs, or (``required``) it has no
            sidecar; the message names the file.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise ChecksumError(f"{what} {str(path)!r} does not exist")
    if not side.is_file():
        if required:
            raise ChecksumError(f"{what} {str(path)!r} has no checksum file {side.name!r}: it was "
                                "not written by pdeml, or its checksum was removed")
        return False
    try:
        want = next(line for line in side.read_text().splitlines()
                    if line.strip() and not line.startswith("#")).split()[0]
    except (OSError, StopIteration, IndexError, UnicodeDecodeError):
        raise ChecksumError(f"checksum file {str(side)!r} is unreadable") from None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != want:
        raise ChecksumError(f"{what} {str(path)!r} is corrupt or was changed: SHA-256 differs "
                            f"from {side.name!r}")
    return True


def write_json(path, obj, *, request=None) -> Path:
    """Atomically write ``obj`` as indented JSON, with a ``.sha256`` sidecar (recording
    ``request`` if given; no overwrite check: see :func:`write_protected`)."""
    return write_with_sidecar(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"),
                              request=request)


def read_json(path, *, what: str = "file", required: bool = True):
    """The JSON object in ``path`` after verifying its sidecar (see :func:`verify_sidecar`)."""
    verify_sidecar(path, what=what, required=required)
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ChecksumError(f"{what} {str(path)!r} is not valid JSON ({e})") from None


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1] if prefix else "request": obj}


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_request(request) -> str:
    """A one-line description of a request (its ``command`` / ``function`` if it has one)."""
    if isinstance(request, dict):
        for key in ("command", "function"):
            if isinstance(request.get(key), str):
                return request[key]
    return _short(request)


def request_differences(old, new, *, limit: int = 6) -> str:
    """``field: old -> new`` for the fields where two requests differ (at most ``limit``)."""
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(
        json.loads(json.dumps(new, default=str)))
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    parts = [f"{k}: {_short(a.get(k, '<absent>'), 40)} -> {_short(b.get(k, '<absent>'), 40)}"
             for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts) or "same fields, other values"


def check_overwrite(path, *, ours=None, what: str = "file", request=None,
                    recorded=None) -> None:
    """Refuse to replace an existing ``path`` unless pdeml wrote it (``ours(path)``; default:
    it has a ``.sha256`` sidecar) and, when ``request`` is given, wrote it for the same request.

    The stored request is ``recorded(path)`` (default :func:`recorded_request`, the sidecar's
    record): a dict with the ``sha256`` fingerprint and the ``request``, or None. A file pdeml
    wrote without recording a request (an older pdeml) counts as written for another request:
    nothing proves it was this one. ``request=None`` checks only that pdeml wrote the file: for
    content-addressed files whose name already encodes the request (dataset caches, prior
    caches, checkpoints of a run directory whose configuration is checked).

    Raises:
        FileExistsError: ``path`` exists and was not written by pdeml, or was written for
            another request; the message names the file, the request that wrote it, and what
            to do (choose another path, or delete the file and its ``.sha256``).
        IsADirectoryError: ``path`` is a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a directory")
    if not path.exists():
        return
    if not (ours or (lambda p: sidecar_path(p).is_file()))(path):
        raise FileExistsError(
            f"refusing to overwrite {str(path)!r}: it exists and was not written by pdeml (no "
            f"pdeml checksum); move it away or choose another {what} path"
        )
    if request is None:
        return
    record = (recorded or recorded_request)(path)
    fix = (f"choose another {what} path, or delete {str(path)!r} (and its .sha256) to replace it")
    if record is None:
        raise FileExistsError(
            f"refusing to overwrite {str(path)!r}: pdeml wrote it without recording for which "
            f"request (an earlier pdeml version), so it may belong to another command; {fix}"
        )
    if record.get("sha256") != request_fingerprint(request):
        old = record.get("request")
        raise FileExistsError(
            f"refusing to overwrite {str(path)!r}: pdeml wrote it for another request "
            f"({describe_request(old)}; differs in {request_differences(old, request)}); {fix}"
        )


def write_protected(path, data: bytes, *, request, what: str = "output file") -> Path:
    """Write ``data`` to ``path`` atomically with a ``.sha256`` sidecar recording ``request``,
    unless ``path`` exists and pdeml did not write it for the same ``request``
    (:func:`check_overwrite`; ``FileExistsError`` naming the file and the other request). A
    rerun of the same request replaces its own file (idempotent reruns, resumed runs)."""
    if request is None:
        raise TypeError("write_protected needs the request the file is written for")
    check_overwrite(path, what=what, request=request)
    return write_with_sidecar(path, data, request=request)


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``directory/name`` (a context manager).

    Held for the lifetime of the ``with`` block (or until :meth:`release`); the operating
    system releases it when the process dies, so a killed process never leaves a stale lock.
    A second holder gets :class:`DirectoryLockedError` at once. The lock file records the
    holder's process id. Within one process the lock is re-entrant (a run that locks its
    directory can call :func:`pdeml.train.train`, which locks it again). On platforms without
    ``fcntl`` the lock is a no-op.
    """

    _held: dict[str, list] = {}  # resolved lock path -> [fd, depth], this process only

    def __init__(self, directory, *, name: str = ".lock", what: str = "directory"):
        self.directory = Path(directory)
        self.path = self.directory / name
        self.what = what
        self._fd = None
        self._key = None

    def acquire(self) -> DirectoryLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - non-POSIX
            return self
        if self._key is not None:
            raise RuntimeError("this DirectoryLock is already acquired")
        self.directory.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in DirectoryLock._held:
            DirectoryLock._held[key][1] += 1
            self._key = key
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                try:
                    holder = self.path.read_text().strip() or "another process"
                except OSError:
                    holder = "another process"
                raise DirectoryLockedError(
                    f"{self.what} {str(self.directory)!r} is in use by {holder} (lock file "
                    f"{str(self.path)!r}); wait for it to finish or use another directory"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}\n".encode())
        DirectoryLock._held[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        import fcntl

        entry = DirectoryLock._held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            fd = entry[0]
            del DirectoryLock._held[self._key]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._key = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
