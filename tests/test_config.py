"""Typed config: every shipped config loads; every user mistake names file, line and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ot_ray.config import dump_config, load_config, parse_override
from ot_ray.errors import ConfigError

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    """Each shipped config loads, and its dump (what a sweep writes as best.yaml) loads back
    to the same settings."""
    config = load_config(path)
    assert load_config(_write(tmp_path, dump_config(config))) == config


def test_at_least_the_demo_config_is_shipped():
    assert REPO / "configs" / "demo.yaml" in SHIPPED


def test_the_readmes_config_examples_load(tmp_path):
    """A user copies the README's YAML blocks into a config; one whose points named a parameter
    the space did not have shipped for sessions (an audit found it)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README has no YAML example"
    for block in blocks:
        config = load_config(_write(tmp_path, block))
        if "search_space:" in block:
            assert config.tune.search_space and config.tune.points_to_evaluate


def test_dump_round_trips(tmp_path):
    config = load_config(REPO / "configs" / "demo.yaml", ["alignment.ot.tau=0.5"])
    again = load_config(_write(tmp_path, dump_config(config)))
    assert again == config


def test_overrides_are_typed_yaml_values():
    config = load_config(
        None,
        [
            "alignment.ot.epsilon=1e-2",
            "alignment.layers=[-1, -2]",
            "data.languages=[de, fr]",
            "alignment.ot.tau=null",
            "train.use_gpu=true",
        ],
    )
    assert config.alignment.ot.epsilon == 0.01
    assert config.alignment.layers == [-1, -2]
    assert config.data.languages == ["de", "fr"]
    assert config.alignment.ot.tau is None
    assert config.train.use_gpu is True


def test_later_override_wins():
    config = load_config(None, ["alignment.lr=1e-4", "alignment.lr=2e-4"])
    assert config.alignment.lr == 2e-4


def test_unknown_key_in_file_names_file_line_and_suggestion(tmp_path):
    path = _write(tmp_path, "alignment:\n  method: wordot\n  ot:\n    epsilonn: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:4" in message
    assert "alignment.ot.epsilonn" in message
    assert "unknown key" in message and "'epsilon'" in message


def test_unknown_top_level_section(tmp_path):
    path = _write(tmp_path, "modle:\n  name_or_path: x\n")
    with pytest.raises(ConfigError, match=r"config.yaml:1: modle: unknown key.*'model'"):
        load_config(path)


def test_wrong_type_names_expected_and_found(tmp_path):
    path = _write(tmp_path, "train:\n  num_workers: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{path}:2: train.num_workers: expected a valid integer" in message
    assert "found 'many' (str)" in message


def test_constraint_violation(tmp_path):
    path = _write(tmp_path, "alignment:\n  ot:\n    epsilon: -1\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}:3: alignment.ot.epsilon: expected greater "
        r"than 0; found -1 \(int\)$",
    ):  # fmt: skip
        load_config(path)


def test_wrong_type_from_override_names_the_override():
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs" / "demo.yaml", ["alignment.ot.epsilon=abc"])
    assert str(info.value).startswith("--set alignment.ot.epsilon=abc: alignment.ot.epsilon:")


@pytest.mark.parametrize("bad", ["alignment.ot.epsilon", "=3", "a..b=1", "", "a b.c=1"])
def test_bad_override_syntax(bad):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override(bad)


def test_override_into_a_scalar_is_rejected():
    message = r"'model\.name_or_path' is a str \(.*demo\.yaml:\d+\), not a section"
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "configs" / "demo.yaml", ["model.name_or_path.x=1"])


def test_override_with_invalid_yaml_value():
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["data.languages=[de, fr"])


def test_missing_file():
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config("nope.yaml")


def test_invalid_yaml_reports_line(tmp_path):
    path = _write(tmp_path, "model:\n  name_or_path: x\n alignment: [\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:\d+: invalid YAML"):
        load_config(path)


def test_duplicate_key_is_an_error(tmp_path):
    path = _write(tmp_path, "alignment:\n  lr: 1.0e-5\n  lr: 2.0e-5\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: alignment.lr: duplicate key"):
        load_config(path)


