"""Collocation sampling (one rule for both layers), explicit points and partition validation."""

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pdeml.constraints import HardConstraint, MoEHardConstraint, Partition, sample_points
from pdeml.constraints.sampling import uniform_subset
from pdeml.core.validation import check_grid_indices
from pdeml.parallel import ShardedMoE, expert_mesh
from pdeml.testing import ReactionDiffusion1D, smooth_fields, well_conditioned_matrix

# A fixed significance level for the goodness-of-fit tests: the keys are fixed, so each test
# is deterministic; a correct sampler fails it for a fraction 1e-3 of key choices, a sampler
# biased by a few percent fails it with certainty at these sample sizes (see each test).
ALPHA = 1e-3


def draws(num, candidates, n_keys, seed=0):
    keys = jax.random.split(jax.random.key(seed), n_keys)
    return np.asarray(jax.jit(jax.vmap(lambda k: uniform_subset(k, num, candidates)))(keys))


def reference_keys(key, shape):
    """The keys :func:`uniform_subset` draws (restated here to check exactness)."""
    bits = jax.random.bits(key, (math.prod(shape),), jnp.uint32).reshape(shape)
    return (bits >> 2).astype(jnp.int32)


# ---- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize("num", [1, 3, 6, 37, 100])  # top_k path for num <= c / 32
def test_uniform_subset_is_exactly_top_k_of_the_keys(num):
    """No sort, yet the same set as lax.top_k over the same iid keys (ties included)."""
    mask = np.array(jax.random.bernoulli(jax.random.key(10), 0.5, (3, 200)))
    mask[:, :num] = True  # every row has >= num candidates

    @jax.jit
    @jax.vmap
    def both(key):
        plain = uniform_subset(key, num, 100)
        plain_top = jnp.sort(jax.lax.top_k(reference_keys(key, (100,)), num)[1])
        masked = uniform_subset(key, num, mask)
        keys = jnp.where(mask, reference_keys(key, (3, 200)), -1)
        masked_top = jnp.sort(jax.lax.top_k(keys, num)[1], axis=-1)
        return plain, plain_top, masked, masked_top

    plain, plain_top, masked, masked_top = both(jax.random.split(jax.random.key(num), 4))
    np.testing.assert_array_equal(plain, plain_top)
    np.testing.assert_array_equal(masked, masked_top)


def test_ties_are_broken_like_top_k():
    """Both exact paths (top_k for num <= c / 32, bisection above) take the lower index among
    equal keys, as lax.top_k does; non-candidates (-1) are never taken."""
    from pdeml.constraints.sampling import _largest

    keys = jax.random.randint(jax.random.key(0), (64,), -1, 4, jnp.int32)
    for num in (1, 2, 3, 17, int((keys >= 0).sum())):
        np.testing.assert_array_equal(
            np.asarray(_largest(keys, num)),
            np.sort(np.asarray(jax.lax.top_k(keys, num)[1])))


def test_subsets_are_uniform_chi_square():
    """Every one of the C(8, 3) = 56 subsets is equally likely: Pearson's test of the 56 subset
    counts over 5600 keys (a multinomial with 55 degrees of freedom), p > 1e-3. Power: NumPy's
    weighted choice without replacement that favours the lower half of the indices by 20% gives
    p ~ 4e-15 on the same sample sizes."""
    c, m, n = 8, 3, 5600
    idx = draws(m, c, n)
    assert (np.diff(idx, axis=1) > 0).all()  # ascending, so no duplicates
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(c), m))}
    counts = np.bincount([subsets[tuple(r)] for r in idx.tolist()], minlength=len(subsets))
    expected = n / len(subsets)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, len(subsets) - 1) > ALPHA, (chi2, counts)


def test_inclusion_frequencies_are_uniform_inside_the_mask():
    """Each candidate of a mask row is included with probability m / c_r, none outside.

    For subsets without replacement the inclusion indicators of one draw have covariance
    p (1 - p) c / (c - 1) (I - 11^T / c) (p = m / c), a scaled rank-(c - 1) projection, so
    X = (c - 1) / (c n p (1 - p)) * sum_i (O_i - n p)^2 is chi-square with c - 1 degrees of
    freedom for n draws (asymptotically; n p >= 500 here; the mean of X over 200 simulated
    unbiased samplers is 38.5 for c - 1 = 39). Power: a 10% preference for half of 40
    candidates gives p ~ 1e-10."""
    q, m, n = 90, 12, 3000
    rng = np.random.default_rng(0)
    mask = np.zeros((2, q), bool)
    mask[0, rng.choice(q, 40, replace=False)] = True
    mask[1, 30:] = True
    idx = draws(m, mask, n, seed=1)  # (n, 2, m)
    for r in range(2):
        rows = idx[:, r]
        assert all(len(set(row)) == m for row in rows.tolist())  # no duplicates
        assert mask[r][rows].all()  # only candidates
        counts = np.bincount(rows.ravel(), minlength=q)
        assert (counts[~mask[r]] == 0).all()
        c = int(mask[r].sum())
        p = m / c
        obs = counts[mask[r]]
        x = (c - 1) / (c * n * p * (1 - p)) * ((obs - n * p) ** 2).sum()
        assert stats.chi2.sf(x, c - 1) > ALPHA, (r, x)
    # The two rows draw independently: their overlap follows the hypergeometric mean.
    both = mask[0] & mask[1]
    overlap = np.mean([len(set(a) & set(b)) for a, b in zip(idx[:, 0].tolist(),
                                                              idx[:, 1].tolist())])
    expect = both.sum() * (m / mask[0].sum()) * (m / mask[1].sum())
    assert abs(overlap - expect) < 0.05 * expect + 0.05


