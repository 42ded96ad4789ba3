"""Data sources: Hub schemas read through ``datasets.load_dataset`` from local files, templates,
clear errors, and the on-disk tokenisation cache."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ot_ray.config import ParallelSources, SourceSpec, load_config
from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.sources import (
    fill,
    load_tokenizer,
    read_nli,
    read_parallel,
    read_parallel_sources,
    read_qa,
)
from ot_ray.data.tokenized import tokenize_parallel
from ot_ray.errors import ConfigError, DataError
from ot_ray.tasks.xnli import nli_collate

WHERE = {"root": "/r", "pivot": "en"}
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def hub_json(path: Path, **extra) -> SourceSpec:
    """A Hub-style source read by the ``json`` builder: the real ``load_dataset`` code path."""
    return SourceSpec(hub="json", data_files=str(path), **{"split": "train", **extra})


def test_templates_expand_pair_in_europarl_order():
    assert fill("{root}/{lang}-{pivot}", lang="de", **WHERE) == "/r/de-en"
    assert fill("{pair}", lang="fr", **WHERE) == "en-fr"  # Europarl's config names are sorted
    assert fill("{pair}", lang="bg", **WHERE) == "bg-en"
    with pytest.raises(DataError, match="bad placeholder"):
        fill("{language}", lang="de", **WHERE)
    with pytest.raises(DataError, match=r"config: bad placeholder in '\{root\.x\}/a' \(.*'x'"):
        fill("{root.x}/a", lang="de", **WHERE)
    with pytest.raises(DataError, match=r"config: bad placeholder in '\{lang\[a\]\}'"):
        fill("{lang[a]}", lang="de", **WHERE)


def test_europarl_schema(tmp_path):
    rows = [
        {"translation": {"de": "guten Tag", "en": "good day"}},
        {"translation": {"de": "", "en": "empty side"}},
        {"translation": {"de": "danke", "en": "thanks"}},
    ]
    spec = hub_json(write_jsonl(tmp_path / "de-en.jsonl", rows))
    corpus = read_parallel(spec, lang="de", **WHERE)
    assert corpus.sources == ["guten Tag", "danke"]
    assert corpus.targets == ["good day", "thanks"]
    assert corpus.skipped_empty == 1 and corpus.rows == [1, 3]
    missing = r"de-en\.jsonl: row 1: translation has no 'fr' and 'en' sides"
    with pytest.raises(DataError, match=missing):
        read_parallel(spec, lang="fr", **WHERE)


def test_xnli_and_multinli_schema(tmp_path):
    rows = [
        {"premise": "a", "hypothesis": "b", "label": 0},
        {"premise": "c", "hypothesis": "d", "label": -1},  # MultiNLI: no gold label
        {"premise": "e", "hypothesis": "f", "label": 2},
    ]
    spec = hub_json(write_jsonl(tmp_path / "nli.jsonl", rows))
    data = read_nli(spec, lang="en", training=True, **WHERE)
    assert data.labels == [0, 2] and data.skipped_empty == 1
    with pytest.raises(DataError, match=r"nli\.jsonl: row 2: label -1 is not one of 0..2"):
        read_nli(spec, lang="en", training=False, **WHERE)
    rows[1]["label"] = 7
    bad = hub_json(write_jsonl(tmp_path / "bad.jsonl", rows))
    with pytest.raises(DataError, match=r"bad\.jsonl: row 2: label 7"):
        read_nli(bad, lang="en", training=True, **WHERE)


def test_squad_and_xquad_schema(tmp_path):
    context = "The cat sat on the mat."
    good = {"text": ["the mat"], "answer_start": [15]}
    rows = [{"id": "q1", "context": context, "question": "Where?", "answers": good}]
    spec = hub_json(write_jsonl(tmp_path / "squad.jsonl", rows))
    (example,) = read_qa(spec, lang="en", **WHERE)
    assert (example.id, example.answers, example.answer_starts) == ("q1", ("the mat",), (15,))
    rows[0]["answers"] = {"text": ["the mat"], "answer_start": [3]}
    bad = hub_json(write_jsonl(tmp_path / "bad.jsonl", rows))
    misplaced = r"bad\.jsonl: row 1 \(id q1\): answer_start 3 does not point at"
    with pytest.raises(DataError, match=misplaced):
        read_qa(bad, lang="en", **WHERE)


def test_iitb_schema_and_held_out_slices(tmp_path):
    """cfilt/iitb-english-hindi has Europarl's schema; split slices keep dev out of training."""
    rows = [{"translation": {"en": f"e{i}", "hi": f"h{i}"}} for i in range(10)]
    path = write_jsonl(tmp_path / "iitb.jsonl", rows)
    train = read_parallel(hub_json(path, split="train[:-3]"), lang="hi", **WHERE)
    dev = read_parallel(hub_json(path, split="train[-3:]"), lang="hi", **WHERE)
    assert train.sources == [f"h{i}" for i in range(7)]
    assert dev.targets == ["e7", "e8", "e9"]


