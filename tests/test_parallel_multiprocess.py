"""Multi-host start-up: two CPU processes on localhost join one job through
:func:`pdeml.parallel.initialize` (gloo collectives) and run the expert-parallel layer with one
expert per process; each process checks the result against its own single-process solve."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

WORKER = textwrap.dedent(
    """
    import json
    import pdeml.parallel as pp
    info = pp.initialize()  # reads PDEML_COORDINATOR_ADDRESS / _NUM_PROCESSES / _PROCESS_ID
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from pdeml.pde import DiffusionSorption
    from pdeml.constraints import MoEHardConstraint, Partition

    prob = DiffusionSorption(nx=16, nt=6, sorption_eps=0.1, sorption_smoothing=0.1)
    x = np.linspace(0, 1, 16)[:, None, None]
    t = np.linspace(0, 1, 6)[None, :, None]
    rng = np.random.default_rng(0)
    a, c, d = rng.normal(size=6), rng.normal(size=6), rng.uniform(0, 6, size=6)
    basis = np.cos(3 * a * x + c * t + d)[None]
    u0 = 0.5 * np.exp(-3 * x[None, :, 0, 0])
    # Two Schwarz rounds: the blended field is all-reduced across the processes every round.
    layer = MoEHardConstraint(prob, Partition.uniform((16, 6), (2, 1), overlap=0.3),
                              num_points=8, sweeps=2)
    pts = np.asarray(layer.select_points(jax.random.key(0)))[None]
    mesh = pp.expert_mesh()  # spans both processes' devices
    sharded = pp.ShardedMoE(layer, mesh)
    u, sinfo = jax.jit(lambda b: sharded(b, u0, points=pts))(basis)
    u = np.asarray(u.addressable_data(0))
    with jax.default_device(jax.local_devices()[0]):
        ref, _ = jax.jit(lambda b: layer(b, u0[0], points=pts[0]))(basis[0])
    print("RESULT" + json.dumps({"info": list(info), "mesh": dict(mesh.shape),
                                 "diff": float(np.abs(u[0] - np.asarray(ref)).max())}))
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost():
    port = free_port()
    root = os.path.dirname(os.path.dirname(__file__))
    procs = []
    for pid in range(2):
        env = dict(os.environ, PDEML_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   PDEML_NUM_PROCESSES="2", PDEML_PROCESS_ID=str(pid), JAX_PLATFORMS="cpu")
        env.pop("XLA_FLAGS", None)  # one CPU device per process
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=root,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, stderr[-4000:]
        line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT")][-1]
        outs.append(json.loads(line[len("RESULT"):]))
    for pid, out in enumerate(outs):
        # (process_id, num_processes, local devices, global devices)
        assert out["info"] == [pid, 2, 1, 2]
        assert out["mesh"] == {"batch": 1, "expert": 2}
        # The psum over the expert axis crossed the processes: the blended field equals the
        # single-process solve of both experts to round-off.
        assert out["diff"] < 1e-12
