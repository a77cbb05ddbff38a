"""2D Navier-Stokes in vorticity form on the periodic square, as a hard-constraint problem.

Equation ([HC-MoE] benchmark, PDEBench/FNO form), on ``[0, L)^2 x [0, T]``::

    w_t + u . grad w - nu lap w - f = 0,      u = (psi_y, -psi_x),   -lap psi = w,

with the [HC-MoE] settings as defaults: ``nu = 1e-4`` (their code: Reynolds number 1e4),
``T = 5``, no forcing (their data set "NS-no-forcing"), the unit square, a 64 x 64 x 64
(x, y, t) training grid. ``forcing="li2021"`` gives Li et al.'s FNO forcing
``0.1 (sin 2pi(x + y) + cos 2pi(x + y))`` instead.

*Structure for the hard-constraint layer.* The network's N basis functions ``b[..., n]``
represent vorticity, ``w = b @ c``. Every quantity in the residual is *linear* in the weights
``c``: the features per point are

    a = (w_t, w_x, w_y, lap w, u, v) = T c,      T = (D_t b, D_x b, D_y b, lap b, U b, V b),

where the velocity operators ``U, V`` (Biot-Savart: stream function by FFT, then its
derivatives) are applied to each basis function separately. The residual is the pointwise,
*bilinear* function

    Phi(a; f) = s (a_0 + a_4 a_1 + a_5 a_2 - nu a_3 - f),

which :class:`pdeml.core.StructuredLeastSquares` handles by Gauss-Newton / Levenberg-Marquardt
on the residual itself (not its square, unlike the published code, which squares it and so
squares its condition number).

*Discretisation.* Space: Fourier collocation at ``x_i = i L / nx`` (periodic, the end point not
repeated), spatial derivatives and velocity exact for trigonometric polynomials the grid
resolves (no dealiasing: the product is formed pointwise at grid points, where it is exact).
Time: vertex-centred levels ``t_j = j T / (nt - 1)``; ``w_t`` by second-order central
differences, one-sided second order at ``j = nt - 1`` (the stencils of
:func:`pdeml.pde.fd_derivative_at`). Residual points: every ``(i, j)`` and every level
``1 <= k <= nt - 1``; level 0 carries the initial-condition rows ``w(x_i, y_j, 0) = w0_ij``.

*Memory.* :meth:`NavierStokes2D.features_at` computes the spectral features basis function by
basis function (``feature_batch`` at a time) and gathers them at the sampled points at once, so
peak memory is O(grid x N + feature_batch x grid + 6 m N) instead of the full-grid float64
feature tensors of all N basis functions the published code materialises (~0.8 GB per sample at
64^3, N = 64; ``feature_batch=None`` reproduces that: 790 MB of temporaries, vs 189 MB).

References: [HC-MoE] Chalapathi, Du, Krishnapriyan, ICLR 2024 (arXiv:2402.13412); Li et al.,
ICLR 2021 (arXiv:2010.08895); Takamoto et al., "PDEBench", NeurIPS 2022.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from pdeml.core.validation import check_choice
from pdeml.pde.base import PDEProblem
from pdeml.pde.grids import PeriodicSpaceTimeGrid
from pdeml.pde.navier_stokes_solver import vorticity_features
from pdeml.pde.operators import fd_derivative_at

__all__ = ["NavierStokes2D", "NavierStokesData", "FORCINGS"]

FORCINGS = ("none", "li2021")


class NavierStokesData(NamedTuple):
    """One problem instance with its own forcing (e.g. a manufactured solution).

    Attributes:
        w0: initial vorticity ``(nx, ny)``.
        forcing: ``(nx, ny)`` (steady) or ``(nx, ny, nt)`` forcing on the problem grid, or
            ``None`` for the problem's own ``forcing`` option.
    """

    w0: Float[Array, "nx ny"]
    forcing: Float[Array, "nx ny *nt"] | None = None


class NavierStokes2D(PDEProblem):
    """2D incompressible Navier-Stokes, vorticity form, periodic square ([HC-MoE] settings).

    Problem data ``data`` is the initial vorticity ``w0`` of shape ``(nx, ny)``, or a
    :class:`NavierStokesData` carrying a forcing of its own.

    Attributes:
        viscosity: kinematic viscosity nu ([HC-MoE]: 1e-4).
        t_max: T, the time interval is [0, T] ([HC-MoE]: 5).
        length: L, the period of the square ([0, L)^2; unit square).
        nx, ny: spatial points per direction (periodic, ``x_i = i L / nx``); paper 64 x 64.
        nt: time levels including t = 0 and t = T (paper 64).
        forcing: ``"none"`` ([HC-MoE]) or ``"li2021"`` (Li et al.:
            ``A (sin 2pi(x + y)/L + cos 2pi(x + y)/L)``).
        forcing_amplitude: A for ``forcing="li2021"`` (Li et al.: 0.1).
        ic_weight: weight multiplying the initial-condition rows and targets.
        residual_scale: factor s multiplying the PDE residual.
        feature_batch: basis functions whose full-grid spectral features are formed at a time in
            :meth:`features_at` (``None``: all at once). Measured at 64^3, N = 64, m = 20k on
            CPU: 1 (default) needs 189 MB of temporaries and 0.9 s, 16 needs 343 MB and 2.0 s,
            ``None`` 790 MB and 2.2 s. Larger batches may pay off on a GPU.

    Example:
        >>> p = NavierStokes2D(nx=8, ny=8, nt=4)
        >>> p.grid_shape, p.num_features, p.interior_points().shape
        ((8, 8, 4), 6, (192, 3))
    """

    viscosity: float = eqx.field(static=True, default=1e-4)
    t_max: float = eqx.field(static=True, default=5.0)
    length: float = eqx.field(static=True, default=1.0)
    nx: int = eqx.field(static=True, default=64)
    ny: int = eqx.field(static=True, default=64)
    nt: int = eqx.field(static=True, default=64)
    forcing: str = eqx.field(static=True, default="none")
    forcing_amplitude: float = eqx.field(static=True, default=0.1)
    ic_weight: float = eqx.field(static=True, default=1.0)
    residual_scale: float = eqx.field(static=True, default=1.0)
    feature_batch: int | None = eqx.field(static=True, default=1)

    def __check_init__(self):
        check_choice("forcing", self.forcing, FORCINGS)
        for name, least in (("nx", 4), ("ny", 4), ("nt", 3)):
            n = getattr(self, name)
            if not isinstance(n, int) or isinstance(n, bool) or n < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {n!r}")
        if not self.viscosity >= 0:
            raise ValueError(f"viscosity must be >= 0, got {self.viscosity!r}")
        for name in ("t_max", "length", "ic_weight", "residual_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        fb = self.feature_batch
        if fb is not None and (not isinstance(fb, int) or isinstance(fb, bool) or fb < 1):
            raise ValueError(f"feature_batch must be a positive integer or None, got {fb!r}")

    # ---- grid and data -----------------------------------------------------------------

    @property
    def dt(self) -> float:
        """Spacing of the time levels, ``T / (nt - 1)``."""
        return self.t_max / (self.nt - 1)

    def times(self) -> np.ndarray:
        """The ``nt`` time levels ``t_j = j T / (nt - 1)`` (NumPy float64)."""
        return np.arange(self.nt) * self.dt

    def coordinates(self, dtype=None, refine: int = 1):
        """``(x, y, t)``: periodic nodes ``i L / (r nx)``, ``j L / (r ny)`` and the time levels."""
        x = jnp.arange(self.nx * refine, dtype=dtype) * (self.length / (self.nx * refine))
        y = jnp.arange(self.ny * refine, dtype=dtype) * (self.length / (self.ny * refine))
        return x, y, jnp.asarray(self.times(), dtype)

    def forcing_field(self, dtype=None, refine: int = 1) -> Float[Array, "nx ny"] | None:
        """The steady forcing on the (``refine`` times finer) spatial grid, or ``None``."""
        if self.forcing == "none":
            return None
        x, y, _ = self.coordinates(dtype, refine)
        phase = 2 * jnp.pi * (x[:, None] + y[None, :]) / self.length
        return self.forcing_amplitude * (jnp.sin(phase) + jnp.cos(phase))

    def network_input(self, data) -> Float[Array, "nx ny nt 4"]:
        """FNO input ``(w0(x, y), x, y, t)`` on the grid, coordinates normalised to [0, 1]."""
        from pdeml.nets.fno import grid_features

        w0 = self._w0(data)
        x, y, t = self.coordinates(w0.dtype)
        return grid_features(x, y, t, fields=[w0[:, :, None]])

    def _w0(self, data) -> Float[Array, "nx ny"]:
        w0 = jnp.asarray(data.w0 if isinstance(data, NavierStokesData) else data)
        if w0.shape != (self.nx, self.ny):
            raise ValueError(f"data (the initial vorticity w0) must have shape ({self.nx}, "
                             f"{self.ny}), got {w0.shape}")
        return w0

    # ---- PDEProblem interface ----------------------------------------------------------

    @property
    def grid(self) -> PeriodicSpaceTimeGrid:
        """The periodic square x time grid (``x_i = i L / nx``, ``t_k = k T / (nt - 1)``)."""
        return PeriodicSpaceTimeGrid(nx=self.nx, ny=self.ny, nt=self.nt, length=self.length,
                                     t_max=self.t_max)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return (self.nx, self.ny, self.nt)

    @property
    def num_features(self) -> int:
        return 6

    def _check_basis(self, basis):
        if basis.ndim != 4 or basis.shape[:3] != self.grid_shape:
            raise ValueError(f"basis must have shape (nx, ny, nt, n) = (*{self.grid_shape}, n), "
                             f"got {basis.shape}")

    def features_at(
        self, basis: Float[Array, "nx ny nt n"], points: Int[Array, "m 3"]
    ) -> Float[Array, "6 m n"]:
        """``(w_t, w_x, w_y, lap w, u, v)`` of every basis function at ``points``.

        ``w_t`` is gathered from its stencil directly; the spectral features are formed
        ``feature_batch`` basis functions at a time and gathered at the points immediately.
        """
        basis = jnp.asarray(basis)
        self._check_basis(basis)
        points = jnp.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (m, 3), got {points.shape}")
        w_t = fd_derivative_at(basis, points, axis=2, order=1, spacing=self.dt)  # (m, n)
        idx = tuple(points[:, d] for d in range(3))

        def one(b):  # b: (nx, ny, nt), one basis function -> (5, m)
            return vorticity_features(b, self.length)[(slice(None),) + idx]

        per_basis = jnp.moveaxis(basis, -1, 0)
        if self.feature_batch is None:
            spatial = jax.vmap(one)(per_basis)
        else:
            # lax.map is a scan (over chunks of vmapped calls when feature_batch > 1): only
            # `feature_batch` basis functions' full-grid features are alive at once.
            batch = None if self.feature_batch == 1 else self.feature_batch
            spatial = jax.lax.map(one, per_basis, batch_size=batch)
        spatial = jnp.moveaxis(spatial, 0, -1)  # (5, m, n)
        return jnp.concatenate([w_t[None], spatial]).astype(basis.dtype)

    def pointwise(self, a: Float[Array, " 6"], aux) -> Float[Array, ""]:
        """``s (w_t + u w_x + v w_y - nu lap w - f)`` for ``a = (w_t, w_x, w_y, lap w, u, v)``."""
        f = 0.0 if aux is None else aux
        return self.residual_scale * (
            a[0] + a[4] * a[1] + a[5] * a[2] - self.viscosity * a[3] - f
        )

    def aux_at(self, data, points) -> Float[Array, " m"] | None:
        """The forcing at the points (the instance's own if given, else the problem's)."""
        points = jnp.asarray(points)
        f = data.forcing if isinstance(data, NavierStokesData) else None
        if f is None:
            f = self.forcing_field(jnp.result_type(self._w0(data), float))
            if f is None:
                return None
        f = jnp.asarray(f)
        if f.shape == (self.nx, self.ny):
            return f[points[:, 0], points[:, 1]]
        if f.shape == self.grid_shape:
            return f[points[:, 0], points[:, 1], points[:, 2]]
        raise ValueError(f"forcing must have shape ({self.nx}, {self.ny}) or {self.grid_shape}, "
                         f"got {f.shape}")

    def constraint_rows(
        self, basis: Float[Array, "nx ny nt n"], data
    ) -> tuple[Float[Array, "p n"], Float[Array, " p"]]:
        """Initial-condition rows ``w(x_i, y_j, 0) = w0_ij`` (x-major), times ``ic_weight``.

        The domain is periodic, so there are no boundary rows.
        """
        basis = jnp.asarray(basis)
        self._check_basis(basis)
        w0 = self._w0(data)
        dtype = jnp.result_type(basis, w0)
        rows = self.ic_weight * basis[:, :, 0, :].reshape(self.nx * self.ny, -1)
        targets = self.ic_weight * w0.reshape(-1)
        return rows.astype(dtype), targets.astype(dtype)

    def interior_points(self) -> Int[Array, "q 3"]:
        """``(i, j, k)`` for every ``i``, ``j`` and ``1 <= k <= nt - 1`` (x-major order)."""
        i, j, k = np.meshgrid(np.arange(self.nx), np.arange(self.ny), np.arange(1, self.nt),
                              indexing="ij")
        return jnp.asarray(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(np.int32))
