"""Expert parallelism: sharded equals unsharded on 4 and 8 faked CPU devices.

The device count is fixed when JAX starts, and this pytest process already has one CPU
device, so the sharded runs happen in one subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (meshes over the first 4 devices and
over all 8), which prints its measurements as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeml.constraints import MoEHardConstraint, Partition
from pdeml.parallel import (
    ShardedMoE,
    expert_mesh,
    iteration_histogram,
    lockstep_efficiency,
    padded_num_experts,
)
from pdeml.pde import DiffusionSorption

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from pdeml.pde import DiffusionSorption
    from pdeml.constraints import MoEHardConstraint, Partition
    from pdeml.parallel import ShardedMoE, expert_mesh

    assert jax.device_count() == 8, jax.devices()
    prob = DiffusionSorption(nx=16, nt=6, sorption_eps=0.1, sorption_smoothing=0.1)
    x = np.linspace(0, 1, 16)[:, None, None]
    t = np.linspace(0, 1, 6)[None, :, None]
    rng = np.random.default_rng(0)
    a, c, d = rng.normal(size=6), rng.normal(size=6), rng.uniform(0, 6, size=6)
    basis = np.cos(3 * a * x + c * t + d)
    B = 2
    bb = jnp.asarray(np.stack([basis, basis * (1 + 0.1 * x)]))
    u0 = jnp.asarray(0.5 * np.exp(-np.array([[3.0], [5.0]]) * x[None, :, 0, 0]))
    # K = 6 experts (3 x 2, overlapping): not a multiple of 4 or 8 devices -> dummy padding.
    # argv[2]: Schwarz rounds (one all-reduce of the blended field per round when sharded).
    layer = MoEHardConstraint(prob, Partition.uniform((16, 6), (3, 2), overlap=0.3),
                              num_points=8, sweeps=int(sys.argv[2]))
    key = jax.random.key(3)

    def value_and_grad(call):
        def loss(b):
            u, info = call(b)
            return jnp.sum(jnp.sin(3 * u)), (u, info)
        return jax.jit(jax.value_and_grad(loss, has_aux=True))(bb)

    ref = lambda b: jax.vmap(lambda bi, di, ki: layer(bi, di, key=ki))(
        b, u0, jax.random.split(key, B))
    (_, (u_ref, i_ref)), g_ref = value_and_grad(ref)
    out = {"ref_converged": bool(np.all(i_ref.stats.converged)),
           "ref_iterations": np.asarray(i_ref.stats.iterations).tolist(),
           "g_scale": float(jnp.abs(g_ref).max()), "u_scale": float(jnp.abs(u_ref).max())}
    devs = jax.devices()
    meshes = {
        "4 devices, expert=4": (expert_mesh(4, devices=devs[:4]), None),
        "8 devices, expert=8": (expert_mesh(8), None),
        "8 devices, batch=2 x expert=4": (expert_mesh(4, 2), "batch"),
    }
    for name in json.loads(sys.argv[1]):
        mesh, batch_axis = meshes[name]
        sharded = ShardedMoE(layer, mesh, batch_axis=batch_axis)
        (_, (u, info)), g = value_and_grad(lambda b: sharded(b, u0, key=key))
        out[name] = {
            "u": float(jnp.abs(u - u_ref).max()),
            "g": float(jnp.abs(g - g_ref).max()),
            "w": float(jnp.abs(info.w - i_ref.w).max()),
            "iterations_equal": bool(np.array_equal(info.stats.iterations,
                                                    i_ref.stats.iterations)),
            "points_equal": bool(np.array_equal(info.points, i_ref.points)),
            "shapes": [list(info.w.shape), list(info.stats.converged.shape)],
            "u_devices": len(u.sharding.device_set),
        }
    print("RESULT" + json.dumps(out))
    """
)


def run_worker(script, devices, *args):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


FAST = ["4 devices, expert=4", "8 devices, batch=2 x expert=4"]
SLOW = ["8 devices, expert=8"]


@pytest.mark.parametrize(
    "names, sweeps",
    [(FAST, 0), (FAST[:1], 2), pytest.param(SLOW, 0, marks=pytest.mark.slow)],
    ids=["fast", "schwarz", "slow"],
)
def test_sharded_equals_unsharded_on_4_and_8_devices(names, sweeps):
    out = run_worker(WORKER, 8, json.dumps(names), str(sweeps))
    # Every reference solve converged: the comparison is not blurred by failed solves.
    assert out["ref_converged"], out["ref_iterations"]
    # Masked early exit: each expert reports its own iteration count (here 5 to 33), not the
    # slowest one's, and the sharded runs report the same counts.
    assert len({i for row in out["ref_iterations"] for i in row}) > 2
    for name in names:
        r = out[name]
        # Same arithmetic per expert; only the distribution, the vmap width per device and
        # the final sum differ: outputs and gradients agree to round-off (measured 2e-14 and
        # 3e-13 relative; asserted 1e-10 relative to their size).
        assert r["u"] <= 1e-10 * out["u_scale"], (name, r)
        assert r["g"] <= 1e-10 * out["g_scale"], (name, r)
        assert r["w"] <= 1e-10, (name, r)
        assert r["iterations_equal"] and r["points_equal"], (name, r)
        # Dummy experts are dropped: K = 6 results for a batch of 2; u lives on every device.
        assert r["shapes"] == [[2, 6, 6], [2, 6]], (name, r)
        assert r["u_devices"] == int(name.split()[0]), (name, r)


# ---- single-process checks ---------------------------------------------------------------

PROB = DiffusionSorption(nx=16, nt=6)


def test_padding_and_bad_meshes():
    assert [padded_num_experts(6, e) for e in (1, 2, 4, 5, 8)] == [6, 6, 8, 10, 8]
    layer = MoEHardConstraint(PROB, Partition.uniform((16, 6), (2, 1)), num_points=10)
    mesh = jax.make_mesh((1,), ("data",), (jax.sharding.AxisType.Auto,))
    with pytest.raises(ValueError, match="no expert axis 'expert'"):
        ShardedMoE(layer, mesh)
    with pytest.raises(ValueError, match="no batch axis 'batch'"):
        ShardedMoE(layer, mesh, expert_axis="data", batch_axis="batch")
    with pytest.raises(TypeError, match="layer must be a MoEHardConstraint"):
        ShardedMoE("layer", expert_mesh())
    with pytest.raises(ValueError, match=r"needs 2 devices, only 1"):
        expert_mesh(2)
    sharded = ShardedMoE(layer, expert_mesh(), batch_axis="batch")
    with pytest.raises(ValueError, match="basis must have shape \\(B, \\*grid, N\\)"):
        sharded(jnp.zeros((16, 6, 4)), jnp.zeros((1, 16)), key=jax.random.key(0))


def test_iteration_histogram_and_lockstep_efficiency():
    its = np.array([[3, 5, 5, 10], [1, 1, 2, 0]])
    np.testing.assert_array_equal(iteration_histogram(its, 10),
                                  [1, 2, 1, 1, 0, 2, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="must lie in"):
        iteration_histogram(its, 5)
    # One device: each row runs K x max(row) = 4*10 + 4*2 expert-iterations for 27 useful.
    assert lockstep_efficiency(its, 1) == pytest.approx(27 / 48)
    # Four devices, one expert each: nothing is wasted.
    assert lockstep_efficiency(its, 4) == 1.0
    # Three devices: K=4 is padded to 6 (two per device): [3,5 | 5,10 | 0,0] and [1,1 | 2,0 | 0,0].
    assert lockstep_efficiency(its, 3) == pytest.approx(27 / (2 * (5 + 10) + 2 * (1 + 2)))