def test_sample_points_rows_are_distinct_interior_points():
    prob = ReactionDiffusion1D(nx=16, nt=9)
    interior = np.asarray(prob.interior_points())
    pts = np.asarray(sample_points(prob.interior_points(), 30, jax.random.key(3)))
    assert len({tuple(p) for p in pts.tolist()}) == 30
    assert {tuple(p) for p in pts.tolist()} <= {tuple(p) for p in interior.tolist()}
    np.testing.assert_array_equal(sample_points(prob.interior_points(), len(interior),
                                                jax.random.key(3)), interior)


def test_uniform_subset_bad_input():
    with pytest.raises(ValueError, match="num must be a positive integer"):
        uniform_subset(jax.random.key(0), 0, 10)
    with pytest.raises(ValueError, match="num=11 is larger than the 10 candidates"):
        uniform_subset(jax.random.key(0), 11, 10)
    with pytest.raises(TypeError, match="boolean mask"):
        uniform_subset(jax.random.key(0), 2, jnp.ones((2, 10), jnp.int32))
    short = np.ones((2, 10), bool)
    short[1, 3:] = False
    with pytest.raises(ValueError, match="larger than the 3 candidates of row 1"):
        uniform_subset(jax.random.key(0), 4, short)
    with pytest.raises(eqx.EquinoxRuntimeError, match="fewer than num=4"):
        eqx.filter_jit(lambda msk: uniform_subset(jax.random.key(0), 4, msk))(short)


# ---- one rule for both layers ------------------------------------------------------------

HEAT = ReactionDiffusion1D(nx=16, nt=9)  # linear: reaction = 0
N = 6


def heat_zero_residual():
    """Data for which u_star solves the discrete heat equation exactly, and a well-conditioned
    basis whose span contains u_star: the least squares has residual zero at its solution."""
    x, t = HEAT.grid.mesh()
    u_star = jnp.sin(jnp.pi * x) * jnp.exp(-t) + 0.5 * x * t
    data = HEAT.manufactured(u_star)
    basis = jnp.concatenate([u_star[..., None], smooth_fields(HEAT, N - 1, jax.random.key(3))], -1)
    basis = basis @ jnp.asarray(well_conditioned_matrix(N, N, max_condition=5.0, seed=4))
    return u_star, data, basis


