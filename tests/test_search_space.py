"""The YAML search space: validation, define-by-run sampling with Optuna, reference points,
turning a trial's values into a config, and config files that extend others."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from ot_ray.config import load_config
from ot_ray.errors import ConfigError
from ot_ray.search.milestones import MilestoneOptunaSearch, MilestoneReporter
from ot_ray.search.scheduler import (
    RUNGS_FILE,
    ReferenceKeepingASHA,
    make_scheduler,
    pruned_trials,
)
from ot_ray.search.space import (
    REFERENCE_KEY,
    DefineByRun,
    apply_params,
    condition_holds,
    enqueued_points,
    rebuilt_study,
    trial_overrides,
)
from ot_ray.search.sweep import trial_outcome, trials_to_run

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"

SPACE_YAML = """
tune:
  search_space:
    alignment.method: {choices: [wordot, subot, none]}
    alignment.ot.epsilon:
      {low: 1.0e-3, high: 1.0e-1, log: true, when: {alignment.method: [wordot, subot]}}
    alignment.layers: {choices: [[-1], [-2, -1]], when: {alignment.method: [wordot, subot]}}
    unbalanced: {choices: [false, true], when: {alignment.method: [wordot, subot]}}
    alignment.ot.tau: {low: 0.1, high: 10.0, log: true, when: {unbalanced: true}}
    alignment.batch_size: {low: 8, high: 32, int: true, step: 8}
  points_to_evaluate:
    baseline: {alignment.method: none, alignment.batch_size: 16}
    paper: {alignment.method: wordot, alignment.ot.epsilon: 0.0025, alignment.layers: [-1],
            unbalanced: false, alignment.batch_size: 24}
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE_YAML)
    return load_config(path)


def sample(config, n: int, seed: int = 0, enqueue: bool = True) -> list[dict]:
    """Run the define-by-run function through a real Optuna study, as OptunaSearch does, with
    the points the sweep enqueues."""
    space, points = config.tune.search_space, config.tune.points_to_evaluate
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    if enqueue:
        for point in enqueued_points(space, points, seed):
            study.enqueue_trial(point)
    function = DefineByRun(space, points)
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = function(trial)
        out.append({**trial.params, **constants})
        study.tell(trial, 0.0)
    return out


def test_conditional_parameters_are_sampled_only_where_they_mean_something(config):
    samples = sample(config, 40)
    # both sides of each condition occur, so the checks below test something either way
    assert {p["alignment.method"] != "none" for p in samples} == {True, False}
    assert {"alignment.ot.tau" in p for p in samples} == {True, False}
    for params in samples:
        aligned = params["alignment.method"] != "none"
        assert ("alignment.ot.epsilon" in params) == aligned
        assert ("unbalanced" in params) == aligned
        assert ("alignment.ot.tau" in params) == bool(params.get("unbalanced"))
        if "alignment.ot.tau" in params:
            assert 0.1 <= params["alignment.ot.tau"] <= 10.0
        assert params["alignment.batch_size"] in (8, 16, 24, 32)


def test_enqueued_points_come_first_with_their_labels_and_list_choices_decoded(config):
    first, second, *rest = sample(config, 6)
    assert first[REFERENCE_KEY] == "baseline" and first["alignment.method"] == "none"
    assert second[REFERENCE_KEY] == "paper"
    assert second["alignment.layers"] == [-1]  # a list again, not Optuna's label "[-1]"
    assert second["alignment.ot.epsilon"] == 0.0025
    assert all(REFERENCE_KEY not in p or p[REFERENCE_KEY] in ("baseline", "paper") for p in rest)


def test_only_the_enqueued_point_is_a_reference_not_later_trials_that_draw_its_values(tmp_path):
    """Labels went by matching values: in a space of choices, every later trial that drew the
    baseline's method was a "baseline" too, never pruned, and a candidate for the comparison."""
    path = tmp_path / "choices.yaml"
    path.write_text(
        "tune:\n  search_space:\n    alignment.method: {choices: [none, wordot]}\n"
        "    train.seed: {choices: [0, 1, 2]}\n"
        "  points_to_evaluate:\n    baseline: {alignment.method: none}\n"
    )
    first, *rest = sample(load_config(path), 12)
    assert first[REFERENCE_KEY] == "baseline"
    assert any(p["alignment.method"] == "none" for p in rest)  # drawn again ...
    assert all(REFERENCE_KEY not in p for p in rest)  # ... and not labelled


