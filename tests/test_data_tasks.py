"""XNLI and SQuAD/XQuAD readers: the demo world's real files, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from conftest import refuse_reading, write_small_world

from ot_ray.data.tasks import NLI_LABELS, read_squad, read_xnli
from ot_ray.demo.nli import LABELS as DEMO_LABELS
from ot_ray.errors import DataError


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_small_world(
        tmp_path_factory.mktemp("world"), seed=2, xnli_train=30, xnli_dev=12, xnli_test=12,
        xquad_train_stories=4, xquad_dev_stories=3, xquad_test_stories=3,
    )  # fmt: skip


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_demo_labels_use_xnli_encoding():
    assert DEMO_LABELS == NLI_LABELS


def test_reads_every_demo_xnli_and_xquad_file(world):
    assert len(read_xnli(world / "xnli/train-en.tsv")) == 30
    for lang in ("en", "de", "fr", "bg", "es", "el"):
        data = read_xnli(world / f"xnli/test-{lang}.tsv")
        assert len(data) == 12 and sorted(set(data.labels)) == [0, 1, 2]
        examples = read_squad(world / f"xquad/test-{lang}.json")
        assert len(examples) >= 6 and all(e.answers for e in examples)


def test_jsonl_and_integer_labels(tmp_path):
    rows = [
        {"premise": "a", "hypothesis": "b", "label": 2},
        {"premise": "c", "hypothesis": "", "label": "neutral"},
        {"premise": "d", "hypothesis": "e", "label": "entailment"},
    ]
    path = write(tmp_path / "x.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = read_xnli(path)
    assert data.labels == [2, 0] and data.skipped_empty == 1
    kept = read_xnli(path, skip_empty=False)
    assert kept.labels == [2, 1, 0] and kept.hypotheses[1] == ""


def test_unlabelled_rows_are_dropped_and_counted_in_training_and_refused_in_evaluation(tmp_path):
    # MultiNLI marks rows without a gold label -1; the Hub reader already dropped them
    rows = [
        {"premise": "a", "hypothesis": "b", "label": -1},
        {"premise": "c", "hypothesis": "d", "label": 0},
    ]
    path = write(tmp_path / "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = read_xnli(path)
    assert data.labels == [0] and data.premises == ["c"] and data.skipped_empty == 1
    tsv = write(tmp_path / "m.tsv", "premise\thypothesis\tlabel\na\tb\t-1\nc\td\t0\n")
    assert read_xnli(tsv).labels == [0]
    with pytest.raises(DataError, match=r"m\.tsv:2: label '-1' marks a row without a gold label"):
        read_xnli(tsv, skip_empty=False)


def test_xtreme_headerless_tsv_is_read_with_its_csv_quoting(tmp_path):
    """XTREME's utils_preprocess.py writes XNLI without a header through csv.writer: a field
    holding a quote is quoted and its quotes doubled."""
    import csv

    rows = [['He said "no".', "He refused.", "entailment"], ["A 'b' c", "d", "contradiction"]]
    with (tmp_path / "dev-de.tsv").open("w", newline="", encoding="utf-8") as out:
        csv.writer(out, delimiter="\t").writerows(rows)
    assert (tmp_path / "dev-de.tsv").read_text().startswith('"He said ""no""."\tHe refused.')
    data = read_xnli(tmp_path / "dev-de.tsv", skip_empty=False)
    assert data.premises == ['He said "no".', "A 'b' c"] and data.labels == [0, 2]
    assert read_xnli(write(tmp_path / "n.tsv", "a\tb\t1\nc\td\t2\n")).labels == [1, 2]
    unlabelled_first = read_xnli(write(tmp_path / "u.tsv", "a\tb\t-1\nc\td\tneutral\n"))
    assert unlabelled_first.labels == [1] and unlabelled_first.skipped_empty == 1


def test_a_tsv_with_a_header_is_read_with_csv_quoting_as_datasets_writes_it(tmp_path):
    """``Dataset.to_csv(sep="\\t")`` (and pandas) quote a field that holds a quote and double
    its quotes; split at tabs, the premise kept them, and a quoted tab split the field."""
    rows = {"premise": ['He said "hi" .', "a\tb"], "hypothesis": ["ok", "c"], "label": [0, 2]}
    path = tmp_path / "train.tsv"
    datasets.Dataset.from_dict(rows).to_csv(str(path), sep="\t", index=False)
    assert '"He said ""hi"" ."' in path.read_text()
    data = read_xnli(path)
    assert data.premises == rows["premise"] and data.labels == [0, 2]
    with pytest.raises(DataError, match=r"bad\.tsv:3: bad quoting .* quoted whole"):
        read_xnli(write(tmp_path / "bad.tsv", 'premise\thypothesis\tlabel\na\tb\t0\n"x" y\tb\t0\n'))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.tsv", "a\tb\tentailment\nc\td\n", r"x\.tsv:2: 2 fields; a file without a header"),
        ("x.tsv", "a\tb\tmaybe\n", r"x\.tsv:1: expected a header premise<TAB>hypothesis<TAB>label"),
        (
            "x.tsv",
            "s1\ts2\tgold\n",
            r"x\.tsv:1: expected a header .* 3 field\(s\): 's1', 's2', 'gold'",
        ),
        ("x.tsv", "a\tb\n", r"x\.tsv:1: two fields and no header: XTREME's test files hold no"),
        ("x.tsv", "a\tb\tneutral\nc\td\tmaybe\n", r"x\.tsv:2: unknown label 'maybe'"),
        ("x.tsv", "premise\thypothesis\tlabel\na\tb\tmaybe\n", r"x\.tsv:2: unknown label 'maybe'"),
        ("x.tsv", "premise\thypothesis\tlabel\na\tb\t3\n", r"x\.tsv:2: unknown label '3'"),
        ("x.tsv", "premise\tlabel\na\tneutral\n", r"x\.tsv:1: header .* lacks .*'hypothesis or"),
        ("x.tsv", "premise\thypothesis\tlabel\na\tneutral\n", r"x\.tsv:2: 2 fields, the header"),
        ("x.tsv", "", r"x\.tsv: empty file"),
        ("x.tsv", b"premise\thypothesis\tlabel\n\xc3(\tb\tneutral\n", r"x\.tsv:2: not UTF-8"),
        ("x.jsonl", '{"premise": "a", "label": 0}\n', r"x\.jsonl:1: missing field.*hypothesis"),
        ("x.jsonl", '{"premise": "a",\n', r"x\.jsonl:1: invalid JSON"),
        (
            "x.jsonl",
            '["a", "b", 0]\n',
            r"x\.jsonl:1: expected a JSON object per line, found a list",
        ),
        # another script's digit (Arabic-Indic one) is not a label index
        ("x.tsv", "premise\thypothesis\tlabel\na\tb\t\u0661\n", r"x\.tsv:2: unknown label"),
        # quotes csv.writer would not write: the lenient reader dropped them silently
        (
            "x.tsv",
            'a\tb\tneutral\n"Hello" she said\tb\tneutral\n',
            r"x\.tsv:2: bad quoting \('<TAB>' expected after '\"'\): .* quoted whole",
        ),
        ("x.tsv", '"open\tb\tneutral\n', r"x\.tsv:1: bad quoting \(unexpected end of data\)"),
        # a lone surrogate escape parses, but is not text: it used to fail in the worker
        (
            "x.jsonl",
            '{"premise": "a\\udc80", "hypothesis": "b", "label": 1}\n',
            r'x\.jsonl:1: "a\\udc80" \(at "premise"\) holds "\\udc80", half of a UTF-16',
        ),
        (
            "x.jsonl",
            '{"premise": "a", "hypothesis": "b", "premise": "z", "label": 1}\n',
            r'x\.jsonl:1: the key "premise" appears twice in one object',
        ),
        (
            "x.json",
            '[\n{"premise": "a", "hypothesis": "b", "label": 1}\n]\n',
            r"x\.json:1: invalid JSON: .*; ot-ray reads JSON Lines, one object per line, not a",
        ),
    ],
)
def test_bad_xnli_names_file_and_line(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message):
        read_xnli(write(tmp_path / name, content))


def squad(context: str, answer: str, start: int) -> str:
    qa = {"id": "q1", "question": "what ?", "answers": [{"text": answer, "answer_start": start}]}
    return json.dumps(
        {"version": "1.1", "data": [{"paragraphs": [{"context": context, "qas": [qa]}]}]}
    )


def test_squad_answer_start_must_point_at_the_answer(tmp_path):
    (read,) = read_squad(write(tmp_path / "ok.json", squad("Anna sees 3 cups .", "3 cups", 10)))
    assert (read.answers, read.answer_starts) == (("3 cups",), (10,))
    bad = write(tmp_path / "bad.json", squad("Anna sees 3 cups .", "3 cups", 9))
    with pytest.raises(DataError, match=r"bad\.json: question 'q1' .* answer_start 9 points at"):
        read_squad(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"data": [', r"s\.json:1: invalid JSON"),
        ('{"version": "1.1"}', r"s\.json: not SQuAD JSON"),
        ('{"data": [{"paragraphs": [{"qas": []}]}]}', r"data\[0\]\.paragraphs\[0\] has no context"),
    ],
)
def test_bad_squad_files(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        read_squad(write(tmp_path / "s.json", content))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"premise": null, "hypothesis": "b", "label": 0}', r"x\.jsonl:2: premise .* found null"),
        ('{"premise": "a", "hypothesis": 3, "label": 0}', r"x\.jsonl:2: hypothesis .* found 3"),
        ('{"premise": "a", "hypothesis": "b", "label": true}', r"x\.jsonl:2: label .* found true"),
        ('{"premise": "a", "hypothesis": "b", "label": 1.0}', r"x\.jsonl:2: label .* found 1\.0"),
        ('{"premise": "a", "hypothesis": "b", "label": "²"}', r"x\.jsonl:2: unknown label '²'"),
    ],
)
def test_xnli_jsonl_rejects_wrong_types_at_their_line(tmp_path, row, message):
    good = '{"premise": "a", "hypothesis": "b", "label": 0}\n'
    with pytest.raises(DataError, match=message):
        read_xnli(write(tmp_path / "x.jsonl", good + row + "\n"))


def squad_document(*qas: dict, context: object = "Anna sees 3 cups .") -> str:
    """One article: a first paragraph without questions, then ``qas`` on ``context``."""
    paragraphs = [{"context": "x", "qas": []}, {"context": context, "qas": list(qas)}]
    return json.dumps({"data": [{"paragraphs": paragraphs}]})


def qa(qid: object = "q1", question: object = "what ?", answers: object = None) -> dict:
    if answers is None:
        answers = [{"text": "3 cups", "answer_start": 10}]
    return {"id": qid, "question": question, "answers": answers}


def answer(text: object, start: object) -> dict:
    return qa(answers=[{"text": text, "answer_start": start}])


QA0 = r"s\.json: question 'q1' \(data\[0\]\.paragraphs\[1\]\.qas\[0\]"
AT = r"s\.json: data\[0\]\.paragraphs\[1\]\.qas"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (squad_document(qa(answers=[])), rf"{QA0}\): no answers"),
        (squad_document(answer("A", -18)), rf"{QA0}\.answers\[0\]\): answer_start -18 is negative"),
        (squad_document(answer("", 0)), rf"{QA0}\.answers\[0\]\): needs a string text that is"),
        # a blank answer trained on a span of no words (and a blank context failed in a worker)
        (squad_document(answer(" ", 4)), rf"{QA0}\.answers\[0\]\): needs .* not blank"),
        (
            squad_document(answer(" ", 0), context="   "),
            rf"{QA0}\.answers\[0\]\): needs .* not blank",
        ),
        (
            squad_document(qa(question="what \ud800 ?")),
            r's\.json: "what \\ud800 \?" \(at "question"\) holds "\\ud800", half of a UTF-16',
        ),
        (
            '{"data": [], "data": []}',
            r's\.json: the key "data" appears twice in one object',
        ),
        (squad_document(answer(3, 0)), rf"{QA0}\.answers\[0\]\): needs .*, found {{.*3"),
        (squad_document(answer("A", True)), rf"{QA0}\.answers\[0\]\): needs .* integer"),
        (squad_document(qa(answers=["A"])), rf"{QA0}\.answers\[0\]\): needs .* found \"A\""),
        (squad_document({**qa(), "answers": None}), rf"{AT}\[0\]\.answers: .* null"),
        (squad_document(qa(), qa()), rf"{AT}\[1\]: id 'q1' repeats that of data\[0\]\.par"),
        (squad_document(qa(question=None)), rf"{AT}\[0\]: needs a string id .* question null"),
        (squad_document(qa(question=["?"])), rf"{AT}\[0\]: needs .* question \[\"\?\"\]"),
        (squad_document(qa(qid=None)), rf"{AT}\[0\]: needs a string id .* found id null"),
        (squad_document(qa(), context=7), r"s\.json: data\[0\]\.paragraphs\[1\] has no context"),
        ('{"data": [1]}', r"s\.json: data\[0\]: expected an object, found 1"),
        ('{"data": [{"title": "t"}]}', r"s\.json: data\[0\]: missing 'paragraphs'"),
        ('{"data": [{"paragraphs": ["p"]}]}', r"s\.json: data\[0\]\.paragraphs\[0\]: expected an"),
    ],
)
def test_bad_squad_questions_name_file_and_json_path(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        read_squad(write(tmp_path / "s.json", content))


def test_squad_keeps_every_answer_of_an_evaluation_question(tmp_path):
    answers = [{"text": "3 cups", "answer_start": 10}, {"text": "cups", "answer_start": 12}]
    (example,) = read_squad(write(tmp_path / "s.json", squad_document(qa(answers=answers))))
    assert example.answers == ("3 cups", "cups") and example.answer_starts == (10, 12)


def test_task_readers_name_a_directory_or_an_unreadable_file(tmp_path, monkeypatch):
    folder = tmp_path / "xnli.tsv"
    folder.mkdir()
    with pytest.raises(DataError, match=r"xnli\.tsv: is a directory, not a file"):
        read_xnli(folder)
    squad_folder = tmp_path / "xquad.json"
    squad_folder.mkdir()
    with pytest.raises(DataError, match=r"xquad\.json: is a directory, not a file"):
        read_squad(squad_folder)
    locked = write(tmp_path / "locked.jsonl", "{}\n")
    refuse_reading(monkeypatch)
    with pytest.raises(DataError, match=r"locked\.jsonl: cannot read the file: Permission denied"):
        read_xnli(locked)


def test_numbered_squad_questions_keep_their_numbers_as_ids(tmp_path):
    path = write(tmp_path / "s.json", squad_document(qa(qid=7), qa(qid="8")))
    assert [example.id for example in read_squad(path)] == ["7", "8"]
    with pytest.raises(DataError, match=r"id '7' repeats"):
        read_squad(write(tmp_path / "t.json", squad_document(qa(qid=7), qa(qid="7"))))


def test_a_header_that_names_a_column_twice_is_refused(tmp_path):
    """The last of two ``premise`` columns used to win silently."""
    path = write(tmp_path / "x.tsv", "premise\thypothesis\tlabel\tpremise\na\tb\tneutral\tc\n")
    with pytest.raises(DataError, match=r"x\.tsv:1: header names column\(s\) \['premise'\] more"):
        read_xnli(path)


def test_empty_trailing_header_columns_are_not_repeats(tmp_path):
    """A spreadsheet's export can end every line in tabs."""
    path = write(tmp_path / "x.tsv", "premise\thypothesis\tlabel\t\t\na\tb\tneutral\t\t\n")
    assert read_xnli(path).labels == [1]


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
    path = write(tmp_path / "x.tsv", "\ufeffpremise\thypothesis\tlabel\na\tb\tneutral\n")
    assert read_xnli(path).premises == ["a"]


