"""Solve the prototype quasilinear problem on the 3-D torus by Sobolev gradient descent.

    python examples/barron_sobolev_descent.py
"""

import jax

jax.config.update("jax_enable_x64", True)

from pdeml.barron import QuasilinearLagrangian, RidgeSum, manufactured_problem, newton_krylov, sobolev_gradient_descent  # noqa: E402

dim, n = 3, 9
problem = manufactured_problem(QuasilinearLagrangian(mu=1.0, nu=1.0), RidgeSum.random(dim, key=jax.random.key(0), scale=0.1), dim)
ref = newton_krylov(problem, n, atol=1e-13, rtol=0.0).u
traj = sobolev_gradient_descent(problem, n, reference=ref, atol=1e-11, rtol=0.0)
print("steps:", int(traj.num_steps), "converged:", bool(traj.converged))
print("steps to H1 error 1e-8:", traj.steps_to("h1_error", 1e-8))
print("Barron norm of first/last iterate:", traj.history("barron_norm")[[1, -1]])