def test_a_key_that_is_not_a_name_is_an_error_at_its_own_line(tmp_path):
    """``null:`` and ``~:`` both read as the key None, ``1:`` and ``true:`` as one key (1 ==
    True): two such keys silently became one, and pydantic named the section's line."""
    for key, kind in (("null", "null"), ("~", "null"), ("1", "int"), ("true", "bool")):
        path = _write(tmp_path, f"alignment:\n  method: wordot\n  {key}: 3\n")
        with pytest.raises(
            ConfigError, match=rf"config.yaml:3: the key '{re.escape(key)}' reads as {kind}"
        ):
            load_config(path)
    path = _write(tmp_path, "data:\n  parallel:\n    by_language:\n      de:\n        - null: x\n")
    with pytest.raises(ConfigError, match=r"config.yaml:5: the key 'null' reads as null"):
        load_config(path)  # inside a list too
    path = _write(tmp_path, "base: &b {lr: 1.0e-5}\nalignment:\n  <<: *b\n  'null': 3\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4: alignment.null: unknown key"):
        load_config(path)  # a merge key is fine, a quoted null is a name (an unknown one)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model:\n  name_or_path: caf\xe9\n".encode("latin-1"))
    # where an editor shows it (it used to be a byte offset into the file)
    with pytest.raises(ConfigError, match=r"latin1\.yaml:2: not UTF-8 \(byte 0xe9 at column 20\)"):
        load_config(path)
    # columns count characters, not bytes, as editors do
    path.write_bytes("model:\n  name_or_path: caféé".encode() + b"\xff\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml:2: not UTF-8 \(byte 0xff at column 22\)"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = _write(tmp_path, "- a\n- b\n")
    top = rf"^{re.escape(str(path))}: expected a mapping at the top"
    with pytest.raises(ConfigError, match=top):
        load_config(path)


def test_cross_field_rule_mentions_the_override():
    """Named first when it alone wrote into the section; listed after the file's line when
    the section also came from the file."""
    with pytest.raises(ConfigError, match=r"^--set data\.languages=\[en, de\]: data: the pivot"):
        load_config(None, ["data.languages=[en, de]"])
    with pytest.raises(ConfigError, match=r"demo\.yaml:\d+: data: .*after --set data\.languages"):
        load_config(DEMO, ["data.languages=[en, de]"])


def test_trust_remote_code_is_off_by_default():
    assert load_config(None).model.trust_remote_code is False


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "show_config.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_cli_prints_resolved_config():
    result = _run_cli("--set", "alignment.ot.epsilon=0.01")
    assert result.returncode == 0, result.stderr
    assert "epsilon: 0.01" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "alignment.ot.epsilonn=1"], "unknown key"),
        (["--set", "alignment.lr=fast"], "expected a valid number"),
        (["--set", "alignment.lr"], "expected KEY=VALUE"),
        (["--config", "missing.yaml"], "no such config file"),
    ],
)
def test_cli_user_errors_exit_2_without_traceback(args, expected):
    result = _run_cli(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_every_batch_must_be_shared_by_all_workers(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.xquad\.batch_size: 2 cannot be shared by .* 4"):
        load_config(None, ["train.num_workers=4", "task.xquad.batch_size=2"])
    # the override that broke it is named, though it sets another section's key
    path = _write(tmp_path, "alignment:\n  lr: 1.0e-4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["train.num_workers=32"])
    assert str(caught.value) == (
        f"{path}:1: alignment.batch_size: 24 cannot be shared by train.num_workers 32 workers "
        "(after --set train.num_workers=32)"
    )


def test_an_example_key_in_a_message_does_not_blame_its_override():
    """ "(those have a dot, e.g. alignment.lr)" names no cause."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["alignment.lr=1e-4", "tune.search_space.foo={choices: [1, 2]}"])
    assert "e.g. alignment.lr" in str(caught.value)
    assert "--set alignment.lr" not in str(caught.value)


def test_an_override_into_a_section_a_file_left_empty_names_that_line(tmp_path):
    """``alignment:`` with nothing under it is null in YAML."""
    path = _write(tmp_path, "train:\n  seed: 1\nalignment:\n")
    with pytest.raises(ConfigError, match=rf"'alignment' is null \({path}:3\), not a section"):
        load_config(path, ["alignment.lr=0.1"])


def test_extends_naming_a_folder_says_so(tmp_path):
    (tmp_path / "base").mkdir()
    path = _write(tmp_path, "extends: base\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:1: extends: .*/base is a directory"):
        load_config(path)


def test_setting_one_key_of_a_section_keeps_the_sections_defaults():
    """task.xquad's default sets lr and epochs, which its fields lack; a source's default path
    gives way when the override names a Hub dataset or another file instead."""
    config = load_config(None, ["task.xquad.doc_stride=64"])
    assert (config.task.xquad.doc_stride, config.task.xquad.lr) == (64, 3e-5)
    config = load_config(None, ["data.parallel.train.languages=[de]"])
    assert config.data.parallel.train.path == "{root}/parallel/{lang}-{pivot}.tsv"
    overrides = ["data.xnli.test.hub=facebook/xnli", "data.xnli.test.split=test"]
    source = load_config(DEMO, overrides).data.xnli.test
    assert (source.hub, source.path, source.split) == ("facebook/xnli", None, "test")
    # a new file drops the default links; links alone are added to the default pairs
    source = load_config(None, ["data.parallel.train.path=mine.tsv"]).data.parallel.train
    assert (source.path, source.alignments) == ("mine.tsv", None)
    source = load_config(None, ["data.parallel.train.alignments=mine.align"]).data.parallel.train
    assert (source.path, source.alignments) == ("{root}/parallel/{lang}-{pivot}.tsv", "mine.align")


def test_numbers_are_read_as_yaml_1_2_writes_them(tmp_path):
    """PyYAML reads YAML 1.1: ``1e-5`` as text (so a search point ``1e-5`` was "outside its
    space"), ``010`` as the octal 8 and ``1:30`` as the base-60 90, each silently."""
    path = _write(
        tmp_path,
        "alignment:\n  lr: 1e-5\n  batch_size: 010\n"
        "tune:\n  search_space:\n    alignment.lr: {low: 1e-6, high: 1e-4, log: true}\n"
        "  points_to_evaluate:\n    start: {alignment.lr: 1e-5}\n",
    )
    config = load_config(path, ["train.num_workers=0x2", "data.pairs_per_language=250_000"])
    assert config.alignment.lr == 1e-5 and config.alignment.batch_size == 10
    assert config.tune.points_to_evaluate["start"]["alignment.lr"] == 1e-5
    assert config.train.num_workers == 2 and config.data.pairs_per_language == 250_000
    with pytest.raises(ConfigError, match=r"train\.num_workers: expected a valid integer.*'1:30'"):
        load_config(None, ["train.num_workers=1:30"])


def test_a_dumped_text_that_reads_as_a_number_is_quoted(tmp_path):
    """A revision such as ``1234e56`` is text; written unquoted it would read back as 1.2e59."""
    for revision in ("1234e56", "1:30", "0b101"):  # the last two read as numbers in YAML 1.1
        config = load_config(None, [f'model.revision="{revision}"', "alignment.lr=1e-5"])
        text = dump_config(config)
        assert f"revision: '{revision}'" in text
        assert load_config(_write(tmp_path, text)) == config


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.num_workers=true", "train.num_workers: expected a number, found true"),
        ("alignment.lr=True", "alignment.lr: expected a number, found true"),
        ("alignment.lr=yes", "alignment.lr: expected a valid number"),  # text, as in YAML 1.2
        ("alignment.ot.tau=false", "alignment.ot.tau: expected a number, found false"),
        ("alignment.lr=.inf", "alignment.lr: expected a finite number"),
        ("alignment.epochs=.inf", "alignment.epochs: expected a finite number"),
        ("train.seed=-1", "train.seed: expected greater than or equal to 0"),
        ("train.seed=2147483648", "train.seed: expected less than 2147483648"),
        ("alignment.layers=[-1, true]", "alignment.layers: expected a number, found true"),
        (
            "model.revision=1e3",
            "model.revision: expected a valid string; found 1000.0 (float); quote",
        ),
        ("train.seed=!!int 0b11", "is not valid YAML"),
        ("tune.seed=-3", "tune.seed: expected greater than or equal to 0"),
        ("task.tasks=[xnli, xquad, xnli]", "task.tasks: a task is named twice"),
        ("data.languages=[de, fr, de]", "data.languages: de named more than once"),
        ("data.eval_languages=[el, el]", "data.eval_languages: el named more than once"),
    ],
)
def test_values_that_would_silently_change_or_break_a_run_are_refused(override, expected):
    """A boolean read as 1, an infinite rate, a seed numpy refuses inside a worker, a task that
    would be trained twice: each refused at start-up, naming the override and the key."""
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "configs" / "demo.yaml", [override])
    assert str(info.value).startswith(f"--set {override}: ")
    assert expected in str(info.value)


def test_booleans_and_limits_still_set_what_they_should():
    config = load_config(None, ["train.use_gpu=true", "train.seed=2147483647"])
    assert config.train.use_gpu is True and config.train.seed == 2**31 - 1


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("{train.num_workers: {choices: [true, 2]}}", "True cannot be train.num_workers"),
        ("{train.seed: {choices: [0, 2147483648]}}", "2147483648 cannot be train.seed"),
        ("{alignment.lr: {low: -1.0, high: 1.0}}", "-1.0 cannot be alignment.lr"),
        ("{alignment.layers: {choices: [[-1], [true]]}}", "[True] cannot be alignment.layers"),
    ],
)
def test_search_values_a_trial_could_not_set_are_refused_at_start_up(space, expected):
    """Otherwise they fail inside a trial, partway through the sweep."""
    with pytest.raises(ConfigError, match=rf"tune: search_space\.\S+: {re.escape(expected)}"):
        load_config(DEMO, ["tune.points_to_evaluate={}", f"tune.search_space={space}"])
    point = "{p: {unbalanced: false, alignment.ot.tau: 0.0}}"
    with pytest.raises(ConfigError, match=r"points_to_evaluate\.p\.alignment\.ot\.tau: 0\.0"):
        load_config(
            DEMO,
            [
                "tune.search_space={unbalanced: {choices: [false]}, alignment.ot.tau: "
                "{choices: [0.0, 1.0], when: {unbalanced: false}}}",
                f"tune.points_to_evaluate={point}",
            ],
        )