def test_a_condition_on_a_parameter_written_below_still_holds(tmp_path):
    path = tmp_path / "reordered.yaml"
    path.write_text(
        "tune:\n  search_space:\n"
        "    alignment.ot.tau: {low: 0.1, high: 10.0, when: {unbalanced: true}}\n"
        "    unbalanced: {choices: [false, true]}\n"
    )
    samples = sample(load_config(path), 12)
    assert {p["unbalanced"] for p in samples} == {True, False}
    for params in samples:
        assert ("alignment.ot.tau" in params) == params["unbalanced"]


def test_sampling_is_reproducible_with_a_seed(config):
    assert sample(config, 8, seed=5) == sample(config, 8, seed=5)
    assert sample(config, 8, seed=5, enqueue=False) != sample(config, 8, seed=6, enqueue=False)


def test_a_trials_values_become_a_valid_config_without_search_only_switches(config):
    params = {
        "alignment.method": "subot",
        "alignment.layers": [-2, -1],
        "unbalanced": True,
        "alignment.ot.tau": 2.0,
        REFERENCE_KEY: "x",
    }
    assert set(trial_overrides(params)) == {
        "alignment.method",
        "alignment.layers",
        "alignment.ot.tau",
    }
    trial = apply_params(config, params)
    assert trial.alignment.method == "subot" and trial.alignment.layers == [-2, -1]
    assert trial.alignment.ot.tau == 2.0
    assert config.alignment.ot.tau is None  # the base config is not modified


