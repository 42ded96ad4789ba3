"""Converters from the HF Hub datasets' schemas to ot-ray's in-memory types.

* ``Helsinki-NLP/europarl`` (config ``de-en`` etc.): one column ``translation``, a mapping from
  language code to sentence.
* ``facebook/xnli`` (config per language) and ``nyu-mll/multi_nli``: ``premise``, ``hypothesis``,
  ``label`` as integers 0 entailment, 1 neutral, 2 contradiction; MultiNLI marks unlabelled
  rows with -1, which training skips.
* ``rajpurkar/squad`` and ``google/xquad`` (config ``xquad.de`` etc., split ``validation``):
  ``id``, ``context``, ``question``, ``answers`` = {``text``: [...], ``answer_start``: [...]}.

Bad rows are reported with the dataset and row number, like local files are with their line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.tasks import NLI_LABELS, UNLABELLED, NLIData, QAData, QAExample
from ot_ray.errors import DataError


def _require(dataset: Any, columns: Iterable[str], described: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; found {dataset.column_names}", path=described
        )


def parallel_from_hub(dataset: Any, lang: str, pivot: str, *, described: str) -> ParallelCorpus:
    """Europarl-style ``translation`` rows; pairs with an empty side are skipped and counted."""
    _require(dataset, ["translation"], described)
    corpus = ParallelCorpus(origin=described, rows=[])
    for row_number, row in enumerate(dataset["translation"], start=1):
        if not isinstance(row, Mapping) or lang not in row or pivot not in row:
            raise DataError(
                f"row {row_number}: translation has no {lang!r} and {pivot!r} sides",
                path=described,
            )
        sides = [row[lang], row[pivot]]
        if not all(side is None or isinstance(side, str) for side in sides):
            raise DataError(
                f"row {row_number}: sentences must be strings, found {lang!r}: {sides[0]!r}, "
                f"{pivot!r}: {sides[1]!r}",
                path=described,
            )
        source, target = (sides[0] or "").strip(), (sides[1] or "").strip()
        if not source or not target:
            corpus.skipped_empty += 1
            continue
        corpus.sources.append(source)
        corpus.targets.append(target)
        corpus.rows.append(row_number)
    return corpus


def nli_from_hub(dataset: Any, *, described: str, skip_empty: bool) -> NLIData:
    """XNLI/MultiNLI rows; unlabelled (-1) rows are dropped in training, an error otherwise."""
    _require(dataset, ["premise", "hypothesis", "label"], described)
    data = NLIData()
    columns = zip(dataset["premise"], dataset["hypothesis"], dataset["label"], strict=True)
    for row_number, (premise, hypothesis, label) in enumerate(columns, start=1):
        if label == UNLABELLED and skip_empty:
            data.skipped_empty += 1
            continue
        valid = isinstance(label, int) and not isinstance(label, bool)
        if not valid or not 0 <= label < len(NLI_LABELS):
            raise DataError(
                f"row {row_number}: label {label!r} is not one of 0..{len(NLI_LABELS) - 1} "
                f"({', '.join(NLI_LABELS)})",
                path=described,
            )
        if not all(side is None or isinstance(side, str) for side in (premise, hypothesis)):
            raise DataError(
                f"row {row_number}: premise and hypothesis must be strings, found "
                f"{premise!r} and {hypothesis!r}",
                path=described,
            )
        if skip_empty and not ((premise or "").strip() and (hypothesis or "").strip()):
            data.skipped_empty += 1
            continue
        data.premises.append(premise or "")
        data.hypotheses.append(hypothesis or "")
        data.labels.append(label)
    return data


def squad_from_hub(dataset: Any, *, described: str, skip_empty: bool = False) -> QAData:
    """SQuAD/XQuAD rows; every answer_start must point at its answer text. ``skip_empty``
    drops (and counts) empty questions, for training; evaluation refuses them."""
    _require(dataset, ["id", "context", "question", "answers"], described)
    examples = QAData()
    seen: dict[str, int] = {}  # question id -> row number of its first occurrence
    for row_number, row in enumerate(dataset, start=1):
        qid = row["id"]
        if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
            # str(None) would make the id "None", and predictions are keyed by id
            raise DataError(
                f"row {row_number}: needs a non-empty string (or integer) id, found {qid!r}",
                path=described,
            )
        if not isinstance(row["context"], str) or not isinstance(row["question"], str):
            raise DataError(
                f"row {row_number} (id {row['id']}): context and question must be strings",
                path=described,
            )
        if not row["question"].strip():
            if skip_empty:
                examples.skipped_empty += 1
                continue
            raise DataError(f"row {row_number} (id {row['id']}): empty question", path=described)
        if str(row["id"]) in seen:
            raise DataError(
                f"row {row_number}: id {row['id']} repeats that of row {seen[str(row['id'])]}",
                path=described,
            )
        seen[str(row["id"])] = row_number
        answers = row["answers"] or {}
        texts, starts = _answer_lists(answers)
        if not texts or len(texts) != len(starts):
            raise DataError(
                f"row {row_number} (id {row['id']}): needs answers as {{text: [...], "
                f"answer_start: [...]}} with as many texts as starts, found {answers!r:.120}",
                path=described,
            )
        for text, start in zip(texts, starts, strict=True):
            if (
                not isinstance(text, str)
                or not text.strip()  # a blank span trains on no words (as the file reader says)
                or isinstance(start, bool)
                or not isinstance(start, int)
                or start < 0
            ):
                raise DataError(
                    f"row {row_number} (id {row['id']}): answer {text!r} at {start!r} needs a "
                    "text that is not blank and a non-negative answer_start",
                    path=described,
                )
            if row["context"][start : start + len(text)] != text:
                raise DataError(
                    f"row {row_number} (id {row['id']}): answer_start {start} does not point at "
                    f"the answer {text!r}",
                    path=described,
                )
        examples.examples.append(
            QAExample(
                id=str(row["id"]),
                context=row["context"],
                question=row["question"],
                answers=tuple(texts),
                answer_starts=tuple(int(s) for s in starts),
            )
        )
    return examples


def _answer_lists(answers: Any) -> tuple[list, list]:
    """The Hub schema's ``{text: [...], answer_start: [...]}``; anything else gives no answers
    (and so the error that names the row), where a list of SQuAD-file style answer objects or a
    bare string would otherwise fail with a bare ``AttributeError`` or be read letter by letter."""
    if not isinstance(answers, Mapping):
        return [], []
    texts, starts = answers.get("text", []), answers.get("answer_start", [])
    if not isinstance(texts, list | tuple) or not isinstance(starts, list | tuple):
        return [], []
    return list(texts), list(starts)
