"""What a search may vary: trials are compared stage by stage on one dev objective, so the
keys that set the tasks, the scoring or where results go are the sweep's, and a search-only
switch that is off means its key's default, not the base config's value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ot_ray.config import load_config
from ot_ray.errors import ConfigError
from ot_ray.search.milestones import finished
from ot_ray.search.space import apply_params

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def searching(entry: str, *overrides: str) -> list[str]:
    """Overrides that make ``entry`` the whole search space (the demo's points dropped)."""
    return ["tune.points_to_evaluate={}", f"tune.search_space={{{entry}}}", *overrides]


def test_a_searched_task_list_is_refused_with_why():
    """A trial of [xnli] was read against the base config's two milestones: PRUNED for Optuna,
    "interrupted" for the summary (exit 130 on every resume), and ASHA ranked its XNLI accuracy
    against XQuAD F1 at one rung."""
    entry = "task.tasks: {choices: [[xnli], [xquad, xnli]]}"
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO, searching(entry))
    message = str(caught.value)
    assert "search_space.task.tasks: a search cannot vary task.tasks" in message
    assert "same tasks in the same order" in message and "milestones" in message


def test_a_trials_last_report_is_finished_whatever_the_milestone_count():
    """The final report says stage ``done``; the milestone count stays the rule before it."""
    assert finished({"milestone": 1, "stage": "done"}, 2)
    assert not finished({"milestone": 1, "stage": "xquad"}, 2)
    assert finished({"milestone": 2, "stage": "xquad"}, 2)
    assert not finished({"milestone": 0, "stage": "align"}, 0)


@pytest.mark.parametrize(
    ("entry", "refused"),
    [
        ("tune.objective: {choices: [[xnli/dev/acc/avg_targets], [xquad/dev/f1/avg_targets]]}",
         "tune.objective: the sweep's own settings"),
        ("tune.mode: {choices: [max, min]}", "tune.mode: the sweep's own settings"),
        ("tracking.experiment: {choices: [a, b]}", "tracking.experiment: all the sweep's trials"),
        ("task.xnli.max_eval: {choices: [100, 400]}", "task.xnli.max_eval: it sets how many dev"),
        ("task.xquad.max_eval: {low: 50, high: 100, int: true}", "task.xquad.max_eval: it sets"),
        ("data.eval_languages: {choices: [[de], [de, fr]]}", "data.eval_languages: it sets the"),
        ("data.pivot: {choices: [en, el]}", "data.pivot: the objective's averages leave"),
        ("data.seen_languages: {choices: [[de], [fr]]}", "data.seen_languages: it trains nothing"),
        ("data.xnli.dev.path: {choices: [a.tsv, b.tsv]}", "data.xnli.dev.path: trials would be"),
        ("data.xquad.test: {choices: [{path: a.json}]}", "data.xquad.test: the summary compares"),
        # an alignment-only sweep ranks on retrieval over these: fewer candidates score higher
        ("alignment.eval_pairs: {choices: [100, 500]}", "alignment.eval_pairs: it sets how many"),
        ("data.parallel.dev: {choices: [{path: a.tsv}]}", "data.parallel.dev: its held-out pairs"),
        # a searched section replaces every key in it, a refused one included
        ("task.xnli: {choices: [{lr: 1.0e-4, epochs: 1}]}", "task.xnli: it holds task.xnli.max_"),
    ],
)  # fmt: skip
def test_keys_that_set_the_scoring_or_the_records_cannot_be_searched(entry, refused):
    """Trials would otherwise optimise different objectives (or land in different places), and
    the best trial would be picked among numbers that do not compare."""
    with pytest.raises(ConfigError) as caught:
        load_config(DEMO, searching(entry))
    assert f"a search cannot vary {refused}" in str(caught.value)


