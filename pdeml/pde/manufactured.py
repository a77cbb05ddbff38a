"""Discrete manufactured data for space-time problems with a source and Dirichlet data.

A field ``u*`` on the grid is an *exact* discrete solution when the source is its own
discrete residual: with residual ``Phi(D_1 u, ..., D_K u) - f``, setting ``f = Phi(D u*)`` at
the interior points makes the residual of ``u*`` vanish there up to rounding, and reading the
initial and boundary values off ``u*`` makes its IC/BC rows exact. The least-squares layers then
have a known answer, whatever the PDE: the basis of convergence studies and property tests.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["DirichletData", "manufactured_data"]


class DirichletData(NamedTuple):
    """Data of a space-time problem with Dirichlet conditions and a source.

    ``u0 (nx,)``: initial condition; ``f (nx, nt)``: source on the grid (read at the points by
    the problem's ``aux_at``); ``left, right (nt - 1,)``: values at ``x_min`` and ``x_max`` for
    the time levels after ``t_min`` (the layout of
    :meth:`pdeml.pde.SpaceTimeGrid.dirichlet_rows`).
    """

    u0: Array
    f: Array
    left: Array
    right: Array


def manufactured_data(problem, u_star: Float[Array, "nx nt"], *, check: bool = True
                      ) -> DirichletData:
    """:class:`DirichletData` for which ``u_star`` solves ``problem``'s discrete equations.

    For a problem on a :class:`~pdeml.pde.SpaceTimeGrid` whose data is a
    :class:`DirichletData` and whose residual is ``Phi(features) - f`` with the source read
    from ``data.f`` at the points (the usual form of a forced PDE): ``u0``, ``left`` and
    ``right`` are read off ``u_star`` and ``f`` is the discrete residual of ``u_star`` with
    zero source (zero where no residual is imposed).

    Args:
        problem: a :class:`~pdeml.pde.PDEProblem` as above.
        u_star: the field to make exact, shape ``problem.grid_shape``.
        check: verify that the residual of ``u_star`` with the returned data vanishes (up to
            ``sqrt(eps) (1 + max |f|)``); a problem whose residual does not subtract
            ``data.f`` fails with a ``ValueError``.

    Example:
        >>> import jax.numpy as jnp
        >>> from pdeml.testing.problems import ReactionDiffusion1D
        >>> prob = ReactionDiffusion1D(reaction=1.0)
        >>> x, t = prob.grid.mesh()
        >>> data = manufactured_data(prob, jnp.sin(jnp.pi * x) * jnp.exp(-t))
        >>> data.u0.shape, data.f.shape, data.left.shape
        ((16,), (16, 9), (8,))
    """
    shape = tuple(problem.grid_shape)
    u_star = jnp.asarray(u_star)
    if len(shape) != 2 or u_star.shape != shape:
        raise ValueError(f"u_star must have the shape (nx, nt) of the problem's space-time grid "
                         f"{shape}, got {u_star.shape}")
    zero = DirichletData(u_star[:, 0], jnp.zeros_like(u_star), u_star[0, 1:], u_star[-1, 1:])
    data = zero._replace(f=problem.residual_grid(u_star, zero))
    if check:
        res = jnp.max(jnp.abs(problem.residual_field(u_star, data)))
        viol = jnp.max(jnp.abs(problem.constraint_violation(u_star, data)))
        tol = float(jnp.sqrt(jnp.finfo(u_star.dtype).eps)) * (1.0 + float(jnp.max(jnp.abs(data.f))))
        if not (res <= tol and viol <= tol):
            raise ValueError(
                f"u_star is not an exact solution with the manufactured data (max residual "
                f"{float(res):.3g}, max IC/BC violation {float(viol):.3g}, tolerance {tol:.3g}): "
                f"manufactured_data needs a residual Phi(features) - f with f read from data.f "
                f"by aux_at, and IC/BC rows laid out as SpaceTimeGrid.dirichlet_rows")
    return data