def test_an_empty_squad_question_is_refused_for_evaluation_and_counted_for_training(tmp_path):
    """Dropping an evaluation question would change what its score is over; a training
    question with nothing to read is dropped and counted, as an empty NLI row is."""
    path = write(tmp_path / "s.json", squad_document(qa(question="  "), qa(qid="q2")))
    with pytest.raises(DataError, match=rf"{AT}\[0\]: question 'q1' is empty"):
        read_squad(path)
    training = read_squad(path, skip_empty=True)
    assert [example.id for example in training] == ["q2"] and training.skipped_empty == 1


@pytest.mark.parametrize("name", ["x.jsonl", "s.json"])
def test_json_a_parser_gives_up_on_is_named_not_a_traceback(tmp_path, name):
    """Nested past Python's recursion limit: a RecursionError, not a JSONDecodeError."""
    deep = "[" * 100_000 + "]" * 100_000
    path = write(tmp_path / name, deep + "\n")
    with pytest.raises(DataError, match=rf"{name}(:1)?: invalid JSON: maximum recursion depth"):
        read_squad(path) if name.endswith(".json") else read_xnli(path)


def test_empty_lines_in_an_xnli_tsv_hold_no_row(tmp_path):
    """An editor's extra newline at the end (or an empty line before or between rows) is no
    example, in either TSV form; it used to be refused as a row of one field. A line of tabs
    is a row (of empty fields) and is still judged as one."""
    text = "\npremise\thypothesis\tlabel\na\tb\tneutral\n\nc\td\t0\n\n"
    assert read_xnli(write(tmp_path / "h.tsv", text), skip_empty=False).labels == [1, 0]
    headerless = write(tmp_path / "x.tsv", "\na\tb\tneutral\n\nc\td\t0\n\n")
    assert read_xnli(headerless, skip_empty=False).premises == ["a", "c"]
    with pytest.raises(DataError, match=r"t\.tsv:3: unknown label ''"):
        read_xnli(write(tmp_path / "t.tsv", "premise\thypothesis\tlabel\na\tb\t0\n\t\t\n"))
    with pytest.raises(DataError, match=r"y\.tsv:2: two fields and no header"):
        read_xnli(write(tmp_path / "y.tsv", "\na\tb\n"))