def test_searched_aligned_languages_must_not_change_the_languages_scored():
    """``data.languages`` is also the scored languages where ``data.eval_languages`` is empty,
    and the seen ones where ``data.seen_languages`` is unset."""
    entry = "data.languages: {choices: [[de], [de, fr]]}"
    with pytest.raises(ConfigError, match=r"data\.languages: with data\.eval_languages empty"):
        load_config(DEMO, searching(entry, "data.eval_languages=[]"))
    seen = ["data.eval_languages=[de, fr]", "tune.objective=[xnli/dev/acc/avg_seen_targets]"]
    with pytest.raises(ConfigError, match=r"avg_seen_targets averages the seen languages"):
        load_config(DEMO, searching(entry, *seen))
    for fixed in (["data.eval_languages=[de, fr]"], [*seen, "data.seen_languages=[de]"]):
        assert load_config(DEMO, searching(entry, *fixed)).tune.search_space


def test_what_a_search_may_vary_is_still_searched():
    """Training choices stay searchable, model selection by dev curve included."""
    entries = (
        "task.xnli.select_every: {choices: [50, 100]}",
        "task.xnli.lr: {low: 1.0e-5, high: 1.0e-4, log: true}",
        "train.seed: {choices: [0, 1]}",
        "data.parallel.train.path: {choices: [a.tsv, b.tsv]}",
    )
    for entry in entries:
        assert load_config(DEMO, searching(entry)).tune.search_space


SWITCHED = (
    "alignment.method: {choices: [wordot, none]}, "
    "unbalanced: {choices: [false, true], when: {alignment.method: wordot}}, "
    "alignment.ot.tau: {low: 10.0, high: 1000.0, log: true, when: {unbalanced: true}}, "
    "alignment.ot.epsilon: {low: 1.0e-3, high: 1.0e-2, log: true, when: {alignment.method: wordot}}"
)


def test_a_switch_that_is_off_means_its_keys_default_not_the_base_configs():
    """With ``alignment.ot.tau: 100`` in the base config, every ``unbalanced: false`` trial (and
    the paper's reference point) still ran unbalanced OT."""
    config = load_config(
        DEMO, searching(SWITCHED, "alignment.ot.tau=100", "alignment.ot.epsilon=0.004")
    )
    balanced = apply_params(config, {"alignment.method": "wordot", "unbalanced": False})
    assert balanced.alignment.ot.tau is None
    baseline = apply_params(config, {"alignment.method": "none"})  # the switch never sampled
    assert baseline.alignment.ot.tau is None
    sampled = {"alignment.method": "wordot", "unbalanced": True, "alignment.ot.tau": 50.0}
    assert apply_params(config, sampled).alignment.ot.tau == 50.0
    # a key gated on a setting, not a switch, keeps the base config's value where unsampled
    assert baseline.alignment.ot.epsilon == 0.004
    assert config.alignment.ot.tau == 100  # the base config is not modified


def test_a_switched_keys_default_must_fit_the_base_config():
    """A trial with the switch off takes the default: one the base config refuses would fail
    every such trial as it starts, so it is said at load time."""
    entry = (
        "wide: {choices: [false, true]}, "
        "task.xquad.doc_stride: {choices: [32, 48], when: {wide: true}}"
    )
    with pytest.raises(ConfigError, match=r"doc_stride \(its default, taken where its switch is "
                       r"off\): 128 cannot be task\.xquad\.doc_stride"):  # fmt: skip
        load_config(DEMO, searching(entry, "task.xquad.max_length=64", "task.xquad.doc_stride=32"))


def test_a_searched_source_path_keeps_the_base_sources_other_keys():
    """A ``--set ...path=`` replaces a source whole (README); a trial's sampled path is one
    choice of the base source: it lost the base's links, and every l2 trial failed."""
    entry = "data.parallel.train.path: {choices: [a.tsv, b.tsv]}"
    config = load_config(DEMO, searching(entry, "alignment.method=l2"))
    assert config.data.parallel.train.alignments
    trial = apply_params(config, {"data.parallel.train.path": "b.tsv"})
    assert trial.data.parallel.train.path == "b.tsv"
    assert trial.data.parallel.train.alignments == config.data.parallel.train.alignments
