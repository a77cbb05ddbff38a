"""Hard-constraint layers (single and mixture of experts), partitions, the soft-constraint
baseline and the physics loss."""

from pdeml.constraints.hard import ConstraintInfo, HardConstraint
from pdeml.constraints.models import (
    HardConstrainedModel,
    SoftConstrainedModel,
    batch_physics_loss,
    carried_physics_loss,
    carried_starts,
    network_input,
    physics_loss,
    relative_l2,
)
from pdeml.constraints.moe import MoEConstraintInfo, MoEHardConstraint
from pdeml.constraints.partition import Partition
from pdeml.constraints.sampling import sample_points, uniform_subset

__all__ = [
    "ConstraintInfo",
    "HardConstrainedModel",
    "HardConstraint",
    "MoEConstraintInfo",
    "MoEHardConstraint",
    "Partition",
    "SoftConstrainedModel",
    "batch_physics_loss",
    "carried_physics_loss",
    "carried_starts",
    "network_input",
    "physics_loss",
    "relative_l2",
    "sample_points",
    "uniform_subset",
]