def test_a_language_can_draw_its_pairs_from_several_corpora(tmp_path):
    """LargeWordOT's sw = Tanzil + GlobalVoices: sources concatenated, empties counted."""
    tanzil = tmp_path / "Tanzil.en-sw"
    Path(f"{tanzil}.sw").write_text("a b\n\nc\n", encoding="utf-8")
    Path(f"{tanzil}.en").write_text("x y\nz\nw\n", encoding="utf-8")
    voices = write_jsonl(tmp_path / "gv.jsonl", [{"translation": {"sw": "d", "en": "v"}}])
    sources = ParallelSources(
        train=SourceSpec(hub="json", data_files=str(voices), languages=["de"]),
        by_language={
            "sw": [
                SourceSpec(path=f"{tanzil}.{{lang}}", second_path=f"{tanzil}.{{pivot}}"),
                hub_json(voices),
            ]
        },
    )
    assert sources.train_sources("fr") == []  # train covers de only
    assert sources.train_sources("de") == [sources.train]
    corpus = read_parallel_sources(sources.train_sources("sw"), lang="sw", **WHERE)
    assert corpus.sources == ["a b", "c", "d"]
    assert corpus.targets == ["x y", "w", "v"]
    assert corpus.skipped_empty == 1
    assert corpus.links is None


def test_missing_columns_and_missing_files_are_named(tmp_path):
    spec = hub_json(write_jsonl(tmp_path / "odd.jsonl", [{"sentence": "x"}]))
    with pytest.raises(DataError, match=r"missing column\(s\) \['translation'\]"):
        read_parallel(spec, lang="de", **WHERE)
    with pytest.raises(DataError, match="cannot load the dataset"):
        read_parallel(hub_json(tmp_path / "absent.jsonl"), lang="de", **WHERE)
    local = SourceSpec(path=str(tmp_path / "{lang}-{pivot}.tsv"))
    with pytest.raises(DataError, match=r"de-en.tsv: no such file"):
        read_parallel(local, lang="de", **WHERE)


def test_a_source_is_a_file_or_a_hub_dataset_not_both():
    with pytest.raises(ValueError, match="exactly one of 'path'"):
        SourceSpec(path="a.tsv", hub="Helsinki-NLP/europarl")
    with pytest.raises(ValueError, match="exactly one of 'path'"):
        SourceSpec()


@pytest.mark.parametrize(
    "fields, unread",
    [
        ({"hub": "Helsinki-NLP/europarl", "alignments": "links.align"}, "alignments"),
        ({"hub": "json", "data_files": "x.jsonl", "second_path": "en.txt"}, "second_path"),
        ({"path": "a.tsv", "hub_config": "de-en"}, "hub_config"),
        ({"path": "a.tsv", "revision": "main"}, "revision"),
    ],
)
def test_a_key_the_sources_reader_would_ignore_is_refused(fields, unread):
    # alignments on a Hub dataset were dropped without a word: no AER, l2 without links
    with pytest.raises(ValueError, match=f"{unread} cannot be used with .* ignored"):
        SourceSpec(**fields)


