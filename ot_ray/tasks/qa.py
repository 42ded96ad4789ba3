"""Extractive QA the standard HF way: windows over long contexts, offsets, n-best span search.

The two ``*_features`` functions take and return columns (dicts of lists), so they run inside
``datasets.Dataset.map(batched=True)`` (which caches them on disk) or on plain dicts in tests.
Follows the HF ``examples/pytorch/question-answering`` recipe: question first, context second,
``truncation="only_second"`` with ``doc_stride`` overlap, answers outside a window labelled with
the [CLS] position. Questions that would leave no room for a context window are cut to fit and
flagged in ``question_truncated`` (callers count them): on every window in evaluation, which
keeps the question ids; on a question's first window in training, which does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from ot_ray.data.tasks import QAExample


def squad_columns(examples: Sequence[QAExample]) -> dict[str, list]:
    """Questions as the columns the ``*_features`` functions (and ``Dataset.from_dict``) take."""
    return {
        "id": [e.id for e in examples],
        "question": [e.question for e in examples],
        "context": [e.context for e in examples],
        "answers": [list(e.answers) for e in examples],
        "answer_starts": [list(e.answer_starts) for e in examples],
    }


def _windows(columns: Mapping[str, Sequence[Any]], tokenizer, max_length: int, doc_stride: int):
    """Tokenised windows; questions too long to leave room for a context window are cut."""
    if tokenizer.padding_side != "right":
        raise ValueError("QA preprocessing expects a tokenizer that pads on the right")
    budget = max_length - doc_stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room with doc_stride {doc_stride}")
    questions = [q.lstrip() for q in columns["question"]]
    question_ids = tokenizer(questions, add_special_tokens=False)["input_ids"]
    cut = [len(ids) > budget for ids in question_ids]
    questions = [
        _cut_question(question, tokenizer, budget) if too_long else question
        for question, too_long in zip(questions, cut, strict=True)
    ]
    encoded = tokenizer(
        questions,
        list(columns["context"]),
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    encoded["question_truncated"] = [cut[i] for i in encoded["overflow_to_sample_mapping"]]
    return encoded


def _cut_question(question: str, tokenizer, budget: int) -> str:
    """The longest prefix of ``question``, cut at a token's end, that tokenises to at most
    ``budget`` tokens. Cut in the text, not by decoding token ids: a decoded ``<unk>`` or a
    SentencePiece boundary can tokenise longer than the ids it came from, and then the windowing
    fails (a tokenizer panic, not an error) on a question it was told fits."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    ends = [end for _, end in encoded["offset_mapping"]]
    for keep in range(min(budget, len(ends)), 0, -1):
        prefix = question[: ends[keep - 1]]
        if len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) <= budget:
            return prefix
    return ""


def train_features(
    columns: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Token windows with ``start_positions``/``end_positions`` of the first gold answer."""
    encoded = _windows(columns, tokenizer, max_length, doc_stride)
    starts, ends = [], []
    for feature, offsets in enumerate(encoded["offset_mapping"]):
        example = encoded["overflow_to_sample_mapping"][feature]
        # the answer's text without the spaces around it: " ring" would otherwise be labelled
        # from the word before it (its start lies in that word's trailing space)
        answer = columns["answers"][example][0]
        answer_start = columns["answer_starts"][example][0] + len(answer) - len(answer.lstrip())
        answer_end = answer_start + len(answer.strip())
        sequence = encoded.sequence_ids(feature)
        start, end = _answer_tokens(offsets, sequence, answer_start, answer_end)
        starts.append(start)  # 0 when not inside this window: [CLS]
        ends.append(end)
    encoded["start_positions"] = starts
    encoded["end_positions"] = ends
    # training windows keep no question id: the flag marks a cut question's first window only,
    # so that their sum counts questions, as evaluation's count does
    mapping = encoded["overflow_to_sample_mapping"]
    encoded["question_truncated"] = [
        cut and (k == 0 or mapping[k - 1] != mapping[k])
        for k, cut in enumerate(encoded["question_truncated"])
    ]
    encoded.pop("offset_mapping")
    encoded.pop("overflow_to_sample_mapping")
    return dict(encoded)


def _answer_tokens(
    offsets: Sequence[tuple[int, int]], sequence: Sequence[int | None], start: int, end: int
) -> tuple[int, int]:
    """The first and last context tokens of the characters [start, end), or (0, 0) ([CLS])
    when the window does not hold them all, or holds no token of them (a context window of
    nothing the tokenizer keeps, an answer of a zero-width space)."""
    context = [i for i, s in enumerate(sequence) if s == 1]
    if not context or offsets[context[0]][0] > start or offsets[context[-1]][1] < end:
        return 0, 0
    first = max(i for i in context if offsets[i][0] <= start)
    last = min(i for i in context if offsets[i][1] >= end)
    if offsets[first][1] <= start or offsets[last][0] >= end or last < first:
        return 0, 0
    return first, last


def eval_features(
    columns: Mapping[str, Sequence[Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    doc_stride: int,
) -> dict[str, list]:
    """Token windows with ``example_id`` and offsets kept only for context tokens."""
    encoded = _windows(columns, tokenizer, max_length, doc_stride)
    ids, offsets_out = [], []
    for feature, offsets in enumerate(encoded["offset_mapping"]):
        sequence = encoded.sequence_ids(feature)
        ids.append(columns["id"][encoded["overflow_to_sample_mapping"][feature]])
        offsets_out.append(
            [tuple(o) if s == 1 else None for o, s in zip(offsets, sequence, strict=True)]
        )
    encoded["example_id"] = ids
    encoded["offset_mapping"] = offsets_out
    encoded.pop("overflow_to_sample_mapping")
    return dict(encoded)


def best_answers(
    contexts: Mapping[str, str],
    example_ids: Sequence[str],
    offsets: Sequence[Sequence[tuple[int, int] | None]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """The highest-scoring valid span per question over all its windows: {id: answer text}.

    A span is valid when both ends lie in the context, end >= start and it is at most
    ``max_answer_length`` tokens long; its score is start logit + end logit. A question with no
    valid span gets the empty answer.
    """
    best: dict[str, tuple[float, str]] = {qid: (-np.inf, "") for qid in contexts}
    for feature, qid in enumerate(example_ids):
        feature_offsets = offsets[feature]
        start_top = np.argsort(start_logits[feature])[::-1][:n_best]
        end_top = np.argsort(end_logits[feature])[::-1][:n_best]
        for start in start_top:
            for end in end_top:
                if feature_offsets[start] is None or feature_offsets[end] is None:
                    continue
                if end < start or end - start + 1 > max_answer_length:
                    continue
                score = float(start_logits[feature][start] + end_logits[feature][end])
                if score > best[qid][0]:
                    # stripped: SentencePiece and byte-level offsets take in a word's space
                    text = contexts[qid][feature_offsets[start][0] : feature_offsets[end][1]]
                    text = text.strip()
                    best[qid] = (score, text)
    return {qid: text for qid, (_, text) in best.items()}