def test_a_text_value_with_braces_gets_a_quoting_hint():
    with pytest.raises(
        ConfigError, match=r"if it is text, quote it: --set 'data\.parallel\.train\.path="
    ):
        load_config(None, ["data.parallel.train.path={root}/{lang}.tsv"])
    quoted = load_config(None, ['data.parallel.train.path="{root}/{lang}.tsv"'])
    assert quoted.data.parallel.train.path == "{root}/{lang}.tsv"


def test_a_config_that_cannot_be_read_is_named_without_a_traceback():
    """A device or an unreadable file (root reads anything, so a device stands in for both)."""
    with pytest.raises(ConfigError, match=r"/proc/self/mem: cannot read the file"):
        load_config("/proc/self/mem")


def test_only_true_and_false_are_booleans(tmp_path):
    """YAML 1.1 read the language code ``no`` (Norwegian) as false; a yes/no setting still
    takes the words pydantic knows, and a dumped ``no`` reads back as text."""
    config = load_config(
        _write(tmp_path, "data:\n  languages: [de, no]\ntrain:\n  use_gpu: off\n"),
        ["tune.search_space.train.use_gpu={choices: [on]}", "task.xnli.lr=1e-4"],
    )
    assert config.data.languages == ["de", "no"]
    assert config.train.use_gpu is False
    assert load_config(None, ["train.use_gpu=yes"]).train.use_gpu is True
    assert load_config(_write(tmp_path, dump_config(config))) == config


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("train: &t\n  seed: 1\n  nested: *t\n", 3),
        ("data:\n  languages: &l [de, *l]\n", 2),
    ],
)
def test_a_yaml_alias_inside_its_own_anchor_is_refused(tmp_path, text, line):
    """An endless value: the line collector and pydantic would recurse without end."""
    with pytest.raises(ConfigError, match=rf"config\.yaml:{line}: an alias .* contains it"):
        load_config(_write(tmp_path, text))


