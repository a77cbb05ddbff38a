"""Proximal matching: losses, staged schedules, noise sampling, training on pdeml.train, data."""

import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.data import sample_gaussian_mixture, sample_laplace, sample_sparse
from pdeml.nets.icnn import DenseICNN
from pdeml.prox import (
    LPN,
    Schedule,
    Stage,
    add_noise,
    l1_loss,
    l2_loss,
    laplace_posterior_sampler,
    laplace_schedule,
    lpn_loss_fn,
    make_batch_fn,
    paper_image_schedule,
    proximal_matching_loss,
    sample_laplace_posterior,
    soft_threshold,
    train_lpn,
)


def test_proximal_matching_loss_values():
    pred = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    target = jnp.zeros((2, 2))
    gamma = 2.0
    # per sample 1 - exp(-||d||^2 / gamma^2): 0 and 1 - exp(-25/4)
    expected = 0.5 * (0.0 + 1 - np.exp(-25 / 4))
    np.testing.assert_allclose(proximal_matching_loss(pred, target, gamma), expected, rtol=1e-14)
    # large gamma: 1 - exp(-t) ~ t, so the loss tends to the l2 loss / gamma^2
    big = 1e4
    np.testing.assert_allclose(proximal_matching_loss(pred, target, big) * big**2,
                               l2_loss(pred, target), rtol=1e-6)
    np.testing.assert_allclose(l1_loss(pred, target), 3.5)
    # image-shaped samples: the distance is over all trailing axes
    img = jnp.ones((2, 1, 2, 2))
    np.testing.assert_allclose(proximal_matching_loss(img, 0 * img, 2.0, event_ndim=3), 1 - np.exp(-1.0))


