"""The paper configs read their data as they name it, through ``datasets.load_dataset``.

Each Hub dataset the paper configs name is recreated locally in its Hub layout: parquet files per
config and split, declared in the README's ``configs`` metadata (how the Hub's parquet datasets
are laid out), with the Hub's column names and label encodings. The configs are then loaded with
only the dataset ids replaced by those folders, and every source is read as a trial reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest
import tokenizers
import transformers
import yaml

from ot_ray.config import Config, load_config, load_config_data
from ot_ray.data.sources import read_parallel, read_qa
from ot_ray.errors import DataError
from ot_ray.preflight import check_data, check_model

REPO = Path(__file__).resolve().parent.parent
XNLI_LANGS = ["ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi"]
XNLI_LANGS += ["zh"]
XQUAD_LANGS = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]
PAIRS = {"europarl": ["bg-en", "de-en", "el-en", "en-es", "en-fr"], "multiun": ["ar-en", "en-ru"]}
PAIRS["multiun"] += ["en-zh"]
XNLI_SPLITS = (("validation", 3), ("test", 4))


def hub_repo(root: Path, files: dict[str | None, dict[str, list[dict[str, Any]]]]) -> Path:
    """A local dataset repository laid out like a Hub parquet dataset: per config and split a
    parquet file, declared in README.md's ``configs`` metadata."""
    configs = []
    for config, splits in files.items():
        name = config or "default"
        data_files = []
        for split, rows in splits.items():
            path = root / name / f"{split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(path))
            data_files.append({"split": split, "path": f"{name}/{split}-*.parquet"})
        configs.append({"config_name": name, "data_files": data_files})
    header = yaml.safe_dump({"configs": configs}, sort_keys=False)
    (root / "README.md").write_text(f"---\n{header}---\n", encoding="utf-8")
    return root


def translations(pair: str, n: int) -> list[dict[str, Any]]:
    first, second = pair.split("-")
    return [{"translation": {first: f"{first} {i}", second: f"{second} {i}"}} for i in range(n)]


