"""Process-level settings that change speed, never results: the CPU memory allocator.

glibc's ``malloc`` serves a block above its mmap threshold (at most 32 MB) with a fresh
``mmap``, and the kernel zero-fills every 4 KiB page of it on first touch. JAX on CPU allocates
the arrays a compiled call returns afresh on every call, so a call that returns a large array
pays that page-fault cost each time. :func:`set_cpu_allocator` keeps freed memory in the
process instead, so the next call reuses pages that are already mapped.

Measured on the 2-core development CPU (other jobs running; ``benchmarks/constraint_layer.py
--profile-only`` and ``--allocator``): building the diffusion-sorption least-squares problem at
m = 1e5 points with N = 64 basis functions (154 MB of features returned) took 238 ms with
glibc's default and 123 ms tuned; a copy of a 53 MB array 20 ms against 2.7 ms. Work whose
large arrays stay inside one compiled call gains little: the hard-constraint layer's forward
at m = 1e5 took 0.22 / 1.14 s (N = 16 / 64) with the default allocator and 0.29 / 0.87 s
tuned, differences of the order of the machine's noise.

The trade-off: the process's resident memory stays at its high-water mark (memory freed by JAX
is reused by the process, not returned to the system). That suits a training or benchmark
process; the ``pdeml`` command line calls it at start-up (``PDEML_CPU_ALLOCATOR=default``
switches that off). Library code never calls it on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["set_cpu_allocator"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MB = 1 << 20
_MODES = {
    # large blocks from the heap, never trimmed: freed pages stay mapped for the next call
    "tuned": {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1, "M_TOP_PAD": 64 * _MB},
    # glibc's steady state for a process that frees large blocks: its dynamic mmap threshold
    # has risen to the 32 MB maximum, the trim threshold is twice that, no top pad
    "default": {"M_MMAP_MAX": 65536, "M_MMAP_THRESHOLD": 32 * _MB,
                "M_TRIM_THRESHOLD": 64 * _MB, "M_TOP_PAD": 0},
}
_PARAMS = {"M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD, "M_TOP_PAD": _M_TOP_PAD,
           "M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD, "M_MMAP_MAX": _M_MMAP_MAX}


def _glibc():
    """``(mallopt, version)`` or ``(None, reason)``."""
    if not sys.platform.startswith("linux"):
        return None, f"not Linux ({sys.platform}): the system allocator is left as it is"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return None, "the C library is not glibc (no mallopt / gnu_get_libc_version)"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt, version


def set_cpu_allocator(mode: str = "tuned") -> dict:
    """Set how glibc's ``malloc`` treats large blocks in this process (glibc only).

    ``mode="tuned"``: ``M_MMAP_MAX = 0`` (large blocks come from the heap, not from fresh
    ``mmap`` calls), ``M_TRIM_THRESHOLD`` at its maximum (freed memory stays in the heap) and
    ``M_TOP_PAD`` 64 MB (the heap grows in steps of at least that). ``mode="default"``: the
    state glibc reaches by itself in a process that frees large blocks (mmap threshold 32 MB,
    trim threshold 64 MB), for measuring the difference. Only speed changes: every
    computation gives the same bits.

    Returns:
        ``{"mode", "applied", "reason", ...}``; ``applied`` is False, with the reason, when
        the C library is not glibc (macOS, musl, Windows) or ``mallopt`` refused a setting.

    Example (``"default"`` here, so that running the example leaves the process as glibc
    would have it; a training script calls it with ``"tuned"``):
        >>> info = set_cpu_allocator("default")
        >>> info["mode"], isinstance(info["applied"], bool)
        ('default', True)
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    info = {"mode": mode, "applied": False, "reason": ""}
    mallopt, version = _glibc()
    if mallopt is None:
        info["reason"] = version
        return info
    settings = _MODES[mode]
    refused = [name for name, value in settings.items() if mallopt(_PARAMS[name], value) != 1]
    info.update(glibc=version, settings=dict(settings))
    if refused:
        info["reason"] = f"mallopt refused {refused}"
    else:
        info.update(applied=True, reason=f"glibc {version} malloc set to {mode!r}")
    return info


def set_cpu_allocator_from_environment() -> dict | None:
    """:func:`set_cpu_allocator` with ``PDEML_CPU_ALLOCATOR`` (``tuned``, the default, or
    ``default``, which leaves the allocator untouched); the ``pdeml`` command calls it."""
    choice = os.environ.get("PDEML_CPU_ALLOCATOR", "tuned").strip().lower()
    if choice not in _MODES:
        raise ValueError(f"PDEML_CPU_ALLOCATOR must be 'tuned' or 'default', got {choice!r}")
    return None if choice == "default" else set_cpu_allocator(choice)