def test_xnli_written_by_datasets_to_json_is_read_as_json_lines(tmp_path):
    """``Dataset.to_json`` writes JSON Lines under whatever name it is given, usually
    ``.json``: that file used to be read as a TSV and refused for lacking a header."""
    import datasets

    rows = {"premise": ["a \U0001f600", "c"], "hypothesis": ["b", "d"], "label": [2, 0]}
    datasets.Dataset.from_dict(rows).to_json(tmp_path / "dev-de.json")
    data = read_xnli(tmp_path / "dev-de.json", skip_empty=False)
    assert data.premises == rows["premise"] and data.labels == [2, 0]


def test_a_jsonl_suffix_in_capitals_is_still_jsonl(tmp_path):
    path = write(tmp_path / "x.JSONL", '{"premise": "a", "hypothesis": "b", "label": 1}\n')
    assert read_xnli(path).labels == [1]


def test_a_squad_file_with_old_mac_line_endings_is_read(tmp_path):
    """JSON reads a carriage return between tokens as a space, so it stays allowed there."""
    text = squad("Anna sees 3 cups .", "3 cups", 10).replace(", ", ",\r")
    assert "\r" in text
    assert read_squad(write(tmp_path / "mac.json", text))[0].answers == ("3 cups",)


#: XNLI 1.0's ``xnli.test.tsv`` header, as released (every language in one file).
XNLI_RELEASE_HEADER = (
    "language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\tlabel3\t"
    "label4\tlabel5\tsentence1_tokenized\tsentence2_tokenized\tmatch"
)


