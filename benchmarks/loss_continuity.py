"""Is the training loss of PI-HC continuous in the network parameters? Cold vs carried starts.

Issue 14, item 4. The hard-constraint layer solves a nonlinear least-squares problem; if the
solve can land in different local minima for nearby parameters, the training loss jumps. We
walk along a straight line in parameter space, ``theta_i = theta_0 + i * delta * d`` (``d`` a
random direction with the same norm as ``theta_0`` in every leaf, ``delta`` a small relative
step), evaluate the batch physics loss at every point with the same collocation points, and
count the steps whose loss changes by more than a factor of 2. Three ways to start each solve:
``rows_fit`` (the IC/BC rows fitted alone, the layer's earlier default), ``linearised``
(:func:`pdeml.constraints.start.linearised_start`, the layer's default) and ``carried`` (the
previous point's solution). Problems: diffusion-sorption and Navier-Stokes (the configurations
of benchmarks/diffusion_sorption.py and navier_stokes.py), the model at initialisation or
after ``--trained-steps`` Adam steps of the experiment runner.

In training (``--training``): each problem is trained at its benchmark settings twice, with
the layer's own (linearised) start and with carried starts (``carry_start=True``). After every
update the physics loss of a fixed monitoring batch (4 training ICs, fixed collocation points)
is evaluated, from the own start or from the monitoring batch's solutions one update earlier,
matching the run; a jump is a change by more than 2x between consecutive updates. Also
recorded: test rel. L2, LM iterations and time per step.

Writes ``loss_continuity.{json,md,png}`` (``training.{json,md,png}`` with ``--training``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env, log_ratio_jumps, md_table, pyplot, savefig, write_json, write_text  # noqa: E402

from pdeml.constraints import physics_loss  # noqa: E402
from pdeml.constraints.start import linearised_start  # noqa: E402

DEFAULT_OUT = os.path.join("benchmarks", "results", "loss_continuity")
STARTS = ("rows_fit", "linearised", "carried")


def rows_fit_start(lsq):
    """The earlier default: the IC/BC rows fitted alone (min-norm, 1e-8 relative Tikhonov)."""
    n = lsq.num_basis
    gram = lsq.rows.T @ lsq.rows
    tr = jnp.trace(gram)
    tr = jnp.where(tr > 0, tr, 1.0)
    reg = (lsq.ridge + 1e-8 * tr / n) * jnp.eye(n, dtype=gram.dtype)
    return jnp.linalg.solve(gram + reg, lsq.rows.T @ lsq.targets)


def _problem_models(quick: bool, trained_steps: int, out_dir: str):
    """``{name: (model, data, config)}``: each model at initialisation, or trained for
    ``trained_steps`` Adam steps by the experiment runner (run directory under ``out_dir``)."""
    from pdeml.experiments import diffusion_sorption as ds
    from pdeml.experiments import navier_stokes as ns

    size = (dict(nx=32, nt=11, train_samples=4, width=8, layers=2, num_basis=8, num_points=100)
            if quick else dict(nx=64, nt=26, train_samples=32, width=32, layers=4, num_basis=16,
                               num_points=1000))
    configs = {"diffusion_sorption": (ds, ds.DiffusionSorptionConfig(method="hard",
                                                                     test_samples=2, **size))}
    if not quick:
        configs["navier_stokes"] = (ns, ns.NSConfig(method="hard", train_samples=16,
                                                    test_samples=2))
    out = {}
    for name, (module, config) in configs.items():
        train_set, _ = module.load_data(config)
        data = jnp.asarray(train_set.dataset.u0[:4 if name == "diffusion_sorption" else 2])
        model = module.build_model(config, jax.random.fold_in(jax.random.key(config.seed), 0))
        if trained_steps > 0:
            config = dataclasses.replace(config, steps=trained_steps)
            run_dir = os.path.join(out_dir, f"run_{name}_{trained_steps}")
            module.run_experiment(config, run_dir, progress=False)
            _, model, _ = module.load_run(run_dir)
        out[name] = (model, data, config)
    return out


def _direction(model, key):
    """A random direction with the norm of the model's parameters, leaf by leaf."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    dirs = []
    for leaf, k in zip(leaves, jax.random.split(key, len(leaves))):
        z = jax.random.normal(k, leaf.shape, leaf.dtype)
        dirs.append(z * jnp.linalg.norm(leaf) / jnp.maximum(jnp.linalg.norm(z), 1e-30))
    return params, static, jax.tree.unflatten(treedef, dirs)


