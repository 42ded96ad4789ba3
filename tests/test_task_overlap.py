"""A task's training examples that its dev or test sets hold too: dropped, counted and said.

A Hub training source replaced with ``--set`` reads split ``train``, which holds the paper's QA
dev set (SQuAD ``train[-2000:]``): such a run trained on its own dev questions. Tiny local XNLI
TSV and SQuAD JSON files (and a Hub-style JSON Lines file) in the default layout, read by the
task stage's own code, without Ray or a model."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import tiny_encoder

from ot_ray import trial_tasks
from ot_ray.config import load_config
from ot_ray.data.overlap import read_eval_set
from ot_ray.data.tasks import NLIData, QAData
from ot_ray.errors import ConfigError, DataError
from ot_ray.preflight import check_data
from ot_ray.reporters import LocalReporter
from ot_ray.trial_tasks import TaskStages

LOGGER = "ot_ray.trial_tasks"
EVAL_SETS = [(split, lang) for split in ("dev", "test") for lang in ("en", "de")]

#: The dev and test pairs of the two evaluated languages.
NLI_HELD_OUT = {
    "dev-en": [("The cat sleeps.", "A cat rests.", "entailment")],
    "test-en": [("He sold the car.", "He owns a bike.", "neutral")],
    "dev-de": [("Der Hund bellt.", "Ein Hund ist laut.", "entailment")],
    "test-de": [("Sie liest ein Buch.", "Sie schläft.", "contradiction")],
}
NLI_TRAIN = [
    ("A man walks.", "A person moves.", "entailment"),
    ("The cat sleeps.", "A cat rests.", "entailment"),  # dev/en's pair
    ("He sold  the car. ", " He owns a  bike.", "contradiction"),  # test/en's, spaced, relabelled
    ("The cat sleeps.", "The cat is awake.", "contradiction"),  # dev/en's premise only: kept
    ("Sie liest ein Buch.", "Sie schläft.", "contradiction"),  # test/de's (any language counts)
    ("the cat sleeps.", "a cat rests.", "entailment"),  # other case: another input, kept
    ("Kids play outside.", "Children are outdoors.", "entailment"),
]
NLI_KEPT = [NLI_TRAIN[i][:2] for i in (0, 3, 5, 6)]

RIVER = "The river runs through the old town."
BRIDGE = "The bridge was built in 1900."
TRAM = "A tram runs through the old town."
BAKERS = "Bakers open their shops at dawn."
OLD_BRIDGE = "The old bridge was built in 1900."
#: question id, context, question, answer (found in the context)
QA_HELD_OUT = {
    "dev-en": [("d1", RIVER, "What runs through the old town?", "The river")],
    "test-en": [("t1", BRIDGE, "When was the bridge built?", "1900")],
    "dev-de": [("d2", "Der Fluss fließt durch die Altstadt.", "Was fließt?", "Der Fluss")],
    "test-de": [("t1", "Die Brücke wurde 1900 gebaut.", "Wann wurde sie gebaut?", "1900")],
}
QA_TRAIN = [
    ("x1", BAKERS, "When do bakers open their shops?", "at dawn"),
    ("x2", RIVER, "What runs through the old town?", "The river"),  # dev/en's, another id
    # test/en's id (and its translation's), about another story: a translation of it
    ("t1", OLD_BRIDGE, "What was built in 1900?", "The old bridge"),
    ("x3", TRAM, "What runs through the old town?", "A tram"),  # dev/en's question, other story
    ("x4", RIVER, "What does the river run through?", "the old town"),  # dev/en's story
]


def write_nli(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["premise\thypothesis\tlabel", *("\t".join(row) for row in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def squad_rows(rows: list[tuple[str, str, str, str]]) -> list[dict]:
    """Hub-schema rows (``rajpurkar/squad``'s columns)."""
    return [
        {
            "id": qid,
            "context": context,
            "question": question,
            "answers": {"text": [answer], "answer_start": [context.index(answer)]},
        }
        for qid, context, question, answer in rows
    ]


def write_squad(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A SQuAD v1.1 file, one paragraph per question."""
    paragraphs = [
        {
            "context": context,
            "qas": [
                {
                    "id": qid,
                    "question": question,
                    "answers": [{"text": answer, "answer_start": context.index(answer)}],
                }
            ],
        }
        for qid, context, question, answer in rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "encoder"
    tiny_encoder(path)
    return path


@pytest.fixture
def world(tmp_path) -> Path:
    """The four evaluation sets of both tasks, in the default layout ({root}/xnli/dev-en.tsv)."""
    for name, rows in NLI_HELD_OUT.items():
        write_nli(tmp_path / "xnli" / f"{name}.tsv", rows)
    for name, rows in QA_HELD_OUT.items():
        write_squad(tmp_path / "xquad" / f"{name}.json", rows)
    return tmp_path


def config_for(world: Path, encoder: Path, task: str, *extra: str):
    return load_config(
        None,
        [
            f"model.name_or_path={encoder}",
            f"data.root={world}",
            "data.eval_languages=[de]",
            "data.parallel.dev.languages=[]",  # no parallel data: the task stages alone
            "alignment.method=none",
            f"task.tasks=[{task}]",
            f"task.{task}.batch_size=1",
            f"train.output_dir={world / 'out'}",
            *extra,
        ],
    )


@contextmanager
def task_stages(config) -> Iterator[TaskStages]:
    """A trial worker's task stages (a tokenizer, folders and counters: no model, no Ray)."""
    stages = TaskStages(config, LocalReporter(Path(config.train.output_dir)), show_progress=False)
    try:
        yield stages
    finally:
        shutil.rmtree(stages.work, ignore_errors=True)


def training_examples(config, task: str) -> tuple[NLIData | QAData, dict[str, float]]:
    """The task stage's training examples and its counts, as a trial's worker reads them."""
    with task_stages(config) as stages:
        return stages._train_examples(task), stages.counts


def only_warning(caplog) -> str:
    (record,) = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    return record.getMessage()


def test_nli_pairs_of_any_dev_or_test_set_are_dropped_counted_and_said(
    world, encoder, caplog, monkeypatch
):
    """The same premise and hypothesis (whitespace aside, whatever the label) is a copy; the
    same premise with another hypothesis, or other case, is not. Each dev and test set is read
    once, for the filter, and then scored."""
    train = write_nli(world / "xnli" / "train-en.tsv", NLI_TRAIN)
    reads: list[tuple[str, str]] = []

    def read_counted(config, task, split, lang, *, root):
        reads.append((split, lang))
        return read_eval_set(config, task, split, lang, root=root)

    monkeypatch.setattr(trial_tasks, "read_eval_set", read_counted)
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        task_stages(config_for(world, encoder, "xnli")) as stages,
    ):
        data = stages._train_examples("xnli")
        assert sorted(reads) == sorted(EVAL_SETS)  # every evaluated language's, read now
        for split, lang in EVAL_SETS:
            stages._eval_data("xnli", split, lang)
        counts = stages.counts
    assert sorted(reads) == sorted(EVAL_SETS)  # not again
    assert list(zip(data.premises, data.hypotheses, strict=True)) == NLI_KEPT
    assert data.labels == [0, 2, 0, 0]
    assert counts["data/xnli_train/in_eval"] == 3
    assert counts["data/xnli_train/skipped_empty"] == 0
    message = only_warning(caplog)
    assert "ot-ray: 3 of the 7 xnli training examples" in message
    assert str(train) in message
    assert "(dev/en: 1, test/en: 1, test/de: 1)" in message
    assert "data/xnli_train/in_eval" in message
    assert "training and evaluation files" in message  # local files: no split to give


def test_qa_copies_are_the_same_id_or_the_same_question_about_the_same_context(
    world, encoder, caplog
):
    """An XQuAD test question keeps SQuAD's id in every language; a copy of a dataset may have
    other ids; the demo world asks one question of several stories, which is no copy."""
    write_squad(world / "xquad" / "train-en.json", QA_TRAIN)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        data, counts = training_examples(config_for(world, encoder, "xquad"), "xquad")
    assert [example.id for example in data] == ["x1", "x3"]
    assert counts["data/xquad_train/in_eval"] == 3
    message = only_warning(caplog)
    assert "ot-ray: 3 of the 5 xquad training examples" in message
    assert "are also in, or ask about a paragraph of, its evaluation sets" in message
    assert "(dev/en: 2, test/en: 1, test/de: 1; 1 by question id alone" in message


def test_a_hub_training_split_holding_the_dev_split_is_named_with_the_split_to_give(
    world, encoder, tmp_path, caplog
):
    """The paper's setting: dev is SQuAD's train[-2:] here (train[-2000:] there); a training
    source replaced with --set reads the whole train split, dev questions included."""
    squad = tmp_path / "squad.jsonl"
    rows = "".join(json.dumps(row) + "\n" for row in squad_rows(QA_TRAIN[:4]))
    squad.write_text(rows, encoding="utf-8")
    dev = f"data.xquad.dev={{hub: json, data_files: {squad}, split: 'train[-2:]', languages: [en]}}"
    # as a user replaces a source: --set ...hub= drops the source's other keys, split included
    replaced = ["data.xquad.train.hub=json", f"data.xquad.train.data_files={squad}"]
    whole = config_for(world, encoder, "xquad", dev, *replaced)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        data, counts = training_examples(whole, "xquad")
    assert [example.id for example in data] == ["x1", "x2"]  # t1 and x3 are dev's
    assert counts["data/xquad_train/in_eval"] == 2
    message = only_warning(caplog)
    assert f"json:train:{squad}" in message and "dev/en: 2" in message
    assert "--set 'data.xquad.train.split=train[:-2000]'" in message
    caplog.clear()
    split = "data.xquad.train.split=train[:-2]"
    sliced = config_for(world, encoder, "xquad", dev, *replaced, split)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        data, counts = training_examples(sliced, "xquad")
    assert [example.id for example in data] == ["x1", "x2"]
    assert counts["data/xquad_train/in_eval"] == 0
    assert not [r for r in caplog.records if r.name == LOGGER]
    # a split was given: the hint to give one again would be wrong
    overlapping = config_for(world, encoder, "xquad", dev, *replaced, f"{split[:-3]}-1]")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        data, counts = training_examples(overlapping, "xquad")
    assert [example.id for example in data] == ["x1", "x2"]
    assert counts["data/xquad_train/in_eval"] == 1
    message = only_warning(caplog)
    assert "--set" not in message and "do they share examples?" in message


@pytest.mark.parametrize("task", ["xnli", "xquad"])
def test_a_training_set_its_evaluation_sets_hold_whole_is_one_clear_error(world, encoder, task):
    """In the driver before any work, and in the worker (a resumed run skips the driver's
    checks): a one-line error naming the training source and the sets, not a crash later."""
    if task == "xnli":
        train = write_nli(world / "xnli" / "train-en.tsv", NLI_HELD_OUT["dev-en"] * 2)
        count, held = 2, f"dev/en ({world}/xnli/dev-en.tsv)"
    else:
        train = write_squad(world / "xquad" / "train-en.json", QA_HELD_OUT["test-de"])
        tests = [f"test/{lang} ({world}/xquad/test-{lang}.json)" for lang in ("en", "de")]
        count, held = 1, ", ".join(tests)  # by id in en, by id and paragraph in de
    held_by = "is also in" if task == "xnli" else "is also in, or asks about a paragraph of,"
    expected = re.escape(
        f"{train}: every one of the {count} {task} training examples {held_by} its evaluation "
        f"sets ({held}), so none is left to train on; are the training and evaluation files"
    )
    config = config_for(world, encoder, task)
    with pytest.raises(DataError, match=expected) as caught:
        check_data(config)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match=expected):
        training_examples(config, task)


