"""The ``pdeml`` command.

Each topic lives in its own module under :mod:`pdeml.cli` exposing
``register(subparsers)``, which adds its sub-commands and sets ``func`` on them; ``func``
receives the parsed ``argparse.Namespace`` and returns an exit code. Modules are imported
lazily by name so that ``pdeml --help`` stays fast.

Conventions shared by every command (see docs/cli.md):

- ``--out DIR`` names where a command writes its files; ``--json`` prints the result as JSON
  on stdout instead of a table; ``--seed`` seeds every random draw.
- Precision: every command has a stated default, float64 where its solver needs it (data
  generation, training, evaluation, the demo, Barron grid solves), float32 elsewhere (learned
  priors, inverse problems, Barron fits); ``--x64`` or ``--float32`` overrides it.
  :func:`main` restores JAX's x64 flag when the command returns.
- A user error (bad option value, missing or unreadable file, unwritable output, a training
  run that diverges) prints one line ``pdeml: error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from pathlib import Path

# (module under pdeml.cli, help line); each module registers its own sub-commands.
_TOPICS = [
    ("demo", "a short tour of every pillar, measured on built-in data"),
    ("data", "generate / inspect reference datasets"),
    ("train", "train a model"),
    ("eval", "evaluate a trained model"),
    ("prox", "learned proximal networks"),
    ("barron", "Barron-norm PDE approximators"),
    ("inverse", "inverse problems with learned priors (plug-and-play)"),
]

PRECISION_RULE = (
    "Precision: float64 where the solver needs it (data, train, eval, demo, barron solve/norm), "
    "float32 elsewhere (prox, inverse, barron fit/ritz); --x64 or --float32 overrides."
)


class CLIError(Exception):
    """A user-facing error: printed as one line without a traceback, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad option raises :class:`CLIError` (exit code 2)
    instead of printing the usage block. Sub-parsers inherit the class."""

    def error(self, message):  # noqa: D401 - argparse's hook
        raise CLIError(f"{self.prog}: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------------------- argument types


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = _number(int, text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = _number(int, text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    v = _number(float, text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    v = _number(float, text)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return _number(float, text)


def positive_int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1 (``"5,9,17"``)."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    out = []
    for p in parts:
        try:
            v = int(p)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers, got {text!r} ({p!r} is not an integer)"
            ) from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"every entry must be >= 1, got {text!r}")
        out.append(v)
    return out


# ---------------------------------------------------------------------------- shared options


def add_precision(parser: argparse.ArgumentParser, default: str, why: str) -> None:
    """``--x64`` / ``--float32`` on a leaf command whose default precision is ``default``."""
    if default not in ("float32", "float64"):
        raise ValueError(f"default must be 'float32' or 'float64', got {default!r}")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--x64", dest="x64_local", action="store_true",
                       help=f"run in float64 (default here: {default}; {why})")
    group.add_argument("--float32", action="store_true",
                       help=f"run in float32 (default here: {default})")
    parser.set_defaults(default_precision=default)


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: print ``what`` as JSON on stdout instead of a table (same meaning everywhere)."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout instead of a table")


def add_seed(parser: argparse.ArgumentParser, default: int = 0, what: str = "every random draw") -> None:
    parser.add_argument("--seed", type=nonnegative_int, default=default,
                        help=f"seed of {what} (default {default})")


def precision_of(args: argparse.Namespace) -> str | None:
    """The precision a parsed command asks for (None: the command does not say)."""
    if getattr(args, "float32", False) and (getattr(args, "x64_global", False)
                                            or getattr(args, "x64_local", False)):
        raise CLIError("--x64 and --float32 contradict each other; give one")
    if getattr(args, "x64_global", False) or getattr(args, "x64_local", False):
        return "float64"
    if getattr(args, "float32", False):
        return "float32"
    return getattr(args, "default_precision", None)


def writable_dir(path, option: str = "--out") -> Path:
    """Create ``path`` (and parents) and check it is a writable directory, or a :class:`CLIError`
    naming ``option``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{option} {str(path)!r}: cannot create the directory ({e.strerror or e})") from None
    if not path.is_dir():
        raise CLIError(f"{option} {str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {str(path)!r}: directory is not writable")
    return path


# Options that say where a command writes or how it prints, not what it computes: left out of
# the command's request (see :func:`command_request`).
_NOT_REQUEST = frozenset({"func", "out", "json", "plot", "png", "no_progress", "x64_global",
                          "x64_local", "float32", "default_precision"})


