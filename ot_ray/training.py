"""The optimisation loop shared by the alignment and task stages.

A stage hands over its whole plan up front: the global micro-batches (lists of example indices,
the same on every worker, drawn from the seed), the gradient-accumulation factor and a
``loss_of(rows)`` that returns the mean loss over the rows it is given. Each worker computes the
loss on its share of every micro-batch; weighting by the share's size and averaging gradients
across workers gives exactly the gradient of the global batch mean. Because the plan is
deterministic, resuming from a checkpoint at step ``k`` skips the first ``k`` steps' batches.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ot_ray import distributed
from ot_ray.errors import ConfigError, UserError


class TrainingError(UserError):
    """Training cannot go on (a NaN or infinite loss): says which stage and step."""


@dataclass
class StageState:
    """Where a stage stands: optimizer steps done and the running sums of its logged values."""

    step: int = 0
    micro: int = 0  # index of the micro-batch being computed (for streams tied to it)
    optimizer: Any = None  # set by run_steps, for checkpoint callbacks
    scheduler: Any = None


def linear_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the peak rate, then linear decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_batches(
    count: int, batch_size: int, epochs: float, seed: int, *, drop_last: bool = True
) -> list[list[int]]:
    """Seeded shuffled batches over ``count`` examples for a (possibly fractional) number of
    epochs; the fraction keeps the first batches of the last epoch."""
    generator = torch.Generator().manual_seed(seed)
    batches: list[list[int]] = []
    for _ in range(math.ceil(epochs)):
        order = torch.randperm(count, generator=generator).tolist()
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        batches += [order[i : i + batch_size] for i in range(0, stop, batch_size)]
    return batches[: batch_count(count, batch_size, epochs, drop_last=drop_last)]


def batch_count(count: int, batch_size: int, epochs: float, *, drop_last: bool = True) -> int:
    """How many batches :func:`epoch_batches` draws, without drawing them: the start-up checks
    count a stage's optimizer steps before any work, and the drawing keeps this many."""
    per_epoch = count // batch_size if drop_last else math.ceil(count / batch_size)
    return min(math.ceil(epochs) * per_epoch, max(1, round(per_epoch * epochs)))


def whole_steps(
    batches: list[list[int]], grad_accum: int, what: str, *, section: str
) -> list[list[int]]:
    """The micro-batches that make whole optimizer steps; a config error naming ``section``'s
    batch size if not even one fits (a user's setting, reported without a traceback)."""
    usable = len(batches) - len(batches) % grad_accum
    if usable == 0:
        raise ConfigError(
            f"{what} make fewer than one optimizer step ({grad_accum} micro-batches); "
            "use more data or a smaller batch",
            key=f"{section}.batch_size",
        )
    return batches[:usable]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host-to-GPU copy from pinned memory, so it runs asynchronously (``non_blocking`` from
    pageable memory waits for the copy); on CPU the tensor itself."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def compiled(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``model`` compiled in place by ``torch.compile`` when asked (state-dict keys unchanged,
    so checkpoints are the same); dynamic shapes, as batches are padded to their longest row."""
    if enabled:
        model.compile(dynamic=True)
    return model


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; nothing on CPU (bf16 matmuls are slow there)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_steps(
    *,
    name: str,
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: Sequence[Sequence[int]],
    grad_accum: int,
    loss_of: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
    state: StageState,
    max_grad_norm: float | None,
    after_step: Callable[[StageState, dict[str, float]], None] | None = None,
    show_progress: bool = True,
) -> StageState:
    """Optimizer steps from ``state.step`` to the end of the plan.

    ``loss_of(rows)`` returns the mean loss over ``rows`` (this worker's share of a micro-batch)
    and extra numbers to log (means over the same rows). ``after_step(state, means)`` runs on
    every worker after each step with the step's values averaged over the global batch.
    """
    total = len(micro_batches) // grad_accum
    workers = distributed.world_size()
    state.optimizer, state.scheduler = optimizer, scheduler
    smallest = min((len(micro) for micro in micro_batches), default=0)
    if workers > 1 and smallest < workers:
        raise TrainingError(
            f"{name}: a batch of {smallest} examples cannot be shared by {workers} workers; "
            "use a batch size of at least train.num_workers"
        )
    device = parameters[0].device if parameters else None
    progress = tqdm(
        total=total,
        initial=state.step,
        desc=name,
        unit="step",
        disable=not show_progress or distributed.rank() != 0,
    )
    with progress:
        while state.step < total:
            sums: dict[str, float] = {}
            rows_total = 0
            first = state.step * grad_accum
            for index, micro in enumerate(micro_batches[first : first + grad_accum]):
                state.micro = first + index
                rows = distributed.shard(list(micro))
                rows_total += len(micro)
                if not rows:
                    continue
                loss, extras = loss_of(rows)
                weight = len(rows) * workers / (len(micro) * grad_accum)
                (loss * weight).backward()
                for key, value in {"loss": float(loss.detach()), **extras}.items():
                    sums[key] = sums.get(key, 0.0) + value * len(rows)
            sums = distributed.sum_scalars({**sums, "_rows": float(rows_total)}, device)
            rows_global = sums.pop("_rows") / workers
            means = {key: value / rows_global for key, value in sums.items()}
            if not math.isfinite(means.get("loss", 0.0)):
                raise TrainingError(
                    f"{name}: the loss is {means.get('loss')} at step {state.step + 1}; "
                    "lower the learning rate or check the data (empty or garbled sentences)"
                )
            distributed.average_gradients(parameters)
            check_gradients(name, parameters, max_grad_norm, state.step + 1)
            means["lr"] = scheduler.get_last_lr()[0]  # the rate this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            progress.update()
            progress.set_postfix(loss=f"{means['loss']:.4f}", refresh=False)
            if after_step is not None:
                after_step(state, means)
    return state


def check_gradients(
    name: str, parameters: list[torch.nn.Parameter], max_grad_norm: float | None, step: int
) -> None:
    """Refuse a step whose averaged gradient is not finite (a finite loss can have one: a
    square root or a log at zero), then clip it to ``max_grad_norm``. Clipping an infinite
    norm would zero the other gradients and write NaN into the weights and Adam's state, and a
    checkpoint taken then would hold them, so every restart would fail from it. The norm is
    the same on every worker (the gradients are averaged), so all of them stop together."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norm = torch.nn.utils.get_total_norm(grads)
    if not math.isfinite(float(norm)):
        raise TrainingError(
            f"{name}: the gradient norm is {float(norm)} at step {step} (the loss is finite); "
            "lower the learning rate or check the data (empty or garbled sentences)"
        )
    if max_grad_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_grad_norm, norm)
