"""Barron: a nonlinear variational PDE on the torus, by Sobolev descent and by Deep Ritz.

The quasilinear problem T3 of Marwah et al. (ICML 2023), ``-div((mu + |grad u|^2) grad u) +
nu u = f`` on the 2-torus with a manufactured ridge-sum solution, is solved

* on a grid by Sobolev (H^1-preconditioned) gradient descent: the Barron norm of the iterates
  stays bounded along the trajectory, the quantity the paper's approximation result rests on;
* mesh-free by Deep Ritz: a periodic MLP trained on the energy with the energy natural
  gradient, with the energy-gap certificate of the H^1 error.

    python examples/barron.py
"""

import jax

jax.config.update("jax_enable_x64", True)  # the solvers reach 1e-10 only in float64

from pdeml.barron import PeriodicMLP, deep_ritz, make_test_problem, sobolev_gradient_descent  # noqa: E402

problem = make_test_problem("T3", 2, mu=1.0, nu=1.0)

traj = sobolev_gradient_descent(problem, 15, atol=1e-10, rtol=0.0)
norms = traj.history("barron_norm")
print(f"Sobolev descent, 15 x 15 grid: converged {bool(traj.converged)} in {int(traj.num_steps)} "
      f"steps; Barron norm of the iterates from {norms[1]:.3f} to {norms[-1]:.3f} "
      f"(max {norms[1:].max():.3f})")

net = PeriodicMLP.random(2, width=12, depth=2, key=jax.random.key(0))
ritz = deep_ritz(problem, net, key=jax.random.key(1), max_steps=40, num_points=1024,
                 num_eval_points=2048)
print(f"Deep Ritz, {sum(a.size for a in jax.tree.leaves(net))} parameters, 40 natural-gradient "
      f"steps: relative L2 error {float(ritz.relative_l2):.1e}, H1 error "
      f"{float(ritz.h1_error):.1e} <= certificate {float(ritz.certificate):.1e}")
assert bool(traj.converged) and float(ritz.relative_l2) < 3e-2
