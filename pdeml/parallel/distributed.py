"""Multi-host start-up: one call that makes the same training script run on several machines.

Launch the *same* script once per process (one per host, or several on one host for testing)
and call :func:`initialize` first, before any other JAX call::

    # on every host (process_id 0 .. n-1; the coordinator is process 0's host:port)
    PDEML_COORDINATOR_ADDRESS=host0:12355 PDEML_NUM_PROCESSES=2 PDEML_PROCESS_ID=0 python train.py
    PDEML_COORDINATOR_ADDRESS=host0:12355 PDEML_NUM_PROCESSES=2 PDEML_PROCESS_ID=1 python train.py

    # train.py
    import pdeml.parallel as pp
    info = pp.initialize()               # or initialize("host0:12355", 2, pid)
    mesh = pp.expert_mesh()              # spans the devices of *all* processes
    ...                                  # ShardedMoE(layer, mesh) as on one host

After :func:`initialize`, ``jax.devices()`` lists the devices of every process; a mesh over
them and ``jax.shard_map`` work as on one host, with the collectives (``psum`` over the expert
axis) crossing processes. On CPU the collectives need an implementation: this function selects
``gloo`` (``cpu_collectives="gloo"``) before the backend starts. On GPU/TPU clusters with
a scheduler (SLURM, Open MPI, Cloud TPU) all arguments may be omitted and JAX detects them.

Verified here (tests/test_parallel_multiprocess.py): two CPU processes on localhost with the
gloo collectives see 2 global devices and a :class:`~pdeml.parallel.ShardedMoE` with one
expert per process reproduces the single-process result.
"""

from __future__ import annotations

import os

import jax

__all__ = ["ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "ProcessInfo", "initialize"]

ENV_COORDINATOR = "PDEML_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "PDEML_NUM_PROCESSES"
ENV_PROCESS_ID = "PDEML_PROCESS_ID"


class ProcessInfo(tuple):
    """``(process_id, num_processes, local_device_count, global_device_count)``."""

    __slots__ = ()

    def __new__(cls, process_id, num_processes, local_devices, global_devices):
        return super().__new__(cls, (process_id, num_processes, local_devices, global_devices))

    process_id = property(lambda self: self[0])
    num_processes = property(lambda self: self[1])
    local_devices = property(lambda self: self[2])
    global_devices = property(lambda self: self[3])

    def __repr__(self):
        return (f"ProcessInfo(process_id={self[0]}, num_processes={self[1]}, "
                f"local_devices={self[2]}, global_devices={self[3]})")


def _env_int(name):
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids=None,
    cpu_collectives: str | None = "gloo",
    timeout: int = 300,
) -> ProcessInfo:
    """Join a multi-process JAX job (wraps ``jax.distributed.initialize``).

    Arguments left as ``None`` are read from ``PDEML_COORDINATOR_ADDRESS``,
    ``PDEML_NUM_PROCESSES`` and ``PDEML_PROCESS_ID``; if those are unset too, JAX's own cluster
    detection decides (SLURM, Open MPI, TPU pods). With a single process (``num_processes=1``
    and no coordinator) nothing is started. Calling it again in an initialised process is a
    no-op that returns the same information.

    Args:
        coordinator_address: ``host:port`` of process 0.
        num_processes: number of processes in the job.
        process_id: this process, in ``[0, num_processes)``.
        local_device_ids: restrict this process to some local devices.
        cpu_collectives: CPU collectives implementation (``"gloo"``, ``"mpi"``) or ``None`` to
            leave JAX's setting alone; needed for cross-process ``psum`` on CPU.
        timeout: seconds to wait for the other processes.

    Returns:
        :class:`ProcessInfo`.

    Must run before anything touches a JAX backend (creating arrays, ``jax.devices()``).
    """
    if coordinator_address is None:
        coordinator_address = os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ValueError(f"num_processes must be a positive integer, got {num_processes!r}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must lie in [0, {num_processes}), got {process_id!r}")
    if coordinator_address is not None and ":" not in coordinator_address:
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")

    if not jax.distributed.is_initialized():
        single = num_processes == 1 and coordinator_address is None
        if not single:
            if cpu_collectives is not None:
                jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
            jax.distributed.initialize(
                coordinator_address=coordinator_address, num_processes=num_processes,
                process_id=process_id, local_device_ids=local_device_ids,
                initialization_timeout=timeout,
            )
    return ProcessInfo(jax.process_index(), jax.process_count(), jax.local_device_count(),
                       jax.device_count())