@pytest.mark.parametrize(
    "key", ["data.parallel.dev", "data.xnli.dev", "data.xnli.test", "data.xquad.test"]
)
def test_a_held_out_hub_source_must_name_its_split(key):
    with pytest.raises(ConfigError, match=f"{key.rsplit('.', 1)[1]}: .*needs its split named"):
        load_config(None, [f'{key}={{hub: facebook/xnli, hub_config: "{{lang}}"}}'])
    named = load_config(
        None, [f'{key}={{hub: facebook/xnli, hub_config: "{{lang}}", split: test}}']
    )
    section, split = key.rsplit(".", 1)
    assert getattr(getattr(named.data, section.split(".")[1]), split).split == "test"
    # training data may leave it at the default
    train = load_config(None, ["data.xnli.train={hub: nyu-mll/multi_nli}"]).data.xnli.train
    assert (train.hub, train.split) == ("nyu-mll/multi_nli", "train")


def test_l2_without_word_alignments_is_refused_when_the_config_is_read():
    unaligned = ["data.parallel.train={path: pairs.tsv}"]
    with pytest.raises(ConfigError, match=r"alignment.method: l2 needs word alignments.* de, fr"):
        load_config(DEMO_CONFIG, [*unaligned, "alignment.method=l2"])
    offered = "tune.search_space.alignment.method.choices=[wordot, subot, none, l2]"
    with pytest.raises(ConfigError, match=r"tune.search_space: l2 needs word alignments"):
        load_config(DEMO_CONFIG, [*unaligned, offered])
    assert load_config(DEMO_CONFIG, ["alignment.method=l2"]).alignment.method == "l2"
    assert load_config(DEMO_CONFIG, unaligned).alignment.method == "wordot"


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer that splits every word into characters (many subwords per word)."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[f"##{char}"] = len(vocab)
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def test_parallel_tokenisation_indexes_whitespace_words_and_counts_truncation(tmp_path):
    corpus = ParallelCorpus(sources=["ab c", "abcdefgh ij"], targets=["x yz", "k"])
    data = tokenize_parallel(corpus, word_tokenizer(), 6, cache_dir=tmp_path)
    assert data[0]["src_word_ids"] == [-1, 0, 0, 1, -1]
    assert data[0]["tgt_word_ids"] == [-1, 0, 1, 1, -1]
    assert data["src_truncated"] == [False, True]  # 10 characters do not fit in 6 tokens
    assert data["tgt_truncated"] == [False, False]
    cached = sorted(tmp_path.glob("parallel-*.arrow"))
    assert len(cached) == 1
    again = tokenize_parallel(corpus, word_tokenizer(), 6, cache_dir=tmp_path)
    assert again["src_input_ids"] == data["src_input_ids"]
    assert sorted(tmp_path.glob("parallel-*.arrow")) == cached  # read back, not recomputed
    changed = ParallelCorpus(sources=["ab c", "abc"], targets=["x yz", "k"])
    tokenize_parallel(changed, word_tokenizer(), 6, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("parallel-*.arrow"))) == 2


def test_a_last_word_cut_in_its_middle_counts_as_truncated_and_a_full_fit_does_not(tmp_path):
    corpus = ParallelCorpus(sources=["ab cdefgh", "ab cd", "ab cd ef"], targets=["x"] * 3)
    data = tokenize_parallel(corpus, word_tokenizer(), 6, cache_dir=tmp_path)
    # "cdefgh" keeps 2 of its 6 tokens: not the word, so out of the transport (-1); last-piece
    # pooling used to read "cd" as the word
    assert data[0]["src_word_ids"] == [-1, 0, 0, -1, -1, -1]
    assert data[1]["src_word_ids"] == [-1, 0, 0, 1, 1, -1]  # a whole fit keeps every word
    assert data[2]["src_word_ids"] == [-1, 0, 0, 1, 1, -1]  # cut between words: all kept
    assert data["src_truncated"] == [True, False, True]  # "ab cd" is exactly 6 tokens