def test_one_expert_mixture_samples_and_solves_exactly_like_hard_constraint():
    u_star, data, basis = heat_zero_residual()
    hc = HardConstraint(HEAT, num_points=40)
    moe = MoEHardConstraint(HEAT, Partition.uniform(HEAT.grid_shape, (1, 1)), num_points=40)
    for seed in range(4):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(np.asarray(moe.select_points(key))[0],
                                      np.asarray(hc.select_points(key)))
    u_hc, i_hc = eqx.filter_jit(lambda b, k: hc(b, data, key=k))(basis, jax.random.key(7))
    u_moe, i_moe = eqx.filter_jit(lambda b, k: moe(b, data, key=k))(basis, jax.random.key(7))
    np.testing.assert_array_equal(np.asarray(i_moe.points[0]), np.asarray(i_hc.points))
    np.testing.assert_allclose(u_moe, u_hc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(i_moe.w[0], i_hc.w, rtol=0, atol=1e-12)
    assert bool(i_hc.stats.converged) and bool(i_moe.stats.converged[0])
    # Zero residual: both recover the exact discrete solution.
    np.testing.assert_allclose(u_hc, u_star, rtol=0, atol=1e-10)


def test_numpy_points_under_jit_in_both_layers():
    u_star, data, basis = heat_zero_residual()
    hc = HardConstraint(HEAT)
    moe = MoEHardConstraint(HEAT, Partition.uniform(HEAT.grid_shape, (2, 1), overlap=0.5),
                            num_points=10)
    pts = np.asarray(moe.select_points(jax.random.key(1)))  # (2, 10, 2) NumPy int32
    for layer, p in ((hc, pts[0].astype(np.int64)), (moe, pts)):
        # NumPy points are constants of the traced function (they used to crash the mixture's
        # vmapped solve); zero residual, so u is the exact solution whatever the points.
        u, info = jax.jit(lambda b, layer=layer, p=p: layer(b, data, points=p))(basis)
        np.testing.assert_array_equal(np.asarray(info.points), p)
        np.testing.assert_allclose(u, u_star, rtol=0, atol=1e-10)


# ---- explicit points out of range ----------------------------------------------------------


def test_out_of_grid_points_are_errors():
    _, data, basis = heat_zero_residual()
    hc = HardConstraint(HEAT)
    moe = MoEHardConstraint(HEAT, Partition.uniform(HEAT.grid_shape, (2, 1)), num_points=5)
    good = np.asarray(moe.select_points(jax.random.key(0)))
    nx, nt = HEAT.grid_shape
    hc_jit = eqx.filter_jit(lambda b, p: hc(b, data, points=p))
    moe_jit = eqx.filter_jit(lambda b, p: moe(b, data, points=p))
    for bad_point in ([nx, 3], [-1, 3], [4, nt]):
        pts = good.copy()
        pts[1, 2] = bad_point
        with pytest.raises(ValueError, match=r"points must be grid indices.*at position \(2,\)"):
            hc(basis, data, points=pts[1])
        with pytest.raises(ValueError, match=r"points must be grid indices.*\(1, 2\)"):
            moe(basis, data, points=jnp.asarray(pts))
        # Traced points are checked at run time (one compilation per layer).
        with pytest.raises(eqx.EquinoxRuntimeError, match="points must be grid indices"):
            hc_jit(basis, pts[1])
        with pytest.raises(eqx.EquinoxRuntimeError, match="points must be grid indices"):
            moe_jit(basis, pts)
    with pytest.raises(ValueError, match="points must be grid indices"):  # NumPy under jit
        jax.jit(lambda b: moe(b, data, points=pts))(basis)
    with pytest.raises(TypeError, match="points must hold integer grid indices"):
        hc(basis, data, points=good[0].astype(float))
    with pytest.raises(TypeError, match="points must hold integer grid indices"):
        moe(basis, data, points=jnp.asarray(good, jnp.float32))
    sharded = ShardedMoE(moe, expert_mesh())
    bad = good.copy()
    bad[0, 0] = [nx + 2, 1]
    with pytest.raises(ValueError, match="points must be grid indices"):
        sharded(basis[None], jax.tree.map(lambda a: a[None], data), points=bad[None])


def test_check_grid_indices_under_vmap():
    pts = jnp.asarray([[[0, 1], [2, 3]], [[1, 1], [2, 4]]])
    check = eqx.filter_jit(jax.vmap(lambda p: check_grid_indices("points", p, (3, 4))))
    with pytest.raises(eqx.EquinoxRuntimeError, match="points must be grid indices"):
        check(pts)
    np.testing.assert_array_equal(check(pts.at[1, 1, 1].set(3)), pts.at[1, 1, 1].set(3))
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 2\)"):
        check_grid_indices("points", np.zeros((4, 3), int), (3, 4))


# ---- hand-built partitions -----------------------------------------------------------------


def hand_built(weights, like):
    return Partition(weights=weights, members=like.members, grid_shape=like.grid_shape,
                     member_counts=like.member_counts)


def test_bad_partition_weights_are_errors():
    p = Partition.uniform(HEAT.grid_shape, (2, 1), overlap=0.5)
    hand_built(p.weights, p)  # the same arrays by hand are fine
    with pytest.raises(ValueError, match=r"Partition.weights must be finite, got nan at \(1, 3, 2\)"):
        hand_built(p.weights.at[1, 3, 2].set(jnp.nan), p)
    with pytest.raises(ValueError, match="Partition.weights must sum to one.*the sum is 0.5"):
        hand_built(0.5 * p.weights, p)
    with pytest.raises(ValueError, match="Partition.weights must be non-negative"):
        hand_built(p.weights.at[0, 0, 0].set(-0.5).at[1, 0, 0].set(1.5), p)
    with pytest.raises(ValueError, match="must sum to one"):
        hand_built(p.weights.at[0, 5, 5].add(1e-9), p)
    # The tolerance follows the dtype: float32 weights may be off by a few float32 ulps.
    p32 = Partition.uniform(HEAT.grid_shape, (2, 1), overlap=0.5, dtype=jnp.float32)
    hand_built(p32.weights.at[0, 5, 5].add(3e-7), p32)
    with pytest.raises(ValueError, match="must sum to one"):
        hand_built(p32.weights.at[0, 5, 5].add(1e-3), p32)


def test_constructors_still_build_valid_partitions():
    for overlap in (0.0, 0.3, 0.9):
        for dtype in (jnp.float32, jnp.float64):
            p = Partition.uniform((37, 11), (3, 2), overlap=overlap, dtype=dtype)
            p.permute(np.arange(6)[::-1])
            Partition.uniform((37, 11), (3, 2), overlap=overlap, periodic=True, dtype=dtype)
    Partition.random((16, 9), 5, jax.random.key(0)).permute([4, 3, 2, 1, 0])