def test_schedule_stages_gamma_and_learning_rate():
    s = Schedule((Stage("l1", 10, 1e-3), Stage("pm", 20, (1e-3, 1e-5), gamma=0.5),
                  Stage("pm", 5, 1e-6, gamma=0.1)))
    assert s.total_steps == 35
    steps = jnp.array([0, 9, 10, 29, 30, 34])
    np.testing.assert_array_equal(s.stage_index(steps), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(s.loss_id(steps), [1, 1, 2, 2, 2, 2])
    np.testing.assert_allclose(s.gamma(steps), [1, 1, 0.5, 0.5, 0.1, 0.1])
    # geometric decay within stage 1: lr(10 + 10) = sqrt(1e-3 * 1e-5)
    np.testing.assert_allclose(s.learning_rate(20), 1e-4, rtol=1e-12)
    np.testing.assert_allclose(s.learning_rate(jnp.array([0, 10, 30])), [1e-3, 1e-3, 1e-6], rtol=1e-12)
    p = paper_image_schedule(64, pretrain_steps=3, stage_steps=2)
    np.testing.assert_allclose([st.gamma for st in p.stages[1:]], np.array([8, 4, 2, 1]) * 0.08 * 8)
    lap = laplace_schedule(pretrain_steps=2, stage_steps=2)
    assert [st.gamma for st in lap.stages[1:]] == [0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    assert [st.gamma for st in laplace_schedule(gammas=(0.5,), sigma=2.0).stages[1:]] == [1.0]
    held = laplace_schedule(pretrain_steps=2, stage_steps=2, hold_stages=2, lr_end=1e-5)
    assert [st.learning_rate for st in held.stages[1:3]] == [(1e-3, 1e-3), (1e-3, 1e-3)]
    assert held.stages[-1].learning_rate[1] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="hold_stages"):
        laplace_schedule(hold_stages=6)
    d = laplace_schedule(final_steps=7500, average_steps=5000)
    assert d.stages[-1].steps == 7500 and d.average_steps == 5000 and d.total_steps == 21000
    default = laplace_schedule()  # the documented run: final stage 2x, its last 4/5 averaged
    assert (default.total_steps, default.stages[-1].steps, default.average_steps) == (18500, 5000, 4000)
    assert laplace_schedule(average_steps=0).average_steps == 0
    for bad in (-1, 36, 1.5, True):
        with pytest.raises(ValueError, match="average_steps"):
            Schedule(s.stages, average_steps=bad)
    with pytest.raises(ValueError, match="gamma"):
        Stage("pm", 10)
    with pytest.raises(ValueError, match="unknown loss"):
        Stage("huber", 10)


def test_laplace_posterior_sampler_draws_the_exact_posterior():
    """Moments of the draws against quadrature of p(x | y) ~ exp(-|x| / b - (x - y)^2 / (2
    sigma^2)); tolerances are ~4 standard errors of 40,000 draws."""
    n = 40000
    for y0, sigma, b in [(-4.0, 1.0, 1.0), (0.3, 1.0, 1.0), (2.5, 1.0, 1.0), (1.0, 0.5, 2.0)]:
        x = np.asarray(sample_laplace_posterior(jax.random.key(0), jnp.full((n,), y0), sigma, scale=b))
        grid = np.linspace(y0 - 12 * sigma, y0 + 12 * sigma, 200001)
        w = np.exp(-np.abs(grid) / b - (grid - y0) ** 2 / (2 * sigma**2) + abs(y0) / b)
        w /= w.sum()
        mean, sd, p_pos = grid @ w, np.sqrt(((grid - grid @ w) ** 2) @ w), w[grid > 0].sum()
        median = grid[np.searchsorted(np.cumsum(w), 0.5)]
        assert abs(x.mean() - mean) < 4 * sd / np.sqrt(n), (y0, x.mean(), mean)
        assert abs(x.std() - sd) < 4 * sd / np.sqrt(2 * n)
        assert abs((x > 0).mean() - p_pos) < 4 * np.sqrt(p_pos * (1 - p_pos) / n) + 1e-4
        assert abs(np.median(x) - median) < 0.03 * sd
    # the posterior median of the Laplace prior is soft-thresholding at sigma^2 / b
    x = sample_laplace_posterior(jax.random.key(1), jnp.full((n,), 3.0))
    np.testing.assert_allclose(np.median(np.asarray(x)), soft_threshold(3.0, 1.0), atol=0.03)
    # float32, far in the tail of a branch (t < -5.3, where erf rounds to -1): the draws at
    # y = -4.5 are finite and match the float64 ones in distribution
    x32 = sample_laplace_posterior(jax.random.key(3), jnp.full((n,), -4.5, jnp.float32))
    x64 = sample_laplace_posterior(jax.random.key(3), jnp.full((n,), -4.5))
    assert bool(jnp.all(jnp.isfinite(x32))) and float(jnp.max(jnp.abs(x32))) < 12
    assert abs(float(jnp.mean(x32 > 0)) - float(jnp.mean(x64 > 0))) < 0.02
    assert abs(float(jnp.mean(x32)) - float(jnp.mean(x64))) < 0.03
    # far tails: finite, on the right side
    far = sample_laplace_posterior(jax.random.key(2), jnp.array([-30.0, 30.0, 0.0], jnp.float32))
    assert far.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(far)))
    assert float(far[0]) < -25 and float(far[1]) > 25
    with pytest.raises(ValueError, match="sigma"):
        sample_laplace_posterior(jax.random.key(0), x, 0.0)