def nli(n: int, lang: str, split: str) -> list[dict[str, Any]]:
    """Pairs of their own split: the trial drops training pairs a dev or test set holds."""
    return [
        {"premise": f"{lang} {split} p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(n)
    ]


def squad(n: int, lang: str, dataset: str) -> list[dict[str, Any]]:
    """Questions of their own dataset (ids, texts) and row, each about a paragraph of its own:
    the trial drops training questions an evaluation set holds (the same id, or any question
    about a paragraph an evaluation set asks about)."""
    return [
        {
            "id": f"{dataset}-{lang}-{i}",
            "title": "t",
            "context": f"{lang} {dataset} {i}: the cat sat on the mat",
            "question": f"where is the cat {i}?",
            "answers": {"text": ["the mat"], "answer_start": [len(f"{lang} {dataset} {i}: ") + 15]},
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    """Local copies of every Hub dataset the paper configs read, keyed by Hub id."""
    root = tmp_path_factory.mktemp("hub")
    europarl = {pair: {"train": translations(pair, 2010)} for pair in PAIRS["europarl"]}
    multiun = {pair: {"train": translations(pair, 5)} for pair in PAIRS["multiun"]}
    mnli = [
        *nli(6, "en", "train"),
        {"premise": "x", "hypothesis": "y", "label": -1},
    ]  # unlabelled row
    return {
        "Helsinki-NLP/europarl": hub_repo(root / "europarl", europarl),
        "Helsinki-NLP/multiun": hub_repo(root / "multiun", multiun),
        "cfilt/iitb-english-hindi": hub_repo(
            root / "iitb", {None: {"train": translations("en-hi", 5)}}
        ),
        "nyu-mll/multi_nli": hub_repo(root / "mnli", {None: {"train": mnli}}),
        "facebook/xnli": hub_repo(
            root / "xnli",
            {lang: {split: nli(n, lang, split) for split, n in XNLI_SPLITS} for lang in XNLI_LANGS},
        ),
        "rajpurkar/squad": hub_repo(
            root / "squad",
            {
                "plain_text": {
                    "train": squad(2003, "en", "squad"),
                    "validation": squad(2, "en", "squad-dev"),
                }
            },
        ),
        "google/xquad": hub_repo(
            root / "xquad",
            {f"xquad.{x}": {"validation": squad(2, x, "xquad")} for x in XQUAD_LANGS},
        ),
        # the encoders with the Hub's layers and vocabularies (the driver checks both), in
        # width 8: weights and a tokenizer of the real size, in megabytes
        "google-bert/bert-base-multilingual-cased": stand_in(
            root / "mbert", transformers.BertConfig, vocab_size=119547
        ),
        "FacebookAI/xlm-roberta-base": stand_in(
            root / "xlmr", transformers.XLMRobertaConfig, vocab_size=250002
        ),
    }


def stand_in(folder: Path, config_class: type, *, vocab_size: int) -> Path:
    """A 12-layer encoder of width 8 with ``vocab_size`` tokens, and a tokenizer of as many."""
    config = config_class(
        vocab_size=vocab_size, hidden_size=8, num_attention_heads=1, intermediate_size=8
    )
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = (f"w{i}" for i in range(vocab_size - len(special)))
    vocab = {token: index for index, token in enumerate([*special, *words])}
    backend = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("unk", "pad", "cls", "sep", "mask")},
    ).save_pretrained(folder)
    return folder


def localised(path: Path, hub: dict[str, Path], *overrides: str) -> Config:
    """The config at ``path`` with each Hub dataset id replaced by its local copy."""
    data = load_config(path, list(overrides)).model_dump(mode="json")
    data["model"]["name_or_path"] = str(hub[data["model"]["name_or_path"]])

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get("hub") in hub:
                value = {**value, "hub": str(hub[value["hub"]])}
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        return value

    return load_config_data(swap(data), {}, origin=str(path))


def test_paper_mbert_reads_every_source_it_names(hub):
    # the stand-in MultiNLI has 6 rows: batches that size, or the driver refuses it (no step)
    config = localised(REPO / "configs" / "paper_mbert.yaml", hub, "task.xnli.batch_size=6")
    check_model(config)  # as resolve_paths checks it
    check_data(config)  # every split of every language, as the trial's driver checks them


def test_europarl_training_and_held_out_pairs_do_not_overlap(hub):
    config = localised(REPO / "configs" / "paper_mbert.yaml", hub)
    where = {"root": config.data.root, "lang": "fr", "pivot": "en"}
    train = read_parallel(config.data.parallel.train, **where)
    dev = read_parallel(config.data.parallel.dev, **where)
    assert (len(train), len(dev)) == (10, 2000)  # the last 2,000 pairs are held out
    assert not set(train.sources) & set(dev.sources)


def test_the_qa_dev_set_is_not_where_xquad_test_comes_from(hub):
    """XQuAD's test questions are taken from SQuAD v1.1's dev set: a sweep choosing on that set
    chose on the test questions. Dev is held out of SQuAD's training split instead."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        sources = load_config(path).data.xquad
        for spec in (sources.train, sources.dev):
            assert not (spec.hub == "rajpurkar/squad" and spec.split == "validation"), path
    config = localised(REPO / "configs" / "paper_mbert.yaml", hub)
    where = {"root": config.data.root, "lang": "en", "pivot": "en"}
    train = read_qa(config.data.xquad.train, **where)
    dev = read_qa(config.data.xquad.dev, **where)
    assert (len(train), len(dev)) == (3, 2000)
    assert not {e.id for e in train} & {e.id for e in dev}


def test_largewordot_reads_its_hub_corpora(hub):
    config = localised(REPO / "configs" / "paper_largewordot.yaml", hub)
    for lang in ("ar", "ru", "zh", "hi"):
        (spec,) = config.data.parallel.train_sources(lang)
        corpus = read_parallel(spec, root=config.data.root, lang=lang, pivot="en")
        assert corpus.sources[0] == f"{lang} 0" and corpus.targets[0] == "en 0"
    (spec, _) = config.data.parallel.train_sources("sw")
    with pytest.raises(DataError, match=r"Tanzil\.en-sw\.sw: no such file"):
        read_parallel(spec, root=config.data.root, lang="sw", pivot="en")