def test_a_dataset_that_is_a_loading_script_is_named_with_the_way_out(tmp_path):
    """The Hub copies of OpenSubtitles, Tanzil and GlobalVoices are loading scripts, which
    datasets 4+ refuses with a RuntimeError: it came out as a traceback."""
    folder = tmp_path / "open_subtitles"
    folder.mkdir()
    (folder / "open_subtitles.py").write_text("import datasets\n", encoding="utf-8")
    spec = SourceSpec(hub=str(folder), hub_config="en-tr", split="train")
    with pytest.raises(DataError, match=r"open_subtitles:en-tr:train: cannot load the dataset: "
                       r".*script.*OPUS's Moses files"):  # fmt: skip
        read_parallel(spec, lang="tr", **WHERE)


def test_malformed_local_json_through_the_hub_path_is_named(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"translation": {"de": "a", "en": "b"}}\n{"translation": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"json:train:.*broken\.jsonl: cannot load .*JSON parse"):
        read_parallel(hub_json(path), lang="de", **WHERE)


def test_bad_squad_rows_from_the_hub(tmp_path):
    context = "The cat sat on the mat."
    row = {"id": "q1", "context": context, "question": "Where?"}
    rows = [row | {"answers": {"text": ["."], "answer_start": [-1]}}]  # context[-1:] == "."
    bad = hub_json(write_jsonl(tmp_path / "negative.jsonl", rows))
    with pytest.raises(DataError, match=r"negative\.jsonl: row 1 \(id q1\): .*non-negative"):
        read_qa(bad, lang="en", **WHERE)
    answers = {"text": ["the mat"], "answer_start": [15]}
    rows = [row | {"answers": answers}, row | {"answers": answers}]
    twice = hub_json(write_jsonl(tmp_path / "twice.jsonl", rows))
    with pytest.raises(DataError, match=r"twice\.jsonl: row 2: id q1 repeats that of row 1"):
        read_qa(twice, lang="en", **WHERE)
    rows = [row | {"answers": {"text": [" "], "answer_start": [3]}}]  # as the file reader
    blank = hub_json(write_jsonl(tmp_path / "blank.jsonl", rows))
    with pytest.raises(DataError, match=r"blank\.jsonl: row 1 \(id q1\): answer ' ' at 3 needs"):
        read_qa(blank, lang="en", **WHERE)
    rows = [row | {"question": None, "answers": answers}]
    null = hub_json(write_jsonl(tmp_path / "null.jsonl", rows))
    with pytest.raises(DataError, match=r"null\.jsonl: row 1 \(id q1\): context and question"):
        read_qa(null, lang="en", **WHERE)


def test_an_empty_source_is_named_when_it_is_read(tmp_path):
    """Each source of a language's list, so the file at fault is the one named."""
    full = write_jsonl(tmp_path / "a.jsonl", [{"translation": {"de": "y", "en": "x"}}])
    tsv = tmp_path / "b.tsv"
    tsv.write_text("\tz\n", encoding="utf-8")
    specs = [hub_json(full), SourceSpec(path=str(tsv))]
    with pytest.raises(DataError, match=r"b\.tsv: no sentence pairs \(1 skipped for an empty side"):
        read_parallel_sources(specs, lang="de", **WHERE)


def test_an_empty_evaluation_split_is_named_before_anything_is_scored(tmp_path):
    """Zero rows used to pass every check and fail only when scored, after the training."""
    header_only = tmp_path / "test-de.tsv"
    header_only.write_text("premise\thypothesis\tlabel\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test-de\.tsv: no examples$"):
        read_nli(SourceSpec(path=str(header_only)), lang="de", training=False, **WHERE)
    squad = tmp_path / "test-de.json"
    squad.write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(DataError, match=r"test-de\.json: no questions"):
        read_qa(SourceSpec(path=str(squad)), lang="de", **WHERE)
    empty = write_jsonl(tmp_path / "dev.jsonl", [{"premise": "", "hypothesis": "b", "label": 0}])
    with pytest.raises(DataError, match=r"json:train:.*dev\.jsonl: no examples \(1 skipped"):
        read_nli(hub_json(empty), lang="de", training=True, **WHERE)
    (tmp_path / "dev.tsv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.tsv: no sentence pairs$"):
        read_parallel(SourceSpec(path=str(tmp_path / "dev.tsv")), lang="de", **WHERE)


