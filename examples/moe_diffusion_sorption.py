"""Soft constraint, hard constraint and a mixture of hard-constraint experts on diffusion-sorption.

Each method trains an FNO on the physics loss alone (no solution data) for PDEBench's 1D
diffusion-sorption problem, the benchmark of Chalapathi et al. (ICLR 2024): the soft
constraint adds the residual to the loss; the hard constraint makes the FNO output a basis and
solves for the weights that impose the PDE at sampled points; the mixture of experts splits
the grid into 4 experts along x, each with its own least-squares solve, blended by a partition
of unity. Test error: relative L2 against the classical reference solver on held-out initial
conditions. The reference data are generated once and cached (``./pdeml-cache``).

Sizes here are small (a 32 x 11 grid, 60 steps) so that it runs in a few minutes on a laptop
CPU; the Results page has the full-size comparison.

    python examples/moe_diffusion_sorption.py
"""

import jax

jax.config.update("jax_enable_x64", True)  # reference data and least squares in float64

from pdeml.experiments.diffusion_sorption import ExperimentConfig, run_experiment  # noqa: E402

sizes = dict(nx=32, nt=11, train_samples=8, test_samples=4, batch_size=2, steps=60,
             num_basis=8, num_points=200, width=16, modes=6, layers=2, padding=4,
             cache_dir="pdeml-cache")
errors = {}
for method in ("soft", "hard", "moe"):
    config = ExperimentConfig(method=method, experts=(1, 4), overlap=0.5, **sizes)
    result = run_experiment(config, f"runs/{method}", progress=False)
    errors[method] = result["test"]["rel_l2_mean"]
    extra = ""
    if "lm_converged_fraction" in result["test"]:
        extra = f"  (least-squares solves converged: {result['test']['lm_converged_fraction']:.0%})"
    print(f"{method:5s} test relative L2 error {errors[method]:.3f}{extra}")
assert errors["hard"] < errors["soft"]