def test_a_value_the_config_rejects_names_the_trial_and_key(config):
    with pytest.raises(ConfigError, match=r"trial 7 alignment.ot.epsilon=-1.*alignment.ot.epsilon"):
        apply_params(config, {"alignment.ot.epsilon": -1.0}, origin="trial 7")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("alignment.ot.epsilonn: {low: 0.1, high: 1}", "not a config key"),
        ("alignment.lr: {low: 1, high: 0.1}", "need low < high"),
        ("alignment.lr: {low: 0, high: 1, log: true}", "log range needs low > 0"),
        ("alignment.lr: {choices: [1], low: 0.1, high: 1}", "either choices"),
        ("alignment.lr: {lo: 0.1, high: 1}", "unknown key"),
        ("alignment.lr: {low: 0.1, high: 1, when: {nothing: true}}", "not a parameter of the"),
        ("a: {choices: [1], when: {b: 1}}\n    b: {choices: [1], when: {a: 1}}", "form a cycle"),
        # each of these loaded, then Optuna refused it mid-sweep (a traceback)
        ("alignment.lr: {low: 1.0e-5, high: 1.0e-3, log: true, step: 1.0e-5}", "have a step"),
        ("alignment.batch_size: {low: 8, high: 32, int: true, log: true, step: 2}", "have a step"),
        ("task.xnli.epochs: {low: 0.6, high: 3, int: true}", r"whole numbers, found low=0.6"),
        ("alignment.batch_size: {low: 8, high: 32, int: true, step: 0.5}", "found step=0.5"),
        ("alignment.batch_size: {low: 8, high: 30, step: 8, int: true}", "high=30.0 is not low"),
        # whole ends, and every trial Optuna sampled between them failed as it started
        ("alignment.batch_size: {low: 8, high: 64}", "36.25 cannot be .*needs int: true"),
        ("train.seed: {low: 0, high: 4}", "2.25 cannot be train.seed"),
        ("alignment.batch_size: {low: 8, high: 64, step: 0.5}", "8.5 cannot be"),
    ],
)
def test_bad_search_space_entries_say_what_and_where(tmp_path, entry, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"tune:\n  search_space:\n    {entry}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_an_int_log_range_may_keep_the_step_of_one_optuna_allows(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "tune:\n  search_space:\n    alignment.batch_size: {low: 8, high: 32, int: true, "
        "log: true, step: 1}\n"
    )
    (first,) = sample(load_config(path), 1)
    assert 8 <= first["alignment.batch_size"] <= 32


def test_points_must_lie_in_the_space_and_objective_must_not_use_test(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "tune:\n  search_space:\n    alignment.method: {choices: [wordot]}\n"
        "  points_to_evaluate:\n    base: {alignment.method: none}\n"
    )
    with pytest.raises(ConfigError, match="outside its search space"):
        load_config(path)
    # off a step grid: it trained, then the sweep's closing (Optuna's study) refused it
    path.write_text(
        "tune:\n  search_space:\n    alignment.batch_size: {low: 8, high: 32, int: true, step: 8}\n"
        "  points_to_evaluate:\n    base: {alignment.batch_size: 12}\n"
    )
    with pytest.raises(ConfigError, match=r"12 is outside its search space \(low \+ a whole"):
        load_config(path)
    # a conditional parameter whose condition the point does not meet: Optuna never samples
    # it, so the enqueued point never matched, and the baseline lost its reference label
    path.write_text(
        "tune:\n  search_space:\n    alignment.method: {choices: [none, wordot]}\n"
        "    alignment.ot.epsilon: {low: 0.001, high: 0.1, when: {alignment.method: wordot}}\n"
        "  points_to_evaluate:\n    base: {alignment.method: none, alignment.ot.epsilon: 0.01}\n"
    )
    with pytest.raises(ConfigError, match=r"sampled only when alignment.method is 'wordot', and "
                       r"the point sets it to 'none'"):  # fmt: skip
        load_config(path)
    with pytest.raises(ConfigError, match="must not select on test metrics"):
        load_config(None, ["tune.objective=[xnli/test/acc/avg_targets]"])
    # tune.metric is what ASHA, Optuna and the best trial select on
    with pytest.raises(ConfigError, match=r"must not select on test metrics \(xnli/test/acc/de"):
        load_config(DEMO, ["tune.metric=xnli/test/acc/de"])


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["task.xnli.select_every=100", "tune.metric=xnli/dev/acc/en"], "tune.metric"),
        (["task.xnli.select_every=100", "tune.metric=xnli/dev/acc/avg_seen"], "tune.metric"),
        (["task.xquad.select_every=50", "tune.objective=[xquad/dev/f1/avg_all]"], "tune.objective"),
        (
            [
                "tune.search_space={task.xnli.select_every: {choices: [50, 100]}}",
                "tune.metric=xnli/dev/acc/en",
            ],
            "tune.metric",
        ),
        (["task.xnli.select_every=100", "tune.metric=xnli/dev/acc/avg_targets"], None),
        (["task.xnli.select_every=100", "tune.metric=xquad/dev/f1/en"], None),
        (["tune.metric=xnli/dev/acc/en"], None),
    ],
)
def test_a_search_on_the_score_that_picked_the_tested_model_is_refused(overrides, refused):
    """With select_every, the pivot's dev score is the best of the curve that chose the model:
    ranking trials on it would choose again on a score already maximised on that data. A single
    trial, which ranks nothing, runs with it."""
    from ot_ray.search.sweep import SweepError, check_not_on_the_selecting_score

    config = load_config(None, overrides)
    if refused is None:
        check_not_on_the_selecting_score(config)
        return
    task = "xquad" if "xquad" in overrides[0] else "xnli"
    with pytest.raises(
        SweepError,
        match=rf"^{refused}: '{task}/dev/.*' holds the pivot's dev score, which task.{task}."
        rf"select_every maximises .* \(e\.g\. {task}/dev/(acc|f1)/avg_targets\)$",
    ):
        check_not_on_the_selecting_score(config)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "tune.metric=objectiv",
            r"tune.metric: 'objectiv' is not a metric .*did you mean 'objective'",
        ),
        (
            "tune.objective=[xnli/dev/acc/avg_tagrets]",
            r"tune.objective: 'xnli/dev/acc/avg_tagrets' .*'avg_tagrets' is neither an evaluated",
        ),
        ("tune.metric=xnli/dev/acc/ja", r"'ja' is neither an evaluated language \(en, de, fr"),
    ],
)
def test_search_metrics_must_be_ones_a_trial_reports(override, message):
    """A misspelt metric would leave every trial's objective NaN for the whole sweep."""
    with pytest.raises(ConfigError, match=message):
        load_config(DEMO, [override])
    config = load_config(DEMO, ["tune.metric=xquad/dev/f1/de"])
    assert config.tune.metric == "xquad/dev/f1/de"


