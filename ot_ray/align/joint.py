"""The joint variant's extra term in task training: the alignment loss on parallel batches,
added to the task loss with a weight.

Each worker takes its share of the parallel batch and says how big that share is, so the task
loop can weight the term by it: the gradient averaged over workers is then the one-worker
gradient whatever the split (``tests/test_joint_gradient.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ot_ray import distributed
from ot_ray.align.batches import ParallelData
from ot_ray.align.objective import AlignmentObjective

#: ``extra(model, micro) -> (weighted loss, values to log, this worker's share of the pairs)``
JointTerm = Callable[[torch.nn.Module, int], tuple[torch.Tensor, dict[str, float], float]]


def joint_term(
    data: ParallelData,
    plan: list[list[int]],
    objective: AlignmentObjective,
    weight: float,
    *,
    pad_id: int,
    device: torch.device,
) -> JointTerm:
    """The term for task micro-batch ``micro``: ``weight`` x the objective on this worker's
    share of the parallel batch ``plan[micro % len(plan)]`` (every worker draws the same one,
    and a resumed stage continues the same sequence). Every worker needs a pair of each batch,
    as in stage 1: one without would log none of the objective's values, and the workers' sums
    of them would no longer match."""

    def extra(model: torch.nn.Module, micro: int) -> tuple[torch.Tensor, dict[str, float], float]:
        pairs = plan[micro % len(plan)]
        rows = distributed.shard(pairs)
        if not rows:  # the trial's batches are full and the config holds a pair per worker
            raise ValueError(
                f"a joint-variant batch of {len(pairs)} pair(s) cannot be shared by "
                f"{distributed.world_size()} workers"
            )
        batch = data.batch(rows, pad_id, whole=pairs).to(device)
        loss, parts = objective(model.base_model, batch)
        share = len(rows) / len(pairs)
        return weight * loss, {"joint/" + k: v for k, v in parts.items()}, share

    return extra
