"""Task fine-tuning and sharded inference, shared by XNLI and XQuAD.

Training uses the common loop of :mod:`ot_ray.training` (AdamW, warmup + linear decay, gradient
accumulation, exact data parallelism). Inference deals whole evaluation batches to workers and
gathers the outputs in input order, so predictions and metrics are the same for any number of
workers (no sampler padding, nothing counted twice or dropped).
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
import torch

from ot_ray import distributed
from ot_ray.config import TaskTrainConfig
from ot_ray.errors import ConfigError
from ot_ray.training import (
    StageState,
    autocast,
    epoch_batches,
    linear_schedule,
    run_steps,
    to_device,
    whole_steps,
)

Collate = Callable[[datasets.Dataset, list[int]], dict[str, torch.Tensor]]
#: ``extra(model, micro_index)``: a loss added to the task loss of that micro-batch (joint
#: variant): its mean over this worker's rows of its own batch, the values to log, and the share
#: of that batch those rows are.
ExtraLoss = Callable[[torch.nn.Module, int], tuple[torch.Tensor, dict[str, float], float]]


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, total_steps: int, warmup_ratio: float
):
    """AdamW (no decay on biases and LayerNorm) with warmup + linear decay."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
    )
    scheduler = linear_schedule(optimizer, total_steps, int(warmup_ratio * total_steps))
    return optimizer, scheduler


def freeze_bottom(
    model: torch.nn.Module, embeddings: bool, layers: int, *, key: str = "freeze_layers"
) -> int:
    """Fix the embeddings and/or the lowest ``layers`` transformer layers; returns how many
    parameters were frozen.

    Zero-shot transfer trains on the pivot only: every gradient step moves the pivot's token
    embeddings and never the target languages', so the task head learns on inputs the targets
    no longer share. Fixing the bottom of the encoder is meant to keep the alignment the first
    stage built (Wu & Dredze 2019); on the demo world it did not help QA (README).
    """
    base = model.base_model
    blocks: list[torch.nn.Module] = []
    if embeddings or layers:
        blocks.append(getattr(base, "embeddings", None) or base.get_input_embeddings())
    if layers:
        stack = getattr(getattr(base, "encoder", None), "layer", None)
        if stack is None or layers > len(stack):
            have = "no layer stack" if stack is None else f"{len(stack)} layers"
            raise ConfigError(
                f"{layers} layers to freeze, but {type(base).__name__} has {have}", key=key
            )
        blocks += list(stack[:layers])
    frozen = 0
    for block in blocks:
        for param in block.parameters():
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def task_plan(count: int, config: TaskTrainConfig, seed: int, task: str) -> list[list[int]]:
    """The seeded micro-batches of a task stage (a whole number of optimizer steps)."""
    batches = epoch_batches(count, config.batch_size, config.epochs, seed)
    what = f"{count} training examples in batches of {config.batch_size}"
    return whole_steps(batches, config.grad_accum, what, section=f"task.{task}")


def fine_tune(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    collate: Collate,
    config: TaskTrainConfig,
    *,
    name: str,
    seed: int,
    device: torch.device,
    bf16: bool,
    max_grad_norm: float | None,
    state: StageState,
    optimizer_state: dict | None = None,
    after_step=None,
    extra_loss: ExtraLoss | None = None,
    show_progress: bool = True,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Train ``model`` on ``dataset`` from ``state.step``; returns the optimizer and schedule."""
    freeze_bottom(
        model, config.freeze_embeddings, config.freeze_layers, key=f"task.{name}.freeze_layers"
    )
    micro_batches = task_plan(len(dataset), config, seed, name)
    total = len(micro_batches) // config.grad_accum
    optimizer, scheduler = make_optimizer(
        model, config.lr, config.weight_decay, total, config.warmup_ratio
    )
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state["optimizer"])
        scheduler.load_state_dict(optimizer_state["scheduler"])
    model.train()
    progress = state

    def loss_of(rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        batch = {k: to_device(v, device) for k, v in collate(dataset, rows).items()}
        with autocast(device, bf16):
            loss = model(**batch).loss
            parts = {f"{name}/loss": float(loss.detach())}
            if extra_loss is not None:
                extra, extra_parts, extra_share = extra_loss(model, progress.micro)
                # run_steps weights this worker's loss by its share of the task batch; the
                # extra loss is a mean over its share of another batch, so it is reweighted to
                # keep the sum over workers the global batch mean (workers' shares can differ)
                task_share = len(rows) / len(micro_batches[progress.micro])
                reweight = extra_share / task_share
                loss = loss + extra * reweight
                # its logged values are averaged as the task loss is: reweighted alike
                parts.update({key: value * reweight for key, value in extra_parts.items()})
        return loss, parts

    run_steps(
        name=name,
        parameters=[p for p in model.parameters() if p.requires_grad],
        optimizer=optimizer,
        scheduler=scheduler,
        micro_batches=micro_batches,
        grad_accum=config.grad_accum,
        loss_of=loss_of,
        state=state,
        max_grad_norm=max_grad_norm,
        after_step=after_step,
        show_progress=show_progress,
    )
    return optimizer, scheduler


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    collate: Collate,
    outputs: Callable[[object], list[np.ndarray]],
    *,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> list[list[np.ndarray]]:
    """Per-row model outputs for every row of ``dataset``, in order, on every worker.

    ``outputs(model_output)`` picks the arrays to keep (each with the batch as first axis).
    """
    was_training = model.training
    model.eval()
    rows = distributed.shard(list(range(len(dataset))), contiguous_blocks=batch_size)
    mine = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = {k: to_device(v, device) for k, v in collate(dataset, chunk).items()}
        batch.pop("labels", None)
        batch.pop("start_positions", None)
        batch.pop("end_positions", None)
        with autocast(device, bf16):
            arrays = [np.asarray(a.float().cpu()) for a in outputs(model(**batch))]
        mine += [(row, [a[k] for a in arrays]) for k, row in enumerate(chunk)]
    model.train(was_training)
    merged = sorted(
        (item for part in distributed.gather_objects(mine) for item in part),
        key=lambda item: item[0],
    )
    if [row for row, _ in merged] != list(range(len(dataset))):
        raise RuntimeError("sharded inference lost or duplicated rows")
    return [values for _, values in merged]
