"""What the benchmark scripts share: machine records, timing, result files, tables, plots."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

from pdeml.core.io import read_json as _read_verified_json
from pdeml.core.io import write_protected


def _version(dist):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _affinity():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return None


def _jax():
    import jax

    return jax


#: What :func:`env` can record, by key.
ENV = {
    "jax": lambda: _jax().__version__,
    "jaxlib": lambda: _version("jaxlib"),
    "equinox": lambda: _version("equinox"),
    "optimistix": lambda: _version("optimistix"),
    "jaxopt": lambda: _version("jaxopt"),
    "python": platform.python_version,
    "platform": platform.platform,
    "processor": platform.processor,
    "machine": platform.machine,
    "backend": lambda: _jax().default_backend(),
    "devices": lambda: [str(d) for d in _jax().devices()],
    "device": lambda: f"{_jax().devices()[0].platform}:{_jax().devices()[0].device_kind}",
    "num_devices": lambda: _jax().device_count(),
    "cpu_count": os.cpu_count,
    "cpus": os.cpu_count,
    "cpu_affinity": _affinity,
    "load_average_1_5_15": lambda: list(os.getloadavg()),
    "x64": lambda: bool(_jax().config.jax_enable_x64),
}
#: The machine record of the training benchmarks (diffusion_sorption, moe, navier_stokes).
RUN_ENV = ("jax", "backend", "devices", "machine", "x64")


def env(*keys, **extra) -> dict:
    """``{key: ENV[key]()}`` for ``keys`` in order, then ``extra``."""
    return {k: ENV[k]() for k in keys} | extra


def command(script: str, argv) -> str:
    """The command line that ran ``benchmarks/<script>`` (``argv=None``: this process's)."""
    return " ".join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


# ---- result files ---------------------------------------------------------------------------


def output_request(path) -> dict:
    """The request a benchmark output is written for: the output itself. Any benchmark run may
    replace its own outputs (reruns, ``--append``); a file pdeml did not write, or wrote for
    another request (e.g. a run directory's ``results.json``), is refused."""
    return {"writer": "pdeml benchmarks", "output": os.path.basename(str(path))}


def write_bytes(path, data: bytes) -> None:
    """Write atomically with a ``.sha256`` sidecar (:func:`pdeml.core.io.write_protected`)."""
    write_protected(path, data, request=output_request(path), what="benchmark output")


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj, indent: int = 1, **kw) -> None:
    write_text(path, json.dumps(obj, indent=indent, **kw))


def read_json(path):
    """A benchmark result, verified against its ``.sha256`` sidecar when it has one."""
    return _read_verified_json(path, what="benchmark result", required=False)


def md_table(header, rows, sep=None) -> list[str]:
    """Markdown table lines: ``header`` (a list of cells or a preformatted row) and ``rows``
    (lists of cells or preformatted strings)."""
    row = lambda r: r if isinstance(r, str) else "| " + " | ".join(map(str, r)) + " |"  # noqa: E731
    ncol = len(header) if not isinstance(header, str) else header.count("|") - 1
    return [row(header), sep or "|" + "---|" * ncol] + [row(r) for r in rows]


def pyplot():
    """``matplotlib.pyplot`` on the Agg back end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def savefig(fig, path, dpi: int) -> None:
    """Lay out ``fig`` and write it atomically (never a half-written figure), then close it."""
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=os.path.splitext(str(path))[1].lstrip(".") or "png")
    pyplot().close(fig)
    write_bytes(path, buf.getvalue())


# ---- timing ---------------------------------------------------------------------------------


def memory(compiled) -> dict:
    """XLA's compiled memory analysis of one function, with ``total_allocation_bytes``."""
    try:
        ma = compiled.memory_analysis()
    except Exception as e:  # some back ends do not implement it
        return {"error": repr(e)}
    if ma is None:
        return {"error": "memory_analysis() returned None"}
    keys = ("peak_memory_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
            "temp_size_in_bytes", "alias_size_in_bytes", "generated_code_size_in_bytes")
    out = {k: int(getattr(ma, k)) for k in keys if hasattr(ma, k)}
    # On CPU, XLA's peak_memory_in_bytes leaves out the temporary buffer (measured: it is about
    # argument + output even when temp is several times larger), so the figure we report is
    # the whole allocation of one call: arguments + outputs + temporaries - aliased.
    out["total_allocation_bytes"] = (out.get("argument_size_in_bytes", 0)
                                     + out.get("output_size_in_bytes", 0)
                                     + out.get("temp_size_in_bytes", 0)
                                     - out.get("alias_size_in_bytes", 0))
    return out


def rss_high_water_bytes() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb) * (1 if sys.platform == "darwin" else 1024)


def timed_calls(fn, n: int):
    """``(last output, [seconds of each of n calls of fn()])``, blocking on every result."""
    jax, out, times = _jax(), None, []
    for _ in range(n):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return out, times


def time_function(fn, args, repeats: int, *, max_seconds: float = 60.0) -> dict:
    """AOT-compile ``fn`` for ``args``; return lowering/compile times, median run time, outputs.

    ``repeats`` timed calls follow one warm-up call; fewer (at least one) when one call is so
    slow that the repeats would exceed ``max_seconds`` (then the noise is small relative to the
    call anyway). The warm-up time is reported as ``first_call_s``.
    """
    jax = _jax()
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(*args))  # warm-up
    first = time.perf_counter() - t2
    n = max(1, min(repeats, int(max_seconds / max(first, 1e-9))))
    out, times = timed_calls(lambda: compiled(*args), n)
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "first_call_s": first, "times_s": times,
            "median_s": statistics.median(times), "repeats": n, "memory": memory(compiled),
            "outputs": out}


# ---- bases ----------------------------------------------------------------------------------


def legendre_fields(nx: int, nt: int, count: int) -> np.ndarray:
    """``count`` tensor products ``P_i(x) P_j(t)`` on [-1, 1]^2, ``d = ceil(sqrt(count))``
    degrees per axis, x-major order: ``(nx, nt, count)``."""
    d = math.ceil(math.sqrt(count))
    px = np.polynomial.legendre.legvander(np.linspace(-1, 1, nx), d - 1)
    pt = np.polynomial.legendre.legvander(np.linspace(-1, 1, nt), d - 1)
    return np.einsum("xi,tj->xtij", px, pt).reshape(nx, nt, d * d)[..., :count]


def mixed_basis(truth: np.ndarray, fields: np.ndarray, n: int, seed: int):
    """Truth + ``fields[..., :n - 1]``, orthonormalised over the grid (RMS one) and mixed by a
    random orthogonal matrix, so every basis function carries part of the truth; returns
    ``(basis (*grid, n), w_ref)`` with ``basis @ w_ref = truth``."""
    size = truth.size
    stacked = np.concatenate([truth[..., None], fields[..., : n - 1]], axis=-1).reshape(size, n)
    q, r = np.linalg.qr(stacked)
    q *= math.sqrt(size)
    mix, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    # stacked = q r, so truth = q r[:, 0] = (q mix)(mix^T r[:, 0] / sqrt(size)).
    return (q @ mix).reshape(*truth.shape, n), mix.T @ r[:, 0] / math.sqrt(size)


def log_ratio_jumps(losses: np.ndarray) -> dict:
    """Jumps of a loss series ``(steps, batch)``: consecutive changes by more than 2x."""
    ratio = np.abs(np.log(losses[1:] / losses[:-1]))
    jumps = ratio > np.log(2.0)
    return {"jumps": int(jumps.sum()), "steps_compared": int(jumps.size),
            "jump_fraction": float(jumps.mean()), "max_abs_log_ratio": float(ratio.max())}
