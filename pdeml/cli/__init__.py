"""The ``pdeml`` command.

Each topic lives in its own module under :mod:`pdeml.cli` exposing
``register(subparsers)``, which adds its sub-commands and sets ``func`` on them; ``func``
receives the parsed ``argparse.Namespace`` and returns an exit code. Modules are imported
lazily by name so that ``pdeml --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module under pdeml.cli, help line); each module registers its own sub-commands.
_TOPICS = [
    ("demo", "a short tour that trains and measures on built-in data"),
    ("data", "generate / inspect reference datasets"),
    ("train", "train a model"),
    ("eval", "evaluate a trained model"),
    ("prox", "learned proximal networks"),
    ("barron", "Barron-norm PDE approximators"),
    ("inverse", "inverse problems with learned priors (plug-and-play)"),
]


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdeml", description="Constrained PDE solvers and learned priors in JAX."
    )
    parser.add_argument("--x64", action="store_true", help="enable float64 in JAX")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"pdeml: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
