"""The sweep summary: the best trial next to the baseline, and means over seeds for a
reproduction sweep (the paper reports 3-seed means)."""

from __future__ import annotations

from pathlib import Path

from ot_ray.config import load_config
from ot_ray.search.report import baseline_trial, summary
from ot_ray.search.space import REFERENCE_KEY
from ot_ray.search.sweep import SweepOutcome, TrialOutcome, best_trial

REPO = Path(__file__).resolve().parent.parent


def trial(index: int, method: str, seed: int, xnli_de: float, status: str = "finished"):
    params = {"alignment.method": method, "train.seed": seed, REFERENCE_KEY: f"{method}-{seed}"}
    metrics = {"objective": xnli_de, "xnli/test/acc/de": xnli_de, "xnli/test/acc/en": 80.0}
    return TrialOutcome(f"t{index}", params, metrics, status)


def test_a_seeded_reproduction_reports_mean_and_spread_per_method():
    config = load_config(REPO / "configs" / "paper_mbert.yaml")
    trials = [
        trial(0, "none", 0, 70.0),
        trial(1, "wordot", 0, 73.0),
        trial(2, "none", 1, 72.0),
        trial(3, "wordot", 1, 75.0),
        trial(4, "wordot", 2, 77.0),
        trial(5, "none", 2, 0.0, status="failed"),  # not averaged
    ]
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[4])
    text = summary(outcome, config, baseline_trial(outcome, config.alignment.method))
    table = text.split("## Over seeds")[1]
    assert "| method=none (n=2) | method=wordot (n=3) |" in table
    assert "| XNLI acc de | 71.0 +- 1.4 | 75.0 +- 2.0 |" in table
    assert "| XNLI acc en | 80.0 +- 0.0 | 80.0 +- 0.0 |" in table
    assert "XQuAD" not in table  # no such scores: no rows


def test_a_setting_run_twice_at_one_seed_counts_as_one_seed():
    """A categorical space can sample the same point twice: the two runs at seed 0 were two
    seeds, which narrowed the std and gave seed 0 double weight in the mean."""
    config = load_config(REPO / "configs" / "paper_mbert.yaml")
    trials = [
        trial(0, "wordot", 0, 70.0),
        trial(1, "wordot", 0, 72.0),  # the same setting at the same seed again
        trial(2, "wordot", 1, 77.0),
        trial(3, "none", 0, 60.0),
        trial(4, "none", 1, 62.0),
    ]
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[2])
    table = summary(outcome, config, None).split("## Over seeds")[1]
    assert "| method=wordot (n=2, 1 repeated run merged) | method=none (n=2) |" in table
    # seed 0 is the mean of its two runs (71.0), then mean +- std over seeds 0 and 1
    assert "| XNLI acc de | 74.0 +- 4.2 | 61.0 +- 1.4 |" in table
    assert "counts as one seed: the mean of its runs stands for that seed" in table
    once = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials[2:], best=trials[2])
    assert "repeated" not in summary(once, config, None)


def test_settings_that_print_alike_are_not_averaged_together():
    """The table groups trials by their exact values: two learning rates that show as 0.000123
    were one column, its mean +- std over two settings."""
    config = load_config(REPO / "configs" / "paper_mbert.yaml")
    trials = [trial(k, "wordot", k % 2, 70.0 + k) for k in range(4)]
    for t, lr in zip(trials, [1.2345e-4, 1.2345e-4, 1.2349e-4, 1.2349e-4], strict=True):
        t.params["alignment.lr"] = lr
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[3])
    table = summary(outcome, config, None).split("## Over seeds")[1]
    assert "lr=0.00012345 (n=2) | alignment.method=wordot, alignment.lr=0.00012349" in table
    assert "| XNLI acc de | 70.5 +- 0.7 | 72.5 +- 0.7 |" in table


def test_settings_whose_short_names_collide_keep_their_own_columns():
    config = load_config(REPO / "configs" / "paper_mbert.yaml")
    trials = [trial(k, "wordot", k % 2, 70.0 + k) for k in range(4)]
    keys = ["task.xnli.lr", "task.xnli.lr", "task.xquad.lr", "task.xquad.lr"]
    for t, key in zip(trials, keys, strict=True):
        t.params[key] = 1.0e-4
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[3])
    table = summary(outcome, config, None).split("## Over seeds")[1]
    assert "task.xnli.lr=0.0001 (n=2) | alignment.method=wordot, task.xquad.lr=0.0001" in table


def test_a_search_without_seeds_has_no_seed_table():
    config = load_config(REPO / "configs" / "demo.yaml")
    trials = [trial(0, "none", 0, 50.0), trial(1, "wordot", 0, 60.0)]
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[1])
    text = summary(outcome, config, trials[0])
    assert "Over seeds" not in text
    assert "| de | 60.0 | 50.0 | +10.0 |" in text


def test_an_interrupted_sweep_says_so_and_lists_its_unfinished_trials_apart_from_pruned_ones():
    config = load_config(REPO / "configs" / "demo.yaml")
    trials = [
        trial(0, "none", 0, 50.0),
        trial(1, "wordot", 0, 60.0),
        trial(2, "wordot", 0, 20.0, status="pruned"),
        trial(3, "subot", 0, 30.0, status="interrupted"),
    ]
    for cut in trials[2:]:
        cut.metrics["milestone"] = 1
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[1])
    assert outcome.interrupted == [trials[3]]
    text = summary(outcome, config, trials[0])
    assert "Interrupted: 1 of the 4 trials started did not finish; `--resume` runs them" in text
    rows = [line for line in text.splitlines() if line.startswith(("| t0", "| t1", "| t2", "| t3"))]
    assert [row.split(" | ")[0] for row in rows] == ["| t1", "| t0", "| t2", "| t3"]
    assert "| pruned after milestone 1 |" in rows[2] and rows[2].endswith("| (20.0) |")
    assert "| interrupted after milestone 1 |" in rows[3] and rows[3].endswith("| (30.0) |")
    assert rows[0].endswith("| 60.0 |")  # finished: no parentheses
    assert "In parentheses: the objective of a trial that stopped early" in text
    finished = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials[:3], trials[1])
    assert "Interrupted" not in summary(finished, config, trials[0])


