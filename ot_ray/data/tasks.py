"""Task data from local files in the real formats: XNLI (TSV with a header, XTREME's headerless
TSV, JSON Lines, or the files of the MultiNLI 1.0, XNLI 1.0 and XNLI-MT 1.0 releases) and
XQuAD/SQuAD v1.1 JSON. Errors name the file and the line (or the question id)."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ot_ray.data.parallel import read_lines
from ot_ray.errors import DataError

#: XNLI's label names in the order of HF ``facebook/xnli``'s integer encoding.
NLI_LABELS = ("entailment", "neutral", "contradiction")
NLI_COLUMNS = ("premise", "hypothesis", "label")
#: The label of MultiNLI's and XNLI's rows without a gold label (dropped from training).
UNLABELLED = -1
#: How the releases' own files name the columns: MultiNLI 1.0 and XNLI 1.0 (``sentence1``,
#: ``sentence2``, ``gold_label``), XNLI-MT 1.0 (``premise``, ``hypo``, ``label``). A cluster
#: without Hub access reads these files as they were downloaded, without a conversion step.
RELEASE_COLUMNS = {
    "sentence1": "premise",
    "sentence2": "hypothesis",
    "hypo": "hypothesis",
    "gold_label": "label",
}
#: The columns that tell a release's own TSV file (MultiNLI 1.0's and XNLI 1.0's ids, XNLI-MT's
#: ``hypo``): such files are not csv-quoted. GLUE-style names alone (``sentence1``) are not
#: enough, as pandas and ``datasets`` write files with those names, quoted.
RELEASE_MARKS = frozenset({"promptID", "pairID", "hypo"})
#: XNLI 1.0's files hold all 15 languages, told apart by this column.
LANGUAGE_COLUMN = "language"
#: How rows without a gold label are marked: -1 by the Hub, ``-`` by MultiNLI's release (its
#: annotators did not agree).
UNLABELLED_MARKS = frozenset({str(UNLABELLED), "-"})
#: Label names of the releases: XNLI-MT's ``contradictory``.
LABEL_ALIASES = {"contradictory": "contradiction"}
#: Suffixes read as JSON Lines: ``datasets``' ``to_json`` writes them under ``.json``.
JSON_LINES = (".jsonl", ".json")
#: Half of a UTF-16 pair: JSON's ``\ud800`` escapes decode to one, which is not text.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class NLIData:
    premises: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    skipped_empty: int = 0
    origin: str = ""  # the file or Hub split read, as errors and warnings name it

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> NLIData:
        """The first ``n`` examples (all for ``None``): quick runs."""
        if n is None:
            return self
        return NLIData(
            self.premises[:n], self.hypotheses[:n], self.labels[:n], self.skipped_empty, self.origin
        )


@dataclass(frozen=True)
class QAExample:
    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


@dataclass
class QAData(Sequence[QAExample]):
    """Questions in file order; a sequence, so it indexes, slices and iterates like a list."""

    examples: list[QAExample] = field(default_factory=list)
    skipped_empty: int = 0  # training questions with nothing but whitespace, dropped
    origin: str = ""  # the file or Hub split read, as errors and warnings name it

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index):  # an int gives one question, a slice a list of them
        return self.examples[index]

    def head(self, n: int | None) -> QAData:
        """The first ``n`` questions (all for ``None``), still named by where they came from."""
        if n is None:
            return self
        return QAData(self.examples[:n], self.skipped_empty, self.origin)


def read_xnli(path: Path, *, skip_empty: bool = True, language: str | None = None) -> NLIData:
    """Premise/hypothesis/label rows; labels as names or as HF's integers 0-2.

    ``skip_empty`` drops (and counts) rows with an empty side, for training; evaluation keeps them
    so that predictions stay one per input line, as XTREME's files expect. A file with a
    ``language`` column (XNLI 1.0's ``xnli.test.tsv``) gives only the rows of ``language``.
    """
    data = NLIData()
    for number, row in _rows_of(path, language):
        if skip_empty and _unlabelled(row["label"]):
            data.skipped_empty += 1  # MultiNLI's unlabelled rows, as the Hub reader drops them
            continue
        label = _label(row["label"], path, number)
        if skip_empty and not (row["premise"].strip() and row["hypothesis"].strip()):
            data.skipped_empty += 1
            continue
        data.premises.append(row["premise"])
        data.hypotheses.append(row["hypothesis"])
        data.labels.append(label)
    return data


Row = tuple[int, dict[str, object]]  # line number, the row's fields by our names


def _rows_of(path: Path, language: str | None) -> Iterable[Row]:
    """The file's rows, or only ``language``'s if it has a language column."""
    key = _file_key(path)
    grouped = _grouped_rows(*key) if key else None
    if grouped is None:  # no language column (or no file: the reader names the problem)
        return _no_language(_parsed_rows(path), path)
    held = ", ".join(sorted(grouped))
    if language is None:
        if len(grouped) > 1:
            raise DataError(
                f"its {LANGUAGE_COLUMN} column holds several languages ({held}): the reader "
                "needs the one to read",
                path=path,
            )
        return next(iter(grouped.values()))
    if language not in grouped:
        raise DataError(
            f"no row of language {language!r} (its {LANGUAGE_COLUMN} column holds {held})",
            path=path,
        )
    return grouped[language]


def _parsed_rows(path: Path) -> Iterator[Row]:
    return _jsonl_rows(path) if path.suffix.lower() in JSON_LINES else _tsv_rows(path)


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path), stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=2)
def _grouped_rows(path: str, mtime_ns: int, size: int) -> dict[str, list[Row]] | None:
    """A file's rows by the language their column names, None if it has no language column.
    Kept for the last two files (by path, modification time and size): each language of XNLI
    1.0's one file would otherwise parse all 15 languages again (30 times for dev and test).
    Only the columns read are kept."""
    rows = _parsed_rows(Path(path))
    first = next(rows, None)
    if first is None or LANGUAGE_COLUMN not in first[1]:
        return None
    grouped: dict[str, list[Row]] = {}
    for number, row in itertools.chain([first], rows):
        value = row.get(LANGUAGE_COLUMN)
        code = value.strip() if isinstance(value, str) else ""
        if not code:  # read for no language, or, kept, for every one
            raise DataError(
                f"no {LANGUAGE_COLUMN} (found {_shown(value)}); the file's other rows name theirs",
                path=path,
                line=number,
            )
        grouped.setdefault(code, []).append((number, {c: row[c] for c in NLI_COLUMNS}))
    return grouped


def _no_language(rows: Iterable[Row], path: Path) -> Iterator[Row]:
    """The rows of a file whose first row names no language; a later JSON row that names one
    is refused (the file would be read whole for every language)."""
    for number, row in rows:
        if LANGUAGE_COLUMN in row:
            raise DataError(
                f"a {LANGUAGE_COLUMN} here, but the first row names none: give every row one, "
                "or none",
                path=path,
                line=number,
            )
        yield number, row


def _unlabelled(value: object) -> bool:
    """MultiNLI's rows whose annotators did not agree."""
    return str(value).strip() in UNLABELLED_MARKS


def _tsv_rows(path: Path):
    # an empty line holds no row (an editor's extra newline); a line of tabs is a row
    lines = ((number, line) for number, line in read_lines(path) if line)
    header_line = next(lines, None)
    if header_line is None:
        raise DataError("empty file; expected a header premise<TAB>hypothesis<TAB>label", path=path)
    first, header = header_line[0], header_line[1].split("\t")
    if not set(header) & {*NLI_COLUMNS, *RELEASE_COLUMNS}:  # no header: XTREME's files, or a slip
        yield from _headerless_rows(itertools.chain([header_line], lines), path, first)
        return
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise DataError(f"header names column(s) {repeated} more than once", path=path, line=first)
    # The releases' files are not csv-quoted: a premise may start with a quote it never closes
    # (the releases' own readers, and the Hub's loaders of them, split at tabs: QUOTE_NONE).
    release = bool(set(header) & RELEASE_MARKS)
    names = _our_names(header, path, first)
    # MultiNLI 1.0's training rows stop after label1 (the header goes on to label5), as its
    # readers allow: the cells a row leaves out are empty, unless a column we read is among them
    read = [names.index(c) for c in (*NLI_COLUMNS, LANGUAGE_COLUMN) if c in names]
    for number, line in lines:
        cells = line.split("\t") if release else _cells(line, path, number)
        if release and max(read) < len(cells) < len(header):
            cells += [""] * (len(header) - len(cells))
        if len(cells) != len(header):
            raise DataError(
                f"{len(cells)} fields, the header has {len(header)}", path=path, line=number
            )
        yield number, dict(zip(names, cells, strict=True))


def _our_names(columns: list[str], path: Path, line: int, *, in_json: bool = False) -> list[str]:
    """A header's (or a JSON object's) names with the releases' names replaced by ours, where
    ours is not there already (then the release's column is one more column, unread); our name
    given twice (as ``sentence2`` and ``hypo``) or missing is refused."""
    present = set(columns)
    names = [
        column if RELEASE_COLUMNS.get(column) in present else RELEASE_COLUMNS.get(column, column)
        for column in columns
    ]
    where = "the object" if in_json else "header"
    for ours in NLI_COLUMNS:
        given = [column for column, name in zip(columns, names, strict=True) if name == ours]
        if len(given) > 1:
            raise DataError(
                f"{where} names the {ours} twice ({', '.join(given)})", path=path, line=line
            )
    missing = [c for c in NLI_COLUMNS if c not in names]
    if missing:
        aliases = {ours: [r for r, o in RELEASE_COLUMNS.items() if o == ours] for ours in missing}
        wanted = [" or ".join([ours, *aliases[ours]]) for ours in missing]
        if in_json:
            raise DataError(f"missing field(s) {wanted}", path=path, line=line)
        raise DataError(f"header {columns} lacks column(s) {wanted}", path=path, line=line)
    return names


def _cells(line: str, path: Path, number: int) -> list[str]:
    """The fields of one line with Python's ``csv`` quoting, as XTREME, pandas and ``datasets``
    write TSV (a field holding ``"`` is quoted whole, its quotes doubled): split at tabs, such a
    premise would keep its outer quotes and doubled quotes. Quoting that ``csv.writer`` would
    not write is refused: the lenient reader drops the quotes of ``"Hello" she said``."""
    try:
        return next(csv.reader([line], delimiter="\t", strict=True), [])
    except csv.Error as err:
        problem = str(err).replace("\t", "<TAB>")
        raise DataError(
            f"bad quoting ({problem}): a field that holds a quote is quoted whole, its quotes "
            'doubled (""), as Python\'s csv, pandas and datasets write TSV files',
            path=path,
            line=number,
        ) from None


def _headerless_rows(lines, path: Path, first: int):
    """Rows as XTREME's ``utils_preprocess.py`` writes XNLI (``train-en.tsv``,
    ``dev-<lang>.tsv``): premise, hypothesis, label, no header, with Python's ``csv`` quoting.
    A first line that is neither a header nor such a row is reported as a missing header.
    ``first`` is the number of the first line that is not empty."""
    for number, line in lines:
        cells = _cells(line, path, number)
        if len(cells) == 3 and (number > first or _is_label(cells[2])):
            yield number, dict(zip(NLI_COLUMNS, cells, strict=True))
        elif number == first and len(cells) == 2:
            raise DataError(
                "two fields and no header: XTREME's test files hold no labels (its benchmark "
                "scores them); take the test set with labels from XNLI-1.0 or facebook/xnli",
                path=path,
                line=number,
            )
        elif number == first:
            shown = ", ".join(repr(cell[:30]) for cell in cells[:6])
            raise DataError(
                "expected a header premise<TAB>hypothesis<TAB>label, or rows of those three "
                f"fields without one (XTREME's format); the first line holds {len(cells)} "
                f"field(s): {shown}",
                path=path,
                line=number,
            )
        else:
            raise DataError(
                f"{len(cells)} fields; a file without a header holds premise<TAB>hypothesis<TAB>"
                "label on every line",
                path=path,
                line=number,
            )


def _is_label(value: str) -> bool:
    """A label as a row holds it (MultiNLI's unlabelled -1 included)."""
    value = value.strip()
    return value in NLI_LABELS or value in {str(i) for i in (*range(len(NLI_LABELS)), UNLABELLED)}


def _jsonl_rows(path: Path):
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_checked_object)
        except _BadJSON as err:
            raise DataError(str(err), path=path, line=number) from None
        except (ValueError, RecursionError) as err:  # JSONDecodeError, too deep, too many digits
            message = err.msg if isinstance(err, json.JSONDecodeError) else _one_line(err)
            if number == 1 and line.lstrip().startswith("["):
                message += "; ot-ray reads JSON Lines, one object per line, not a JSON array"
            raise DataError(f"invalid JSON: {message}", path=path, line=number) from None
        if not isinstance(row, dict):
            found = type(row).__name__
            raise DataError(
                f"expected a JSON object per line, found a {found}", path=path, line=number
            )
        names = _our_names(list(row), path, number, in_json=True)
        row = dict(zip(names, row.values(), strict=True))
        for column in ("premise", "hypothesis"):
            if not isinstance(row[column], str):
                raise DataError(
                    f"{column} must be a string, found {_shown(row[column])}",
                    path=path,
                    line=number,
                )
        kept = (*NLI_COLUMNS, LANGUAGE_COLUMN)
        yield number, {c: row[c] for c in kept if c in row}


