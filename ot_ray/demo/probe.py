"""The transfer-gap probe: plain zero-shot fine-tuning of the demo encoder on pivot NLI.

It answers one question about the generated world: does an unaligned encoder learn the task in
the pivot language yet fail to transfer it? If pivot dev accuracy is high and the reordered and
fertility languages are far below it, the world leaves a gap for alignment to close. The full
task stage (with alignment) lives in the training pipeline; this is the bare baseline.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ot_ray.data.tasks import NLI_LABELS as LABELS
from ot_ray.data.tasks import read_xnli
from ot_ray.demo.seeding import keeps_global_rngs


def _fine_tune(
    model: torch.nn.Module,
    loss_of: Callable[[list[int]], torch.Tensor],
    permutations: Iterable[list[int]],
    batch_size: int,
    lr: float,
    steps: int,
    description: str,
) -> None:
    """AdamW with linear decay over full batches of each epoch's permutation."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    model.train()
    with tqdm(total=steps, desc=description, unit="step") as progress:
        for index in permutations:
            for start in range(0, len(index) - batch_size + 1, batch_size):
                loss = loss_of(index[start : start + batch_size])
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def read_nli_tsv(path: Path) -> tuple[list[str], list[str], list[int]]:
    """Premises, hypotheses and label ids of an XNLI-style file (evaluation: nothing skipped)."""
    data = read_xnli(path, skip_empty=False)
    return data.premises, data.hypotheses, data.labels


@keeps_global_rngs
def nli_gap(
    world: Path,
    languages: list[str],
    *,
    pivot: str = "en",
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 32,
    seed: int = 0,
    max_train: int | None = None,
) -> dict[str, float]:
    """Fine-tune on ``xnli/train-<pivot>.tsv``; dev accuracy per language (the pivot included)."""
    torch.random.default_generator.manual_seed(seed)  # CPU only: see seeding.py
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    model = AutoModelForSequenceClassification.from_pretrained(
        world / "encoder", num_labels=len(LABELS)
    )
    premises, hypotheses, labels = read_nli_tsv(world / "xnli" / f"train-{pivot}.tsv")
    if max_train is not None:
        premises, hypotheses = premises[:max_train], hypotheses[:max_train]
        labels = labels[:max_train]
    rng = random.Random(seed)

    def permutations():
        for _ in range(epochs):
            index = list(range(len(labels)))
            rng.shuffle(index)
            yield index

    def loss_of(chunk: list[int]) -> torch.Tensor:
        batch = tokenizer(
            [premises[i] for i in chunk],
            [hypotheses[i] for i in chunk],
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        return model(**batch, labels=torch.tensor([labels[i] for i in chunk])).loss

    steps = epochs * (len(labels) // batch_size)
    _fine_tune(model, loss_of, permutations(), batch_size, lr, steps, "pivot NLI fine-tuning")
    return {
        lang: accuracy(model, tokenizer, world / "xnli" / f"dev-{lang}.tsv") for lang in languages
    }


@torch.no_grad()
def accuracy(model, tokenizer, path: Path, batch_size: int = 128) -> float:
    model.eval()
    premises, hypotheses, labels = read_nli_tsv(path)
    correct = 0
    for start in range(0, len(labels), batch_size):
        batch = tokenizer(
            premises[start : start + batch_size],
            hypotheses[start : start + batch_size],
            padding=True,
            truncation=True,
            return_tensors="pt",
        )
        predicted = model(**batch).logits.argmax(-1)
        correct += (predicted == torch.tensor(labels[start : start + batch_size])).sum().item()
    return correct / len(labels)


@keeps_global_rngs
def qa_gap(
    world: Path,
    languages: list[str],
    *,
    pivot: str = "en",
    epochs: int = 2,
    lr: float = 3e-4,
    batch_size: int = 32,
    max_length: int = 128,
    doc_stride: int = 64,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Fine-tune extractive QA on ``xquad/train-<pivot>.json``; dev EM/F1 per language."""
    import numpy as np
    from transformers import AutoModelForQuestionAnswering

    from ot_ray.data.tasks import read_squad
    from ot_ray.metrics import squad_scores
    from ot_ray.tasks.qa import best_answers, eval_features, squad_columns, train_features

    def columns(path: Path) -> dict[str, list]:
        return squad_columns(read_squad(path))

    torch.random.default_generator.manual_seed(seed)  # CPU only: see seeding.py
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    model = AutoModelForQuestionAnswering.from_pretrained(world / "encoder")
    features = train_features(
        columns(world / "xquad" / f"train-{pivot}.json"), tokenizer, max_length, doc_stride
    )
    names = ["input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"]
    tensors = {name: torch.tensor(features[name]) for name in names}
    count = len(tensors["input_ids"])
    generator = torch.Generator().manual_seed(seed)
    permutations = (torch.randperm(count, generator=generator).tolist() for _ in range(epochs))

    def loss_of(chunk: list[int]) -> torch.Tensor:
        return model(**{k: v[chunk] for k, v in tensors.items()}).loss

    steps = epochs * (count // batch_size)
    _fine_tune(model, loss_of, permutations, batch_size, lr, steps, "pivot QA fine-tuning")
    model.eval()
    scores = {}
    for lang in languages:
        data = columns(world / "xquad" / f"dev-{lang}.json")
        encoded = eval_features(data, tokenizer, max_length, doc_stride)
        inputs = {k: torch.tensor(encoded[k]) for k in names[:3]}
        with torch.no_grad():
            out = model(**inputs)
        predictions = best_answers(
            dict(zip(data["id"], data["context"], strict=True)),
            encoded["example_id"],
            encoded["offset_mapping"],
            np.asarray(out.start_logits),
            np.asarray(out.end_logits),
        )
        scores[lang] = squad_scores(
            predictions, dict(zip(data["id"], data["answers"], strict=True))
        )
    return scores
