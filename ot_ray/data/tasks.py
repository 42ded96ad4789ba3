"""Task data from local files in the real formats: XNLI (TSV with a header, or JSONL) and
XQuAD/SQuAD v1.1 JSON. Errors name the file and the line (or the question id)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ot_ray.data.parallel import read_lines
from ot_ray.errors import DataError

#: XNLI's label names in the order of HF ``facebook/xnli``'s integer encoding.
NLI_LABELS = ("entailment", "neutral", "contradiction")
NLI_COLUMNS = ("premise", "hypothesis", "label")


@dataclass
class NLIData:
    premises: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped_empty: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> NLIData:
        """The first ``n`` examples (all for ``None``): quick runs."""
        if n is None:
            return self
        return NLIData(self.premises[:n], self.hypotheses[:n], self.labels[:n], self.skipped_empty)


@dataclass(frozen=True)
class QAExample:
    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


def read_xnli(path: Path, *, skip_empty: bool = True) -> NLIData:
    """Premise/hypothesis/label rows; labels as names or as HF's integers 0-2.

    ``skip_empty`` drops (and counts) rows with an empty side, for training; evaluation keeps them
    so that predictions stay one per input line, as XTREME's files expect.
    """
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _tsv_rows(path)
    data = NLIData()
    for number, row in rows:
        label = _label(row["label"], path, number)
        if skip_empty and not (row["premise"].strip() and row["hypothesis"].strip()):
            data.skipped_empty += 1
            continue
        data.premises.append(row["premise"])
        data.hypotheses.append(row["hypothesis"])
        data.labels.append(label)
    return data


def _tsv_rows(path: Path):
    lines = read_lines(path)
    header_line = next(lines, None)
    if header_line is None:
        raise DataError("empty file; expected a header premise<TAB>hypothesis<TAB>label", path=path)
    header = header_line[1].split("\t")
    missing = [c for c in NLI_COLUMNS if c not in header]
    if missing:
        raise DataError(f"header {header} lacks column(s) {missing}", path=path, line=1)
    for number, line in lines:
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(
                f"{len(cells)} fields, the header has {len(header)}", path=path, line=number
            )
        yield number, dict(zip(header, cells, strict=True))


def _jsonl_rows(path: Path):
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"invalid JSON: {err.msg}", path=path, line=number) from None
        missing = [c for c in NLI_COLUMNS if c not in row] if isinstance(row, dict) else NLI_COLUMNS
        if missing:
            raise DataError(f"missing field(s) {list(missing)}", path=path, line=number)
        yield number, {c: row[c] if c == "label" else str(row[c]) for c in NLI_COLUMNS}


def _label(value: object, path: Path, line: int) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if 0 <= index < len(NLI_LABELS):
            return index
    elif isinstance(value, str) and value.strip() in NLI_LABELS:
        return NLI_LABELS.index(value.strip())
    raise DataError(
        f"unknown label {value!r} (expected one of {', '.join(NLI_LABELS)} or 0-2)",
        path=path,
        line=line,
    )


def read_squad(path: Path) -> list[QAExample]:
    """Questions of a SQuAD v1.1 file, each answer checked against its ``answer_start``."""
    text = "\n".join(line for _, line in read_lines(path))
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError('not SQuAD JSON: expected {"data": [...]} at the top', path=path)
    examples = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(f"data[{a}].paragraphs[{p}] has no context", path=path)
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"question {qa.get('id')!r} (data[{a}].paragraphs[{p}].qas[{q}])"
                answers = qa.get("answers") or []
                texts, starts = [], []
                for answer in answers:
                    start, answer_text = answer.get("answer_start"), answer.get("text")
                    if not isinstance(start, int) or not isinstance(answer_text, str):
                        raise DataError(f"{where}: answer lacks text or answer_start", path=path)
                    if context[start : start + len(answer_text)] != answer_text:
                        found = context[start : start + len(answer_text)]
                        raise DataError(
                            f"{where}: answer_start {start} points at {found!r}, "
                            f"not at the answer {answer_text!r}",
                            path=path,
                        )
                    texts.append(answer_text)
                    starts.append(start)
                if "id" not in qa or "question" not in qa:
                    raise DataError(f"{where}: needs an id and a question", path=path)
                examples.append(
                    QAExample(str(qa["id"]), context, qa["question"], tuple(texts), tuple(starts))
                )
    return examples
