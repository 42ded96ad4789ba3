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
    and a resumed stage continues the same sequence). A worker with no pair of the batch adds
    a zero with share 0."""

    def extra(model: torch.nn.Module, micro: int) -> tuple[torch.Tensor, dict[str, float], float]:
        pairs = plan[micro % len(plan)]
        rows = distributed.shard(pairs)
        if not rows:
            return torch.zeros((), device=device), {}, 0.0
        batch = data.batch(rows, pad_id).to(device)
        loss, parts = objective(model.base_model, batch)
        share = len(rows) / len(pairs)
        return weight * loss, {"joint/" + k: v for k, v in parts.items()}, share

    return extra
