"""The joint variant's gradient (and its logged values) over two real (gloo) workers equal the
one-worker ones: a task batch and a parallel batch split unevenly in different ways (3 task
rows: 2 + 1; 5 pairs: 3 + 2), and the parallel term used to be weighted by each worker's share
of the task batch."""

from __future__ import annotations

import os
import socket

import datasets
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import BertConfig, BertForSequenceClassification

from ot_ray import distributed
from ot_ray.config import TaskTrainConfig
from ot_ray.tasks.stage import fine_tune
from ot_ray.training import StageState

#: The parallel "pairs" of the extra term, each with its own weight: an uneven split of them
#: over two workers changes the mean unless each worker's share is weighted right.
PAIR_WEIGHTS = (1.0, 1.0, 1.0, 10.0, 10.0)  # worker 0: 1, 1, 10 (mean 4); 1: 1, 10 (5.5)


def tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # rows alike on any worker
    )  # fmt: skip
    return BertForSequenceClassification(config)


def collate(dataset: datasets.Dataset, indices: list[int]) -> dict[str, torch.Tensor]:
    picked = dataset[indices]
    return {
        "input_ids": torch.tensor(picked["input_ids"]),
        "labels": torch.tensor(picked["labels"]),
    }


def extra(model: torch.nn.Module, micro: int) -> tuple[torch.Tensor, dict, float]:
    """As ``TaskStages._joint_loss``: the mean over this worker's pairs, and their share of the
    batch."""
    pairs = list(range(len(PAIR_WEIGHTS)))
    mine = distributed.shard(pairs)
    size = (model.classifier.weight**2).sum()
    loss = torch.stack([PAIR_WEIGHTS[k] * size for k in mine]).mean()
    return loss, {"joint/loss": float(loss.detach())}, len(mine) / len(pairs)


def first_step_gradient(rank: int) -> dict[str, torch.Tensor]:
    """The averaged gradient of the first optimizer step of a task stage with the extra term,
    and (as ``logged/<key>``) the values logged for that step."""
    model = tiny_classifier()
    rows = torch.randint(1, 40, (3, 8), generator=torch.Generator().manual_seed(1))
    data = datasets.Dataset.from_dict({"input_ids": rows.tolist(), "labels": [0, 1, 2]})
    settings = TaskTrainConfig(lr=1e-3, epochs=1, batch_size=3, warmup_ratio=0.0)
    seen: dict[str, torch.Tensor] = {}
    logged: dict[str, float] = {}
    average = distributed.average_gradients

    def recording(parameters):
        average(parameters)
        if not seen:
            seen.update(
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            )

    distributed.average_gradients = recording
    try:
        fine_tune(
            model, data, collate, settings, name="xnli", seed=0, device=torch.device("cpu"),
            bf16=False, max_grad_norm=None, state=StageState(), extra_loss=extra,
            after_step=lambda _, means: logged.update(means) if not logged else None,
            show_progress=False,
        )  # fmt: skip
    finally:
        distributed.average_gradients = average
    return seen | {f"logged/{k}": torch.tensor(v) for k, v in logged.items() if k != "lr"}


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        gradient = first_step_gradient(rank)
        if rank == 0:
            torch.save(gradient, out)
    finally:
        dist.destroy_process_group()


def test_two_workers_give_the_one_worker_gradient_of_the_joint_variant(tmp_path):
    alone = first_step_gradient(0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "two.pt"
    mp.spawn(worker, args=(port, str(out)), nprocs=2, join=True)
    together = torch.load(out, weights_only=True)
    assert together.keys() == alone.keys() and {"classifier.weight", "logged/joint/loss"} <= set(
        alone
    )
    for name, gradient in alone.items():
        torch.testing.assert_close(together[name], gradient, rtol=1e-5, atol=1e-7, msg=name)