def test_a_failed_trial_with_a_partial_objective_shows_it_in_parentheses():
    config = load_config(REPO / "configs" / "demo.yaml")
    trials = [trial(0, "none", 0, 50.0), trial(1, "wordot", 0, 70.0, status="failed")]
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[0])
    text = summary(outcome, config, None)
    rows = [r for r in text.splitlines() if r.startswith(("| t0", "| t1"))]
    assert rows[0].startswith("| t0") and rows[0].endswith("| 50.0 |")
    assert rows[1].startswith("| t1") and rows[1].endswith("| (70.0) |")


def test_the_best_trial_is_chosen_on_the_dev_objective_never_on_test():
    """Dev and test rank these trials in opposite orders; a pruned trial with the best
    objective (it covers fewer tasks) and a finished one with a NaN objective are passed over."""
    config = load_config(REPO / "configs" / "demo.yaml")
    rows = [("none", 50.0, 70.0), ("wordot", 60.0, 55.0), ("subot", 55.0, 65.0)]
    trials = []
    for index, (method, dev, test) in enumerate(rows):
        metrics = {"objective": dev, "xnli/dev/acc/de": dev, "xnli/test/acc/de": test}
        trials.append(TrialOutcome(f"t{index}", {"alignment.method": method}, metrics, "finished"))
    trials.append(TrialOutcome("t3", {}, {"objective": 90.0, "xnli/test/acc/de": 99.0}, "pruned"))
    trials.append(TrialOutcome("t4", {}, {"objective": float("nan")}, "finished"))
    best = best_trial(trials, config.tune.metric, config.tune.mode)
    assert best is trials[1]
    assert best_trial(trials, "objective", "min") is trials[0]
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=best)
    text = summary(outcome, config, trials[0])
    assert "| de | 55.0 | 70.0 | -15.0 |" in text  # the best trial's test score, reported once


def test_the_best_trials_delta_carries_the_selection_caveat_and_points_to_a_fair_comparison():
    """The best of N on dev is lucky on test too: the summary says so, and says where the
    unselected comparison is (the over-seeds table, or rerunning at several seeds)."""
    demo = load_config(REPO / "configs" / "demo.yaml")
    trials = [trial(0, "none", 0, 50.0), trial(1, "wordot", 0, 60.0), trial(2, "subot", 0, 55.0)]
    trials.append(trial(3, "l2", 0, 0.0, status="failed"))
    outcome = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[1])
    text = summary(outcome, demo, trials[0])
    caveat = text.split("## Best trial")[1]
    assert "the best of 3 finished trials on dev" in caveat  # the failed one is not counted
    assert "run the best config and the baseline at several seeds" in caveat
    # the default objective reads the targets' dev labels: said, as XTREME picks on the pivot's
    said = (
        "chosen on task labels of the languages it is tested on (xnli/dev/acc/avg_targets, "
        "xquad/dev/f1/avg_targets): not strictly zero-shot"
    )
    assert said in " ".join(caveat.split())
    assert "(xnli/dev/acc/en, xquad/dev/f1/en) choose without them" in " ".join(caveat.split())
    pivot_only = demo.model_copy(deep=True)
    pivot_only.tune.objective = ["xnli/dev/acc/en", "align/retrieval_acc/avg_targets"]
    assert "zero-shot" not in summary(outcome, pivot_only, trials[0])
    assert "the best of" not in summary(outcome, demo, None)  # nothing to compare with
    won = SweepOutcome("s", Path("/x"), "p", "e", "sqlite:///m.db", trials, best=trials[0])
    assert "overstates" not in summary(won, demo, trials[0])  # the baseline is the best trial

    paper = load_config(REPO / "configs" / "paper_mbert.yaml")
    text = summary(outcome, paper, trials[0])
    assert "The over-seeds table below compares settings" in text
    assert text.index("the best of 3 finished") < text.index("## Over seeds")


def test_the_registered_model_embeds_with_the_layer_the_best_trial_aligned():
    from ot_ray.search.report import served_layer

    config = load_config(REPO / "configs" / "demo.yaml", ["alignment.layers=[-1]"])
    best = TrialOutcome("t0", {"alignment.layers": [-4, -2], REFERENCE_KEY: "x"}, {}, "finished")
    outcome = SweepOutcome("s", Path("."), "p", "0", "sqlite://", [best], best)
    assert served_layer(config, outcome) == -2
    best.params = {"alignment.method": "wordot"}  # not searched: the config's
    assert served_layer(config, outcome) == -1
    outcome.best = None
    assert served_layer(config, outcome) == -1


def test_optuna_figures_are_written_closed_and_leave_the_warning_filters_alone(tmp_path):
    import warnings

    import matplotlib.pyplot as plt
    import optuna

    from ot_ray.plots import optuna_figures

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True) * 1e3, n_trials=4)
    filters = list(warnings.filters)
    written = optuna_figures(study, tmp_path)
    assert [p.name for p in written] == ["optimization_history.png", "param_importances.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert plt.get_fignums() == [] and warnings.filters == filters