def walk(model, data, *, points: int, delta: float, key) -> dict:
    """The loss along ``theta_0 + i delta d`` for every start; returns per-start series."""
    params, static, direction = _direction(model, jax.random.fold_in(key, 1))
    layer = model.layer
    k_points = jax.random.split(jax.random.fold_in(key, 2), data.shape[0])

    def one(p, u0, k, w0, start):
        basis = eqx.combine(p, static).basis(u0)
        pts = layer.select_points(k)
        lsq = layer.least_squares_problem(basis, u0, pts)
        if start == "rows_fit":
            w0 = rows_fit_start(lsq)
        elif start == "linearised":
            w0 = linearised_start(layer.problem, lsq, u0, pts)
        u, info = layer(basis, u0, points=pts, w0=jax.lax.stop_gradient(w0))
        return physics_loss(layer.problem, u, u0)[0], info.w, info.stats.iterations, \
            info.stats.converged

    fns = {s: eqx.filter_jit(lambda p, w0s, s=s: jax.vmap(
        lambda u0, k, w0: one(p, u0, k, w0, s))(data, k_points, w0s)) for s in STARTS}
    n = model.basis(data[0]).shape[-1]
    series = {}
    for start in STARTS:
        w0s = jnp.zeros((data.shape[0], n), data.dtype)
        losses, iters, conv = [], [], []
        t0 = time.perf_counter()
        for i in range(points):
            p = jax.tree.map(lambda a, d: a + (i * delta) * d, params, direction)
            fn = fns["linearised" if start == "carried" and i == 0 else start]
            loss, w0s, it, c = fn(p, w0s)
            losses.append(np.asarray(loss, np.float64))
            iters.append(np.asarray(it))
            conv.append(np.asarray(c))
        losses = np.stack(losses)  # (points, batch)
        series[start] = {"loss": losses.mean(axis=1).tolist(), **log_ratio_jumps(losses),
                         "mean_iterations": float(np.mean(iters)),
                         "converged_fraction": float(np.mean(conv)),
                         "seconds": time.perf_counter() - t0}
    return series


def _plot(records: dict, path: str, series: str, title: str, xlabel: str) -> None:
    """One panel per problem: the loss ``series`` of every start, log scale."""
    fig, axes = pyplot().subplots(1, len(records), figsize=(5.5 * len(records), 4), squeeze=False)
    for ax, (name, rec) in zip(axes[0], records.items()):
        for start, s in rec.get("series", rec).items():
            ax.semilogy(s[series], label=f"{start} ({s['jumps']} jumps)")
        ax.set(title=title.format(name=name, **rec), xlabel=xlabel, ylabel="mean physics loss")
        ax.legend()
    savefig(fig, path, 120)


def _footer(text: str) -> str:
    return f"{text} float64, {jax.default_backend()}, JAX {jax.__version__}."


def markdown(records: dict) -> str:
    lines = md_table(["problem", "start", "steps with a >2x loss jump", "max abs log ratio",
                      "LM iterations", "converged"],
                     [[name, start, f"{s['jumps']} / {s['steps_compared']} "
                       f"({100 * s['jump_fraction']:.1f}%)", f"{s['max_abs_log_ratio']:.3g}",
                       f"{s['mean_iterations']:.1f}", f"{100 * s['converged_fraction']:.0f}%"]
                      for name, rec in records.items() for start, s in rec["series"].items()])
    rec = next(iter(records.values()))
    state = (f"trained for {rec['trained_steps']} Adam steps" if rec["trained_steps"]
             else "at initialisation")
    lines += ["", _footer(f"Each problem: the model {state}, a batch of ICs, {rec['points']} "
                          f"points theta_0 + i delta d with delta = {rec['delta']:g} (d: a random "
                          "direction with the parameters' norm, leaf by leaf), the same "
                          "collocation points at every step; a jump is |log(L_(i+1) / L_i)| > "
                          "log 2 for one IC.")]
    return "\n".join(lines) + "\n"


def _training_configs(quick: bool):
    """``{name: (module, config)}`` at the benchmark settings (tiny with ``quick``)."""
    from navier_stokes import BENCH_DEFAULTS as NS_BENCH

    from pdeml.experiments import diffusion_sorption as ds
    from pdeml.experiments import navier_stokes as ns

    if quick:
        return {"diffusion_sorption": (ds, ds.DiffusionSorptionConfig(
            method="hard", nx=16, nt=6, train_samples=4, test_samples=2, steps=6, batch_size=2,
            num_basis=4, num_points=20, width=8, modes=3, layers=1, padding=2,
            max_lm_steps=30))}
    return {"diffusion_sorption": (ds, ds.DiffusionSorptionConfig(method="hard")),
            "navier_stokes": (ns, ns.NSConfig(method="hard", **NS_BENCH))}


