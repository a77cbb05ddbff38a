"""The conventions every ``pdeml`` sub-command follows (docs/cli.md)."""

from __future__ import annotations

import argparse

from pdeml.cli import build_parser


def _leaves(parser, prefix=("pdeml",)):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, prefix + (name,))


LEAVES = dict(_leaves(build_parser()))


def test_every_option_has_help_text():
    missing = [f"{cmd} {a.option_strings or a.dest}" for cmd, p in LEAVES.items() for a in p._actions
               if a.help is None]
    assert not missing, missing


def test_seed_and_precision_everywhere():
    for cmd, p in LEAVES.items():
        opts = {o for a in p._actions for o in a.option_strings}
        assert "--seed" in opts, cmd
        assert {"--x64", "--float32"} <= opts, cmd
        assert p.get_default("default_precision") in ("float32", "float64"), cmd


def test_json_prints_and_out_names_the_output():
    for cmd, p in LEAVES.items():
        acts = {o: a for a in p._actions for o in a.option_strings}
        assert "--json" in acts, cmd
        # --json is a switch that prints (barron's also accepts the deprecated PATH form)
        assert acts["--json"].nargs in (0, "?"), cmd
        if cmd not in ("pdeml prox eval",):  # prox eval only prints
            assert "--out" in acts, cmd


def test_precision_rule_is_stated_in_help():
    assert "float64 where the solver needs it" in build_parser().format_help()
    assert "default here: float32" in LEAVES["pdeml prox train"].format_help()
    assert "default here: float64" in LEAVES["pdeml barron solve"].format_help()