def xnli_release_row(language: str, label: str, premise: str, hypothesis: str) -> str:
    cells = [language, label, "(", "(", "(", "(", premise, hypothesis, "1", "2", "fiction"]
    cells += [label] * 5 + [premise, hypothesis, "True"]
    return "\t".join(cells)


def test_xnli_release_tsv_gives_the_rows_of_one_language_split_at_tabs(tmp_path):
    """XNLI 1.0's files hold 15 languages in one file, are not csv-quoted (a sentence may open
    a quote it never closes) and name the columns sentence1/sentence2/gold_label."""
    rows = [
        xnli_release_row("de", "contradiction", '"Nun, sagte er', "Er schwieg."),
        xnli_release_row("en", "entailment", "Well, he said", "He spoke."),
        xnli_release_row("de", "neutral", "Ein Hund.", 'Ein "Tier".'),
    ]
    path = write(tmp_path / "xnli.test.tsv", "\n".join([XNLI_RELEASE_HEADER, *rows]) + "\n")
    german = read_xnli(path, skip_empty=False, language="de")
    assert german.premises == ['"Nun, sagte er', "Ein Hund."]
    assert german.hypotheses == ["Er schwieg.", 'Ein "Tier".']
    assert german.labels == [NLI_LABELS.index("contradiction"), NLI_LABELS.index("neutral")]
    assert read_xnli(path, skip_empty=False, language="en").premises == ["Well, he said"]
    with pytest.raises(DataError, match=r"xnli\.test\.tsv: no row of language 'fr' \(its language"):
        read_xnli(path, skip_empty=False, language="fr")


