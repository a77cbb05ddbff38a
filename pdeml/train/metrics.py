"""Metrics as JSON lines: append-only during a run, truncated to the checkpoint on resume.

Each line of ``metrics.jsonl`` is one JSON object with at least ``"step"`` (int) and
``"kind"`` (``"train"`` or ``"eval"``), plus scalar values (``"loss"``, user metrics) and
``"wall_time"`` (seconds of training since the run first started, accumulated over resumes).
A ``"train"`` record with ``"step": s`` holds the loss computed *during* update ``s``
(0-based), i.e. at the parameters before that update; an ``"eval"`` record with ``"step": s``
evaluates the parameters after ``s`` updates.

Every record is written with a single ``write`` of a complete line and flushed; a crash can at
worst leave one partial last line, which :func:`read_metrics` skips and :meth:`MetricsWriter.truncate`
removes. On resume from a checkpoint taken after ``S`` updates the loop calls
``truncate(S)``, dropping every record with ``step >= S`` (those will be produced again), so
no step is ever logged twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pdeml.core.io import atomic_write

__all__ = ["MetricsWriter", "read_metrics", "to_scalar"]


def to_scalar(x) -> float | int | bool:
    """Convert a 0-d array/NumPy/Python number to a JSON-friendly Python scalar.

    Non-finite floats stay floats (written as ``NaN``/``Infinity``, which Python's ``json`` reads).
    """
    a = np.asarray(x)
    if a.shape != ():
        raise ValueError(f"metric values must be scalars, got an array of shape {a.shape}")
    v = a.item()
    if isinstance(v, complex):
        raise TypeError("metric values must be real scalars, got a complex number")
    return v


def _parse_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a partial last line from an interrupted write
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(rec)
    return out


def read_metrics(path, *, kind: str | None = None) -> list[dict]:
    """Read the records of a metrics file (skipping a partial or unreadable line).

    Arguments:
        path: the ``.jsonl`` file or a run directory holding ``metrics.jsonl``.
        kind: keep only records of this kind (``"train"`` or ``"eval"``).

    Returns:
        A list of dicts in file order (empty if the file does not exist).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    recs = _parse_lines(path.read_text(encoding="utf-8"))
    if kind is not None:
        recs = [r for r in recs if r.get("kind") == kind]
    return recs


class MetricsWriter:
    """Append-only JSON-lines metrics log.

    Arguments:
        path: the ``.jsonl`` file (parent directories are created).

    Example:
        >>> import tempfile, os
        >>> w = MetricsWriter(os.path.join(tempfile.mkdtemp(), "m.jsonl"))
        >>> w.write({"step": 0, "kind": "train", "loss": 1.5})
        >>> w.write({"step": 1, "kind": "train", "loss": 0.5})
        >>> w.truncate(1)   # resume after 1 update: step 1 will be logged again
        1
        >>> [r["step"] for r in read_metrics(w.path)]
        [0]
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a dict with an int ``"step"``; values are converted to scalars)."""
        if "step" not in record:
            raise ValueError("a metrics record needs a 'step' entry")
        rec = {k: (v if isinstance(v, str) else to_scalar(v)) for k, v in record.items()}
        line = json.dumps(rec, allow_nan=True) + "\n"
        # One write of a whole line in append mode: concurrent readers never see half records,
        # and a crash leaves at most one partial trailing line.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def write_many(self, records) -> None:
        """Append several records with one write."""
        lines = []
        for record in records:
            if "step" not in record:
                raise ValueError("a metrics record needs a 'step' entry")
            rec = {k: (v if isinstance(v, str) else to_scalar(v)) for k, v in record.items()}
            lines.append(json.dumps(rec, allow_nan=True) + "\n")
        if lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()

    def sync(self) -> None:
        """``fsync`` the file, making every record written so far durable."""
        if self.path.exists():
            with open(self.path, "a", encoding="utf-8") as f:
                os.fsync(f.fileno())

    def truncate(self, step: int) -> int:
        """Drop records with ``step >= step``, a partial last line, and repeated ``(step, kind)``.

        Rewrites the file atomically (temporary file + ``os.replace``).

        Returns:
            The number of records removed.
        """
        if not self.path.exists():
            return 0
        text = self.path.read_text(encoding="utf-8")
        recs = _parse_lines(text)
        seen = set()
        kept = []
        for r in recs:
            key = (int(r["step"]), r.get("kind"))
            if key[0] >= step or key in seen:
                continue
            seen.add(key)
            kept.append(r)
        n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if len(kept) == n_lines:
            return 0
        # temporary file + fsync + rename; a failed write (a full disk) leaves the old file
        atomic_write(self.path, "".join(json.dumps(r, allow_nan=True) + "\n"
                                        for r in kept).encode("utf-8"))
        return n_lines - len(kept)

