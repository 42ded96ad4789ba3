"""The joint variant's gradient (and its logged loss) over two real (gloo) workers equal the
one-worker ones. Its term is the library's own (:func:`ot_ray.align.joint.joint_term`: the real
wordot or l2 objective on parallel batches), and both batches split unevenly in different ways:
task micro-batches of 3 rows (2 + 1), parallel batches of 5 pairs (3 + 2) and 2 pairs (1 + 1).
The parallel term used to be weighted by each worker's share of the task batch, and l2 averaged
each worker's own links (its pairs hold 1 to 3 links). A parallel batch with fewer pairs than
workers is refused (a worker without a pair would log none of its values, and summing the
workers' logs then aborted gloo)."""

from __future__ import annotations

import contextlib
import os
import socket

import datasets
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from transformers import BertConfig, BertForSequenceClassification

from ot_ray import distributed
from ot_ray.align.batches import ParallelData
from ot_ray.align.joint import joint_term
from ot_ray.align.objective import AlignmentObjective
from ot_ray.config import AlignmentConfig, TaskTrainConfig
from ot_ray.tasks.stage import fine_tune
from ot_ray.training import StageState

#: The parallel batches the task's two micro-batches draw: 5 pairs (3 + 2), then 2 (1 + 1).
PLAN = [[0, 1, 2, 3, 4], [5, 0]]


def tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # rows alike on any worker
    )  # fmt: skip
    return BertForSequenceClassification(config).double()  # sums in another order: exact


def collate(dataset: datasets.Dataset, indices: list[int]) -> dict[str, torch.Tensor]:
    picked = dataset[indices]
    return {
        "input_ids": torch.tensor(picked["input_ids"]),
        "labels": torch.tensor(picked["labels"]),
    }


def parallel_pairs() -> ParallelData:
    """Six sentence pairs of 1 to 6 words a side ([CLS] words [SEP], one piece a word), so the
    pairs' losses differ and an uneven split weighted wrongly shows. Gold links join word i to
    word i: 1, 2, 3, 3, 2 and 1 of them, and pair 0 has one more to a word beyond its end (as
    a link into a truncated sentence), which l2 must not count."""
    generator = torch.Generator().manual_seed(2)
    columns: dict[str, list] = {
        f"{s}_{c}": [] for s in ("src", "tgt") for c in ("input_ids", "word_ids")
    }
    for k in range(6):
        for side, words in (("src", k + 1), ("tgt", 6 - k)):
            ids = torch.randint(3, 40, (words,), generator=generator).tolist()
            columns[f"{side}_input_ids"].append([1, *ids, 2])
            columns[f"{side}_word_ids"].append([-1, *range(words), -1])
    links = [{(i, i) for i in range(min(k + 1, 6 - k))} for k in range(6)]
    links[0].add((0, 7))
    return ParallelData(["de"], {"de": datasets.Dataset.from_dict(columns)}, {"de": links})


def joint_extra(plan: list[list[int]] = PLAN, method: str = "wordot"):
    """The joint variant's term as the trial builds it (wordot with a fixed sweep count, so each
    problem is solved alike in any batch, or l2)."""
    config = AlignmentConfig(
        method=method,
        reg_lambda=0.0,
        ot={"epsilon": 0.1, "cost": "cosine", "solver": {"n_iters": 300}},
    )
    objective = AlignmentObjective(config, reference=None)
    return joint_term(parallel_pairs(), plan, objective, 0.5, pad_id=0, device=torch.device("cpu"))


@contextlib.contextmanager
def first_averaged_gradient(model: torch.nn.Module):
    """Records ``model``'s gradient as the first optimizer step averaged it over the workers:
    yields the dict it fills."""
    seen: dict[str, torch.Tensor] = {}
    average = distributed.average_gradients

    def recording(parameters):
        average(parameters)
        if not seen:
            seen.update(
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            )

    distributed.average_gradients = recording
    try:
        yield seen
    finally:
        distributed.average_gradients = average


def first_step_gradient(method: str) -> dict[str, torch.Tensor]:
    """The averaged gradient of the first optimizer step of a task stage with the extra term,
    and (as ``logged/<key>``) the values logged for that step."""
    model = tiny_classifier()
    rows = torch.randint(1, 40, (6, 8), generator=torch.Generator().manual_seed(1))
    data = datasets.Dataset.from_dict({"input_ids": rows.tolist(), "labels": [0, 1, 2] * 2})
    settings = TaskTrainConfig(lr=1e-3, epochs=1, batch_size=3, grad_accum=2, warmup_ratio=0.0)
    logged: dict[str, float] = {}
    with first_averaged_gradient(model) as seen:
        fine_tune(
            model, data, collate, settings, name="xnli", seed=0, device=torch.device("cpu"),
            bf16=False, max_grad_norm=None, state=StageState(),
            extra_loss=joint_extra(method=method),
            after_step=lambda _, means: logged.update(means) if not logged else None,
            show_progress=False,
        )  # fmt: skip
    # the losses: the solver's figures (sweeps, the worst marginal error) are not means
    kept = {k: v for k, v in logged.items() if k.endswith("loss")}
    return seen | {f"logged/{k}": torch.tensor(v) for k, v in kept.items()}


def worker(rank: int, port: int, out: str, method: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        gradient = first_step_gradient(method)
        try:  # one pair for two workers: the second has none
            joint_extra([[5]])(tiny_classifier(), 0)
            refused = ""
        except ValueError as err:
            refused = str(err)
        torch.save({"gradient": gradient, "refused": refused}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("method", ["wordot", "l2"])
def test_two_workers_give_the_one_worker_gradient_of_the_joint_variant(tmp_path, method):
    alone = first_step_gradient(method)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "two.pt"
    mp.spawn(worker, args=(port, str(out), method), nprocs=2, join=True)
    first, second = (torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1))
    assert first["refused"] == ""
    assert second["refused"] == "a joint-variant batch of 1 pair(s) cannot be shared by 2 workers"
    together = first["gradient"]
    assert together.keys() == alone.keys() and {
        "classifier.weight",
        "logged/joint/align/loss",
    } <= set(alone)
    for name, gradient in alone.items():
        torch.testing.assert_close(together[name], gradient, rtol=1e-5, atol=1e-7, msg=name)
