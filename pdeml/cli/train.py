"""``pdeml train``: train a model on a PDE problem (soft, hard or mixture-of-experts constraint).

    pdeml train diffusion-sorption --method hard --steps 300 --out runs/hc
    pdeml train diffusion-sorption --method soft --steps 300 --out runs/sc
    pdeml train diffusion-sorption --method moe --experts 1x2 --overlap 0.9 \
        --boundary-rows touching --out runs/moe      # the measured best (docs/constraints.md)
    pdeml train navier-stokes --method hard --steps 200 --out runs/ns_hc

One sub-command per experiment of :data:`pdeml.experiments.REGISTRY`; its options are the
fields of the experiment's configuration class (``--field-name``, with the field's help text
and default). Runs are resumable: start the same command again after an interruption and it
continues from the newest checkpoint in ``--out`` (``--run-dir`` is the older spelling).
Training runs in float64 unless ``--float32`` is given (the dense Gauss-Newton solves square
the condition number of the basis).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pdeml.cli import CLIError, add_json, add_precision, writable_dir

_TYPES = {"int": int, "float": float, "str": str}


def _shown(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """One option per field of ``config_cls`` (an :class:`~pdeml.experiments.ExperimentConfig`
    subclass): ``--field-name`` (and the field's other spellings), its help text and default;
    values are checked by the configuration itself (:func:`config_from_args`)."""
    from pdeml.experiments import field_info

    defaults = config_cls()
    for f in dataclasses.fields(config_cls):
        info = field_info(config_cls, f.name)
        flags = [f"--{f.name.replace('_', '-')}", *info.get("flags", ())]
        default = getattr(defaults, f.name)
        help_text = info["help"]
        if "default" not in help_text:
            help_text += f" (default {_shown(default)})"
        kw = dict(dest=f.name, help=help_text.replace("%", "%%"))
        kind = str(f.type)
        if kind == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default,
                                **kw)
            continue
        if kind.startswith("tuple"):  # e.g. experts: "1x4"
            kw.update(type=str, default=_shown(default), metavar="KxK")
        else:
            kw.update(type=_TYPES[kind.split(" | ")[0]], default=default)
        if info.get("choices"):
            kw["choices"] = list(info["choices"])
        parser.add_argument(*flags, **kw)


def config_from_args(config_cls, args: argparse.Namespace, **overrides):
    """``config_cls`` from options parsed by :func:`add_config_arguments` (``overrides``
    replace fields); ValueError if the configuration is invalid."""
    kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)}
    kw.update(overrides)
    return config_cls(**kw)


def register(subparsers) -> None:
    from pdeml.experiments import REGISTRY

    p = subparsers.add_parser("train", help="train a model")
    problems = p.add_subparsers(dest="problem", metavar="PROBLEM")
    problems.required = True
    for name, config_cls in REGISTRY.items():
        add_problem_parser(problems, name, config_cls)


def add_problem_parser(problems, name: str, config_cls) -> argparse.ArgumentParser:
    """``pdeml train <name>``: the options of ``config_cls`` and the run's own."""
    p = problems.add_parser(name, help=config_cls.SUMMARY, description=config_cls.DESCRIPTION)
    add_config_arguments(p, config_cls)
    p.add_argument("--out", "--run-dir", dest="run_dir", type=Path, required=True,
                   help="run directory for checkpoints, metrics.jsonl and results.json "
                   "(--run-dir is the older spelling)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json(p, "results.json")
    add_precision(p, "float64", "the dense Gauss-Newton solves square the condition number")
    p.set_defaults(func=run, config_cls=config_cls)
    return p


def _summary(config, results: dict) -> list[str]:
    lines = []
    for name in ("test", "test_fine"):
        t = results.get(name)
        if t is None:
            continue
        grid = f" ({'x'.join(map(str, t['grid']))})" if "grid" in t else ""
        line = (f"{config.method}: {name}{grid} relative L2 = {100 * t['rel_l2_mean']:.2f}% "
                f"+/- {100 * t['rel_l2_std']:.2f}% over {len(t['rel_l2_per_sample'])} test ICs")
        if "lm_converged_fraction" in t:
            line += (f"; LM converged {100 * t['lm_converged_fraction']:.0f}%, "
                     f"{t['lm_iterations_mean']:.1f} iterations on average")
        lines.append(line)
        if "extrapolation" in t:
            t_train = config.t_train
            lines.append(f"  t <= {t_train:g} (trained window): "
                         f"{100 * t['train_window']['rel_l2_mean']:.2f}%; t > {t_train:g} "
                         f"(extrapolation): {100 * t['extrapolation']['rel_l2_mean']:.2f}% "
                         f"+/- {100 * t['extrapolation']['rel_l2_std']:.2f}%")
        if "lm_iterations_per_expert" in t:
            per = ", ".join(f"{v:.1f}" for v in t["lm_iterations_per_expert"])
            axes = " x ".join(f"K_{a}" for a in config.EXPERT_AXES)
            lines.append(f"experts {'x'.join(map(str, config.experts))} ({axes}): mean LM "
                         f"iterations per expert [{per}]")
    return lines


def run(args: argparse.Namespace) -> int:
    """``pdeml train <problem>``: run the experiment and print its errors."""
    import jax

    from pdeml.experiments import run_experiment

    try:
        config = config_from_args(args.config_cls, args)
    except ValueError as e:
        raise CLIError(str(e)) from None
    writable_dir(args.run_dir, "--out")
    if not args.float32:  # also when called without pdeml.cli.main (which sets the precision)
        jax.config.update("jax_enable_x64", True)
    try:
        results = run_experiment(config, args.run_dir, progress=not args.no_progress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("\n".join(_summary(config, results)))
    print(f"results: {Path(args.run_dir) / 'results.json'}  ({config.steps} steps, "
          f"{results['seconds']['train']:.1f} s training)")
    return 0