@pytest.mark.parametrize(
    ("kind", "row", "message"),
    [
        ("qa", {"answers": [{"text": "the mat", "answer_start": 15}]}, r"needs answers as \{text"),
        ("qa", {"answers": {"text": "the mat", "answer_start": 15}}, r"needs answers as \{text"),
        ("qa", {"answers": {"text": ["the mat"], "answer_start": [True]}}, r"non-negative"),
        (
            "qa",
            {"question": " ", "answers": {"text": ["a"], "answer_start": [5]}},
            r"empty question",
        ),
        (
            "qa",
            {"id": None, "answers": {"text": ["a"], "answer_start": [0]}},
            r"row 1: needs a non-empty string \(or integer\) id, found None",
        ),
        ("nli", {"premise": 5}, r"row 1: premise and hypothesis must be strings, found 5"),
        ("nli", {"label": True}, r"row 1: label True is not one of 0..2"),
        ("parallel", {"translation": {"de": 5, "en": "x"}}, r"row 1: sentences must be strings"),
    ],
)
def test_hub_rows_of_the_wrong_shape_are_named_not_a_traceback(tmp_path, kind, row, message):
    """SQuAD-file style answers in a Hub-schema dataset, numbers for sentences, a boolean label:
    each used to end in an AttributeError or TypeError, or to be accepted."""
    base = {
        "qa": {"id": "q1", "context": "The cat sat on the mat.", "question": "Where?"},
        "nli": {"premise": "a", "hypothesis": "b", "label": 0},
        "parallel": {},
    }[kind]
    spec = hub_json(write_jsonl(tmp_path / "rows.jsonl", [base | row]))
    read = {"qa": read_qa, "parallel": read_parallel}.get(kind)
    if not message.startswith("row 1"):  # a QA row names its id too
        message = rf"row 1 \(id q1\): .*{message}"
    where = re.escape(f"json:train:{tmp_path / 'rows.jsonl'}: ")
    with pytest.raises(DataError, match=where + message):
        if read is None:
            read_nli(spec, lang="de", training=True, **WHERE)
        else:
            read(spec, lang="de", **WHERE)


def test_empty_training_questions_are_skipped_and_counted_from_the_hub_and_from_files(tmp_path):
    """The same rule on both paths: counted in training, refused in evaluation, and a training
    split of nothing but empty questions named with how many were skipped."""
    rows = [
        {"id": "q1", "context": "The cat sat.", "question": " ", "answers": {}},
        {
            "id": "q2",
            "context": "The cat sat.",
            "question": "Who sat?",
            "answers": {"text": ["The cat"], "answer_start": [0]},
        },
    ]
    spec = hub_json(write_jsonl(tmp_path / "rows.jsonl", rows))
    training = read_qa(spec, lang="en", training=True, **WHERE)
    assert [example.id for example in training] == ["q2"] and training.skipped_empty == 1
    with pytest.raises(DataError, match=r"row 1 \(id q1\): empty question"):
        read_qa(spec, lang="en", **WHERE)
    only_empty = hub_json(write_jsonl(tmp_path / "empty.jsonl", rows[:1]))
    with pytest.raises(DataError, match=r"no questions \(1 skipped for an empty question\)"):
        read_qa(only_empty, lang="en", training=True, **WHERE)