def test_xnli_mt_training_file_is_read_with_its_names_and_labels(tmp_path):
    """XNLI-MT 1.0's ``multinli.train.<lang>.tsv``: premise/hypo/label, ``contradictory``."""
    text = 'premise\thypo\tlabel\n"Quoted at the start\tb\tcontradictory\nc\td\tentailment\n'
    data = read_xnli(write(tmp_path / "multinli.train.de.tsv", text), language="de")
    assert data.premises == ['"Quoted at the start', "c"] and data.hypotheses == ["b", "d"]
    assert data.labels == [NLI_LABELS.index("contradiction"), NLI_LABELS.index("entailment")]


def test_multinli_release_jsonl_drops_rows_without_agreement_in_training(tmp_path):
    """MultiNLI 1.0's JSON Lines: sentence1/sentence2/gold_label, ``-`` where annotators did not
    agree (the Hub's -1): dropped and counted in training, refused in evaluation."""
    rows = [
        {"gold_label": "neutral", "sentence1": "a", "sentence2": "b", "genre": "fiction"},
        {"gold_label": "-", "sentence1": "c", "sentence2": "d", "genre": "fiction"},
        {"gold_label": "contradiction", "sentence1": "e", "sentence2": "f", "genre": "slate"},
    ]
    path = write(tmp_path / "multinli_1.0_dev.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = read_xnli(path, language="en")  # no language column: every row is the pivot's
    assert data.premises == ["a", "e"] and data.labels == [1, 2] and data.skipped_empty == 1
    with pytest.raises(DataError, match=r"jsonl:2: label '-' marks a row without a gold label"):
        read_xnli(path, skip_empty=False)


def test_xnli_release_jsonl_gives_the_rows_of_one_language(tmp_path):
    rows = [
        {"language": "bg", "gold_label": "entailment", "sentence1": "a", "sentence2": "b"},
        {"language": "el", "gold_label": "neutral", "sentence1": "c", "sentence2": "d"},
    ]
    path = write(tmp_path / "xnli.dev.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert read_xnli(path, skip_empty=False, language="el").premises == ["c"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "x.tsv",
            "premise\tsentence2\thypo\tlabel\na\tb\tc\tneutral\n",
            r"x\.tsv:1: header names the hypothesis twice \(sentence2, hypo\)",
        ),
        (
            "x.jsonl",
            '{"sentence1": "a", "hypothesis": "c", "gold_label": 0, "label": 1}\n'
            '{"sentence2": "b", "premise": "a", "hypo": "c", "label": 1}\n',
            r"x\.jsonl:2: the object names the hypothesis twice \(sentence2, hypo\)",
        ),
        (
            "x.jsonl",
            '{"premise": "a", "hypothesis": "b", "label": 0}\n'
            '{"premise": "a", "hypothesis": "b", "label": 0, "language": "de"}\n',
            r"x\.jsonl:2: a language here, but the first row names none",
        ),
        (
            "x.jsonl",
            '{"premise": "a", "hypothesis": "b", "label": 0, "language": "de"}\n'
            '{"premise": "a", "hypothesis": "b", "label": 0}\n',
            r"x\.jsonl:2: no language \(found null\); the file's other rows name theirs",
        ),
        (
            "x.tsv",
            "language\tpremise\thypothesis\tlabel\nde\ta\tb\t0\nfr\ta\tb\t0\n",
            r"x\.tsv: its language column holds several languages \(de, fr\): the reader needs",
        ),
        (
            "x.tsv",
            "sentence1\tgold_label\na\tneutral\n",
            r"x\.tsv:1: header .* lacks column\(s\) \['hypothesis or sentence2 or hypo'\]",
        ),
    ],
)
def test_release_names_given_twice_or_missing_are_refused(tmp_path, name, content, message):
    with pytest.raises(DataError, match=message):
        read_xnli(write(tmp_path / name, content))


