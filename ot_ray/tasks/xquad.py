"""XQuAD: extractive QA trained on the pivot (SQuAD), evaluated zero-shot on every language."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ot_ray.config import QATrainConfig
from ot_ray.data.tasks import QAExample
from ot_ray.data.tokenized import cached_map, tokenizer_digest
from ot_ray.metrics import squad_scores
from ot_ray.tasks.qa import best_answers, eval_features, squad_columns, train_features
from ot_ray.tasks.stage import predict

INPUTS = ("input_ids", "token_type_ids", "attention_mask")
TARGETS = ("start_positions", "end_positions")


def qa_collate(dataset: datasets.Dataset, rows: list[int]) -> dict[str, torch.Tensor]:
    """Windows are padded to ``max_length`` already; stack them (with targets when present)."""
    picked = dataset[rows]
    names = [n for n in INPUTS + TARGETS if n in picked]
    return {name: torch.tensor(picked[name], dtype=torch.long) for name in names}


#: How each kind of window is cut: training windows carry answer positions, evaluation windows
#: their question id and context offsets.
_FEATURES = {"train": train_features, "eval": eval_features}


def _windows_dataset(
    kind: str,
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    config: QATrainConfig,
    cache_dir: Path | None,
) -> datasets.Dataset:
    """The HF recipe's windows of one kind, cached on disk under the settings that shape them."""
    features = _FEATURES[kind]
    return cached_map(
        squad_columns(examples),
        lambda batch: features(batch, tokenizer, config.max_length, config.doc_stride),
        cache_dir=cache_dir,
        name=f"qa-{kind}",
        settings={
            "tokenizer": tokenizer_digest(tokenizer),
            "max_length": config.max_length,
            "doc_stride": config.doc_stride,
            "kind": kind,
            "v": 4,  # 2: long questions cut in the text (qa._cut_question); 3: train flags;
            # 4: answers labelled without their spaces, none when no token holds them
        },
    )


def qa_train_dataset(
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    config: QATrainConfig,
    cache_dir: Path | None,
) -> datasets.Dataset:
    """Training windows with answer positions (HF recipe), cached on disk."""
    return _windows_dataset("train", examples, tokenizer, config, cache_dir)


def qa_eval_dataset(
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    config: QATrainConfig,
    cache_dir: Path | None,
) -> datasets.Dataset:
    """Evaluation windows with their question id and context offsets, cached on disk."""
    return _windows_dataset("eval", examples, tokenizer, config, cache_dir)


def evaluate_qa(
    model: torch.nn.Module,
    examples: Sequence[QAExample],
    windows: datasets.Dataset,
    config: QATrainConfig,
    *,
    batch_size: int,
    device: torch.device,
    bf16: bool,
) -> tuple[dict[str, float], dict[str, str]]:
    """SQuAD EM/F1 (percent) and the predicted answer per question id."""
    outputs = predict(
        model,
        windows,
        qa_collate,
        lambda out: [out.start_logits, out.end_logits],
        batch_size=batch_size,
        device=device,
        bf16=bf16,
    )
    starts = np.stack([start for start, _ in outputs]) if outputs else np.zeros((0, 0))
    ends = np.stack([end for _, end in outputs]) if outputs else np.zeros((0, 0))
    answers = best_answers(
        {e.id: e.context for e in examples},
        windows["example_id"],
        windows["offset_mapping"],
        starts,
        ends,
        n_best=config.n_best,
        max_answer_length=config.max_answer_length,
    )
    scores = squad_scores(answers, {e.id: list(e.answers) for e in examples})
    return scores, answers