@pytest.mark.parametrize(
    ("reader", "row"),
    [
        ("nli", b'{"premise": "caf\xe9", "hypothesis": "b", "label": 0}\n'),
        ("parallel", b'{"translation": {"de": "caf\xe9", "en": "cafe"}}\n'),
        (
            "qa",
            b'{"id": "q1", "context": "caf\xe9 au lait", "question": "what?", '
            b'"answers": {"text": ["lait"], "answer_start": [8]}}\n',
        ),
    ],
)
def test_a_hub_file_that_is_not_utf8_is_named_not_a_traceback(tmp_path, reader, row):
    """Arrow loads the file and keeps the Latin-1 byte; it fails when a value is read."""
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(row)
    spec = hub_json(path)
    read = {
        "nli": lambda: read_nli(spec, lang="en", training=True, **WHERE),
        "parallel": lambda: read_parallel(spec, lang="de", **WHERE),
        "qa": lambda: read_qa(spec, lang="en", training=True, **WHERE),
    }[reader]
    with pytest.raises(
        DataError, match=r"latin1\.jsonl.*: not UTF-8 text: a value holds the byte 0xe9"
    ):
        read()


def test_a_local_file_rewritten_with_its_time_kept_is_read_again(tmp_path):
    """``datasets`` knows a local file by path and modification time: a file replaced with its
    time kept (``cp -p``, ``rsync -a``, an archive) was read from the old cache."""
    rows = [{"premise": "a", "hypothesis": "b", "label": 0}]
    path = write_jsonl(tmp_path / "dev.jsonl", rows)
    kept = path.stat()
    spec = hub_json(path)
    assert read_nli(spec, lang="de", training=False, **WHERE).labels == [0]
    write_jsonl(path, [{**rows[0], "label": 2}])
    os.utime(path, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    assert path.stat().st_mtime_ns == kept.st_mtime_ns and path.stat().st_size == kept.st_size
    assert read_nli(spec, lang="de", training=False, **WHERE).labels == [2]


def test_a_tokenizer_saved_to_pad_and_truncate_on_the_left_does_both_on_the_right(tmp_path):
    """The NLI head reads position 0: padded on the left, a short pair was classified from a
    [PAD] (QA refused such a tokenizer, after the alignment stage and XNLI had run). Saved to
    truncate on the left, a cut sentence kept the end of a word whose first pieces were cut,
    and the alignment pooled it as a whole word."""
    from conftest import tiny_encoder

    tiny_encoder(tmp_path / "encoder")
    config_file = tmp_path / "encoder" / "tokenizer_config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, "padding_side": "left", "truncation_side": "left"}))
    tokenizer = load_tokenizer(str(tmp_path / "encoder"), load_config(None))
    corpus = ParallelCorpus(sources=["ein satz dog"], targets=["a"])
    cut = tokenize_parallel(corpus, tokenizer, 4, cache_dir=tmp_path / "cache")[0]
    assert tokenizer.convert_ids_to_tokens(cut["src_input_ids"]) == [
        "[CLS]",
        "ein",
        "satz",
        "[SEP]",
    ]
    assert cut["src_word_ids"] == [-1, 0, 1, -1] and cut["src_truncated"]
    rows = [tokenizer("ein satz", "a sentence"), tokenizer("the dog runs to embed a", "satz")]
    table = datasets.Dataset.from_list([{**dict(row), "labels": 0} for row in rows])
    batch = nli_collate(tokenizer)(table, [0, 1])
    assert (batch["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert batch["attention_mask"][0].tolist() == [1] * len(rows[0]["input_ids"]) + [0] * (
        len(rows[1]["input_ids"]) - len(rows[0]["input_ids"])
    )


def test_a_csv_read_by_the_hub_builder_keeps_na_and_null_as_text(tmp_path):
    """pandas, under the ``csv`` builder, reads "NA", "None", "null" and "nan" as missing: such a
    premise became an empty side, skipped in training and scored as empty in evaluation."""
    path = tmp_path / "dev.csv"
    path.write_text(
        "premise,hypothesis,label\nNA,The man sleeps.,1\nA man sleeps.,None,0\nnull,nan,2\n",
        encoding="utf-8",
    )
    spec = SourceSpec(hub="csv", data_files=str(path), split="train")
    for training in (True, False):
        data = read_nli(spec, lang="de", training=training, **WHERE)
        assert data.premises == ["NA", "A man sleeps.", "null"]
        assert data.hypotheses == ["The man sleeps.", "None", "nan"]
        assert data.labels == [1, 0, 2] and data.skipped_empty == 0
