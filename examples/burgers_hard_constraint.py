"""A hard constraint on a PDE defined by the user: viscous Burgers in 1D.

    u_t + u u_x = nu u_xx  on [0, 1] x [0, 1],   u(x, 0) = sin(pi x),   u(0, t) = u(1, t) = 0

The problem class (the only PDE-specific code) declares the grid, the linear features (finite
differences gathered at the collocation points), the pointwise nonlinearity and the IC/BC
rows. The hard-constraint layer then finds the weights ``w`` of ``u = basis @ w`` that
minimise the PDE residual at the collocation points (here every interior point) subject to
the IC/BC rows, for a fixed basis of tensor Legendre polynomials, and the result is compared
with a classical method-of-lines solution. In training, a network outputs the basis and
gradients flow through the solve by implicit differentiation (docs: Hard constraints).

    python examples/burgers_hard_constraint.py
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from pdeml.constraints import HardConstraint
from pdeml.core import LevenbergMarquardt
from pdeml.pde import DirichletData, PDEProblem, SpaceTimeGrid, fd_derivative_at


class Burgers(PDEProblem):
    """``u_t + u u_x - nu u_xx - f = 0`` with initial and Dirichlet data (DirichletData)."""

    grid: SpaceTimeGrid = SpaceTimeGrid(nx=41, nt=21)
    nu: float = eqx.field(static=True, default=0.05)
    num_features = 4  # u, u_x, u_t, u_xx

    def features_at(self, basis, points):
        def d(axis, order):
            return fd_derivative_at(basis, points, axis=axis, order=order,
                                    spacing=self.grid.spacing(axis))
        return jnp.stack([d(0, 0), d(0, 1), d(1, 1), d(0, 2)])

    def pointwise(self, a, f):
        u, u_x, u_t, u_xx = a
        return u_t + u * u_x - self.nu * u_xx - f

    def aux_at(self, data, points):
        return data.f[points[:, 0], points[:, 1]]

    def constraint_rows(self, basis, data):
        return self.grid.dirichlet_rows(basis, data.u0, data.left, data.right)


def method_of_lines(problem, u0, substeps=200):
    """Reference: central differences in space, classical RK4 in time (NumPy, float64)."""
    g = problem.grid
    dx, h = g.dx, g.dt / substeps

    def rhs(u):
        out = np.zeros_like(u)
        out[1:-1] = (problem.nu * (u[2:] - 2 * u[1:-1] + u[:-2]) / dx**2
                     - u[1:-1] * (u[2:] - u[:-2]) / (2 * dx))
        return out

    u, levels = np.asarray(u0, np.float64), [np.asarray(u0, np.float64)]
    for _ in range(g.nt - 1):
        for _ in range(substeps):
            k1 = rhs(u)
            k2 = rhs(u + h / 2 * k1)
            k3 = rhs(u + h / 2 * k2)
            k4 = rhs(u + h * k3)
            u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        levels.append(u)
    return np.stack(levels, axis=1)


def legendre_basis(grid, degree_x=16, degree_t=8):
    """Tensor Legendre polynomials P_i(x) P_j(t) on the grid, shape (nx, nt, N)."""
    x, t = grid.mesh()
    px = np.polynomial.legendre.legvander(2 * np.asarray(x[:, 0]) - 1, degree_x)
    pt = np.polynomial.legendre.legvander(2 * np.asarray(t[0]) / grid.t_max - 1, degree_t)
    basis = np.einsum("xi,tj->xtij", px, pt).reshape(grid.nx, grid.nt, -1)
    return jnp.asarray(basis, jnp.float32)


problem = Burgers()
x = np.asarray(problem.grid.x())
data = DirichletData(u0=jnp.asarray(np.sin(np.pi * x), jnp.float32),
                     f=jnp.zeros(problem.grid_shape), left=0.0, right=0.0)
basis = legendre_basis(problem.grid)
layer = HardConstraint(problem, solver=LevenbergMarquardt(max_steps=100))  # every interior point
u, info = layer(basis, data)

reference = method_of_lines(problem, np.sin(np.pi * x))
error = np.linalg.norm(np.asarray(u) - reference) / np.linalg.norm(reference)
residual = jnp.abs(problem.residual_field(u, data)).max()
print(f"basis functions: {basis.shape[-1]}, collocation points: {info.points.shape[0]}")
print(f"solver converged: {bool(info.stats.converged)} in {int(info.stats.iterations)} iterations")
print(f"max |PDE residual| over the interior points: {float(residual):.1e}")
print(f"relative L2 error against the method-of-lines reference: {error:.2e}")
assert bool(info.stats.converged) and error < 1e-2
