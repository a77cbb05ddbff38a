"""The problem interface shared by the hard-constraint layer, the soft baseline and tests.

A PDE residual handled by pdeml has the form

    F(u)(p) = Phi(a_1(p), ..., a_K(p); aux(p)),    a_k = D_k u,

where every D_k is a *linear* operator (identity, finite-difference or spectral
derivative) and Phi is a pointwise nonlinearity. For u = b @ w with basis functions
b[..., n], every a_k is linear in w: a_k(p) = T_k(p) @ w with features T_k = D_k b. This is
the structure the Gauss-Newton solver in :mod:`pdeml.core` exploits.

Initial/boundary conditions are *linear rows*: ``rows @ w = targets``.

Grids are regular tensor-product grids; a point is a multi-index into the grid, so a set of
``m`` points is an integer array of shape ``(m, ndim)``.
"""

import abc
from typing import Any

import equinox as eqx
from equinox import AbstractVar
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


class PDEProblem(eqx.Module):
    """Abstract PDE problem on a regular grid.

    Subclasses hold physical constants and the grid as fields (never literals in code) and
    implement the abstract methods. ``data`` is the per-instance problem data (for example
    the initial condition); its structure is defined by the subclass.

    ``grid`` is part of the interface: a field or property holding the problem's grid (a
    :class:`~pdeml.pde.SpaceTimeGrid` for 1D space x time, a
    :class:`~pdeml.pde.PeriodicSpaceTimeGrid` for a periodic square x time, or any object
    with ``shape``, ``spacing(axis)`` and ``interior_points()``). From it come the defaults
    of :attr:`grid_shape` and :meth:`interior_points`, and helpers such as
    :func:`pdeml.pde.manufactured_data` and :func:`pdeml.testing.smooth_fields` use it.

    Example (viscous Burgers ``u_t + u u_x - nu u_xx = f`` with Dirichlet data):
        >>> import equinox as eqx, jax.numpy as jnp
        >>> from pdeml.pde import SpaceTimeGrid, fd_derivative_at, manufactured_data
        >>> class Burgers(PDEProblem):
        ...     grid: SpaceTimeGrid = SpaceTimeGrid(nx=32, nt=11)
        ...     nu: float = eqx.field(static=True, default=0.05)
        ...     num_features = 4  # u, u_x, u_t, u_xx
        ...     def features_at(self, basis, points):
        ...         d = lambda axis, order: fd_derivative_at(
        ...             basis, points, axis=axis, order=order, spacing=self.grid.spacing(axis))
        ...         return jnp.stack([d(0, 0), d(0, 1), d(1, 1), d(0, 2)])
        ...     def pointwise(self, a, f):
        ...         return a[2] + a[0] * a[1] - self.nu * a[3] - f
        ...     def aux_at(self, data, points):
        ...         return data.f[points[:, 0], points[:, 1]]
        ...     def constraint_rows(self, basis, data):
        ...         return self.grid.dirichlet_rows(basis, data.u0, data.left, data.right)
        >>> prob = Burgers()
        >>> x, t = prob.grid.mesh()
        >>> u = jnp.sin(jnp.pi * x) * jnp.exp(-t)
        >>> data = manufactured_data(prob, u)  # u solves the discrete equations exactly
        >>> prob.grid_shape, prob.interior_points().shape
        ((32, 11), (300, 2))
        >>> bool(jnp.abs(prob.residual_field(u, data)).max() < 1e-4)
        True
    """

    grid: AbstractVar[Any]

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Shape of the grid, e.g. ``(nx, nt)`` (default: ``grid.shape``)."""
        return tuple(self.grid.shape)

    @property
    @abc.abstractmethod
    def num_features(self) -> int:
        """Number K of linear feature operators D_k."""

    @abc.abstractmethod
    def features_at(
        self, basis: Float[Array, "*grid n"], points: Int[Array, "m ndim"]
    ) -> Float[Array, "k m n"]:
        """D_k applied to every basis function, evaluated only at ``points``.

        Implementations gather what they need at the points first (stencil neighbours for
        finite differences) and never materialise full-grid derivative tensors when they
        can avoid it. The map must be linear in the basis and act on every basis function
        alike (``features_at(b @ M) == features_at(b) @ M``): the layers differentiate
        through it in closed form (:meth:`pdeml.core.StructuredLeastSquares.from_basis`);
        :func:`pdeml.testing.check_features_act_columnwise` checks it.
        """

    @abc.abstractmethod
    def pointwise(self, a: Float[Array, " k"], aux) -> Float[Array, ""]:
        """The pointwise nonlinearity Phi at one point (``a`` = the K feature values)."""

    @abc.abstractmethod
    def aux_at(self, data, points: Int[Array, "m ndim"]):
        """Per-point auxiliary data for :meth:`pointwise` (pytree with leading axis m), or None."""

    @abc.abstractmethod
    def constraint_rows(
        self, basis: Float[Array, "*grid n"], data
    ) -> tuple[Float[Array, "p n"], Float[Array, " p"]]:
        """Linear initial/boundary-condition rows: ``rows @ w = targets``."""

    def interior_points(self) -> Int[Array, "q ndim"]:
        """All grid points where the PDE residual is imposed (candidates for sampling).

        Default: ``grid.interior_points()`` (for a :class:`~pdeml.pde.SpaceTimeGrid`, every
        point not on the initial time level or the two spatial ends).
        """
        return self.grid.interior_points()

    # ---- derived, shared by every problem -------------------------------------------

    def residual_at(
        self, basis: Float[Array, "*grid n"], w: Float[Array, " n"], data, points
    ) -> Float[Array, " m"]:
        """PDE residual of u = basis @ w at ``points``."""
        feats = self.features_at(basis, points)  # (k, m, n)
        a = jnp.einsum("kmn,n->mk", feats, w)
        aux = self.aux_at(data, points)
        return jax.vmap(self.pointwise)(a, aux)

    def residual_field(self, u: Float[Array, "*grid"], data) -> Float[Array, " q"]:
        """PDE residual of a field ``u`` at every interior point (soft loss, evaluation)."""
        one = jnp.ones((1,), u.dtype)
        return self.residual_at(u[..., None], one, data, self.interior_points())

    def constraint_violation(self, u: Float[Array, "*grid"], data) -> Float[Array, " p"]:
        """IC/BC row residuals of a field ``u`` (rows @ 1 - targets with basis u)."""
        rows, targets = self.constraint_rows(u[..., None], data)
        return rows[:, 0] - targets

    def residual_grid(self, u: Float[Array, "*grid"], data) -> Float[Array, "*grid"]:
        """:meth:`residual_field` scattered onto the grid (zero where no residual is imposed)."""
        pts = self.interior_points()
        res = self.residual_field(u, data)
        return jnp.zeros(self.grid_shape, res.dtype).at[tuple(pts.T)].set(res)
