"""Partitions and the mixture-of-experts hard-constraint layer (PI-HC-MoE)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdeml.constraints import HardConstraint, MoEHardConstraint, Partition
from pdeml.constraints.partition import smoothstep
from pdeml.pde import DiffusionSorption

# A smooth sorption term (eps = delta = 0.1 instead of 1e-6) keeps every expert's
# Levenberg-Marquardt solve well conditioned and fast, so results are stable to round-off.
PROB = DiffusionSorption(nx=16, nt=6, sorption_eps=0.1, sorption_smoothing=0.1)


def smooth_basis(n=6, seed=0):
    x = np.linspace(0, 1, PROB.nx)[:, None, None]
    t = np.linspace(0, 1, PROB.nt)[None, :, None]
    rng = np.random.default_rng(seed)
    a, c, d = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 6, size=n)
    return jnp.asarray(np.cos(3 * a * x + c * t + d))


U0 = jnp.asarray(0.5 * np.exp(-3 * np.linspace(0, 1, PROB.nx)))


# ---- partitions ----------------------------------------------------------------------


@given(
    nx=st.integers(2, 40), nt=st.integers(2, 12), kx=st.integers(1, 4), kt=st.integers(1, 3),
    overlap=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
)
def test_partition_of_unity_sums_to_one(nx, nt, kx, kt, overlap):
    kx, kt = min(kx, nx), min(kt, nt)
    p = Partition.uniform((nx, nt), (kx, kt), overlap=overlap)
    w = np.asarray(p.weights)
    assert p.num_experts == kx * kt and w.shape == (kx * kt, nx, nt)
    # Telescoping differences of steps: the sum is one up to a few rounding errors.
    np.testing.assert_allclose(w.sum(0), 1.0, rtol=0, atol=4e-16)
    assert (w >= 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(np.asarray(p.members), w > 0)
    assert p.member_counts == tuple((w > 0).reshape(kx * kt, -1).sum(1))


@given(n=st.integers(3, 50), k=st.integers(1, 6))
def test_partition_round_trip_blocks(n, k):
    """Without overlap the blocks cover the grid exactly once, with sizes differing by <= 1,
    in order; cutting a field into the blocks and putting them back gives the field."""
    k = min(k, n)
    p = Partition.uniform((n, 3), (k, 1))
    m = np.asarray(p.members)
    assert (m.sum(0) == 1).all()
    sizes = m[:, :, 0].sum(1)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
    owner = np.asarray(p.owner())[:, 0]
    assert (np.diff(owner) >= 0).all()  # contiguous blocks in order
    field = np.random.default_rng(n).normal(size=(n, 3))
    pieces = [field[m[j]] for j in range(k)]  # cut ...
    back = np.zeros_like(field)
    for j in range(k):
        back[m[j]] = pieces[j]  # ... and reassemble
    np.testing.assert_array_equal(back, field)
    np.testing.assert_array_equal(np.asarray(p.blend(jnp.broadcast_to(field, (k, n, 3)))), field)


def test_partition_is_data_and_serialises(tmp_path):
    p = Partition.uniform((16, 6), (2, 3), overlap=0.4, boundary_rows="touching")
    eqx.tree_serialise_leaves(tmp_path / "p.eqx", p)
    # Everything but the arrays is static metadata; the arrays are restored from disk.
    like = eqx.tree_at(lambda q: (q.weights, q.members), p,
                       (jnp.zeros_like(p.weights), jnp.zeros_like(p.members)))
    back = eqx.tree_deserialise_leaves(tmp_path / "p.eqx", like)
    np.testing.assert_array_equal(np.asarray(back.weights), np.asarray(p.weights))
    np.testing.assert_array_equal(np.asarray(back.members), np.asarray(p.members))


def test_random_partition_is_balanced_one_hot():
    p = Partition.random((16, 6), 5, jax.random.key(3))
    w = np.asarray(p.weights)
    assert set(np.unique(w)) == {0.0, 1.0} and (w.sum(0) == 1).all()
    assert max(p.member_counts) - min(p.member_counts) <= 1
    # Not spatial: every expert has points in both halves of the domain.
    assert all(w[k, :8].any() and w[k, 8:].any() for k in range(5))


def test_overlap_weights_are_smooth_under_refinement():
    """The largest change of a weight between neighbouring points is ~ (15/8) / (band points):
    first order in h (fitted slope of log max-jump vs log n is -1), never O(1) like a seam."""
    ns = np.array([40, 80, 160, 320])
    jumps = []
    for n in ns:
        w = np.asarray(Partition.uniform((n, 2), (2, 1), overlap=0.5).weights)[0, :, 0]
        jumps.append(np.abs(np.diff(w)).max())
        # Max slope of the quintic step is 15/8 per band width (band = overlap/K of the axis).
        assert jumps[-1] <= 15 / 8 / (0.5 / 2 * n) * (1 + 1e-12)
    slope = np.polyfit(np.log(ns), np.log(jumps), 1)[0]
    assert abs(slope + 1) < 0.05
    # The quintic smoothstep has zero first and second derivative at both ends (C^2).
    h = 1e-4
    for z0 in (0.0, 1.0):
        d1 = (smoothstep(z0 + h) - smoothstep(z0 - h)) / (2 * h)
        assert abs(d1) < 1e-7


@given(n=st.integers(2, 40), k=st.integers(1, 4), overlap=st.sampled_from([0.0, 0.2, 0.5, 0.9]))
def test_periodic_partition_of_unity(n, k, overlap):
    k = min(k, n)
    p = Partition.uniform((n, 3), (k, 1), overlap=overlap, periodic=(True, False))
    w = np.asarray(p.weights)[:, :, 0]
    np.testing.assert_allclose(w.sum(0), 1.0, rtol=0, atol=4e-16)
    assert (w >= 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(np.asarray(p.members), np.asarray(p.weights) > 0)
    if n % k == 0:
        # Rotating the periodic axis by one piece renumbers the experts, nothing else.
        for j in range(k):
            np.testing.assert_allclose(np.roll(w[j], n // k), w[(j + 1) % k], atol=1e-15)
        if overlap == 0:  # block-wise: the same blocks as the non-periodic split
            plain = np.asarray(Partition.uniform((n, 3), (k, 1)).weights)[:, :, 0]
            np.testing.assert_array_equal(w, plain)


def test_periodic_partition_is_smooth_across_the_wrap():
    """With a periodic axis the seam at s = 0 = 1 is blended like the interior one: the largest
    change between neighbours *around the circle* is the interior bound; without periodic=True
    the wrap is a jump of 1 (a spectral derivative of the blend would ring everywhere)."""
    n, k, overlap = 64, 2, 0.9
    per = np.asarray(Partition.uniform((n, 2), (k, 1), overlap=overlap, periodic=True).weights)
    plain = np.asarray(Partition.uniform((n, 2), (k, 1), overlap=overlap).weights)
    band = overlap / k * n  # band width in points
    for w in per[:, :, 0]:
        circ = np.abs(np.diff(np.concatenate([w, w[:1]]))).max()
        assert circ <= 15 / 8 / band * (1 + 1e-12)
    assert abs(plain[0, 0, 0] - plain[0, -1, 0]) == 1.0
    with pytest.raises(ValueError, match="periodic must be one bool or one per grid axis"):
        Partition.uniform((n, 2), (k, 1), periodic=(True,))


def test_partition_bad_input():
    with pytest.raises(ValueError, match="splits must be 2 positive integers"):
        Partition.uniform((16, 6), (2,))
    with pytest.raises(ValueError, match=r"splits\[1\] = 7 exceeds the 6 grid points"):
        Partition.uniform((16, 6), (1, 7))
    with pytest.raises(ValueError, match="overlap must be a number in"):
        Partition.uniform((16, 6), (2, 1), overlap=1.0)
    with pytest.raises(ValueError, match="unknown boundary_rows"):
        Partition.uniform((16, 6), (2, 1), boundary_rows="some")
    with pytest.raises(ValueError, match="num_experts must be an integer"):
        Partition.random((4, 4), 17, jax.random.key(0))
    with pytest.raises(ValueError, match="order must be a permutation"):
        Partition.uniform((16, 6), (2, 1)).permute([0, 0])


# ---- the layer -------------------------------------------------------------------------


def test_single_expert_is_exactly_hard_constraint():
    basis = smooth_basis()
    hc = HardConstraint(PROB, num_points=30)
    pts = hc.select_points(jax.random.key(0))
    u_hc, i_hc = eqx.filter_jit(hc)(basis, U0, points=pts)
    moe = MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (1, 1)), num_points=30)
    u_moe, i_moe = eqx.filter_jit(moe)(basis, U0, points=pts[None])
    # Same points, same rows, same initial guess and iteration: equal to round-off
    # (vmap over one expert may reorder a few sums).
    np.testing.assert_allclose(u_moe, u_hc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(i_moe.w[0], i_hc.w, rtol=1e-12, atol=1e-12)
    assert int(i_moe.stats.iterations[0]) == int(i_hc.stats.iterations)
    assert bool(i_moe.stats.converged[0])


def test_sampled_points_lie_in_their_expert_and_are_distinct():
    part = Partition.uniform(PROB.grid_shape, (2, 2), overlap=0.3)
    layer = MoEHardConstraint(PROB, part, num_points=10)
    pts = np.asarray(layer.select_points(jax.random.key(1)))
    members = np.asarray(part.members)
    interior = {tuple(p) for p in np.asarray(PROB.interior_points())}
    for k in range(4):
        assert members[k][tuple(pts[k].T)].all()
        assert len({tuple(p) for p in pts[k]}) == 10 and {tuple(p) for p in pts[k]} <= interior
    # points="total": the same number in total as a single constraint would use.
    total = MoEHardConstraint(PROB, part, num_points=40, points="total")
    assert total.points_per_expert == 10


def test_touching_rows_go_only_to_the_experts_they_touch():
    part = Partition.uniform(PROB.grid_shape, (2, 1), boundary_rows="touching")
    layer = MoEHardConstraint(PROB, part, num_points=10)
    mask = np.asarray(layer.row_masks(smooth_basis(), U0))
    nx, nt = PROB.nx, PROB.nt
    ic, left, right = slice(0, nx), slice(nx, nx + nt - 1), slice(nx + nt - 1, nx + 2 * nt - 2)
    # Expert 0 holds x < 1/2: its half of the IC and the left Dirichlet rows; expert 1 the
    # other half and the Robin rows (whose one-sided stencil lies inside x >= 1/2).
    np.testing.assert_array_equal(mask[0, ic], np.arange(nx) < nx // 2)
    np.testing.assert_array_equal(mask[1, ic], np.arange(nx) >= nx // 2)
    assert mask[0, left].all() and not mask[1, left].any()
    assert mask[1, right].all() and not mask[0, right].any()
    everyone = MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (2, 1)), num_points=10)
    assert np.asarray(everyone.row_masks(smooth_basis(), U0)).all()


# One layer configuration shared by the next tests, so that they share one compilation
# (the partition arrays are leaves; permuting two equal-sized experts keeps the static part).
OVERLAP = 0.75
LAYER2 = MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (2, 1), overlap=OVERLAP),
                           num_points=12)


@eqx.filter_jit
def solve(layer, basis, points):
    return layer(basis, U0, points=points)


def test_permuting_experts_changes_nothing():
    basis = smooth_basis()
    pts = LAYER2.select_points(jax.random.key(2))
    order = np.array([1, 0])
    perm = MoEHardConstraint(PROB, LAYER2.partition.permute(order), num_points=12)
    u1, i1 = solve(LAYER2, basis, pts)
    u2, i2 = solve(perm, basis, pts[order])
    np.testing.assert_allclose(u2, u1, rtol=0, atol=1e-13)
    np.testing.assert_allclose(i2.w, i1.w[order], rtol=1e-12, atol=1e-12)


def test_overlap_removes_seam_jumps():
    """The jump of u across a seam, J = |du - sum_k phi_k du_k| (the change of u between
    x-neighbours minus the part explained by the experts' own changes), is
    |d phi_0| |u_0 - u_1| <= (15/8) / (band points) * |u_0 - u_1|: 15/8 is the largest slope of
    the quintic step, here 0.31 x the experts' disagreement. Stitching the same experts
    block-wise (the published router) jumps by the full disagreement."""
    basis = smooth_basis()
    u, info = solve(LAYER2, basis, LAYER2.select_points(jax.random.key(4)))
    assert np.asarray(info.stats.converged).all()
    v = np.einsum("xtn,kn->kxt", np.asarray(basis), np.asarray(info.w))  # expert fields
    gap = np.abs(v[0] - v[1])[1:]
    tol = 15 / 8 / (OVERLAP / 2 * PROB.nx) * gap

    def jump(field, phi):
        return np.abs(np.diff(field, axis=0) - np.sum(phi[:, :-1] * np.diff(v, axis=1), 0))

    phi = np.asarray(LAYER2.partition.weights)
    assert (jump(np.asarray(u), phi) <= tol + 1e-14).all()  # every x, every t
    seam = PROB.nx // 2 - 1  # between x-indices 7 and 8
    one_hot = np.stack([np.arange(PROB.nx) <= seam, np.arange(PROB.nx) > seam])[..., None]
    one_hot = np.broadcast_to(one_hot, v.shape).astype(float)
    stitched = np.sum(one_hot * v, 0)
    assert gap[seam].max() > 1e-3  # the experts do disagree, so the test can fail
    np.testing.assert_allclose(jump(stitched, one_hot)[seam], gap[seam], rtol=1e-12)
    assert (jump(stitched, one_hot)[seam] > 3 * tol[seam]).all()


def check_gradient_by_central_differences(layer, basis, pts):
    """The implicit gradient of ``sum(sin(3 u))`` along a random direction against central
    differences. The loss is strongly curved in the basis, so central differences converge
    only for h <~ 1e-4: check they converge to the implicit gradient at the observed order 2."""
    direction = jnp.asarray(np.random.default_rng(1).normal(size=basis.shape))

    def loss(b):
        return jnp.sum(jnp.sin(3 * solve(layer, b, pts)[0]))

    g = eqx.filter_jit(jax.grad(loss))(basis)
    hs = np.array([1e-4, 3e-5, 1e-5, 3e-6])
    exact = float(jnp.vdot(g, direction))
    errs = [abs((loss(basis + h * direction) - loss(basis - h * direction)) / (2 * h) - exact)
            for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert 1.7 < slope < 2.3, (slope, errs)
    assert errs[-1] < 1e-4 * abs(exact)


def test_moe_gradient_matches_finite_differences():
    check_gradient_by_central_differences(LAYER2, smooth_basis(),
                                          LAYER2.select_points(jax.random.key(5)))


def test_moe_bad_input():
    part = Partition.uniform(PROB.grid_shape, (2, 1))
    with pytest.raises(ValueError, match="does not match the problem's grid"):
        MoEHardConstraint(PROB, Partition.uniform((8, 6), (2, 1)), num_points=5)
    with pytest.raises(ValueError, match="smallest expert subdomain has only 35"):
        MoEHardConstraint(PROB, part, num_points=36)
    with pytest.raises(ValueError, match="fewer than one point for each"):
        MoEHardConstraint(PROB, part, num_points=1, points="total")
    with pytest.raises(ValueError, match="unknown points"):
        MoEHardConstraint(PROB, part, num_points=4, points="each")
    with pytest.raises(ValueError, match="contain no interior point"):
        MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (16, 1)), num_points=1)
    with pytest.raises(TypeError, match="partition must be"):
        MoEHardConstraint(PROB, "2x2")
    layer = MoEHardConstraint(PROB, part, num_points=10)
    with pytest.raises(ValueError, match="pass key="):
        layer(smooth_basis(), U0)
    with pytest.raises(ValueError, match=r"points must have shape \(K, m, ndim\)"):
        layer(smooth_basis(), U0, points=jnp.zeros((3, 10, 2), jnp.int32))
    with pytest.raises(ValueError, match="basis must have shape"):
        layer(smooth_basis()[:8], U0, key=jax.random.key(0))


# ---- Schwarz coupling (sweeps > 0) ------------------------------------------------------


@given(n=st.integers(4, 30), m=st.integers(3, 8), k=st.integers(2, 4),
       overlap=st.sampled_from([0.0, 0.5, 0.9]), periodic=st.booleans())
def test_interface_points_are_the_outer_neighbours_of_each_expert(n, m, k, overlap, periodic):
    if k > n:
        return
    part = Partition.uniform((n, m), (k, 1), overlap=overlap, periodic=(periodic, False))
    idx, valid = part.interface_points()
    members = np.asarray(part.members)
    for e in range(part.num_experts):
        # Brute force: every grid point outside the expert with a member among its 4 neighbours.
        want = set()
        for i in range(n):
            for j in range(m):
                if members[e, i, j]:
                    continue
                nbrs = [(i + di, j + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))]
                if periodic:
                    nbrs = [(a % n, b) for a, b in nbrs]
                if any(0 <= a < n and 0 <= b < m and members[e, a, b] for a, b in nbrs):
                    want.add((i, j))
        got = {tuple(p) for p in idx[e][valid[e]].tolist()}
        assert got == want
        assert not any(members[e, i, j] for i, j in got)  # weights[k] vanish there
    if not periodic:
        # Along x the two end experts have one interface column, the inner ones two.
        counts = valid.sum(1)
        assert counts[0] == m and counts[-1] == m and all(c == 2 * m for c in counts[1:-1])


def _legendre_basis(nx, nt, n):
    """``n`` tensor-product Legendre fields ``P_i(2x - 1) P_j(2t - 1)`` (no exact solution)."""
    d = int(np.ceil(np.sqrt(n)))
    x, t = np.linspace(-1, 1, nx), np.linspace(-1, 1, nt)
    px = np.polynomial.legendre.legvander(x, d - 1)
    pt = np.polynomial.legendre.legvander(t, d - 1)
    fields = [np.outer(px[:, i], pt[:, j]) for i in range(d) for j in range(d)][:n]
    return np.stack(fields, -1)


@pytest.fixture(scope="module")
def schwarz_case():
    """Diffusion-sorption on 64 x 26 from a smooth IC, its reference solution, and a basis
    of 24 Legendre fields that does not contain it (as a trained network's would not)."""
    from pdeml.pde import DiffusionSorptionSolver

    prob = DiffusionSorption(nx=64, nt=26)
    s = np.linspace(0.0, 1.0, prob.nx)
    a = prob.left_value / (1.0 + prob.D)
    u0 = a * (1 - s) + prob.D * a + 0.2 * np.sin(np.pi * s) + 0.05 * np.sin(3 * np.pi * s)
    ref = np.asarray(DiffusionSorptionSolver(x_refine=1, substeps=5)(prob, jnp.asarray(u0)).u)
    return prob, u0, ref, _legendre_basis(prob.nx, prob.nt, 24)


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=pytest.mark.slow)])
def test_schwarz_rounds_recover_the_accuracy_lost_with_more_experts(schwarz_case, dtype):
    """Independent experts without lateral boundary data are under-determined: with a basis
    that does not contain the solution, K = 4 experts (touching rows, 1000 points in total)
    are ~10x less accurate than one constraint. Schwarz rounds give them the neighbours'
    field at their interfaces; started from the coarse global solve (two-level, the default)
    the mixture is *more* accurate than one constraint at every K, and more so as K grows.
    Measured (float64; float32, in the slow lane, the same to ~1e-4): K = 1 1.13%;
    independent K = 4 11.2%; one-level, 4 rounds: K = 4 0.35% (K = 8: 6.4%); two-level,
    2 rounds: K = 4, 8 -> 0.37%, 0.28%."""
    from pdeml.core import LevenbergMarquardt

    prob, u0, ref, basis = schwarz_case
    with jax.enable_x64(dtype == "float64"):
        b, d = jnp.asarray(basis, dtype), jnp.asarray(u0, dtype)

        def error(k, sweeps, coarse=True):
            part = Partition.uniform(prob.grid_shape, (k, 1), overlap=0.9 if k > 1 else 0.0,
                                     boundary_rows="touching")
            layer = MoEHardConstraint(prob, part, num_points=1000, points="total",
                                      solver=LevenbergMarquardt(max_steps=200), throw=False,
                                      sweeps=sweeps, interface_weight=10.0, coarse=coarse)
            u, info = eqx.filter_jit(lambda lyr, b, d: lyr(b, d, key=jax.random.key(0)))(
                layer, b, d)
            assert u.dtype == jnp.dtype(dtype)
            assert bool(np.all(info.stats.converged))
            return float(np.linalg.norm(np.asarray(u, np.float64) - ref) / np.linalg.norm(ref))

        one = error(1, 0)
        independent = error(4, 0)
        one_level = error(4, 4, coarse=False)
        two_level = [error(k, 2) for k in (4, 8)]
    assert independent > 5 * one  # the loss of accuracy with K (so the test can fail)
    assert one_level < 0.5 * one
    assert two_level[1] < two_level[0] < 0.5 * one, (one, two_level)  # better as K grows


