"""Navier-Stokes as a hard-constraint problem; GRF initial conditions; datasets, cache, CLI;
the 3D (x, y, t) FNO."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.cli import main as cli_main
from pdeml.constraints import HardConstrainedModel, HardConstraint, physics_loss
from pdeml.core import LevenbergMarquardt
from pdeml.nets import FNO
from pdeml.pde import (
    CacheWarning,
    GaussianRandomField,
    NavierStokes2D,
    NavierStokesData,
    NavierStokesSolver,
    fd_derivative,
    generate_navier_stokes_dataset,
    navier_stokes_dataset,
    vorticity_features,
)

PI = np.pi


# ---- an exact solution in the span of the basis --------------------------------------------

MMS = NavierStokes2D(nx=16, ny=16, nt=9, t_max=1.0, viscosity=1e-2, feature_batch=3)


def _w_star(x, y, t):
    return ((1 + 0.5 * t - 0.3 * t**2) * jnp.sin(2 * PI * x)
            + (0.7 - 0.2 * t + 0.1 * t**2) * jnp.cos(4 * PI * y))


def _psi_star(x, y, t):  # -lap psi* = w*
    return ((1 + 0.5 * t - 0.3 * t**2) * jnp.sin(2 * PI * x) / (4 * PI**2)
            + (0.7 - 0.2 * t + 0.1 * t**2) * jnp.cos(4 * PI * y) / (16 * PI**2))


def _forcing(x, y, t):
    g = lambda i: jax.grad(_w_star, i)  # noqa: E731
    lap = jax.grad(g(0), 0)(x, y, t) + jax.grad(g(1), 1)(x, y, t)
    u, v = jax.grad(_psi_star, 1)(x, y, t), -jax.grad(_psi_star, 0)(x, y, t)
    return g(2)(x, y, t) + u * g(0)(x, y, t) + v * g(1)(x, y, t) - MMS.viscosity * lap


def mms_setup():
    x, y, t = MMS.coordinates(jnp.float64)
    X, Y, T = jnp.meshgrid(x, y, t, indexing="ij")
    f = jax.vmap(_forcing)(X.ravel(), Y.ravel(), T.ravel()).reshape(X.shape)
    w = _w_star(X, Y, T)
    sx, cy = jnp.sin(2 * PI * X), jnp.cos(4 * PI * Y)
    basis = jnp.stack([sx, sx * T, sx * T**2, cy, cy * T, cy * T**2,  # span w*
                       jnp.sin(2 * PI * Y) * T, jnp.cos(2 * PI * X) * jnp.sin(2 * PI * Y) * T**2,
                       jnp.cos(2 * PI * (X + Y))], axis=-1)
    return w, NavierStokesData(w[..., 0], f), basis


@eqx.filter_jit
def _solve(layer, basis, data, key):
    return layer(basis, data, key=key)


def test_exact_solution_in_the_basis_span_is_recovered_with_zero_residual():
    """w* is quadratic in t (the time stencils are exact) and a trigonometric polynomial in
    space (the spectral features are exact), with a non-zero advection term; its forcing comes
    from autodiff of closed forms. So the discrete residual of w* is zero to round-off, and the
    Gauss-Newton solve on the *bilinear* residual must find the weights of w* exactly."""
    w, data, basis = mms_setup()
    assert float(jnp.abs(MMS.residual_field(w, data)).max()) < 1e-12
    layer = HardConstraint(MMS, num_points=300, solver=LevenbergMarquardt(max_steps=50))
    u, info = _solve(layer, basis, data, jax.random.key(0))
    assert bool(info.stats.converged)
    np.testing.assert_allclose(info.w, [1, 0.5, -0.3, 0.7, -0.2, 0.1, 0, 0, 0], atol=1e-10)
    np.testing.assert_allclose(u, w, atol=1e-10)
    # Residual ~0 at every grid point, not only at the 300 sampled ones.
    assert float(jnp.abs(MMS.residual_field(u, data)).max()) < 1e-9
    assert float(jnp.abs(MMS.constraint_violation(u, data)).max()) < 1e-10


def test_features_equal_full_grid_operators_and_do_not_depend_on_chunking():
    _, _, basis = mms_setup()
    pts = jnp.asarray(np.random.default_rng(0).integers(0, [16, 16, 9], size=(50, 3)),
                      jnp.int32)
    chunked = MMS.features_at(basis, pts)  # feature_batch=3: 3 chunks of 3 basis functions
    for fb in (None, 1):  # all at once (vmap) / one at a time (scan)
        other = dataclasses.replace(MMS, feature_batch=fb).features_at(basis, pts)
        np.testing.assert_allclose(chunked, other, rtol=0, atol=1e-12)
    # Independent full-grid construction, then gathered.
    idx = tuple(pts[:, d] for d in range(3))
    w_t = fd_derivative(basis, axis=2, order=1, spacing=MMS.dt)[idx]
    spatial = vorticity_features(basis)[(slice(None),) + idx]
    np.testing.assert_allclose(chunked, jnp.concatenate([w_t[None], spatial]), atol=1e-11)
    assert chunked.shape == (6, 50, 9)


def test_reference_solution_residual_is_small_and_converges_at_second_order():
    """The solver's output is a solution, so its residual on the problem grid is the residual
    discretisation error: O(dt^2) from the time stencils once the solver is spatially resolved
    (refine=2), and larger when the solver runs on the 32^2 grid itself (its 2/3 truncation)."""
    w0 = GaussianRandomField(std=0.5).sample(jax.random.key(0), 32, 32)
    fine_t = NavierStokes2D(nx=32, ny=32, nt=17, t_max=1.0)
    sol = NavierStokesSolver(dt=1 / 256, refine=2)(fine_t, w0)
    rms = {}
    for stride in (4, 2, 1):  # the levels of nt = 5 and 9 are among those of nt = 17
        p = NavierStokes2D(nx=32, ny=32, nt=16 // stride + 1, t_max=1.0)
        r = p.residual_field(sol.w[..., ::stride], w0)
        rms[p.nt] = float(jnp.sqrt(jnp.mean(r**2)))
    dts = [1 / 4, 1 / 8, 1 / 16]
    slope = np.polyfit(np.log(dts), np.log(list(rms.values())), 1)[0]
    assert 1.8 < slope < 2.2, rms  # measured 2.03
    w_t_scale = float(jnp.abs(jnp.diff(sol.w, axis=-1)).max()) / fine_t.dt  # ~0.4
    assert rms[17] < 5e-4 * w_t_scale  # measured 2.5e-4
    coarse = NavierStokesSolver(dt=1 / 256, refine=1)(fine_t, w0)
    r1 = float(jnp.sqrt(jnp.mean(fine_t.residual_field(coarse.w, w0) ** 2)))
    assert r1 > 3 * rms[17]  # measured 5.3x: spatial refinement of the solver also counts


# ---- 3D FNO and the full hard-constrained model -------------------------------------------


def _small_3d_fno():
    # Equal channel counts (4 inputs w0, x, y, t) keep the number of distinct parameter shapes,
    # and so of jax.random compilations in the constructor, small.
    return FNO(4, 4, modes=(2, 2, 2), width=4, n_layers=2, projection_width=4,
               padding=(0, 0, 2), key=jax.random.key(1))


FNO_PROBLEM = NavierStokes2D(nx=8, ny=8, nt=5, t_max=1.0, viscosity=1e-2)


def _assert_all_gradients_nonzero(g):
    named = jax.tree_util.tree_leaves_with_path(eqx.filter(g, eqx.is_inexact_array))
    assert len(named) == 2 + 2 * 4 + 4  # lifting W,b; per layer spectral re/im + skip W,b; MLP
    for path, leaf in named:
        norm = float(jnp.linalg.norm(leaf))
        assert np.isfinite(norm) and norm > 0, jax.tree_util.keystr(path)


def test_3d_fno_outputs_basis_functions_on_the_space_time_grid():
    """pdeml.nets.FNO is n-dimensional: on (x, y, t) with channels (w0, x, y, t) it gives
    (nx, ny, nt, N) basis functions, and every parameter gets a non-zero gradient."""
    net = _small_3d_fno()
    w0 = GaussianRandomField().sample(jax.random.key(2), 8, 8)
    inp = FNO_PROBLEM.network_input(w0)
    assert inp.shape == (8, 8, 5, 4)
    np.testing.assert_array_equal(inp[..., 2, 0], w0)  # w0 broadcast over t
    np.testing.assert_allclose(inp[0, 0, :, 3], np.linspace(0, 1, 5))  # normalised t
    target = jnp.asarray(np.random.default_rng(0).standard_normal((8, 8, 5, 4)))

    def loss(m):
        out = m(inp)
        return jnp.mean((out - target) ** 2), out

    @eqx.filter_jit  # one compilation for the output and the gradient
    def run(m):
        (_, out), g = eqx.filter_value_and_grad(loss, has_aux=True)(m)
        return out, g

    out, g = run(net)
    assert out.shape == (8, 8, 5, 4) and bool(jnp.all(jnp.isfinite(out)))
    _assert_all_gradients_nonzero(g)


@pytest.mark.slow
def test_hard_constrained_model_on_navier_stokes_trains_end_to_end():
    """3D FNO basis -> HardConstraint on the bilinear NS residual -> physics loss: finite,
    non-zero gradients for every network parameter (implicit differentiation of the solve)."""
    w0 = GaussianRandomField().sample(jax.random.key(2), 8, 8)
    model = HardConstrainedModel(_small_3d_fno(), HardConstraint(FNO_PROBLEM, num_points=100,
                                                                  ridge=1e-6, throw=False))

    @eqx.filter_jit
    @eqx.filter_grad
    def grads(m):
        u, _ = m(w0, key=jax.random.key(3))
        return physics_loss(m.problem, u, w0)[0]

    _assert_all_gradients_nonzero(grads(model))


# ---- Gaussian random fields ---------------------------------------------------------------


def _periodic_kernel(dx, dy, ell):
    return np.exp(-2 * np.sin(PI * dx) ** 2 / ell**2) * np.exp(-2 * np.sin(PI * dy) ** 2 / ell**2)


@pytest.mark.parametrize("zero_mean", [False, True])
def test_grf_covariance_is_exactly_the_periodic_kernel(zero_mean):
    """The map white noise -> field is linear, w = A z; its covariance A A^T must be the kernel
    matrix k(x_p - x_q) (minus its mean for zero-mean fields), built here point by point."""
    n = 8
    grf = GaussianRandomField(zero_mean=zero_mean, length_scale=0.8)
    eye = jnp.eye(n * n).reshape(n * n, n, n)
    a = np.asarray(grf.apply(eye)).reshape(n * n, n * n).T  # column q = A e_q
    xs = np.arange(n) / n
    px, py = [c.ravel() for c in np.meshgrid(xs, xs, indexing="ij")]
    k = _periodic_kernel(px[:, None] - px[None, :], py[:, None] - py[None, :], 0.8)
    if zero_mean:
        k = k - k.mean()  # circulant C - mean: the covariance of w - mean(w)
    np.testing.assert_allclose(a @ a.T, k, atol=1e-13)
    s = grf.sample(jax.random.key(0), n, n, num_samples=4)
    assert s.shape == (4, n, n)
    np.testing.assert_array_equal(s, grf.sample(jax.random.key(0), n, n, num_samples=4))
    if zero_mean:
        np.testing.assert_allclose(s.mean(axis=(1, 2)), 0, atol=1e-14)


def test_grf_li2021_covariance_matches_its_spectral_definition():
    n = 8
    grf = GaussianRandomField(kind="li2021")
    c = grf.covariance(n, n)
    k = np.fft.fftfreq(n, 1 / n)
    xs = np.arange(n) / n
    brute = np.zeros((n, n))
    for kx in k:
        for ky in k:
            if kx == 0 and ky == 0:
                continue
            lam = 7.0**3 * (4 * PI**2 * (kx**2 + ky**2) + 49.0) ** -2.5
            brute += lam * np.cos(2 * PI * (kx * xs[:, None] + ky * xs[None, :]))
    np.testing.assert_allclose(c, brute, atol=1e-15)


# ---- datasets, cache, CLI -----------------------------------------------------------------

SMALL = NavierStokes2D(nx=16, ny=16, nt=5, t_max=1.0)


def test_dataset_cache_round_trip_and_content(tmp_path):
    first = navier_stokes_dataset(SMALL, 2, seed=0, cache_dir=tmp_path)
    again = navier_stokes_dataset(SMALL, 2, seed=0, cache_dir=tmp_path)
    assert not first.from_cache and again.from_cache
    assert first.checksum == again.checksum and first.path.name.startswith("NavierStokes2D-")
    ds = again.dataset
    assert ds.u0.shape == (2, 16, 16) and ds.u.shape == (2, 16, 16, 5)
    np.testing.assert_array_equal(ds.u[..., 0], ds.u0)
    # The data are the GRF draw for key(seed) and the solver's solution of it.
    w0 = GaussianRandomField().sample(jax.random.key(0), 16, 16, num_samples=2)
    np.testing.assert_array_equal(ds.u0, w0)
    direct = NavierStokesSolver()(SMALL, w0[1])
    np.testing.assert_allclose(ds.u[1], direct.w, rtol=0, atol=1e-13)
    assert ds.metadata["request"]["initial_conditions"]["length_scale"] == 0.8
    # Constraint-layer settings do not change the data, so they share the file...
    other = dataclasses.replace(SMALL, feature_batch=4, ic_weight=10.0)
    assert navier_stokes_dataset(other, 2, seed=0, cache_dir=tmp_path).from_cache
    # ...while physics does not.
    thin = NavierStokes2D(nx=16, ny=16, nt=5, t_max=1.0, viscosity=1e-3)
    assert navier_stokes_dataset(thin, 2, seed=0, cache_dir=tmp_path).path != first.path
    # A damaged file is reported and regenerated, never used.
    first.path.write_bytes(b"garbage")
    with pytest.warns(CacheWarning, match="unusable"):
        again = navier_stokes_dataset(SMALL, 2, seed=0, cache_dir=tmp_path)
    assert not again.from_cache and again.checksum == first.checksum


def test_unstable_time_step_is_refused():
    with pytest.raises(RuntimeError, match="unstable.*decrease the solver's dt"):
        generate_navier_stokes_dataset(SMALL, 1, jax.random.key(0),
                                       solver=NavierStokesSolver(dt=0.25),
                                       grf=GaussianRandomField(std=20.0))


def test_cli_generates_then_reads_from_cache(tmp_path, capsys):
    argv = ["data", "navier-stokes", "--samples", "2", "--nx", "16", "--ny", "16", "--nt", "5",
            "--t-max", "1", "--cache-dir", str(tmp_path)]
    assert cli_main(argv) == 0
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "generated" in out and "loaded from cache" in out and "(2, 16, 16, 5)" in out
    assert cli_main(["data", "navier-stokes", "--refine", "0"]) == 2
    assert "--refine must be an integer >= 1" in capsys.readouterr().err
    assert cli_main(["data", "navier-stokes", "--dt", "-1"]) == 2


def test_bad_input_is_rejected_with_clear_errors():
    _, data, basis = mms_setup()
    with pytest.raises(ValueError, match=r"basis must have shape \(nx, ny, nt, n\)"):
        MMS.features_at(basis[:, :, :4], jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"points must have shape \(m, 3\)"):
        MMS.features_at(basis, jnp.zeros((3, 2), jnp.int32))
    with pytest.raises(ValueError, match=r"initial vorticity w0\) must have shape \(16, 16\)"):
        MMS.constraint_rows(basis, jnp.zeros((16, 8)))
    with pytest.raises(ValueError, match="forcing must have shape"):
        MMS.aux_at(NavierStokesData(data.w0, jnp.zeros((16, 16, 2))), jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(ValueError, match="unknown forcing 'kolmogorov'"):
        NavierStokes2D(forcing="kolmogorov")
    with pytest.raises(ValueError, match="nt must be an integer >= 3"):
        NavierStokes2D(nt=2)
    with pytest.raises(ValueError, match="feature_batch must be a positive integer or None"):
        NavierStokes2D(feature_batch=0)
    with pytest.raises(ValueError, match="unknown kind"):
        GaussianRandomField(kind="matern")
    with pytest.raises(ValueError, match="refine must be a positive integer"):
        NavierStokesSolver(refine=0)
