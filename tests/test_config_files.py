"""Config files and ``--set`` values: what a review found read wrongly, silently or with a
traceback (partly written task sections, sources switched by ``--set``, duplicate keys in lists,
paths the system will not look at, deep or endless YAML, errors without a line, the dump)."""

from __future__ import annotations

import subprocess
import sys
from functools import reduce
from pathlib import Path

import pytest
from pydantic import ValidationError

from ot_ray.config import dump_config, load_config
from ot_ray.config.messages import rewritten
from ot_ray.config.stages import TaskTrainConfig
from ot_ray.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "configs" / "paper_mbert.yaml"


def _write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_task_section_written_in_part_keeps_the_tasks_defaults(tmp_path):
    """It was refused ("lr: expected field required; found {...}") although ``--set`` of the
    same key starts from the task's defaults."""
    text = "task:\n  xnli:\n    select_every: 100\n  xquad:\n    doc_stride: 64\n"
    task = load_config(_write(tmp_path, text)).task
    assert (task.xnli.lr, task.xnli.epochs, task.xnli.select_every) == (2e-5, 5, 100)
    assert (task.xquad.lr, task.xquad.epochs, task.xquad.max_length) == (3e-5, 3, 384)
    assert (
        task == load_config(None, ["task.xnli.select_every=100", "task.xquad.doc_stride=64"]).task
    )
    assert load_config(_write(tmp_path, "task:\n  xnli: {lr: 1.0e-4}\n")).task.xnli.epochs == 5


def test_a_missing_key_says_what_to_write_not_the_whole_section():
    with pytest.raises(ValidationError) as info:
        TaskTrainConfig.model_validate({"select_every": 100})
    message = str(rewritten(info.value, {"lr": "x.yaml:2"}, "x.yaml"))
    assert (
        message.splitlines()[0]
        == "x.yaml:2: lr: missing: the config must give lr (it has no default)"
    )


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ("data.xnli.dev", "/tmp/x.tsv", {"hub": None, "hub_config": None, "split": "train"}),
        ("data.parallel.train", "/tmp/p.tsv", {"hub": None, "hub_config": None}),
        # which languages have the source is not part of its origin: kept
        ("data.xquad.test", "/tmp/q-{lang}.json", {"hub": None, "languages": ["en", "ar"]}),
    ],
)
def test_a_path_set_on_a_hub_source_a_file_wrote_replaces_it(source, value, expected):
    """It kept the file's ``hub`` and was refused as two origins, blamed on the file's line."""
    spec = reduce(getattr, source.split("."), load_config(PAPER, [f"{source}.path={value}"]))
    found = spec.model_dump()
    found["languages"] = found["languages"][:2] if found["languages"] else None
    assert spec.path == value
    assert {key: found[key] for key in expected} == expected


def test_a_new_origin_keeps_what_earlier_overrides_gave_it_in_any_order(tmp_path):
    """``split`` then ``hub`` was refused (blamed on the config file), ``hub`` then ``split``
    worked; a file's local source gave its links to a new file."""
    wanted = ("facebook/xnli", None, "validation")
    for overrides in (
        ["data.xnli.dev.split=validation", "data.xnli.dev.hub=facebook/xnli"],
        ["data.xnli.dev.hub=facebook/xnli", "data.xnli.dev.split=validation"],
    ):
        dev = load_config(None, overrides).data.xnli.dev
        assert (dev.hub, dev.path, dev.split) == wanted
    text = "data:\n  parallel:\n    train: {path: a.tsv, alignments: a.align}\n"
    path = _write(tmp_path, text)
    train = load_config(path, ["data.parallel.train.path=b.tsv"]).data.parallel.train
    assert (train.path, train.alignments) == ("b.tsv", None)
    for overrides in (
        ["data.parallel.train.alignments=b.align", "data.parallel.train.path=b.tsv"],
        ["data.parallel.train.path=b.tsv", "data.parallel.train.alignments=b.align"],
    ):
        train = load_config(path, overrides).data.parallel.train
        assert (train.path, train.alignments) == ("b.tsv", "b.align")
    hub = load_config(path, ["data.parallel.train.hub=x/y"]).data.parallel.train
    assert (hub.hub, hub.path, hub.alignments) == ("x/y", None, None)


