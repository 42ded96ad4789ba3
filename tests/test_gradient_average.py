"""Two real (gloo) workers train a task model to the same weights as one worker, including a
parameter the loss never uses: with weight decay, AdamW leaves a parameter without a gradient
alone, and a worker count must not change that (a zero gradient in its place would decay it)."""

from __future__ import annotations

import os
import socket

import datasets
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_joint_gradient import collate, tiny_classifier

from ot_ray.config import TaskTrainConfig
from ot_ray.tasks.stage import fine_tune
from ot_ray.training import StageState


def trained_weights() -> dict[str, torch.Tensor]:
    """A few steps of the task stage with weight decay, on a classifier given a layer its loss
    never reads; the weights after training, and the unused layer's initial weight."""
    model = tiny_classifier()
    model.unused = torch.nn.Linear(4, 4).double()  # seeded by tiny_classifier: alike everywhere
    initial = model.unused.weight.detach().clone()
    rows = torch.randint(1, 40, (9, 8), generator=torch.Generator().manual_seed(1))
    data = datasets.Dataset.from_dict({"input_ids": rows.tolist(), "labels": [0, 1, 2] * 3})
    settings = TaskTrainConfig(
        lr=1e-2, epochs=1, batch_size=3, grad_accum=1, warmup_ratio=0.0, weight_decay=0.1
    )
    fine_tune(
        model, data, collate, settings, name="xnli", seed=0, device=torch.device("cpu"),
        bf16=False, max_grad_norm=None, state=StageState(), show_progress=False,
    )  # fmt: skip
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    return weights | {"initial/unused.weight": initial}


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save(trained_weights(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_workers_train_to_the_one_worker_weights_and_skip_parameters_without_gradients(
    tmp_path,
):
    alone = trained_weights()
    # one worker: AdamW skips the unused layer, weight decay included
    assert torch.equal(alone["unused.weight"], alone["initial/unused.weight"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "weights.pt"
    mp.spawn(worker, args=(port, str(out)), nprocs=2, join=True)
    for rank in (0, 1):
        together = torch.load(f"{out}.{rank}", weights_only=True)
        assert together.keys() == alone.keys()
        for name, weight in alone.items():
            torch.testing.assert_close(together[name], weight, rtol=1e-7, atol=1e-10, msg=name)
