"""Evaluation metrics: SQuAD v1.1 EM/F1 (the official normalisation), accuracy, AER, retrieval,
and the paper's averages over languages.

Per-example functions return fractions in [0, 1]; the corpus-level ones return percentages, the
unit the XTREME tables (and the paper) report.
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import torch

_PUNCTUATION = frozenset(string.punctuation)  # ASCII only, exactly as the official v1.1 script
_ARTICLES = re.compile(r"\b(a|an|the)\b")

Link = tuple[int, int]


def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, truth: str) -> float:
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_em_f1(prediction: str, ground_truths: Sequence[str]) -> tuple[float, float]:
    """Exact match and token F1 of one prediction, each maximised over the gold answers."""
    if not ground_truths:
        raise ValueError("a question needs at least one gold answer")
    em = max(float(normalize_answer(prediction) == normalize_answer(t)) for t in ground_truths)
    return em, max(_f1(prediction, truth) for truth in ground_truths)


def squad_scores(
    predictions: Mapping[str, str], answers: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Corpus EM and F1 in percent over every question in ``answers``; unanswered ones score 0."""
    if not answers:
        raise ValueError("no questions to score")
    total_em = total_f1 = 0.0
    for question_id, truths in answers.items():
        if question_id in predictions:
            em, f1 = squad_em_f1(predictions[question_id], truths)
            total_em, total_f1 = total_em + em, total_f1 + f1
    return {"em": 100 * total_em / len(answers), "f1": 100 * total_f1 / len(answers)}


def accuracy(predictions: Sequence[object], labels: Sequence[object]) -> float:
    """Share of exact matches, in percent."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return 100 * sum(p == t for p, t in zip(predictions, labels, strict=True)) / len(labels)


def alignment_error_rate(
    predicted: Iterable[set[Link]],
    sure: Iterable[set[Link]],
    possible: Iterable[set[Link]] | None = None,
) -> float:
    """Corpus AER (Och & Ney 2003) in percent: 1 - (|A&S| + |A&P|) / (|A| + |S|).

    ``possible`` defaults to ``sure`` (gold sets with sure links only); P always includes S.
    """
    predicted, sure = list(predicted), list(sure)
    possible = list(possible) if possible is not None else sure
    if not len(predicted) == len(sure) == len(possible):
        raise ValueError("predicted, sure and possible need one set of links per sentence pair")
    hits_sure = hits_possible = size_predicted = size_sure = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        hits_sure += len(a & s)
        hits_possible += len(a & (p | s))
        size_predicted += len(a)
        size_sure += len(s)
    if size_predicted + size_sure == 0:
        raise ValueError("no links at all: AER is undefined")
    return 100 * (1 - (hits_sure + hits_possible) / (size_predicted + size_sure))


def parse_pharaoh(line: str) -> set[Link]:
    """Links of one Pharaoh line (``0-0 1-2 ...``, 0-based source-target word indices)."""
    return parse_gold_pharaoh(line, allow_possible=False)[0]


def parse_gold_pharaoh(line: str, *, allow_possible: bool = True) -> tuple[set[Link], set[Link]]:
    """Sure and possible links of one gold line: ``i-j`` is sure, ``ipj`` possible, as in the
    hand-aligned test sets AER is usually reported on (Och & Ney's S and P)."""
    sure: set[Link] = set()
    possible: set[Link] = set()
    for pair in line.split():
        source, sep, target = pair.partition("-")
        if not sep and allow_possible:
            source, sep, target = pair.partition("p")
        # ASCII digits only: str.isdigit also takes superscripts (int() then fails) and other
        # scripts' digits (read as numbers)
        if (
            not sep
            or not (source + target).isascii()
            or not source.isdigit()
            or not target.isdigit()
        ):
            expected = "i-j (sure) or ipj (possible)" if allow_possible else "i-j"
            raise ValueError(
                f"not a Pharaoh link: {pair!r} (expected {expected} with 0-based integers)"
            )
        (sure if sep == "-" else possible).add((int(source), int(target)))
    return sure, possible - sure


def format_pharaoh(links: Iterable[Link]) -> str:
    """One Pharaoh line, links sorted."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def retrieval_accuracy(
    source: torch.Tensor,
    target: torch.Tensor,
    source_texts: Sequence[str] | None = None,
    target_texts: Sequence[str] | None = None,
) -> tuple[float, float]:
    """Bitext retrieval accuracy@1 in percent, (source->target, target->source).

    Row ``k`` of ``source`` (N, D) translates row ``k`` of ``target``; similarity is cosine.
    With the texts, retrieving a sentence identical to the gold one counts as a hit: held-out
    text repeats itself (Europarl's "(Applause)"), and a repeated sentence's copies are found
    in input order, so every later copy counted as a miss.
    """
    if source.shape != target.shape or source.ndim != 2:
        raise ValueError(
            f"need two (N, D) tensors of one shape, got {source.shape}, {target.shape}"
        )
    similarity = torch.nn.functional.normalize(source.float(), dim=-1) @ (
        torch.nn.functional.normalize(target.float(), dim=-1).T
    )
    found_targets = similarity.argmax(dim=1).tolist()
    found_sources = similarity.argmax(dim=0).tolist()
    forward = _hits(found_targets, target_texts)
    backward = _hits(found_sources, source_texts)
    count = len(source) or math.nan  # no pairs: no score (as the mean of nothing)
    return 100 * forward / count, 100 * backward / count


def _hits(found: list[int], texts: Sequence[str] | None) -> int:
    if texts is None:
        return sum(index == gold for gold, index in enumerate(found))
    return sum(texts[index] == texts[gold] for gold, index in enumerate(found))


def language_averages(scores: dict[str, float], *, pivot: str, seen: list[str]) -> dict[str, float]:
    """Averages named as in the paper: ``avg_seen`` = pivot + ``seen`` (the languages seen in
    alignment, or ``data.seen_languages``),
    ``avg_seen_targets`` = those without the pivot, ``avg_unseen``, ``avg_targets`` = every
    language but the pivot (the search objective's default), ``avg_all``."""
    groups = {
        "avg_seen": [lang for lang in scores if lang == pivot or lang in seen],
        "avg_seen_targets": [lang for lang in scores if lang in seen],
        "avg_unseen": [lang for lang in scores if lang != pivot and lang not in seen],
        "avg_targets": [lang for lang in scores if lang != pivot],
        "avg_all": list(scores),
    }
    return {
        name: statistics.fmean(scores[lang] for lang in langs)
        for name, langs in groups.items()
        if langs
    }
