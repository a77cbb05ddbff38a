"""Helpers for defining a new PDE: grid points, Dirichlet rows, manufactured data, ``grid``."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.pde import (
    DiffusionSorption,
    DirichletData,
    NavierStokes2D,
    PDEProblem,
    PeriodicSpaceTimeGrid,
    SpaceTimeGrid,
    fd_derivative_at,
    grid_points,
    manufactured_data,
)
from pdeml.testing.problems import ReactionDiffusion1D, ReactionDiffusionData


class Burgers(PDEProblem):
    grid: SpaceTimeGrid = SpaceTimeGrid(nx=24, nt=9)
    nu: float = eqx.field(static=True, default=0.05)
    sign: float = eqx.field(static=True, default=-1.0)  # +1: the source is added (wrong form)
    num_features = 4

    def features_at(self, basis, points):
        def d(axis, order):
            return fd_derivative_at(basis, points, axis=axis, order=order,
                                    spacing=self.grid.spacing(axis))
        return jnp.stack([d(0, 0), d(0, 1), d(1, 1), d(0, 2)])

    def pointwise(self, a, f):
        return a[2] + a[0] * a[1] - self.nu * a[3] + self.sign * f

    def aux_at(self, data, points):
        return data.f[points[:, 0], points[:, 1]]

    def constraint_rows(self, basis, data):
        return self.grid.dirichlet_rows(basis, data.u0, data.left, data.right)


def test_grid_points_order_and_range():
    pts = np.asarray(grid_points((5, 4, 3), (1, 0, 1), (1, 1, 0)))
    assert pts.dtype == np.int32 and pts.shape == (3 * 3 * 2, 3)
    assert [tuple(p) for p in pts] == sorted(tuple(p) for p in pts)  # first axis slowest
    assert pts[:, 0].min() == 1 and pts[:, 0].max() == 3 and pts[:, 1].max() == 2
    with pytest.raises(ValueError, match="no grid points"):
        grid_points((2, 3), (1, 0), (1, 0))
    with pytest.raises(ValueError, match="one entry per axis"):
        grid_points((2, 3), (1,), (1, 0))


@pytest.mark.parametrize("problem", [ReactionDiffusion1D(nx=9, nt=5), DiffusionSorption(nx=16, nt=6),
                                     NavierStokes2D(nx=4, ny=6, nt=3)],
                         ids=lambda p: type(p).__name__)
def test_grid_interior_points_match_the_problems(problem):
    """The grids' interior points are those the shipped problems impose the PDE at."""
    assert problem.grid.shape == problem.grid_shape
    np.testing.assert_array_equal(problem.grid.interior_points(), problem.interior_points())


def test_dirichlet_rows_match_reaction_diffusion():
    prob = ReactionDiffusion1D(nx=9, nt=5)
    basis = jnp.asarray(np.random.default_rng(0).normal(size=(9, 5, 3)))
    data = ReactionDiffusionData(jnp.arange(9.0), jnp.zeros((9, 5)), jnp.arange(4.0), -jnp.arange(4.0))
    rows, targets = prob.grid.dirichlet_rows(basis, data.u0, data.left, data.right)
    want_rows, want_targets = prob.constraint_rows(basis, data)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(targets, want_targets)
    _, const = prob.grid.dirichlet_rows(basis, data.u0, 1.5, 2.5)  # scalars: constant in time
    np.testing.assert_array_equal(const[9:], [1.5] * 4 + [2.5] * 4)
    with pytest.raises(ValueError, match="left must be a scalar or have shape"):
        prob.grid.dirichlet_rows(basis, data.u0, jnp.zeros(5), 0.0)
    with pytest.raises(ValueError, match="basis must have shape"):
        prob.grid.dirichlet_rows(basis[:-1], data.u0, 0.0, 0.0)


def test_spacing():
    g = SpaceTimeGrid(nx=5, nt=3, t_max=2.0)
    assert (g.spacing(0), g.spacing(1)) == (0.25, 1.0)
    p = PeriodicSpaceTimeGrid(nx=4, ny=8, nt=3, length=2.0, t_max=4.0)
    assert [p.spacing(a) for a in range(3)] == [0.5, 0.25, 2.0]
    with pytest.raises(ValueError):
        g.spacing(2)


def test_manufactured_data_is_an_exact_discrete_solution():
    prob = Burgers()
    x, t = prob.grid.mesh(jnp.float64)
    u = jnp.exp(-t) * jnp.sin(jnp.pi * x) + 0.3 * t * x**2
    data = manufactured_data(prob, u)
    assert isinstance(data, DirichletData)
    assert float(jnp.abs(prob.residual_field(u, data)).max()) < 1e-11
    assert float(jnp.abs(prob.constraint_violation(u, data)).max()) == 0.0
    assert float(jnp.abs(data.f).max()) > 0.1  # a non-trivial source
    # the same source as the hand-written manufactured data of the test problem
    rd = ReactionDiffusion1D(reaction=1.0)
    xr, tr = rd.grid.mesh(jnp.float64)
    ur = jnp.sin(jnp.pi * xr) * jnp.exp(-tr)
    np.testing.assert_allclose(manufactured_data(rd, ur).f, rd.manufactured(ur).f, atol=1e-13)
    # residual_grid places the residual on the grid, zero on the IC/BC points
    r = prob.residual_grid(u, data._replace(f=jnp.zeros_like(u)))
    np.testing.assert_array_equal(r, data.f)
    assert float(jnp.abs(r[:, 0]).max()) == 0.0 and float(jnp.abs(r[jnp.array([0, -1])]).max()) == 0.0


def test_manufactured_data_refuses_a_residual_of_another_form():
    prob = Burgers(sign=1.0)
    x, t = prob.grid.mesh(jnp.float64)
    with pytest.raises(ValueError, match="not an exact solution"):
        manufactured_data(prob, jnp.exp(-t) * jnp.sin(jnp.pi * x))
    with pytest.raises(ValueError, match="shape"):
        manufactured_data(prob, jnp.zeros((3, 3)))


def test_grid_is_part_of_the_interface():
    class NoGrid(PDEProblem):
        num_features = 1

        def features_at(self, basis, points):
            return basis[None]

        def pointwise(self, a, aux):
            return a[0]

        def aux_at(self, data, points):
            return None

        def constraint_rows(self, basis, data):
            return basis[:1], jnp.zeros(1)

    with pytest.raises(TypeError, match="grid"):
        NoGrid()