def test_schwarz_gradient_matches_finite_differences():
    """One-level: the derivative flows through every round (the interface data depends on
    the basis and on the previous round's weights): implicit gradient vs central
    differences."""
    layer = MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (2, 1), overlap=0.5),
                              num_points=12, sweeps=2, coarse=False)
    basis = smooth_basis()
    pts = layer.select_points(jax.random.key(5))
    check_gradient_by_central_differences(layer, basis, pts)
    # The rounds change the answer (so the gradient test covers them).
    u0_, _ = solve(MoEHardConstraint(PROB, layer.partition, num_points=12), basis, pts)
    assert float(jnp.abs(solve(layer, basis, pts)[0] - u0_).max()) > 1e-6


@pytest.mark.slow
def test_two_level_gradient_is_exact_up_to_the_rounds_truncation():
    """Two-level: no derivative flows through the coarse start (the rounds' fixed point does
    not depend on it), so the gradient misses only what S rounds have not yet forgotten of
    the start. Against central differences of the whole layer (h = 1e-5, noise ~2e-5
    relative) the relative error falls geometrically with S: measured 4.2e-2, 2.3e-2,
    8.5e-4, 2.2e-5 at S = 1, 2, 4, 8."""
    basis = smooth_basis()
    direction = jnp.asarray(np.random.default_rng(1).normal(size=basis.shape))
    part = Partition.uniform(PROB.grid_shape, (2, 1), overlap=0.5)
    errs = []
    for sweeps in (1, 4, 8):
        layer = MoEHardConstraint(PROB, part, num_points=12, sweeps=sweeps)
        pts = layer.select_points(jax.random.key(5))

        def loss(b, layer=layer, pts=pts):
            return jnp.sum(jnp.sin(3 * solve(layer, b, pts)[0]))

        exact = float(jnp.vdot(eqx.filter_jit(jax.grad(loss))(basis), direction))
        h = 1e-5
        fd = float((loss(basis + h * direction) - loss(basis - h * direction)) / (2 * h))
        errs.append(abs(exact - fd) / abs(fd))
    assert errs[0] > 1e-2  # the truncation is visible at S = 1 (so the test can fail)
    assert errs[2] < errs[1] < errs[0]
    assert errs[2] < 2e-4, errs


def test_schwarz_bad_input_and_single_expert():
    part = Partition.uniform(PROB.grid_shape, (2, 1))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="sweeps must be a non-negative integer"):
            MoEHardConstraint(PROB, part, num_points=5, sweeps=bad)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interface_weight must be a positive number"):
            MoEHardConstraint(PROB, part, num_points=5, sweeps=1, interface_weight=bad)
    rand = Partition.random(PROB.grid_shape, 2, jax.random.key(0))
    with pytest.raises(ValueError, match="needs a spatial partition"):
        MoEHardConstraint(PROB, rand, num_points=5, sweeps=1)
    # One expert has no interface: sweeps are a no-op and the layer stays HardConstraint.
    one = MoEHardConstraint(PROB, Partition.uniform(PROB.grid_shape, (1, 1)), num_points=30,
                            sweeps=3)
    assert one.sweeps == 0