def test_shared_anchors_are_still_allowed_and_an_override_changes_one_place(tmp_path):
    """The same mapping used twice is not a cycle; YAML loads it as one object, which a
    ``--set`` of one of its places must not change in the other."""
    text = "task:\n  xnli: &task {lr: 1.0e-4, epochs: 2, batch_size: 8, max_length: 256}\n"
    text += "  xquad: *task\n"
    config = load_config(_write(tmp_path, text))
    assert config.task.xnli.lr == config.task.xquad.lr == 1.0e-4
    assert config.task.xquad.doc_stride == 128
    changed = load_config(_write(tmp_path, text), ["task.xnli.epochs=5"])
    assert (changed.task.xnli.epochs, changed.task.xquad.epochs) == (5, 2)


@pytest.mark.parametrize("text", ["", "# a comment only\n", "---\n"])
def test_a_config_file_without_settings_is_refused(tmp_path, text):
    """A truncated copy would otherwise run the defaults (the demo) without a word."""
    with pytest.raises(ConfigError, match=r"config\.yaml: the config file has no settings"):
        load_config(_write(tmp_path, text))
    with pytest.raises(ConfigError, match=r"^/dev/null: the config file has no settings"):
        load_config("/dev/null")


def test_one_bound_of_a_searched_key_is_set_from_the_command_line():
    """Search spaces are keyed by dotted config keys: the last part is the entry's own key."""
    config = load_config(
        DEMO,
        [
            "tune.search_space.alignment.ot.epsilon.low=2.0e-3",
            "tune.points_to_evaluate.paper.alignment.ot.epsilon=3.0e-3",
        ],
    )
    epsilon = config.tune.search_space["alignment.ot.epsilon"]
    assert (epsilon.low, epsilon.high, epsilon.log) == (2.0e-3, 5.0e-2, True)
    assert config.tune.points_to_evaluate["paper"]["alignment.ot.epsilon"] == 3.0e-3
    assert config.tune.points_to_evaluate["paper"]["alignment.method"] == "wordot"
    override = "tune.search_space.alignment.ot.epsilon.lo=0.1"
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    assert str(info.value) == (
        f"--set {override}: tune.search_space.alignment.ot.epsilon.lo: unknown key (allowed "
        "here: choices, high, int, log, low, step, when); did you mean 'low'?"
    )