def command_request(args: argparse.Namespace) -> dict:
    """The request a parsed command makes: its name and every option that determines its
    result (the output location and the printing options left out; the precision as
    ``precision``). Recorded with each file the command writes; a rerun of the same command
    may replace them, another command may not (:func:`pdeml.core.io.write_protected`)."""
    func = getattr(args, "func", None)
    words = [getattr(args, "command", None) or ""]
    words += [str(v) for k, v in sorted(vars(args).items()) if k.endswith("_command") and v]
    options = {}
    for key, value in sorted(vars(args).items()):
        if (key in _NOT_REQUEST or key == "command" or key.endswith("_command")
                or key.startswith("_") or callable(value)):
            continue
        if isinstance(value, Path):
            value = os.path.abspath(value)
        elif isinstance(value, (list, tuple)):
            value = [os.path.abspath(v) if isinstance(v, Path) else v for v in value]
        options[key] = value
    return {"command": " ".join(["pdeml"] + [w for w in words if w]),
            "action": getattr(func, "__qualname__", None),
            "precision": precision_of(args), "options": options}


def write_text_atomic(path, text: str, *, request, what: str = "output file") -> Path:
    """Write ``text`` to ``path`` atomically with a ``.sha256`` sidecar that records
    ``request`` (:func:`pdeml.core.io.write_protected`), so a reader never sees a half-written
    file.

    A file that pdeml did not write, or wrote for another request (another command, other
    options), is never replaced: ``FileExistsError`` names it and the request that wrote it.
    Commands pass :func:`command_request`.
    """
    from pdeml.core.io import write_protected

    return write_protected(path, text.encode("utf-8"), request=request, what=what)


def save_figure_atomic(fig, path, *, request, what: str = "figure", **savefig_kwargs) -> Path:
    """``fig.savefig`` written atomically with a ``.sha256`` sidecar; like
    :func:`write_text_atomic`, never over a file pdeml did not write for ``request``."""
    import io

    from pdeml.core.io import check_overwrite, write_protected

    path = Path(path)
    # checked before rendering, so a refused figure costs nothing
    check_overwrite(path, what=what, request=request)
    buf = io.BytesIO()
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or "png")
    fig.savefig(buf, **savefig_kwargs)
    return write_protected(path, buf.getvalue(), request=request, what=what)


# ---------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="pdeml", description="Constrained PDE solvers and learned priors in JAX.",
        epilog=PRECISION_RULE + " Errors: one line on stderr, exit code 2.",
    )
    parser.add_argument("--x64", dest="x64_global", action="store_true",
                        help="run the command in float64 (same as the command's own --x64)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, _help in _TOPICS:
        try:
            module = importlib.import_module(f"pdeml.cli.{name}")
        except ModuleNotFoundError as e:  # a topic not built yet
            if e.name == f"pdeml.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _one_line(message: str) -> str:
    out = ""
    for line in (v.strip() for v in str(message).strip().splitlines()):
        if line:
            out += ("" if not out else " " if out.endswith(":") else "; ") + line
    return out


def main(argv: list[str] | None = None) -> int:
    """Run ``pdeml`` with ``argv``; returns the exit code (2 for a user error)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        precision = precision_of(args)
        # Speed only, never results: large XLA temporaries reuse mapped pages
        # (pdeml.core.runtime; PDEML_CPU_ALLOCATOR=default leaves malloc alone).
        from pdeml.core.runtime import set_cpu_allocator_from_environment

        try:
            set_cpu_allocator_from_environment()
        except ValueError as e:
            raise CLIError(str(e)) from None
    except CLIError as e:
        print(f"pdeml: error: {_one_line(e)}", file=sys.stderr)
        return 2
    import jax

    from pdeml.core.io import ChecksumError, DirectoryLockedError
    from pdeml.train.checkpoint import CheckpointError
    from pdeml.train.loop import NonFiniteLossError

    was_x64 = bool(jax.config.jax_enable_x64)
    if precision is not None:
        jax.config.update("jax_enable_x64", precision == "float64")
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        message = str(e)
    except CheckpointError as e:
        message = f"unusable checkpoint: {e}"
    except NonFiniteLossError as e:
        message = f"training diverged: {e}"
    except (FileExistsError, ChecksumError, DirectoryLockedError) as e:  # the message names the
        message = str(e)  # file, or the process that holds the run directory
    except OSError as e:  # unwritable / missing paths the command did not check itself
        where = f" {str(e.filename)!r}" if getattr(e, "filename", None) else ""
        message = f"cannot access{where}: {e.strerror or e}"
    finally:
        jax.config.update("jax_enable_x64", was_x64)
    print(f"pdeml: error: {_one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
