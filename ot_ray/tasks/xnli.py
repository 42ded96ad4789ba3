"""XNLI: sentence-pair classification trained on the pivot, evaluated zero-shot everywhere."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ot_ray.data.tasks import NLIData
from ot_ray.data.tokenized import tokenize_nli
from ot_ray.metrics import accuracy
from ot_ray.tasks.stage import Collate, predict

MODEL_COLUMNS = ("input_ids", "token_type_ids", "attention_mask")


def nli_collate(tokenizer: PreTrainedTokenizerBase) -> Collate:
    """Pads the rows of a :func:`tokenize_nli` dataset into model inputs (with labels)."""

    def collate(dataset: datasets.Dataset, rows: list[int]) -> dict[str, torch.Tensor]:
        picked = dataset[rows]
        features = [
            {name: picked[name][k] for name in MODEL_COLUMNS if name in picked}
            for k in range(len(rows))
        ]
        batch = tokenizer.pad(features, return_tensors="pt")
        batch["labels"] = torch.tensor(picked["labels"], dtype=torch.long)
        return dict(batch)

    return collate


def nli_dataset(
    data: NLIData, tokenizer: PreTrainedTokenizerBase, max_length: int, cache_dir: Path | None
) -> datasets.Dataset:
    return tokenize_nli(data, tokenizer, max_length, cache_dir=cache_dir)


def evaluate_nli(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> tuple[float, list[int]]:
    """Accuracy in percent and the predicted label ids in input order."""
    outputs = predict(
        model,
        dataset,
        nli_collate(tokenizer),
        lambda out: [out.logits],
        batch_size=batch_size,
        device=device,
        bf16=bf16,
    )
    predicted = [int(np.argmax(logits)) for (logits,) in outputs]
    return accuracy(predicted, dataset["labels"]), predicted
