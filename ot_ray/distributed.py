"""Data parallelism that is exact: sharding, gradient averaging and gathering across workers.

Works the same with and without an initialised process group (one process = world of one), so
the per-worker code runs in Ray Train workers and in plain tests alike.

Gradients are averaged explicitly once per optimizer step (one flat all-reduce) rather than by
``DistributedDataParallel``'s hooks: the alignment step runs the trained encoder twice and a
frozen reference once, and the joint variant mixes task and parallel batches, patterns DDP's
reducer handles only with ``find_unused_parameters`` and ``no_sync`` bookkeeping. Accumulation
steps therefore never communicate; the one all-reduce per step is the same traffic DDP sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def shard(items: Sequence[T], *, contiguous_blocks: int = 1) -> list[T]:
    """This worker's share of ``items``: blocks of ``contiguous_blocks`` dealt round-robin.

    Nothing is padded or dropped, so gathering every worker's results covers each item once.
    """
    size, me = world_size(), rank()
    blocks = range(0, len(items), contiguous_blocks)
    return [
        item
        for index, start in enumerate(blocks)
        if index % size == me
        for item in items[start : start + contiguous_blocks]
    ]


def gather_objects(value: Any) -> list[Any]:
    """Every worker's ``value`` in rank order (a one-element list without a process group)."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def sum_scalars(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Sum each named number over workers (same keys on every worker)."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def average_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over workers (a worker without one adds zero).

    A parameter no worker has a gradient for keeps none, as it would with one worker: given a
    zero gradient instead, AdamW would still decay it and move it by its momentum, so N workers
    would train differently from one. Which parameters have one travels in the same all-reduce.
    """
    params = [p for p in parameters if p.requires_grad]
    if not is_distributed() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    has_grad = [float(p.grad is not None) for p in params]
    flags = torch.tensor(has_grad, dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([*(g.reshape(-1) for g in grads), flags])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for param in params:
        count = param.numel()
        param.grad = flat[offset : offset + count].view_as(param).clone()
        offset += count
    for param, anyone in zip(params, flat[offset:].tolist(), strict=True):
        if anyone == 0:
            param.grad = None


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Start every worker from rank 0's weights (random heads are initialised per process)."""
    if not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()