def _label(value: object, path: Path, line: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DataError(
            f"label must be a name or an integer, found {_shown(value)}", path=path, line=line
        )
    if _unlabelled(value):
        raise DataError(
            f"label {value!r} marks a row without a gold label (MultiNLI's annotators did not "
            "agree): it cannot be scored; drop such rows from an evaluation set",
            path=path,
            line=line,
        )
    if isinstance(value, int) or (value.strip().isascii() and value.strip().isdecimal()):
        index = int(value)
        if 0 <= index < len(NLI_LABELS):
            return index
    else:
        name = LABEL_ALIASES.get(value.strip(), value.strip())
        if name in NLI_LABELS:
            return NLI_LABELS.index(name)
    raise DataError(
        f"unknown label {value!r} (expected one of {', '.join(NLI_LABELS)} or 0-2)",
        path=path,
        line=line,
    )


def read_squad(path: Path, *, skip_empty: bool = False) -> QAData:
    """Questions of a SQuAD v1.1 file, each answer checked against its ``answer_start``.

    Errors name the file and the JSON path (``data[0].paragraphs[1].qas[2]``) of the bad value.
    ``skip_empty`` drops (and counts) empty questions, for training; evaluation refuses them,
    since dropping one would change what the score is over.
    """
    text = "\n".join(line for _, line in read_lines(path, carriage_returns=True))
    try:
        document = json.loads(text, object_pairs_hook=_checked_object)
    except _BadJSON as err:
        raise DataError(str(err), path=path) from None
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
    except (ValueError, RecursionError) as err:  # nested too deep, a number too long
        raise DataError(f"invalid JSON: {_one_line(err)}", path=path) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError('not SQuAD JSON: expected {"data": [...]} at the top', path=path)
    examples = QAData()
    seen: dict[str, str] = {}  # question id -> JSON path of its first occurrence
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(_json_list(article, "paragraphs", f"data[{a}]", path)):
            in_paragraph = f"data[{a}].paragraphs[{p}]"
            qas = _json_list(paragraph, "qas", in_paragraph, path)
            context = paragraph.get("context")
            if not isinstance(context, str):
                raise DataError(f"{in_paragraph} has no context", path=path)
            for q, qa in enumerate(qas):
                at = f"{in_paragraph}.qas[{q}]"
                answers = _json_list(qa, "answers", at, path)
                qid, question = qa.get("id"), qa.get("question")
                if isinstance(qid, int) and not isinstance(qid, bool):
                    qid = str(qid)  # some SQuAD-format files number their questions
                if not isinstance(qid, str) or not qid or not isinstance(question, str):
                    raise DataError(
                        f"{at}: needs a string id and a string question, found id "
                        f"{_shown(qid)} and question {_shown(question)}",
                        path=path,
                    )
                if not question.strip():
                    if skip_empty:
                        examples.skipped_empty += 1
                        continue
                    raise DataError(f"{at}: question {qid!r} is empty", path=path)
                if qid in seen:
                    raise DataError(f"{at}: id {qid!r} repeats that of {seen[qid]}", path=path)
                seen[qid] = at
                where = f"question {qid!r} ({at})"
                if not answers:
                    raise DataError(f"{where}: no answers (SQuAD v1.1 needs one)", path=path)
                texts, starts = [], []
                for k, answer in enumerate(answers):
                    at_answer = f"question {qid!r} ({at}.answers[{k}])"
                    ok = isinstance(answer, dict)
                    start = answer.get("answer_start") if ok else None
                    answer_text = answer.get("text") if ok else None
                    if (
                        not isinstance(start, int)
                        or isinstance(start, bool)
                        or not isinstance(answer_text, str)
                        or not answer_text.strip()  # a blank span trains on no words
                    ):
                        raise DataError(
                            f"{at_answer}: needs a string text that is not blank and an integer "
                            f"answer_start, found {_shown(answer)}",
                            path=path,
                        )
                    if start < 0:
                        raise DataError(f"{at_answer}: answer_start {start} is negative", path=path)
                    found = context[start : start + len(answer_text)]
                    if found != answer_text:
                        raise DataError(
                            f"{where}: answer_start {start} points at {found!r}, "
                            f"not at the answer {answer_text!r}",
                            path=path,
                        )
                    texts.append(answer_text)
                    starts.append(start)
                examples.examples.append(
                    QAExample(qid, context, question, tuple(texts), tuple(starts))
                )
    return examples


class _BadJSON(ValueError):
    """A JSON object that parses but holds no honest data (the message says what)."""


def _checked_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object, refused where Python's parser would pass damage on silently: a key
    written twice (the last one would win) and a string holding half of a UTF-16 pair (from a
    lone ``\\ud800`` escape: it cannot be written as UTF-8, so it failed later, in a worker)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJSON(f"the key {json.dumps(key)} appears twice in one object")
        for text in (key, value) if isinstance(value, str) else (key,):
            bad = _SURROGATE.search(text)
            if bad:  # json.dumps escapes it, so the message can be printed
                raise _BadJSON(
                    f"{json.dumps(text)[:80]} (at {json.dumps(key)}) holds "
                    f"{json.dumps(bad.group())}, half of a UTF-16 surrogate pair: not text"
                )
        out[key] = value
    return out


def _json_list(parent: object, key: str, where: str, path: Path) -> list:
    """``parent[key]`` of a SQuAD document, which must be an object holding a list there."""
    if not isinstance(parent, dict):
        raise DataError(f"{where}: expected an object, found {_shown(parent)}", path=path)
    if key not in parent:
        raise DataError(f"{where}: missing {key!r}", path=path)
    if not isinstance(parent[key], list):
        raise DataError(f"{where}.{key}: expected a list, found {_shown(parent[key])}", path=path)
    return parent[key]


def _shown(value: object, limit: int = 80) -> str:
    """A JSON value as the file spells it (``null``, ``true``), cut short for a message."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _one_line(err: Exception, limit: int = 200) -> str:
    """A parser's message on one line, cut short (Python's can quote a whole number)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