def test_a_misspelt_searched_key_is_not_taken_for_an_entry_of_a_section():
    """``alignment.lrr`` is no setting: naming it is the error, not a key of ``alignment``."""
    with pytest.raises(ConfigError, match=r"alignment\.lrr: not a config key; did you mean al"):
        load_config(DEMO, ["tune.search_space.alignment.lrr={low: 1.0e-4, high: 1.0e-3}"])
    with pytest.raises(ConfigError, match=r"search_space: alignment\.ot\.epsilonn: not a config"):
        load_config(DEMO, ["tune.search_space.alignment.ot.epsilonn.low=0.1"])  # no high


def test_an_error_inside_a_section_names_the_overrides_that_wrote_there():
    """Several overrides inside the failing key: none is singled out, all are listed after;
    an override of a whole section is named first, not one written inside it later."""
    overrides = ["data.xnli.test.languages=[de]", "data.xnli.test.path=null"]
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, overrides)
    message = str(info.value)
    assert message.split(":")[0].endswith("demo.yaml")
    assert all(f"--set {override}" in message for override in overrides)
    whole = ["data.xnli={test: {path: null}}", "data.xnli.test.languages=[de]"]
    with pytest.raises(
        ConfigError, match=r"^--set data\.xnli=\{test: \{path: null\}\}: data\.xnli\.test"
    ):
        load_config(DEMO, whole)


def test_an_error_is_not_placed_at_file_lines_an_override_or_a_derived_file_replaced():
    replaced = [
        "tune.search_space={alignment.lr: {low: 1}}",
        "tune.search_space.alignment.lr.log=true",
    ]
    with pytest.raises(ConfigError, match=r"^--set tune\.search_space=\{alignment"):
        load_config(DEMO, replaced)
    derived = REPO / "configs" / "paper_largewordot.yaml"  # replaces paper_mbert's space whole
    with pytest.raises(ConfigError, match=r"^--set tune\.search_space\.alignment\.method\.low=1: "):
        load_config(derived, ["tune.search_space.alignment.method.low=1"])


def test_a_misspelt_key_inside_a_list_of_sources_lists_the_keys_allowed_there():
    with pytest.raises(ConfigError, match=r"unknown key \(allowed here: alignments, .*'path'\?"):
        load_config(None, ["data.parallel.by_language.sw=[{pathh: x.tsv}]"])
    with pytest.raises(ConfigError, match=r"^--set data\.parallel\.by_language\.sw\.x=1: .*list"):
        load_config(DEMO, ["data.parallel.by_language.sw.x=1"])  # named, not DEMO's data line