@pytest.mark.parametrize(
    "item", ["- path: a.tsv\n          path: b.tsv\n", "- {split: x, path: a.tsv, path: b.tsv}\n"]
)
def test_a_duplicate_key_inside_a_list_item_is_refused_at_its_line(tmp_path, item):
    text = "data:\n  parallel:\n    by_language:\n      de:\n        - path: c.tsv\n        " + item
    line = 7 if item.count("\n") == 2 else 6
    with pytest.raises(
        ConfigError, match=rf"config\.yaml:{line}: data\.parallel\.by_language\.de\.1\.path: dup"
    ):
        load_config(_write(tmp_path, text))


def test_an_error_inside_a_list_item_names_the_items_line(tmp_path):
    text = "data:\n  parallel:\n    by_language:\n      de:\n        - path: a.tsv\n"
    text += "        - pathh: b.tsv\n"
    with pytest.raises(ConfigError, match=r"config\.yaml:6: data\.parallel\.by_language\.de\.1\."):
        load_config(_write(tmp_path, text))


def _refuse_looking_at(monkeypatch, name: str) -> None:
    """A folder without search permission (root may look anywhere, so it is pretended)."""
    for method in ("is_dir", "is_file", "exists"):
        real = getattr(Path, method)

        def refuse(self, real=real):
            if self.name == name:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, method, refuse)


def test_a_config_path_that_cannot_be_looked_at_is_one_line_of_error(tmp_path, monkeypatch):
    path = _write(tmp_path, "train:\n  seed: 1\n")
    child = _write(tmp_path, "extends: config.yaml\n", "child.yaml")
    _refuse_looking_at(monkeypatch, "config.yaml")
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read the file: Permission denied"):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"child\.yaml:1: extends: cannot read .*config\.yaml: Permission denied"
    ):
        load_config(child)


def test_a_file_name_too_long_is_one_line_of_error(tmp_path):
    long_name = "x" * 300 + ".yaml"
    with pytest.raises(ConfigError, match=r"x\.yaml: cannot read the file: File name too long"):
        load_config(tmp_path / long_name)
    child = _write(tmp_path, f"extends: {long_name}\n", "child.yaml")
    with pytest.raises(ConfigError, match=r"child\.yaml:1: extends: cannot read .*too long"):
        load_config(child)
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "show_config.py"), "--config", str(child)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, "Traceback" in result.stderr) == (2, False), result.stderr


def test_an_endless_or_nested_set_value_is_refused_as_a_file_is():
    """Both ended in a RecursionError traceback."""
    with pytest.raises(ConfigError, match=r"^--set tune\.points_to_evaluate=.*an alias .* endless"):
        load_config(None, ["tune.points_to_evaluate=&x {a: *x}"])
    deep = "[" * 500 + "]" * 500
    with pytest.raises(ConfigError, match=r"^--set data\.languages=\[+.*nested more than 100"):
        load_config(None, [f"data.languages={deep}"])
    with pytest.raises(ConfigError, match=r"tune\.points_to_evaluate\.a: duplicate key"):
        load_config(None, ["tune.points_to_evaluate={a: {}, a: {}}"])


def test_yaml_nested_too_deep_is_refused_at_its_line(tmp_path):
    """500 brackets, or a chain of aliases each nesting the one before (which the text does
    not show), ended in a RecursionError traceback."""
    deep = "train:\n  seed: 1\na: " + "[" * 500 + "]" * 500 + "\n"
    with pytest.raises(ConfigError, match=r"config\.yaml:3: nested more than 100 levels deep$"):
        load_config(_write(tmp_path, deep))
    chain = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 1200))
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+: nested more .* through its aliases"):
        load_config(_write(tmp_path, chain))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!int abc", r":2:9: invalid YAML: cannot read 'abc' as int"),
        ("!!float abc", r":2:9: invalid YAML: cannot read 'abc' as float"),
        ("!!bool maybe", r":2:9: invalid YAML: cannot read 'maybe' as bool"),
        ("a\x01b", r":2:10: invalid YAML: unacceptable character #x0001"),
    ],
)
def test_a_yaml_error_names_its_line(tmp_path, value, expected):
    """A tag on text it cannot read had no line (``!!bool`` was a KeyError traceback), a
    control character a position in the file."""
    path = _write(tmp_path, f"train:\n  seed: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{path}{expected}"):
        load_config(path)


