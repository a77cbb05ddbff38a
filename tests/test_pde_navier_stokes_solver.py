"""The pseudo-spectral Navier-Stokes reference solver: exact solutions, order, invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.pde import (
    GaussianRandomField,
    fourier_upsample,
    solve_navier_stokes,
    velocity_from_vorticity,
    vorticity_features,
)

N = 32  # every solver test uses this grid, so the compiled solver is shared
X = np.arange(N) / N
XX, YY = np.meshgrid(X, X, indexing="ij")
TWO_PI = 2 * np.pi


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


def grf_field(seed, zero_mean=True):
    return GaussianRandomField(zero_mean=zero_mean).sample(jax.random.key(seed), N, N)


# ---- single Fourier shell: the advection term vanishes, so CN is the whole scheme ----------


@pytest.mark.parametrize(
    "nu, dt, forced",
    [(1e-4, 2.5e-3, False),  # the [HC-MoE] viscosity: Taylor-Green decay
     (2e-2, 5e-2, True)],  # strong viscosity, steady forcing (Kolmogorov-type flow)
)
def test_single_shell_flows_match_exact_and_crank_nicolson_solutions(nu, dt, forced):
    """Every field in one shell |k|^2 = K has psi = w / K, so u . grad w = J(psi, w) = 0 and
    w_hat(t) obeys w' = -nu K w + f exactly: Taylor-Green vortices (f = 0) and forced shear
    flows. The discrete solution is then w_s + (w0 - w_s) rho^n with the Crank-Nicolson factor
    rho = (1 - z/2) / (1 + z/2), z = nu K dt, and w_s = f / (nu K) (also CN's fixed point)."""
    shell = TWO_PI**2 * 5  # modes (2, 1), (1, 2): |k|^2 = 5 (2 pi)^2
    w0 = np.sin(TWO_PI * 2 * XX) * np.sin(TWO_PI * YY) + 0.5 * np.cos(TWO_PI * (XX + 2 * YY))
    f = 0.3 * np.sin(TWO_PI * (2 * XX - YY)) if forced else None
    w_s = 0.0 if f is None else (f / (nu * shell))[..., None]
    times = np.linspace(0.0, 5.0, 6)
    sol = solve_navier_stokes(jnp.asarray(w0), times, viscosity=nu, dt=dt, forcing=f)
    n = np.round(times / dt)
    z = nu * shell * dt
    rho = (1 - z / 2) / (1 + z / 2)
    discrete = w_s + (w0[..., None] - w_s) * rho**n
    exact = w_s + (w0[..., None] - w_s) * np.exp(-nu * shell * times)
    # Against the discrete CN solution: round-off only (|w| ~ 1, 2000 or 100 steps of 16 FFTs:
    # ~1e-13 accumulated).
    np.testing.assert_allclose(sol.w, discrete, rtol=0, atol=5e-13)
    # Against the exact solution: the CN amplification error |rho^n - e^{-n z}| times the
    # amplitude, i.e. the scheme is exact up to its own, predicted, temporal error.
    cn_error = np.max(np.abs(w0[..., None] - w_s)) * np.max(np.abs(rho**n - np.exp(-n * z)))
    err = np.abs(np.asarray(sol.w) - exact).max()
    assert err <= 1.01 * cn_error + 5e-13
    if not forced:  # paper viscosity: the Taylor-Green error is near round-off level
        assert err < 5e-11
    assert bool(sol.finite) and int(sol.num_steps) == n[-1]


# ---- manufactured solution with a non-zero advection term: exact error and order 2 ---------


def _w_star(x, y, t):
    return ((1 + jnp.sin(2 * t)) * jnp.sin(TWO_PI * x)
            + jnp.exp(-t) * jnp.cos(2 * TWO_PI * y)
            + 0.4 * jnp.cos(3 * t) * jnp.sin(TWO_PI * (x + y)))


def _psi_star(x, y, t):  # -lap psi = w, term by term
    return ((1 + jnp.sin(2 * t)) * jnp.sin(TWO_PI * x) / TWO_PI**2
            + jnp.exp(-t) * jnp.cos(2 * TWO_PI * y) / (4 * TWO_PI**2)
            + 0.4 * jnp.cos(3 * t) * jnp.sin(TWO_PI * (x + y)) / (2 * TWO_PI**2))


NU_MMS = 1e-2


def _mms_forcing_point(x, y, t):
    g = lambda i: jax.grad(_w_star, i)  # noqa: E731
    lap = jax.grad(g(0), 0)(x, y, t) + jax.grad(g(1), 1)(x, y, t)
    u = jax.grad(_psi_star, 1)(x, y, t)
    v = -jax.grad(_psi_star, 0)(x, y, t)
    return g(2)(x, y, t) + u * g(0)(x, y, t) + v * g(1)(x, y, t) - NU_MMS * lap


_MMS_F = jax.jit(jax.vmap(_mms_forcing_point, in_axes=(0, 0, None)))


def mms_forcing(t):  # one module-level object: a static argument of the compiled solver
    return _MMS_F(jnp.asarray(XX.ravel()), jnp.asarray(YY.ravel()), t).reshape(N, N)


def test_manufactured_nonlinear_solution_converges_at_second_order():
    """w* mixes three shells, so u . grad w* != 0; the forcing f = w*_t + u* . grad w* - nu lap w*
    comes from autodiff of closed forms (independent of the solver's FFTs). All products stay
    below the 2/3 cutoff, so the spatial error is round-off and the error is temporal."""
    psi_lap = jax.vmap(lambda x, y: -(jax.grad(jax.grad(_psi_star, 0), 0)(x, y, 0.3)
                                      + jax.grad(jax.grad(_psi_star, 1), 1)(x, y, 0.3)))
    np.testing.assert_allclose(psi_lap(XX.ravel(), YY.ravel()),
                               _w_star(XX.ravel(), YY.ravel(), 0.3), atol=1e-12)
    t_end = 1.0
    exact = np.asarray(_w_star(XX, YY, t_end))
    w0 = _w_star(jnp.asarray(XX), jnp.asarray(YY), 0.0)
    # The advection term is of the size of w_t here, so the test really exercises it.
    u, v = velocity_from_vorticity(w0)
    wx, wy = vorticity_features(w0, which=("w_x", "w_y"))
    assert float(jnp.abs(u * wx + v * wy).max()) > 0.5
    dts = [1 / 8, 1 / 16, 1 / 32, 1 / 64]
    errs = []
    for dt in dts:
        sol = solve_navier_stokes(w0, [t_end], viscosity=NU_MMS, dt=dt, forcing=mms_forcing)
        errs.append(float(np.abs(np.asarray(sol.w[..., 0]) - exact).max()))
    slope = _slope(dts, errs)
    # Second order (CN + Heun); a wrong velocity sign or a first-order splitting gives <= 1 or a
    # non-vanishing error, so [1.8, 2.2] is a sharp window.
    assert 1.8 < slope < 2.2, (slope, errs)
    assert errs[-1] < 5e-4  # |w*| ~ 2


def test_observed_order_on_a_paper_initial_condition():
    """GRF initial vorticity ([HC-MoE] kernel), nu = 1e-4: errors against a run with a 16x finer
    step shrink at order 2 (the reference's own error is ~256x below the coarsest error)."""
    w0 = grf_field(0)
    t_end = 1.0
    ref = solve_navier_stokes(w0, [t_end], viscosity=1e-4, dt=t_end / 1024)
    dts = [t_end / 16, t_end / 32, t_end / 64]
    errs = [float(jnp.abs(solve_navier_stokes(w0, [t_end], viscosity=1e-4, dt=dt).w - ref.w).max())
            for dt in dts]
    slope = _slope(dts, errs)
    assert 1.85 < slope < 2.15, (slope, errs)
    assert float(ref.cfl_max) < 0.05


# ---- invariants ---------------------------------------------------------------------------


def test_velocity_is_divergence_free_and_has_the_right_sign():
    # Closed form: psi = sin(2 pi x) cos(4 pi y), w = -lap psi = 20 pi^2 psi,
    # u = psi_y = -4 pi sin(2 pi x) sin(4 pi y), v = -psi_x = -2 pi cos(2 pi x) cos(4 pi y).
    psi = np.sin(TWO_PI * XX) * np.cos(2 * TWO_PI * YY)
    u, v = velocity_from_vorticity(jnp.asarray(20 * np.pi**2 * psi))
    np.testing.assert_allclose(u, -4 * np.pi * np.sin(TWO_PI * XX) * np.sin(2 * TWO_PI * YY),
                               atol=1e-12)
    np.testing.assert_allclose(v, -TWO_PI * np.cos(TWO_PI * XX) * np.cos(2 * TWO_PI * YY),
                               atol=1e-12)
    # A random field (and a batch axis carried along), without its Nyquist modes (which have
    # no resolvable first derivative; ~1e-7 of this field): div u = 0 and curl u = w - mean(w).
    w = jnp.stack([grf_field(1, zero_mean=False), grf_field(2, zero_mean=False)], axis=-1)
    w_hat = jnp.fft.rfft2(w, axes=(0, 1)).at[N // 2].set(0).at[:, N // 2].set(0)
    w = jnp.fft.irfft2(w_hat, s=(N, N), axes=(0, 1))
    u, v = velocity_from_vorticity(w)
    ux, uy = vorticity_features(u, which=("w_x", "w_y"))
    vx, vy = vorticity_features(v, which=("w_x", "w_y"))
    scale = float(jnp.abs(w).max())
    assert float(jnp.abs(ux + vy).max()) < 1e-12 * scale
    np.testing.assert_allclose(vx - uy, w - w.mean(axis=(0, 1), keepdims=True),
                               atol=1e-12 * scale)


def test_mean_vorticity_is_conserved_and_solutions_stay_bounded():
    """Advection and diffusion are divergences and the forcing has zero mean, so the mean of w
    (the k = 0 mode, untouched by the scheme) is conserved to round-off, also when non-zero."""
    w0 = grf_field(3, zero_mean=False) + 0.7
    f = 0.1 * (np.sin(TWO_PI * (XX + YY)) + np.cos(TWO_PI * (XX + YY)))  # Li et al.'s forcing
    sol = solve_navier_stokes(w0, np.linspace(0, 2.0, 5), viscosity=1e-4, dt=0.02, forcing=f)
    means = np.asarray(sol.w).mean(axis=(0, 1))
    np.testing.assert_allclose(means, float(w0.mean()), rtol=0, atol=1e-13)
    assert abs(float(w0.mean())) > 0.1
    # Enstrophy can only decay for f = 0 in exact arithmetic; with f it stays bounded.
    assert np.abs(np.asarray(sol.w)).max() < 3 * float(jnp.abs(w0).max())
    np.testing.assert_array_equal(sol.w[..., 0], w0)  # save time 0 returns w0 itself


def test_fourier_upsample_is_exact_for_resolved_fields_and_vmaps():
    def field(x, y):
        return np.sin(TWO_PI * 3 * x) * np.cos(TWO_PI * 2 * y) + np.cos(TWO_PI * 4 * x)  # Nyquist

    coarse = field(XX[::4, ::4], YY[::4, ::4])  # 8 x 8: k = 4 is the Nyquist mode
    fine = fourier_upsample(jnp.asarray(coarse), 4)
    np.testing.assert_allclose(fine, field(XX, YY), atol=1e-13)
    np.testing.assert_array_equal(fourier_upsample(jnp.asarray(coarse), 1), coarse)


def test_bad_input_is_rejected_with_clear_errors():
    w0 = jnp.zeros((N, N))
    with pytest.raises(ValueError, match="non-decreasing"):
        solve_navier_stokes(w0, [1.0, 0.5], viscosity=1e-3, dt=0.1)
    with pytest.raises(ValueError, match="dt must be a positive number"):
        solve_navier_stokes(w0, [1.0], viscosity=1e-3, dt=0.0)
    with pytest.raises(ValueError, match=r"w0 must have shape \(nx, ny\)"):
        solve_navier_stokes(jnp.zeros((2, N, N)), [1.0], viscosity=1e-3, dt=0.1)
    with pytest.raises(ValueError, match="forcing must have the shape of w0"):
        solve_navier_stokes(w0, [1.0], viscosity=1e-3, dt=0.1, forcing=np.zeros((N, 2)))
    with pytest.raises(ValueError, match="viscosity must be a non-negative number"):
        solve_navier_stokes(w0, [1.0], viscosity=-1.0, dt=0.1)
    with pytest.raises(TypeError, match="real floating-point"):
        solve_navier_stokes(jnp.zeros((N, N), jnp.int32), [1.0], viscosity=1e-3, dt=0.1)
    with pytest.raises(TypeError, match="save_times must be concrete"):
        jax.jit(lambda t: solve_navier_stokes(w0, t, viscosity=1e-3, dt=0.1).w)(jnp.ones(2))
    with pytest.raises(ValueError, match="unknown feature"):
        vorticity_features(w0, which=("w_xx",))


def test_vorticity_tendency_matches_the_analytic_right_hand_side():
    # w = sin 2pi x + cos 4pi y: psi = sin(2pi x)/(4pi^2) + cos(4pi y)/(16pi^2), so
    # u = psi_y = -sin(4pi y)/(4pi), v = -psi_x = -cos(2pi x)/(2pi) and
    # u w_x + v w_y = 1.5 cos(2pi x) sin(4pi y); lap w = -4pi^2 sin 2pi x - 16pi^2 cos 4pi y.
    from pdeml.pde.navier_stokes_solver import vorticity_tendency

    nu, f = 0.01, 0.3 * np.cos(TWO_PI * YY)
    w = np.sin(TWO_PI * XX) + np.cos(2 * TWO_PI * YY)
    adv = 1.5 * np.cos(TWO_PI * XX) * np.sin(2 * TWO_PI * YY)
    lap = -TWO_PI**2 * np.sin(TWO_PI * XX) - 4 * TWO_PI**2 * np.cos(2 * TWO_PI * YY)
    got = vorticity_tendency(jnp.asarray(w, jnp.float64), nu, forcing=jnp.asarray(f))
    np.testing.assert_allclose(got, -adv + nu * lap + f, atol=1e-12)
    # Trailing axes are carried along (a batch of fields).
    both = vorticity_tendency(jnp.stack([jnp.asarray(w), 2 * jnp.asarray(w)], -1), nu)
    np.testing.assert_allclose(both[..., 1], -4 * adv + 2 * nu * lap, atol=1e-11)
