"""Stage 1 of the method: fine-tune the encoder on parallel text with the alignment objective.

Adam(W without decay) at ``alignment.lr``, warmup + linear decay, ``batch_size`` pairs of one
language pair per micro-batch and ``grad_accum`` micro-batches per step, as in the paper (24 x
2). The frozen reference (the initial encoder) is only used by the regulariser.
"""

from __future__ import annotations

import torch

from ot_ray.align.batches import ParallelData
from ot_ray.align.objective import AlignmentObjective
from ot_ray.config import AlignmentConfig, TrainConfig
from ot_ray.training import StageState, autocast, linear_schedule, run_steps, whole_steps


def alignment_plan(data: ParallelData, config: AlignmentConfig, seed: int) -> list[list[int]]:
    """Micro-batches of the whole stage, a whole number of optimizer steps."""
    batches = data.plan(config.batch_size, config.epochs, seed)
    what = f"{len(batches)} batches of {config.batch_size} pairs"
    return whole_steps(batches, config.grad_accum, what, section="alignment")


def align_encoder(
    encoder: torch.nn.Module,
    objective: AlignmentObjective,
    data: ParallelData,
    config: AlignmentConfig,
    train: TrainConfig,
    *,
    pad_id: int,
    device: torch.device,
    state: StageState,
    optimizer_state: dict | None = None,
    after_step=None,
    show_progress: bool = True,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Run (or resume) the alignment stage on ``encoder`` in place."""
    micro_batches = alignment_plan(data, config, train.seed)
    total = len(micro_batches) // config.grad_accum
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    scheduler = linear_schedule(optimizer, total, int(config.warmup_ratio * total))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        scheduler.load_state_dict(optimizer_state["scheduler"])
    encoder.train()

    def loss_of(rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = data.batch(rows, pad_id, whole=list(micro_batches[state.micro])).to(device)
        with autocast(device, train.bf16):
            return objective(encoder, batch)

    run_steps(
        name="alignment",
        parameters=parameters,
        optimizer=optimizer,
        scheduler=scheduler,
        micro_batches=micro_batches,
        grad_accum=config.grad_accum,
        loss_of=loss_of,
        state=state,
        max_grad_norm=train.max_grad_norm,
        after_step=after_step,
        show_progress=show_progress,
    )
    return optimizer, scheduler