def test_the_dump_writes_int_as_configs_do_and_reads_back(tmp_path):
    config = load_config(
        None, ["tune.search_space.alignment.batch_size={low: 8, high: 32, int: true}"]
    )
    text = dump_config(config)
    assert "is_int" not in text and "int: true" in text
    assert load_config(_write(tmp_path, text)) == config


def test_an_extends_cycle_names_the_files_it_goes_through(tmp_path):
    _write(tmp_path, "extends: b.yaml\n", "a.yaml")
    _write(tmp_path, "extends: c.yaml\n", "b.yaml")
    _write(tmp_path, "extends: a.yaml\n", "c.yaml")
    with pytest.raises(
        ConfigError,
        match=r"c\.yaml:1: extends: a\.yaml extends itself through b\.yaml and c\.yaml$",
    ):
        load_config(tmp_path / "a.yaml")
    _write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(
        ConfigError, match=r"b\.yaml:1: extends: a\.yaml extends itself through b\.yaml$"
    ):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    "text", ["extends:\ntrain:\n  seed: 1\n", "extends: ''\ntrain: {seed: 1}\n"]
)
def test_an_empty_extends_is_refused(tmp_path, text):
    """It was dropped without a word: the run went on without the base's settings."""
    with pytest.raises(ConfigError, match=r"config\.yaml:1: extends: expected a file name, found"):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('train.output_dir=""', r"train\.output_dir: expected a name, found '' \(blank\)"),
        ('data.pivot=" "', r"data\.pivot: expected a name"),
        ('data.languages=[de, ""]', r"data\.languages\.1: expected a name"),
        ('data.eval_languages=[""]', r"data\.eval_languages\.0: expected a name"),
        ('model.name_or_path=""', r"model\.name_or_path: expected a name"),
        ('tracking.uri=""', r"tracking\.uri: expected a name"),
        ('tracking.experiment=""', r"tracking\.experiment: expected a name"),
    ],
)
def test_an_empty_name_is_refused(override, message):
    """``train.output_dir=""`` wrote into the current folder, and a language or pivot ``""``
    filled ``{lang}`` with nothing."""
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("value", ["yes", "on", "1", '"true"'])
def test_only_true_runs_a_model_repositorys_own_code(value):
    """The other yes/no settings take ``yes``, ``on`` or ``1``; this one runs foreign code."""
    with pytest.raises(ConfigError, match=r"trust_remote_code: expected true or false \(only"):
        load_config(None, [f"model.trust_remote_code={value}"])
    assert load_config(None, ["model.trust_remote_code=true"]).model.trust_remote_code is True


def test_a_bad_tag_in_a_set_value_is_one_clean_line():
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["alignment.ot.epsilon=!!float abc"])
    message = str(caught.value)
    assert "cannot read 'abc' as float" in message and "<unicode string>" not in message
    assert "\n" not in message


def test_a_setting_refused_after_loading_is_said_with_where_it_was_written(tmp_path, capsys):
    """A folder, the data or the model is checked after the config loads: the error named the
    key but not the file and line (or the --set) that wrote it."""
    from ot_ray import cli

    config = _write(tmp_path, "train:\n  seed: 1\n  output_dir: somewhere\n")

    def main(argv):
        cli.config_from_args(cli.config_parser("test").parse_args(argv))
        raise ConfigError("somewhere is a file, not a folder", key="train.output_dir")

    def error_of(*argv: str) -> str:
        with pytest.raises(SystemExit) as stopped:
            cli.run(main, ["--config", str(config), *argv])
        assert stopped.value.code == cli.USAGE_ERROR
        return capsys.readouterr().err

    where = f"{config}:3: train.output_dir"
    assert error_of() == f"error: {where}: somewhere is a file, not a folder\n"
    assert error_of("--set", "train.output_dir=x").startswith(
        "error: --set train.output_dir=x: train.output_dir: somewhere"
    )
    assert error_of("--set", "train={output_dir: y}").startswith(
        "error: --set train={output_dir: y}: train.output_dir: somewhere"
    )
    _write(tmp_path, "train:\n  seed: 1\n")  # the key left at its default: no place to name
    assert error_of() == "error: train.output_dir: somewhere is a file, not a folder\n"