def test_a_bad_placeholder_is_refused_at_start_up_with_its_key():
    override = 'data.xnli.test.path="{root}/xnli/{langg}.tsv"'
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    assert str(info.value).startswith(
        f"--set {override}: data.xnli.test.path: bad placeholder in '{{root}}/xnli/{{langg}}.tsv'"
    )
    assert "{root} {lang} {pivot} {pair}" in str(info.value)
    literal = load_config(None, ['data.parallel.train.path="{root}/{{x}}/{pair}.tsv"'])
    assert literal.data.parallel.train.path == "{root}/{{x}}/{pair}.tsv"
    indexed = load_config(None, ['data.parallel.train.path="{root}/{lang[0]}/{lang}.tsv"'])
    assert indexed.data.parallel.train.path == "{root}/{lang[0]}/{lang}.tsv"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "tune.search_space.alignment.ot.tau.when={unbalanced: yes}",
            "'when' asks for unbalanced = 'yes', which unbalanced never takes (a config reads "
            "yes as text, not a boolean: write true or false)",
        ),
        (
            "tune.search_space.alignment.lr.when={alignment.method: [wordot, subbot]}",
            "'when' asks for alignment.method = 'subbot', which alignment.method never takes",
        ),
        (
            "tune.points_to_evaluate.paper.unbalanced=no",
            "'no' is outside its search space (a config reads no as text",
        ),
        (
            "tune.search_space.unbalanced={choices: [no, yes]}",
            "'when' asks for unbalanced = True, which unbalanced never takes (a config reads no "
            "as text",
        ),
    ],
)
def test_a_condition_or_point_the_search_never_reaches_is_refused(override, expected):
    """A ``when`` value the switch never takes would silently never sample its parameter."""
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    assert expected in str(info.value)


def test_the_boolean_hint_is_given_only_where_a_boolean_was_meant():
    text_choices = [
        "tune.search_space.train.log_level={choices: [INFO, WARNING]}",
        "tune.points_to_evaluate.paper.train.log_level=yes",
    ]
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, text_choices)
    assert "'yes' is outside its search space" in str(info.value)
    assert "true or false" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["tune.points_to_evaluate={paper (2021): {alignment.lr: 1.0e-4}}"],
            r"points_to_evaluate\.paper \(2021\): each trial logs the MLflow param .* only letters",
        ),
        (
            ["tune.points_to_evaluate={wordot+joint: {alignment.lr: 1.0e-4}}"],
            r"points_to_evaluate\.wordot\+joint: each trial logs the MLflow param",
        ),
        (
            ["tune.points_to_evaluate={a//b: {alignment.lr: 1.0e-4}}"],
            r"points_to_evaluate\.a//b: each trial logs .*, which MLflow refuses",
        ),
        (
            [
                "tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3, "
                "when: {ot(a): [true]}}, ot(a): {choices: [true, false]}}"
            ],
            r"search_space\.ot\(a\): each trial logs the MLflow param 'search\.ot\(a\)'",
        ),
        (
            ["tune.points_to_evaluate={" + "p" * 240 + ": {alignment.lr: 1.0e-4}}"],
            r"longer than MLflow's 250 characters",
        ),
        # a point with no values still logs its label
        (["tune.points_to_evaluate={a(b): {}}"], r"points_to_evaluate\.a\(b\): each trial logs"),
    ],
)
def test_names_mlflow_would_refuse_as_params_are_refused_before_the_sweep(overrides, message):
    """Each trial logs its point's label and the switches as params: MLflow refused them in
    every trial, after the cluster and the data were set up."""
    space = ["tune.search_space={alignment.lr: {low: 1.0e-5, high: 1.0e-3}}"]
    searched = space if "search_space" not in overrides[0] else []
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*searched, *overrides])


def test_a_misspelt_part_of_a_search_only_switch_gets_a_suggestion():
    with pytest.raises(ConfigError, match=r"unbalanced\.choicse: unknown key .* 'choices'\?"):
        load_config(DEMO, ["tune.search_space.unbalanced.choicse=[true]"])