def test_an_xnli_source_without_lang_in_its_path_reads_each_language_from_one_file(tmp_path):
    """The config names XNLI 1.0's one test file for every language (no ``{lang}``)."""
    from ot_ray.config import SourceSpec
    from ot_ray.data.sources import read_nli

    rows = [xnli_release_row(lang, "neutral", f"p-{lang}", f"h-{lang}") for lang in ("de", "fr")]
    write(tmp_path / "xnli.test.tsv", "\n".join([XNLI_RELEASE_HEADER, *rows]) + "\n")
    spec = SourceSpec(path="{root}/xnli.test.tsv")
    for lang in ("de", "fr"):
        data = read_nli(spec, root=str(tmp_path), lang=lang, pivot="en", training=False)
        assert data.premises == [f"p-{lang}"]


MULTINLI_HEADER = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\tlabel1\tlabel2\t"
    "label3\tlabel4\tlabel5"
)


def test_multinli_release_tsv_rows_that_stop_after_label1_are_read(tmp_path):
    """MultiNLI 1.0's training rows hold 11 of the header's 15 fields (one annotator label);
    its readers take them. A row too short to hold a column ot-ray reads is refused."""
    short = 'neutral\t(\t(\t(\t(\t"Conceptually cream\tProduct and geography\t'
    short += "31193\t31193n\tgov\tneutral"
    path = write(tmp_path / "multinli_1.0_train.txt", f"{MULTINLI_HEADER}\n{short}\n")
    data = read_xnli(path)
    assert data.premises == ['"Conceptually cream'] and data.labels == [NLI_LABELS.index("neutral")]
    cut = "neutral\t(\t(\t(\t(\tA premise"
    with pytest.raises(DataError, match=r"train\.txt:3: 6 fields, the header has 15"):
        read_xnli(write(path, f"{MULTINLI_HEADER}\n{short}\n{cut}\n"))