def test_a_search_key_without_a_dot_must_be_a_switch(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("tune:\n  search_space:\n    alignment_lr: {low: 1.0e-5, high: 1.0e-3}\n")
    with pytest.raises(ConfigError, match=r"search_space\.alignment_lr: not a config key") as bad:
        load_config(path)
    assert str(bad.value).startswith(f"{path}:3: ")  # the key's own line, not the tune: line
    path.write_text(
        "tune:\n  search_space:\n    unbalanced: {choices: [false, true]}\n"
        "    alignment.ot.tau: {low: 0.1, high: 10.0, when: {unbalanced: true}}\n"
    )
    assert "unbalanced" in load_config(path).tune.search_space


CHOICES_ONLY = """
tune:
  num_samples: {samples}
  search_space:
    alignment.method: {{choices: [wordot, none]}}
    alignment.layers: {{choices: [[-1], [-2, -1]], when: {{alignment.method: wordot}}}}
    train.seed: {{choices: [0, 1]}}
  points_to_evaluate:
    baseline: {{alignment.method: none, train.seed: 0}}
"""


def test_a_space_of_choices_runs_each_setting_once(tmp_path, caplog):
    """TPE draws a setting of a small categorical space again (a paper config's method x seed
    space: the same trial three times in nine), and the over-seeds table then counted one
    seed three times. The sweep enqueues every setting of such a space after its reference
    points, in a seeded order: each once, the reference first and not again; more trials than
    settings are not run."""
    path = tmp_path / "space.yaml"
    path.write_text(CHOICES_ONLY.format(samples=6))  # wordot: 2 layers x 2 seeds; none: 2 seeds
    config = load_config(path)
    drawn = sample(config, 6)
    assert len({json.dumps(point, sort_keys=True) for point in drawn}) == 6
    assert drawn[0] == {"alignment.method": "none", "train.seed": 0, REFERENCE_KEY: "baseline"}
    assert all(REFERENCE_KEY not in point for point in drawn[1:])
    assert sample(config, 6, seed=1)[1:] != drawn[1:]  # the order follows tune.seed
    tpe = sample(config, 6, enqueue=False)  # what the sweep drew before
    assert len({json.dumps(point, sort_keys=True) for point in tpe}) < 6
    path.write_text(CHOICES_ONLY.format(samples=9))
    with caplog.at_level(logging.WARNING, logger="ot_ray.search.sweep"):
        assert trials_to_run(load_config(path)) == 6
    assert "holds 6 distinct settings: the sweep runs 6 trials" in caplog.text
    # a point naming some parameters takes the first setting that agrees with it: the baseline
    # ran a seed TPE drew, perhaps one listed after it (run twice), and another never ran
    path.write_text(CHOICES_ONLY.format(samples=10).replace(", train.seed: 0}", "}"))
    partial = load_config(path)
    assert partial.tune.points_to_evaluate == {"baseline": {"alignment.method": "none"}}
    assert trials_to_run(partial) == 6
    drawn = sample(partial, 6)
    assert len({json.dumps(point, sort_keys=True) for point in drawn}) == 6
    assert drawn[0] == {"alignment.method": "none", "train.seed": 0, REFERENCE_KEY: "baseline"}
    # a range makes the settings endless: only the reference points are enqueued
    demo = load_config(DEMO)
    assert len(enqueued_points(demo.tune.search_space, demo.tune.points_to_evaluate, 0)) == 2
    assert trials_to_run(demo) == demo.tune.num_samples


def test_points_left_out_and_a_scheduler_that_cuts_nothing_are_said(tmp_path, caplog):
    """Tune runs the first num_samples points only, and ASHA's first rung at the last
    milestone (which never cuts) prunes nothing: both looked like working settings."""
    with caplog.at_level(logging.WARNING):
        assert trials_to_run(load_config(DEMO, ["tune.num_samples=1"])) == 1
        assert "points_to_evaluate, paper do not run" in caplog.text
        caplog.clear()
        make_scheduler(load_config(DEMO), tmp_path)  # two task stages, grace period 1
        assert caplog.text == ""
        one_task = ["task.tasks=[xnli]", "tune.objective=[xnli/dev/acc/avg_targets]"]
        make_scheduler(load_config(DEMO, one_task), tmp_path)
        assert "with 1 task stage(s) and tune.scheduler.grace_period 1" in caplog.text


def test_condition_with_one_value_or_a_list():
    assert condition_holds({"a": 1}, {"a": 1})
    assert condition_holds({"a": [1, 2]}, {"a": 2})
    assert not condition_holds({"a": [1, 2]}, {"a": 3})
    assert not condition_holds({"a": 1}, {})


def test_rebuilt_study_holds_finished_and_pruned_trials_for_the_plots(config):
    rows = [
        ({"alignment.method": "none", "alignment.batch_size": 16}, 40.0, "COMPLETE"),
        (
            {
                "alignment.method": "wordot",
                "alignment.ot.epsilon": 0.01,
                "alignment.layers": [-2, -1],
                "unbalanced": False,
                "alignment.batch_size": 8,
            },
            55.0,
            "COMPLETE",
        ),
        ({"alignment.method": "subot", "alignment.batch_size": 32}, 30.0, "PRUNED"),
    ]
    study = rebuilt_study(config.tune.search_space, rows, mode="max")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert study.best_value == 55.0
    assert study.best_params["alignment.layers"] == "[-2, -1]"


class FakeTrial:
    """What ASHA reads of a Tune trial: its id and config."""

    def __init__(self, trial_id: str, config: dict):
        self.trial_id = trial_id
        self.config = config


class FakeController:
    """What the scheduler reads of Tune's controller: the folder the sweep runs in."""

    def __init__(self, experiment_path: Path):
        self.experiment_path = str(experiment_path)


def two_milestone_asha() -> ReferenceKeepingASHA:
    return ReferenceKeepingASHA(
        time_attr="milestone",
        metric="objective",
        mode="max",
        max_t=2,
        grace_period=1,
        reduction_factor=2,
        stop_last_trials=False,
    )


def test_asha_cuts_weak_trials_but_never_a_reference_point():
    scheduler = two_milestone_asha()
    strong = [FakeTrial(f"s{k}", {}) for k in range(4)]
    weak = FakeTrial("weak", {})
    baseline = FakeTrial("base", {REFERENCE_KEY: "baseline"})
    for trial in [*strong, weak, baseline]:
        scheduler.on_trial_add(None, trial)
    for k, trial in enumerate(strong):
        scheduler.on_trial_result(None, trial, {"milestone": 1, "objective": 60.0 + k})
    assert scheduler.on_trial_result(None, weak, {"milestone": 1, "objective": 10.0}) == "STOP"
    assert (
        scheduler.on_trial_result(None, baseline, {"milestone": 1, "objective": 10.0}) == "CONTINUE"
    )


def test_a_resumed_sweep_cuts_against_the_rungs_recorded_before_it_stopped(tmp_path):
    """Tune restores the scheduler pickled when the sweep was made, with empty rungs: a weak
    trial after --resume used to run on, as the first to reach its milestone. The rungs are
    found in the folder the sweep runs in now (it was moved before the resume here)."""
    made_in, moved_to = tmp_path / "sweep", tmp_path / "moved" / "sweep"
    made_in.mkdir()
    as_made = pickle.dumps(two_milestone_asha())  # what tuner.pkl holds
    scheduler, there = pickle.loads(as_made), FakeController(made_in)
    strong = [FakeTrial(f"s{k}", {}) for k in range(4)]
    for k, trial in enumerate(strong):
        scheduler.on_trial_add(there, trial)
        scheduler.on_trial_result(there, trial, {"milestone": 1, "objective": 60.0 + k})
    scheduler.on_trial_complete(there, strong[0], {"milestone": 2, "objective": 70.0})
    moved_to.parent.mkdir()
    made_in.rename(moved_to)

    resumed, here = pickle.loads(as_made), FakeController(moved_to)
    weak, again = FakeTrial("weak", {}), strong[1]
    resumed.on_trial_add(here, weak)
    assert resumed.on_trial_result(here, weak, {"milestone": 1, "objective": 10.0}) == "STOP"
    assert pruned_trials(moved_to) == {"weak": 1}  # its cut is written where it is read
    resumed.on_trial_add(here, again)  # an interrupted trial, requeued: its rung is kept
    assert resumed.on_trial_result(here, again, {"milestone": 1, "objective": 0.0}) == "CONTINUE"
    saved = json.loads((moved_to / RUNGS_FILE).read_text())
    assert saved["rungs"][0] == [[2, {"s0": 70.0}], [1, {f"s{k}": 60.0 + k for k in range(4)}
                                                      | {"weak": 10.0}]]  # fmt: skip
    assert not made_in.exists()

    fresh = pickle.loads(as_made)  # without the file (an unreadable one is the same): empty
    (moved_to / RUNGS_FILE).write_text("{not json", encoding="utf-8")
    fresh.on_trial_add(here, weak)
    assert fresh.on_trial_result(here, weak, {"milestone": 1, "objective": 10.0}) == "CONTINUE"


def test_the_scheduler_reads_the_sweep_folder_past_tunes_warning_wrapper(tmp_path, caplog):
    """Tune hands on_trial_add/on_trial_result a wrapper that logs a warning ("please reach out
    to Ray team") for each attribute it passes on to the controller."""
    from ray.tune.execution.tune_controller import TrialRunnerWrapper

    scheduler, wrapper = two_milestone_asha(), TrialRunnerWrapper(FakeController(tmp_path), None)
    with caplog.at_level(logging.WARNING):
        for k in range(4):
            scheduler.on_trial_add(wrapper, FakeTrial(f"s{k}", {}))
            scheduler.on_trial_result(
                wrapper, FakeTrial(f"s{k}", {}), {"milestone": 1, "objective": k}
            )
    assert (tmp_path / RUNGS_FILE).exists()
    assert "restricted" not in caplog.text and "Ray team" not in caplog.text


def test_a_config_extends_another_and_keeps_where_each_key_came_from(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "alignment:\n  lr: 1.0e-4\n  batch_size: 16\n"
        "tune:\n  search_space:\n    alignment.lr: {low: 1.0e-5, high: 1.0e-3}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "extends: base.yaml\nalignment:\n  lr: 2.0e-4\n"
        "tune:\n  search_space:\n    alignment.batch_size: {choices: [8, 16]}\n"
    )
    config = load_config(tmp_path / "child.yaml")
    assert config.alignment.lr == 2e-4 and config.alignment.batch_size == 16
    assert list(config.tune.search_space) == ["alignment.batch_size"]  # replaced, not merged
    (tmp_path / "bad.yaml").write_text("extends: base.yaml\nalignment:\n  batch_size: -1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3.*alignment.batch_size"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_asha_never_stops_a_trial_at_its_last_milestone():
    scheduler = two_milestone_asha()
    trials = [FakeTrial(f"t{k}", {}) for k in range(5)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    for k, trial in enumerate(trials[:4]):
        scheduler.on_trial_result(None, trial, {"milestone": 2, "objective": 60.0 + k})
    assert (
        scheduler.on_trial_result(None, trials[4], {"milestone": 2, "objective": 1.0}) == "CONTINUE"
    )


def test_only_trials_the_scheduler_cut_count_as_pruned(tmp_path):
    """ASHA writes its cuts down, so a trial stopped by Ctrl-C is told from a pruned one."""
    scheduler, sweep = two_milestone_asha(), FakeController(tmp_path)
    strong = [FakeTrial(f"s{k}", {}) for k in range(4)]
    weak, baseline = FakeTrial("weak", {}), FakeTrial("base", {REFERENCE_KEY: "baseline"})
    for trial in [*strong, weak, baseline]:
        scheduler.on_trial_add(sweep, trial)
    for k, trial in enumerate(strong):
        scheduler.on_trial_result(sweep, trial, {"milestone": 1, "objective": 60.0 + k})
    scheduler.on_trial_result(sweep, weak, {"milestone": 1, "objective": 10.0})
    scheduler.on_trial_result(sweep, baseline, {"milestone": 1, "objective": 10.0})
    assert pruned_trials(tmp_path) == {"weak": 1}

    def status(trial_id: str, milestone: int, of: int = 2) -> str:
        metrics = {"trial_id": trial_id, "milestone": milestone}
        result = SimpleNamespace(metrics=metrics, config={}, error=None, path=f"/x/{trial_id}")
        return trial_outcome(result, of, pruned_trials(tmp_path)).status

    assert status("weak", 1) == "pruned"
    assert status("s0", 1) == "interrupted"  # stopped early, never cut: Ctrl-C
    assert status("s1", 2) == "finished"
    assert status("never", 0) == "interrupted"
    # cut at 1 just before the driver was killed, went on after --resume, then Ctrl-C at 2 of 3
    assert status("weak", 2, of=3) == "interrupted"
    assert pruned_trials(tmp_path / "elsewhere") == {}


def test_optuna_hears_of_a_trial_cut_before_its_last_milestone_as_pruned_not_complete(config):
    """Tune hands the searcher a cut trial's last result; its objective covers XNLI only and
    must not enter TPE as a final value (here it would beat the finished trial)."""
    searcher = MilestoneOptunaSearch(
        space=DefineByRun(config.tune.search_space, {}),
        metric="objective",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0),
        milestones=2,
    )
    for trial_id in ("finished", "cut", "failed"):
        assert searcher.suggest(trial_id)
    searcher.on_trial_complete("finished", {"milestone": 2, "objective": 40.0})
    searcher.on_trial_complete("cut", {"milestone": 1, "objective": 70.0})
    searcher.on_trial_complete("failed", error=True)
    study = searcher._ot_study  # Ray keeps the study private; the states are what TPE reads
    states = [trial.state.name for trial in study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL"]
    assert study.best_value == 40.0


def test_the_progress_tables_best_trial_is_the_best_finished_one():
    """Tune's "Current best trial" line would pick the XNLI-only objective of a trial midway."""
    reporter = MilestoneReporter(metric="objective", mode="max", milestones=2)
    trials = [
        SimpleNamespace(trial_id="midway", last_result={"milestone": 1, "objective": 70.0}),
        SimpleNamespace(trial_id="done", last_result={"milestone": 2, "objective": 40.0}),
        SimpleNamespace(trial_id="starting", last_result={}),
    ]
    best, metric = reporter._current_best_trial(trials)
    assert (best.trial_id, metric) == ("done", "objective")
    assert reporter._current_best_trial(trials[:1])[0] is None


def test_without_task_stages_a_trial_is_finished_only_at_its_end():
    """With ``task.tasks: []`` every result is milestone 0: a result midway through the
    alignment used to count as finished (chosen as best, and an interrupted sweep closed as
    complete)."""
    from ot_ray.search.milestones import finished

    assert not finished({"milestone": 0, "stage": "align", "objective": 5.0}, 0)
    assert finished({"milestone": 0, "stage": "done", "objective": 5.0}, 0)
    assert not finished({}, 0) and not finished(None, 0)
    assert finished({"milestone": 2, "stage": "xquad"}, 2)  # the last task evaluated
    assert not finished({"milestone": 1, "stage": "xquad"}, 2)


def test_a_finished_trial_with_a_nan_objective_is_kept_as_failed():
    """Optuna refuses a NaN value, which used to lose the whole sweep report."""
    from ot_ray.config import ParamSpec

    space = {"alignment.lr": ParamSpec(low=1.0e-4, high=1.0e-3)}
    rows = [
        ({"alignment.lr": 2.0e-4}, float("nan"), "COMPLETE"),
        ({"alignment.lr": 3.0e-4}, 1.0, "COMPLETE"),
    ]
    study = rebuilt_study(space, rows, mode="max")
    states = [trial.state.name for trial in study.trials]
    assert states == ["FAIL", "COMPLETE"] and study.best_value == 1.0


def test_searched_values_are_checked_against_this_configs_other_settings():
    """A searched QA window length is checked against the config's doc_stride (64 in the demo
    config), not the default's (128): 96 was refused for leaving no room at stride 128."""
    space = "tune.search_space.task.xquad.max_length={choices: [96, 256]}"
    assert load_config(DEMO, [space]).tune.search_space["task.xquad.max_length"].choices == [
        96,
        256,
    ]
    too_short = "tune.search_space.task.xquad.max_length={choices: [64, 256]}"
    with pytest.raises(ConfigError, match=r"tune\.search_space: task\.xquad\.max_length: 64 cannot "
                       r"be task\.xquad\.max_length \(doc_stride 64 leaves no room"):  # fmt: skip
        load_config(DEMO, [too_short])
    with pytest.raises(ConfigError, match=r"search_space\.task\.xquad\.max_length: -1 cannot be"):
        load_config(DEMO, ["tune.search_space.task.xquad.max_length={choices: [-1, 256]}"])
