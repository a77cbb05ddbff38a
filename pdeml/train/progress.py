"""A progress bar with live scalars: tqdm on a terminal, periodic plain lines otherwise.

On a TTY a :mod:`tqdm` bar shows the step, rate and the latest scalars (``loss=...``). When the
stream is not a terminal (CI logs, ``nohup``, notebooks redirected to files) carriage-return
bars would garble the log, so it prints one plain line every ``log_interval_s`` seconds (and at
the end) instead::

    [train] step 1200/5000 (24%) 310.2 it/s loss=1.234e-03 grad_norm=4.1e-01

Other pillars reuse it for any long loop (dataset generation, PnP iterations, solvers).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

__all__ = ["ProgressBar", "format_scalars", "progress_iter"]


def format_scalars(scalars: Mapping[str, float]) -> str:
    """``{"loss": 0.00123}`` -> ``"loss=1.230e-03"`` (compact, fixed-width-ish)."""
    parts = []
    for k, v in scalars.items():
        try:
            parts.append(f"{k}={float(v):.3e}")
        except (TypeError, ValueError):
            parts.append(f"{k}={v}")
    return " ".join(parts)


class ProgressBar:
    """Progress over ``total`` units with live scalar values.

    Arguments:
        total: number of units (e.g. optimiser steps).
        initial: units already done (e.g. the step a run resumed from).
        desc: label shown in front.
        enabled: ``False`` disables all output (cheap no-op).
        stream: where to write (default ``sys.stderr``).
        tty: force the bar (``True``) or plain lines (``False``); default: ``stream.isatty()``.
        log_interval_s: seconds between plain lines when not a TTY.

    Use as a context manager (or call :meth:`close`)::

        with ProgressBar(1000, desc="train") as bar:
            for step in range(1000):
                ...
                bar.update(1, loss=loss)

    Example:
        >>> import io
        >>> s = io.StringIO()
        >>> with ProgressBar(4, desc="demo", stream=s, tty=False, log_interval_s=0.0) as bar:
        ...     bar.update(4, loss=0.5)
        >>> "step 4/4 (100%)" in s.getvalue() and "loss=5.000e-01" in s.getvalue()
        True
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        desc: str = "train",
        enabled: bool = True,
        stream=None,
        tty: bool | None = None,
        log_interval_s: float = 30.0,
    ):
        if total < 0 or initial < 0:
            raise ValueError(f"total and initial must be >= 0, got total={total}, initial={initial}")
        if log_interval_s < 0:
            raise ValueError(f"log_interval_s must be >= 0, got {log_interval_s}")
        self.total = int(total)
        self.n = int(initial)
        self.desc = desc
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.log_interval_s = float(log_interval_s)
        self.scalars: dict[str, float] = {}
        self._start_n = self.n
        self._t0 = time.perf_counter()
        self._last_line = -float("inf")
        self._closed = False
        self._bar = None
        if enabled and tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.n,
                desc=desc,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
            )

    def update(self, n: int = 1, **scalars) -> None:
        """Advance by ``n`` units and set the live scalars shown (e.g. ``loss=...``)."""
        self.n += int(n)
        if scalars:
            self.scalars.update(scalars)
        if not self.enabled:
            return
        if self._bar is not None:
            if scalars:
                self._bar.set_postfix_str(format_scalars(self.scalars), refresh=False)
            self._bar.update(int(n))
            return
        now = time.perf_counter()
        if now - self._last_line >= self.log_interval_s or self.n >= self.total:
            self._print_line(now)

    def _print_line(self, now: float) -> None:
        self._last_line = now
        pct = 100.0 * self.n / self.total if self.total else 100.0
        dt = now - self._t0
        rate = (self.n - self._start_n) / dt if dt > 0 else float("nan")
        text = f"[{self.desc}] step {self.n}/{self.total} ({pct:.0f}%) {rate:.1f} it/s"
        if self.scalars:
            text += " " + format_scalars(self.scalars)
        print(text, file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (a final plain line if the last one is stale)."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._last_line < self._t0 or self.n < self.total:
            self._print_line(time.perf_counter())

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_iter(iterable, total: int, *, desc: str = "", **bar_options):
    """Yield from ``iterable`` while a :class:`ProgressBar` over ``total`` items advances (a bar
    on a terminal, plain lines otherwise); the bar closes when the loop ends or breaks.

    Example:
        >>> import io
        >>> s = io.StringIO()
        >>> list(progress_iter(range(3), 3, desc="solve", stream=s, tty=False, log_interval_s=0.0))
        [0, 1, 2]
        >>> "step 3/3 (100%)" in s.getvalue()
        True
    """
    with ProgressBar(total, desc=desc, **bar_options) as bar:
        for item in iterable:
            yield item
            bar.update(1)