def test_glue_style_names_in_a_quoted_file_keep_csv_quoting(tmp_path):
    """``sentence1``/``sentence2`` alone do not make a release file: pandas and ``datasets``
    write such files quoted, and the premise kept its quotes when split at tabs."""
    path = tmp_path / "glue.tsv"
    rows = {"sentence1": ['He said "hi"'], "sentence2": ["b"], "label": ["neutral"]}
    datasets.Dataset.from_dict(rows).to_csv(str(path), sep="\t", index=False)
    assert read_xnli(path).premises == ['He said "hi"']


def test_our_column_is_read_when_a_release_name_is_there_too(tmp_path):
    """A file with ``label`` and ``gold_label`` (premise, hypothesis...) was read before the
    releases' names were known: it still is, from ``label``."""
    text = "premise\thypothesis\tlabel\tgold_label\na\tb\tneutral\tentailment\n"
    assert read_xnli(write(tmp_path / "x.tsv", text)).labels == [NLI_LABELS.index("neutral")]


def test_a_file_of_every_language_is_parsed_once_for_all_of_them(tmp_path, monkeypatch):
    from ot_ray.data import tasks

    rows = [xnli_release_row(lang, "neutral", f"p-{lang}", "h") for lang in ("de", "fr", "el")]
    path = write(tmp_path / "xnli.dev.tsv", "\n".join([XNLI_RELEASE_HEADER, *rows]) + "\n")
    parsed = []
    original = tasks._tsv_rows
    monkeypatch.setattr(tasks, "_tsv_rows", lambda p: parsed.append(p) or original(p))
    for lang in ("de", "fr", "el", "de"):
        assert read_xnli(path, skip_empty=False, language=lang).premises == [f"p-{lang}"]
    assert len(parsed) == 1
    write(path, "\n".join([XNLI_RELEASE_HEADER, *rows[:2], rows[0]]) + "\n")  # changed: again
    assert read_xnli(path, skip_empty=False, language="de").premises == ["p-de", "p-de"]
    assert len(parsed) == 2
