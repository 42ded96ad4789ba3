"""Stage 1's first averaged gradient and logged loss over two real (gloo) workers equal the
one-worker ones, for the OT objective and for l2. The micro-batches of 3 pairs split 2 + 1,
and the pairs hold 1 to 3 gold links each: l2 used to average each worker's own links and
weight the averages by pairs, which differs from the mean over the batch's links."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_joint_gradient import first_averaged_gradient, parallel_pairs
from transformers import BertConfig, BertModel

from ot_ray.align.objective import AlignmentObjective
from ot_ray.align.stage import align_encoder
from ot_ray.config import AlignmentConfig, TrainConfig
from ot_ray.training import StageState


def tiny_encoder() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # rows alike on any worker
    )  # fmt: skip
    return BertModel(config, add_pooling_layer=False).double()  # sums in another order: exact


def first_step_gradient(method: str) -> dict[str, torch.Tensor]:
    """The averaged gradient of stage 1's first optimizer step (2 micro-batches of 3 pairs),
    with the anchor against a frozen copy, and (as ``logged/<key>``) the step's logged losses."""
    encoder = tiny_encoder()
    config = AlignmentConfig(
        method=method,
        batch_size=3,
        grad_accum=2,
        epochs=2,
        lr=1e-3,
        ot={"epsilon": 0.1, "cost": "cosine", "solver": {"n_iters": 300}},
    )
    objective = AlignmentObjective(config, reference=copy.deepcopy(encoder))
    logged: dict[str, float] = {}
    with first_averaged_gradient(encoder) as seen:
        align_encoder(
            encoder, objective, parallel_pairs(), config, TrainConfig(max_grad_norm=None),
            pad_id=0, device=torch.device("cpu"), state=StageState(),
            after_step=lambda _, means: logged.update(means) if not logged else None,
            show_progress=False,
        )  # fmt: skip
    kept = {k: v for k, v in logged.items() if k in ("loss", "align/loss", "align/regulariser")}
    return seen | {f"logged/{k}": torch.tensor(v) for k, v in kept.items()}


def worker(rank: int, port: int, out: str, method: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save(first_step_gradient(method), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["wordot", "l2"])
def test_two_workers_give_the_one_worker_gradient_of_stage_one(tmp_path, method):
    alone = first_step_gradient(method)
    assert {"embeddings.word_embeddings.weight", "logged/align/loss"} <= set(alone)
    assert alone["logged/align/loss"] > 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "two.pt"
    mp.spawn(worker, args=(port, str(out), method), nprocs=2, join=True)
    # l2 sums its distances in float32 (as under bf16 autocast), so it agrees to float32's
    # rounding; averaging each worker's own links was off by 11.7 in a gradient of 36.7
    exact = {"rtol": 1e-7, "atol": 1e-10}
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if method == "l2" else exact
    for rank in (0, 1):
        together = torch.load(f"{out}.{rank}", weights_only=True)
        assert together.keys() == alone.keys()
        for name, gradient in alone.items():
            torch.testing.assert_close(together[name], gradient, **tolerance, msg=name)