@pytest.mark.parametrize(
    "override",
    [
        'tracking={uri: "http://alice:hunter2@host:5000"}',
        'tracking.uri="http://alice:hunter2@host:5000"',
        "tracking.uri=[http://alice:hunter2@host:5000",
        "tracking.uri http://alice:hunter2@host:5000",
    ],
)
def test_a_password_in_any_form_of_override_is_not_printed(override):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert "hunter2" not in str(info.value) and "alice:***@host" in str(info.value)


@pytest.mark.parametrize("name", ["team/encoder", "a:b", " "])
def test_a_model_name_mlflow_would_refuse_at_the_end_of_a_sweep_is_refused_now(name):
    with pytest.raises(ConfigError, match=r"tracking\.registered_model_name: .* cannot name"):
        load_config(None, [f'tracking.registered_model_name="{name}"'])


@pytest.mark.parametrize(
    "override",
    [
        "model.name_or_path=https://u:Zq9pass@hf.example/x",
        "data.parallel.train.path=s3://AKIAX:Zq9secret@bucket/pairs.tsv",
        "data.xnli.train.hub=https://h.example/x?token=Zq9abc",
    ],
)
def test_no_setting_may_carry_a_secret_since_configs_are_logged(override):
    """Only tracking.uri was checked: a password in a model, data or storage URI went into
    MLflow params and best.yaml."""
    key = override.split("=", 1)[0]
    with pytest.raises(
        ConfigError, match=rf"{key}: the value carries .* through the environment"
    ) as caught:
        load_config(None, [override])
    assert "Zq9" not in str(caught.value)


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    """Nine lines of aliases to aliases: copying them out took minutes and gigabytes, then a
    MemoryError traceback."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"expands to 1,234,567,909 values through its aliases"):
        load_config(path)


@pytest.mark.parametrize(
    "override", ["tune.best_config=nosub/best.yaml", "tune.best_config=/etc/x", "tune.name=../up"]
)
def test_the_sweeps_names_stay_inside_its_storage(override):
    """A path here put the sweep or its best config outside the sweep's folder (or failed with
    a traceback at the sweep's end, after every trial)."""
    with pytest.raises(ConfigError, match=r"a plain file name is needed here"):
        load_config(None, [override])


@pytest.mark.parametrize("key", ["train.storage_path", "tune.storage_path"])
def test_ray_storage_is_a_folder_not_an_object_store_uri(key):
    """A URI was resolved as a local path (``./s3:/bucket/runs``): checkpoints went to each
    node's disk, and a restart on another node found none."""
    with pytest.raises(ConfigError, match=rf"{key}: s3://\.\.\. is a URI; give a folder") as caught:
        load_config(None, [f"{key}=s3://bucket/runs"])
    assert caught.value.key == key
    with pytest.raises(ConfigError, match=r"s3://\.\.\. is a URI") as caught:
        load_config(None, [f"{key}=s3://AKIAX:Zq9secret@bucket/ray"])
    assert "Zq9" not in str(caught.value)
    assert load_config(None, [f"{key}=/mnt/shared/runs"]) is not None


def test_moses_pretokenisation_is_refused_with_link_files_that_index_other_words():
    with pytest.raises(ConfigError, match=r"pretokenize: moses cannot be used with word align"):
        load_config(None, ["data.parallel.pretokenize=moses"])  # the demo world's links
    unlinked = [
        "data.parallel.pretokenize=moses",
        "data.parallel.train={path: a.tsv}",
        "data.parallel.dev={path: b.tsv}",
    ]
    assert load_config(None, unlinked).data.parallel.pretokenize == "moses"
    with pytest.raises(ConfigError, match=r"\(by_language\.sw\)"):
        load_config(None, [*unlinked, "data.parallel.by_language={sw: [{path: c, alignments: d}]}"])


def test_the_seen_averages_take_the_aligned_languages_unless_told_otherwise():
    aligned = ["data.languages=[de, fr, ar]"]
    assert load_config(None, aligned).data.seen == ["de", "fr", "ar"]
    assert load_config(None, [*aligned, "data.seen_languages=[de, fr]"]).data.seen == ["de", "fr"]
    with pytest.raises(ConfigError, match=r"data\.seen_languages: el not aligned"):
        load_config(None, [*aligned, "data.seen_languages=[de, el]"])