def train_monitored(module, config, *, monitor: int = 4) -> dict:
    """Train ``config`` (carried starts or not) and record the monitoring batch's loss after
    every update, started as the run starts its solves."""
    from pdeml.experiments.common import initial_state, make_optimizer, training_functions
    from pdeml.train import train

    train_set, test_set = module.load_data(config)
    u0 = jnp.asarray(train_set.dataset.u0)
    key = jax.random.key(config.seed)
    model = module.build_model(config, jax.random.fold_in(key, 0))
    batch_fn, loss_fn = training_functions(u0, config)
    state = initial_state(config, model, u0[0], u0.shape[0])
    mon = u0[:monitor]
    mon_keys = jax.random.split(jax.random.key(777), monitor)

    @eqx.filter_jit
    def monitor_loss(m, w0, use):
        def one(d, k, w):
            u, info = m(d, key=k, w0=w, use_w0=use)
            return physics_loss(m.problem, u, d)[0], info.w, info.stats.iterations

        return jax.vmap(one)(mon, mon_keys, w0)

    w_shape = jax.eval_shape(lambda d: model(d, key=mon_keys[0])[1].w, mon[0]).shape
    carry = {"w": jnp.zeros((monitor, *w_shape), u0.dtype), "use": jnp.asarray(False)}
    losses, iters = [], []

    def callback(step, m):
        loss, w, it = monitor_loss(m, carry["w"], carry["use"])
        if config.carry_start:
            carry.update(w=w, use=jnp.asarray(True))
        losses.append(np.asarray(loss, np.float64))
        iters.append(float(np.mean(it)))

    t0 = time.perf_counter()
    result = train(model, loss_fn, make_optimizer(config), batch_fn, steps=config.steps,
                   key=jax.random.fold_in(key, 1), progress=False, state=state,
                   callback=callback, log_every=1)
    seconds = time.perf_counter() - t0
    metrics, _ = module.evaluate(result.model, jnp.asarray(test_set.dataset.u0),
                                 jnp.asarray(test_set.dataset.u))
    losses = np.stack(losses)
    return {
        "carry_start": config.carry_start, "steps": config.steps,
        "monitor_loss": losses.mean(axis=1).tolist(), **log_ratio_jumps(losses),
        "monitor_lm_iterations": float(np.mean(iters)),
        "train_lm_iterations": float(np.mean(result.series("lm_iterations")[1])),
        "train_converged": float(np.mean(result.series("converged")[1])),
        "test_rel_l2": float(metrics["rel_l2_mean"]),
        "test_lm_converged": float(metrics.get("lm_converged_fraction", float("nan"))),
        "seconds": seconds, "seconds_per_step_incl_monitor": seconds / max(config.steps, 1),
    }


def training_markdown(records: dict) -> str:
    lines = md_table(["problem", "start", "monitor steps with a >2x loss jump",
                      "max abs log ratio", "LM iterations (training)", "converged (training)",
                      "test rel. L2", "s/step"],
                     [[name, start, f"{r['jumps']} / {r['steps_compared']} "
                       f"({100 * r['jump_fraction']:.1f}%)", f"{r['max_abs_log_ratio']:.3g}",
                       f"{r['train_lm_iterations']:.1f}", f"{100 * r['train_converged']:.0f}%",
                       f"{100 * r['test_rel_l2']:.2f}%", f"{r['seconds_per_step_incl_monitor']:.3f}"]
                      for name, runs in records.items() for start, r in runs.items()])
    lines += ["", _footer("Each problem trained at its benchmark settings (same seed, data and "
                          "steps) with the layer's own (linearised) start and with carried "
                          "starts; after every update the physics loss of 4 fixed training ICs "
                          "(fixed collocation points) is evaluated, started as the run starts "
                          "its solves; a jump is |log(L_(s+1) / L_s)| > log 2 for one IC. s/step "
                          "includes that monitoring solve.")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100, help="points along the line")
    ap.add_argument("--delta", type=float, default=1e-4, help="relative step along the line")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--trained-steps", type=int, default=0,
                    help="train each model this many Adam steps first (0: at initialisation)")
    ap.add_argument("--training", action="store_true",
                    help="compare own and carried starts in training (see the module doc)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    records = {}
    if args.training:
        name, md, fig = "training", training_markdown, ("monitor_loss", "{name}: monitoring-batch "
                                                        "loss during training", "update")
        for problem, (module, config) in _training_configs(args.quick).items():
            records[problem] = {}
            for start, carry in (("own", False), ("carried", True)):
                print(f"[loss_continuity] training {problem}, {start} starts ...",
                      file=sys.stderr, flush=True)
                records[problem][start] = train_monitored(
                    module, dataclasses.replace(config, carry_start=carry))
    else:
        name, md, fig = "loss_continuity", markdown, (
            "loss", "{name}: batch loss along a line, step {delta:g}", "step i (theta_0 + i delta d)")
        for problem, (model, data, cfg) in _problem_models(args.quick, args.trained_steps,
                                                           args.out).items():
            print(f"[loss_continuity] {problem} ...", file=sys.stderr, flush=True)
            records[problem] = {"points": args.points, "delta": args.delta,
                                "trained_steps": args.trained_steps,
                                "config": {k: v for k, v in vars(cfg).items() if k != "cache_dir"},
                                "series": walk(model, data, points=args.points, delta=args.delta,
                                               key=jax.random.key(0))}
    result = {"records": records, "seconds": time.perf_counter() - t0,
              "environment": env("jax", "backend", "python")}
    write_json(os.path.join(args.out, f"{name}.json"), result, default=str)
    write_text(os.path.join(args.out, f"{name}.md"), md(records))
    _plot(records, os.path.join(args.out, f"{name}.png"), *fig)
    print(md(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