def test_laplace_posterior_sampler_pairs():
    x, y = laplace_posterior_sampler(50000, proposal_scale=2.0)(jax.random.key(0))
    assert x.shape == y.shape == (50000, 1)
    # y = 2 Laplace + N(0, 1): variance 2 * 4 + 1 = 9 (relative s.e. ~1.3%)
    np.testing.assert_allclose(jnp.var(y), 9.0, rtol=6e-2)
    xk, yk = laplace_posterior_sampler(6, 2, x_per_y=5)(jax.random.key(1))
    assert xk.shape == (6, 5, 2) and yk.shape == (6, 2)
    assert not bool(jnp.all(xk == xk[:, :1]))  # independent draws per y
    for bad in ({"x_per_y": 0}, {"x_per_y": 2.0}, {"proposal_scale": 0.0}, {"sigma": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            laplace_posterior_sampler(4, **bad)


def test_paired_sampler_and_several_clean_samples_per_input():
    """A sampler returning (x, y) gives the batch its y; x of shape (batch, k, *event) is
    compared with f(y) k times: the loss is the mean of the k single-sample losses."""
    sched = Schedule((Stage("pm", 5, gamma=0.3),))
    sampler = laplace_posterior_sampler(8, x_per_y=3)
    batch = make_batch_fn(sampler, sched, 1.0, event_ndim=1)(0, jax.random.key(0))
    x, y = sampler(jax.random.split(jax.random.key(0))[0])
    np.testing.assert_array_equal(batch["y"], y)
    np.testing.assert_array_equal(batch["x"], x)
    lpn = LPN(DenseICNN(1, (8,), key=jax.random.key(0), alpha=0.1))
    for loss_id in range(3):
        b = dict(batch, loss_id=jnp.asarray(loss_id))
        single = [lpn_loss_fn(lpn, dict(b, x=b["x"][:, j]))[0] for j in range(3)]
        np.testing.assert_allclose(lpn_loss_fn(lpn, b)[0], np.mean(single), rtol=1e-13)


def test_add_noise_fixed_and_sampled_levels():
    x = jnp.zeros((20000, 2))
    y, s = add_noise(jax.random.key(0), x, 0.5)
    # std of 40000 normal draws: relative standard error 1/sqrt(2 * 40000) ~ 0.35%; allow 2%
    np.testing.assert_allclose(jnp.std(y), 0.5, rtol=2e-2)
    y, s = add_noise(jax.random.key(1), x, (0.1, 0.3))
    assert float(s.min()) >= 0.1 and float(s.max()) <= 0.3
    # per-sample scaling: the noise of each sample is proportional to its own sigma
    np.testing.assert_allclose(jnp.mean(s), 0.2, atol=5e-3)
    np.testing.assert_allclose(jnp.mean(y**2), jnp.mean(s**2), rtol=3e-2)
    with pytest.raises(ValueError, match="sigma"):
        add_noise(jax.random.key(0), x, (0.3, 0.1))


def test_loss_fn_selects_stage_loss():
    lpn = LPN(DenseICNN(1, (8,), key=jax.random.key(0), alpha=0.1))
    x = jax.random.normal(jax.random.key(1), (16, 1))
    y = x + 0.3
    pred = lpn.prox(y)
    for loss_id, ref in [(0, l2_loss(pred, x)), (1, l1_loss(pred, x)),
                         (2, proximal_matching_loss(pred, x, 0.7))]:
        batch = {"x": x, "y": y, "gamma": jnp.asarray(0.7), "loss_id": jnp.asarray(loss_id)}
        np.testing.assert_allclose(lpn_loss_fn(lpn, batch)[0], ref, rtol=1e-14)


def _tiny_run(mode, run_dir=None, steps=None):
    lpn = LPN(DenseICNN(1, (8, 8), key=jax.random.key(0), beta=10.0, alpha=0.01, nonnegativity=mode))
    schedule = Schedule((Stage("l1", 20, 1e-2), Stage("pm", 20, 3e-3, gamma=0.5)))
    sampler = lambda k: sample_laplace(k, 256, 1)  # noqa: E731
    return train_lpn(lpn, sampler, schedule, key=jax.random.key(3), sigma=1.0, run_dir=run_dir,
                     steps_per_call=10, progress=False, checkpoint_every=20)


@pytest.mark.parametrize("mode", ["project", "softplus"])
def test_training_improves_denoising_and_keeps_convexity(mode):
    before = LPN(DenseICNN(1, (8, 8), key=jax.random.key(0), beta=10.0, alpha=0.01, nonnegativity=mode))
    res = _tiny_run(mode)
    assert res.step == 40
    x = jnp.linspace(-3, 3, 61)[:, None]
    target = soft_threshold(x, 1.0)
    err_before = float(jnp.mean((before.prox(x) - target) ** 2))
    err_after = float(jnp.mean((res.model.prox(x) - target) ** 2))
    assert err_after < 0.5 * err_before
    psi = res.model.potential
    if mode == "project":
        assert min(float(w.min()) for w in (*psi.Wz, psi.w_out)) >= 0
    # still the gradient of a convex function: monotone in 1D
    assert bool(jnp.all(jnp.diff(res.model.prox(x)[:, 0]) >= 0))
    gammas = [r["gamma"] for r in res.history if r.get("kind") == "train"]
    assert gammas[0] == 1.0 and gammas[-1] == 0.5  # stage gamma logged (1.0 = unused in l1)


def test_tail_averaging_returns_the_mean_of_the_last_iterates():
    """average_steps = 1 returns the last iterate; = 2 the mean of the last two iterates (both
    trainings are deterministic and step-indexed, so a 39-step run gives iterate 39)."""
    def run(stages, average_steps):
        lpn = LPN(DenseICNN(1, (8, 8), key=jax.random.key(0), beta=10.0, alpha=0.01))
        return train_lpn(lpn, lambda k: sample_laplace(k, 256, 1), Schedule(stages, average_steps),
                         key=jax.random.key(3), steps_per_call=10, progress=False).model

    full = (Stage("l1", 20, 1e-2), Stage("pm", 20, 3e-3, gamma=0.5))
    last = run(full, 0)
    before = run(full[:1] + (Stage("pm", 19, 3e-3, gamma=0.5),), 0)
    leaves = lambda m: jax.tree.leaves(eqx.filter(m, eqx.is_array))  # noqa: E731
    for a, b in zip(leaves(run(full, 1)), leaves(last)):
        np.testing.assert_array_equal(a, b)
    for a, b, c in zip(leaves(run(full, 2)), leaves(last), leaves(before)):
        np.testing.assert_allclose(a, (b + c) / 2, rtol=1e-12, atol=1e-15)


def test_training_resume_is_exact(tmp_path):
    full = _tiny_run("project")
    # an interrupted run: first 20 steps, then resume to 40 from the checkpoint
    lpn = LPN(DenseICNN(1, (8, 8), key=jax.random.key(0), beta=10.0, alpha=0.01, nonnegativity="project"))
    schedule = Schedule((Stage("l1", 20, 1e-2), Stage("pm", 20, 3e-3, gamma=0.5)))
    sampler = lambda k: sample_laplace(k, 256, 1)  # noqa: E731
    from pdeml.train import train
    from pdeml.nets.icnn import icnn_optimizer
    from pdeml.prox import make_batch_fn
    import optax

    opt = icnn_optimizer(optax.adam(schedule.learning_rate), lpn)
    train(lpn, lpn_loss_fn, opt, make_batch_fn(sampler, schedule, 1.0, event_ndim=1), steps=20,
          key=jax.random.key(3), run_dir=tmp_path, steps_per_call=10, progress=False,
          checkpoint_every=20)
    resumed = _tiny_run("project", run_dir=tmp_path)
    for a, b in zip(jax.tree.leaves(eqx.filter(full.model, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(resumed.model, eqx.is_array))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_laplace_proximal_matching_recovers_soft_threshold(seed):
    """The paper's 1D experiment as documented (docs/prox.md), float64, model key ``seed`` and
    training key ``seed + 1``: proximal matching learns soft-thresholding and R recovers |x|
    (max errors on [-3, 3] within 0.15 and 0.1)."""
    lpn = LPN(DenseICNN(1, (50, 50, 50, 50), key=jax.random.key(seed), beta=10.0, alpha=0.01))
    sampler = laplace_posterior_sampler(500, proposal_scale=2.0, x_per_y=32)
    res = train_lpn(lpn, sampler, laplace_schedule(), key=jax.random.key(seed + 1),
                    steps_per_call=500, progress=False)
    x = jnp.linspace(-3, 3, 301)[:, None]
    assert float(jnp.max(jnp.abs(res.model.prox(x) - soft_threshold(x, 1.0)))) <= 0.15
    R = res.model.regularizer(x)
    dev = R - jnp.abs(x[:, 0])
    assert float(jnp.max(jnp.abs(dev - dev.mean()))) <= 0.1


# ---------------------------------------------------------------------------- data


def test_synthetic_samplers():
    x = sample_laplace(jax.random.key(0), 40000, 1, scale=2.0)
    # Laplace(0, b): variance 2 b^2 = 8 (relative s.e. sqrt(5/n) ~ 1.1%), E|x| = b = 2 (s.e.
    # 0.5%); tolerances are ~4 standard errors
    np.testing.assert_allclose(jnp.var(x), 8.0, rtol=5e-2)
    np.testing.assert_allclose(jnp.mean(jnp.abs(x)), 2.0, rtol=2e-2)
    s = sample_sparse(jax.random.key(1), 50, 10, 3)
    np.testing.assert_array_equal(jnp.sum(s != 0, axis=1), 3)
    g = sample_gaussian_mixture(jax.random.key(2), 40000, [[-5.0], [5.0]], [0.5, 0.5], [0.25, 0.75])
    np.testing.assert_allclose(jnp.mean(g > 0), 0.75, atol=0.02)
    with pytest.raises(ValueError, match="sparsity"):
        sample_sparse(jax.random.key(1), 5, 4, 5)
    with pytest.raises(ValueError, match="scale"):
        sample_laplace(jax.random.key(1), 5, scale=0.0)


def test_bundled_images_and_split():
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    from pdeml.data import images

    names = images.bundled_image_names()
    assert "camera" in names
    cam = images.load_bundled_image("camera")
    assert cam.shape == (1, 512, 512) and cam.min() >= 0 and cam.max() <= 1
    assert images.load_bundled_image("astronaut", grayscale=False).shape[0] == 3
    faces = images.load_faces()
    assert faces.shape == (100, 1, 25, 25)
    digits = images.load_digits()
    assert digits.shape == (1797, 1, 8, 8) and digits.max() == 1.0
    tr, te = images.split_indices(100, 0.2, seed=0)
    assert len(te) == 20 and len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 100
    tr2, te2 = images.split_indices(100, 0.2, seed=0)
    np.testing.assert_array_equal(te, te2)
    p = images.extract_patches(cam[None], 64, 64)
    assert p.shape == (64, 1, 64, 64)
    np.testing.assert_array_equal(p[1, 0], cam[0, :64, 64:128])
    with pytest.raises(ValueError, match="unknown image"):
        images.load_bundled_image("lena")
    with pytest.raises(ValueError, match="unknown dataset"):
        images.load_image_dataset("cifar")


def test_missing_extra_gives_clear_error(monkeypatch):
    from pdeml.data import images

    real_import = importlib.import_module

    def fake(name, *a, **k):
        if name.startswith("skimage") or name.startswith("sklearn"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(images.importlib, "import_module", fake)
    with pytest.raises(ModuleNotFoundError, match=r"pdeml\[data\]"):
        images.load_faces()
    with pytest.raises(ModuleNotFoundError, match=r"pdeml\[data\]"):
        images.load_digits()


def test_expansiveness_matches_the_dense_hessian_eigenvalue():
    """Power iteration + Rayleigh quotient against the top eigenvalue of the dense Hessian of psi
    (= the prox's Jacobian) of a small LPN, per sample."""
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN, expansiveness, expansiveness_penalty

    lpn = LPN(DenseICNN(6, (16, 16), key=jax.random.key(0), alpha=0.1, beta=5.0))
    v = jax.random.normal(jax.random.key(1), (3, 6))
    jit = lambda f, **kw: eqx.filter_jit(lambda *a: f(*a, **kw))  # noqa: E731
    est = jit(expansiveness, iters=400)(lpn, v, jax.random.key(2))
    exact = eqx.filter_jit(jax.vmap(
        lambda vi: jnp.linalg.eigvalsh(jax.hessian(lpn.potential)(vi))[-1]))(v)
    np.testing.assert_allclose(np.asarray(est), exact, rtol=1e-6)
    # few iterations: a lower bound (Rayleigh quotient of a unit vector)
    rough = jit(expansiveness, iters=1)(lpn, v, jax.random.key(2))
    assert np.all(np.asarray(rough) <= np.asarray(exact) + 1e-9)
    pen = jit(expansiveness_penalty, threshold=0.0, iters=400)(lpn, v, jax.random.key(2))
    np.testing.assert_allclose(float(pen), np.mean(np.square(exact)), rtol=1e-5)


def test_expansiveness_weight_pulls_the_jacobian_below_one():
    """Training on a Laplace prior with the penalty ends with a smaller top eigenvalue at the
    probes than the same training without it (the l2 prox of Laplace data is expansive there)."""
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN, Schedule, Stage, expansiveness, train_lpn

    lpn = LPN(DenseICNN(4, (16, 16), key=jax.random.key(0), alpha=0.1, beta=5.0))
    sampler = lambda k: jax.random.laplace(k, (64, 4))  # noqa: E731
    sched = Schedule((Stage("l2", 300, (3e-3, 1e-3)),))
    out = {}
    for w in (0.0, 100.0):
        res = train_lpn(lpn, sampler, sched, key=jax.random.key(1), sigma=1.0,
                        expansiveness_weight=w, steps_per_call=100, progress=False)
        probe = sampler(jax.random.key(5)) + 5.0 * jax.random.normal(jax.random.key(6), (64, 4))
        out[w] = float(jnp.max(expansiveness(res.model, probe, jax.random.key(7), iters=30)))
    assert out[100.0] < out[0.0]
    assert out[100.0] < 1.1
    with pytest.raises(ValueError, match="expansiveness_weight"):
        train_lpn(lpn, sampler, sched, key=jax.random.key(1), expansiveness_weight=-1.0)


def test_probe_fn_probes_enter_the_penalty():
    """The penalised loss sees probe_fn's points: with the training inputs at the point of
    smallest top eigenvalue (and the noise probes on top of them, probe_sigma 1e-6), the
    recorded max_eigenvalue is that point's; with probe_fn returning the point of largest
    eigenvalue it is that one's (dense-Hessian values), and the loss grows by the hinge."""
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN
    from pdeml.prox.training import _penalised_loss_fn

    # alpha 0.9: the top eigenvalue ranges across the hinge's 0.98 over these points
    lpn = LPN(DenseICNN(3, (16, 16), key=jax.random.key(0), alpha=0.9, beta=5.0))
    pts = 2.0 * jax.random.normal(jax.random.key(1), (64, 3))
    top = eqx.filter_jit(jax.vmap(lambda p: jnp.linalg.eigvalsh(jax.hessian(lpn.potential)(p))[-1]))(
        pts)
    lo, hi = pts[jnp.argmin(top)], pts[jnp.argmax(top)]
    batch = {"x": jnp.stack([lo] * 4), "y": jnp.stack([lo] * 4), "gamma": jnp.asarray(1.0),
             "loss_id": jnp.asarray(0)}
    out = {}
    for name, fn in (("default", None), ("probe_fn", lambda k, b: jnp.stack([hi] * 2))):
        loss_fn = _penalised_loss_fn(1.0, 4, (1e-6, 1e-6), 400, fn)  # eigenvalues clustered
        out[name] = eqx.filter_jit(loss_fn)(lpn, batch, jax.random.key(2))
    np.testing.assert_allclose(out["default"][1]["max_eigenvalue"], top.min(), rtol=1e-5)
    np.testing.assert_allclose(out["probe_fn"][1]["max_eigenvalue"], top.max(), rtol=1e-5)
    assert float(top.max()) > 0.98 > float(top.min())  # so only the probe_fn point is penalised
    # the hinge is a mean over the 4 + 4 + 2 probes; only the 2 probe_fn ones violate it
    base = float(out["default"][0])
    np.testing.assert_allclose(float(out["probe_fn"][0]) - base, 2 / 10 * float(top.max() - 0.98) ** 2,
                               rtol=1e-4)


def test_train_lpn_rejects_bad_probe_options():
    from pdeml.nets.icnn import DenseICNN
    from pdeml.prox import LPN, Schedule, Stage, train_lpn

    lpn = LPN(DenseICNN(2, (8,), key=jax.random.key(0), alpha=0.1))
    sampler = lambda k: jax.random.laplace(k, (8, 2))  # noqa: E731
    sched = Schedule((Stage("l2", 2),))
    for bad in ({"probe_sigma": (0.5, 0.1)}, {"probe_sigma": 0.0}, {"power_iterations": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            train_lpn(lpn, sampler, sched, key=jax.random.key(1), expansiveness_weight=1.0,
                      progress=False, **bad)