def test_the_driver_counts_one_step_on_what_is_left(world, encoder):
    """XNLI's start-up check of one optimizer step counts the examples left to train on."""
    write_nli(world / "xnli" / "train-en.tsv", NLI_TRAIN)
    check_data(config_for(world, encoder, "xnli", "task.xnli.batch_size=4", "task.xnli.epochs=1"))
    with pytest.raises(ConfigError, match=r"^task.xnli.batch_size: 4 training examples make fewer"):
        check_data(
            config_for(world, encoder, "xnli", "task.xnli.batch_size=5", "task.xnli.epochs=1")
        )


def test_numbered_question_ids_are_positions_not_identities():
    """Files that number their questions share ids with any other such file: only the same
    question about the same context is a copy there; a hash-like id still is one alone."""
    from ot_ray.data.overlap import EvalCopies, without_eval_copies
    from ot_ray.data.tasks import QAExample

    def question(qid: str, text: str) -> QAExample:
        return QAExample(qid, f"{text} 1900.", text, ("1900",), (len(text) + 1,))

    held_out = {"test/de": [question("1", "Wann?"), question("5733be28", "Wann wurde es?")]}
    train = QAData([question("1", "When?"), question("5733be28", "When was it?")])
    copies = EvalCopies("xquad", total=len(train), origin="train.json", hub=False)
    kept = without_eval_copies(train, held_out, copies)
    assert [example.id for example in kept] == ["1"]
    assert copies.dropped == 1 and copies.by_id_only == 1


def test_only_the_evaluation_examples_that_are_scored_count(world, encoder):
    """With ``max_eval`` the scores are over a set's first examples: a training pair that only
    a later, unscored dev example repeats is kept."""
    write_nli(world / "xnli" / "train-en.tsv", NLI_TRAIN)
    write_nli(world / "xnli" / "dev-en.tsv", [("Dogs bark.", "Dogs make noise.", "entailment")])
    with open(world / "xnli" / "dev-en.tsv", "a", encoding="utf-8") as dev:
        dev.write("\t".join(NLI_TRAIN[0]) + "\n")  # a training pair, second in dev
    whole = config_for(world, encoder, "xnli")
    assert training_examples(whole, "xnli")[1]["data/xnli_train/in_eval"] == 3
    cut = config_for(world, encoder, "xnli", "task.xnli.max_eval=1")
    data, counts = training_examples(cut, "xnli")
    assert counts["data/xnli_train/in_eval"] == 2
    assert data.premises[0] == NLI_TRAIN[0][0]
