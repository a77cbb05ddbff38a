"""Hypothesis strategies and property checkers for variational problems and Barron solvers.

Strategies vary values, never shapes (each new shape recompiles under JAX):

- :func:`cosine_networks`: random :class:`~pdeml.barron.CosineNetwork` with integer
  frequencies (duplicates allowed, to exercise merging).
- :func:`ridge_sum_solutions`: :class:`~pdeml.barron.RidgeSum` manufactured solutions in any
  dimension.
- :func:`manufactured_problems`: T2/T3/T4/T5-type problems with random parameters and a
  ridge-sum solution.

Checkers raise ``AssertionError`` with a message:

- :func:`check_energy_decrease`, :func:`check_contraction` for solver trajectories;
- :func:`check_euler_lagrange_gradient`: ``DE(u)`` equals ``N^d grad_u E(u)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from pdeml.barron import (
    CosineNetwork,
    PLaplacianLagrangian,
    PolynomialLagrangian,
    QuasilinearLagrangian,
    RidgeSum,
    SemilinearLagrangian,
    energy,
    euler_lagrange,
    manufactured_problem,
)

__all__ = [
    "cosine_networks",
    "ridge_sum_solutions",
    "manufactured_problems",
    "check_energy_decrease",
    "check_contraction",
    "check_euler_lagrange_gradient",
]

_amp = st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False)
_phase = st.floats(0.0, 2 * math.pi, allow_nan=False, allow_subnormal=False)


@st.composite
def cosine_networks(draw, width: int, dim: int, max_frequency: int = 2, dtype=np.float64):
    """Cosine networks of fixed width/dim with integer frequencies in ``[-K, K]``."""
    freq = draw(st.lists(st.lists(st.integers(-max_frequency, max_frequency), min_size=dim, max_size=dim), min_size=width, max_size=width))
    coef = draw(st.lists(_amp, min_size=width, max_size=width))
    ph = draw(st.lists(_phase, min_size=width, max_size=width))
    return CosineNetwork(jnp.asarray(coef, dtype), jnp.asarray(freq, dtype), jnp.asarray(ph, dtype))


@st.composite
def ridge_sum_solutions(draw, dim: int, num_ridges: int = 2, harmonics: int = 2, scale: float = 1.0, dtype=np.float64):
    """Ridge sums with directions in ``{-1, 0, 1}^d`` (a zero row becomes ``e_1``)."""
    w = np.array(draw(st.lists(st.lists(st.integers(-1, 1), min_size=dim, max_size=dim), min_size=num_ridges, max_size=num_ridges)), dtype=dtype)
    w[np.all(w == 0, axis=1), 0] = 1.0
    a = scale * np.array(draw(st.lists(_amp, min_size=num_ridges * harmonics, max_size=num_ridges * harmonics)), dtype=dtype)
    b = np.array(draw(st.lists(_phase, min_size=num_ridges * harmonics, max_size=num_ridges * harmonics)), dtype=dtype)
    return RidgeSum(jnp.asarray(a.reshape(num_ridges, harmonics)), jnp.asarray(w), jnp.asarray(b.reshape(num_ridges, harmonics)))


@st.composite
def manufactured_problems(draw, dim: int, kinds=("T2", "T3", "T4", "T5")):
    """A manufactured problem of a drawn kind with drawn parameters and ridge-sum solution.

    T3/T4 solutions are scaled by 0.1 so that grids of moderate size resolve the flux.
    The kind is drawn, so the Lagrangian's type (hence the compiled code) varies: keep
    ``kinds`` to one entry when compile time matters.
    """
    kind = draw(st.sampled_from(kinds))
    par = st.floats(0.1, 2.0, allow_nan=False, allow_subnormal=False)
    if kind == "T2":
        lag = SemilinearLagrangian(nu=draw(par))
    elif kind == "T3":
        lag = QuasilinearLagrangian(mu=draw(par), nu=draw(par))
    elif kind == "T4":
        lag = PLaplacianLagrangian(delta=draw(par), q=draw(st.floats(1.2, 2.0)), eps=draw(st.floats(0.5, 2.0)))
    else:
        lag = PolynomialLagrangian(gamma=draw(par))
    scale = 0.1 if kind in ("T3", "T4") else 0.5
    sol = draw(ridge_sum_solutions(dim, scale=scale))
    return manufactured_problem(lag, sol, dim)


def check_energy_decrease(trajectory, *, rtol: float = 1e-12) -> None:
    """Energies of successive iterates never increase (up to ``rtol`` relative round-off)."""
    e = trajectory.history("energy")
    inc = np.diff(e)
    tol = rtol * np.maximum(np.abs(e[1:]), 1.0)
    bad = np.nonzero(inc > tol)[0]
    if not (bad.size == 0):
        raise AssertionError(f"energy increased at step(s) {bad[:5].tolist()}: by {inc[bad[:5]].tolist()}")


def check_contraction(trajectory, lam: float, Lam: float, *, optimal_energy: float, floor: float = 1e-11, slack: float = 1e-6) -> float:
    """Every step contracts the energy gap by at most ``1 - lam/Lam`` (fixed step 1/Lam).

    Steps whose gap is below ``floor`` (round-off) are ignored. Returns the worst observed
    ratio.
    """
    gap = trajectory.history("energy") - optimal_energy
    keep = gap[:-1] > floor
    ratios = gap[1:][keep] / gap[:-1][keep]
    if not (ratios.size > 0):
        raise AssertionError("no steps above the round-off floor to check")
    worst = float(np.max(ratios))
    bound = 1.0 - lam / Lam
    if not (worst <= bound + slack):
        raise AssertionError(f"energy-gap contraction {worst:.4f} exceeds the bound 1 - lambda/Lambda = {bound:.4f}")
    return worst


def check_euler_lagrange_gradient(problem, u, *, rtol: float = 1e-9) -> None:
    """``euler_lagrange(problem, u)`` equals ``N^d`` times the autodiff gradient of the energy."""
    g = jax.grad(lambda w: energy(problem, w))(u) * u.size
    el = euler_lagrange(problem, u)
    err = float(jnp.max(jnp.abs(g - el)))
    scale = float(jnp.max(jnp.abs(el))) + 1.0
    if not (err <= rtol * scale):
        raise AssertionError(f"Euler-Lagrange operator differs from N^d grad E by {err:.3e}")
