"""The transfer-gap probe: plain zero-shot fine-tuning of the demo encoder on pivot NLI.

It answers one question about the generated world: does an unaligned encoder learn the task in
the pivot language yet fail to transfer it? If pivot dev accuracy is high and the reordered and
fertility languages are far below it, the world leaves a gap for alignment to close. The full
task stage (with alignment) lives in the training pipeline; this is the bare baseline.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ot_ray.data.tasks import NLI_LABELS as LABELS
from ot_ray.data.tasks import read_xnli


def read_nli_tsv(path: Path) -> tuple[list[str], list[str], list[int]]:
    """Premises, hypotheses and label ids of an XNLI-style file (evaluation: nothing skipped)."""
    data = read_xnli(path, skip_empty=False)
    return data.premises, data.hypotheses, data.labels


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
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    model = AutoModelForSequenceClassification.from_pretrained(
        world / "encoder", num_labels=len(LABELS)
    )
    premises, hypotheses, labels = read_nli_tsv(world / "xnli" / f"train-{pivot}.tsv")
    if max_train is not None:
        premises, hypotheses = premises[:max_train], hypotheses[:max_train]
        labels = labels[:max_train]
    steps = epochs * (len(labels) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    order = random.Random(seed)
    model.train()
    with tqdm(total=steps, desc="pivot NLI fine-tuning", unit="step") as progress:
        for _ in range(epochs):
            index = list(range(len(labels)))
            order.shuffle(index)
            for start in range(0, len(index) - batch_size + 1, batch_size):
                chunk = index[start : start + batch_size]
                batch = tokenizer(
                    [premises[i] for i in chunk],
                    [hypotheses[i] for i in chunk],
                    padding=True,
                    truncation=True,
                    return_tensors="pt",
                )
                loss = model(**batch, labels=torch.tensor([labels[i] for i in chunk])).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
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
    from ot_ray.tasks.qa import best_answers, eval_features, train_features

    def columns(path: Path) -> dict[str, list]:
        examples = read_squad(path)
        return {
            "id": [e.id for e in examples],
            "question": [e.question for e in examples],
            "context": [e.context for e in examples],
            "answers": [list(e.answers) for e in examples],
            "answer_starts": [list(e.answer_starts) for e in examples],
        }

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    model = AutoModelForQuestionAnswering.from_pretrained(world / "encoder")
    features = train_features(
        columns(world / "xquad" / f"train-{pivot}.json"), tokenizer, max_length, doc_stride
    )
    names = ["input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"]
    tensors = {name: torch.tensor(features[name]) for name in names}
    count = len(tensors["input_ids"])
    steps = epochs * (count // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / steps))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with tqdm(total=steps, desc="pivot QA fine-tuning", unit="step") as progress:
        for _ in range(epochs):
            order = torch.randperm(count, generator=generator)
            for start in range(0, count - batch_size + 1, batch_size):
                chunk = order[start : start + batch_size]
                loss = model(**{k: v[chunk] for k, v in tensors.items()}).loss
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                progress.update()
                progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
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
