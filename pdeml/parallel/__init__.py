"""Device parallelism: expert-parallel mixture-of-experts solves over a mesh (``jax.shard_map``)
and multi-host start-up."""

from pdeml.parallel.distributed import ProcessInfo, initialize
from pdeml.parallel.experts import (
    ShardedMoE,
    expert_mesh,
    iteration_histogram,
    lockstep_efficiency,
    padded_num_experts,
)

__all__ = [
    "ProcessInfo",
    "ShardedMoE",
    "expert_mesh",
    "initialize",
    "iteration_histogram",
    "lockstep_efficiency",
    "padded_num_experts",
]
