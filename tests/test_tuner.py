"""The sweep's Tuner, as ``run_sweep`` builds it (Optuna sampling after the named points, the
reference-keeping ASHA at task milestones), on a real local Ray with scripted trials: seconds
instead of the end-to-end sweeps' minutes, and every decision checkable."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import ray
import ray.cloudpickle
from ray import tune

from ot_ray.config import load_config
from ot_ray.search.scheduler import RUNGS_FILE, pruned_trials
from ot_ray.search.space import REFERENCE_KEY
from ot_ray.search.sweep import best_trial, concurrent_trials, new_tuner, trial_outcome

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"

# Ray's workers cannot import this test module: ship the scripted trial by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def scripted_trial(params: dict) -> None:
    """A trial whose dev objective is set by its learning rate (higher is better), reported at
    each of the two task milestones like a real trial."""
    score = 10.0 * (math.log10(params["alignment.lr"]) + 5.0)  # 10 at 1e-4, 20 at 1e-3
    for milestone in (1, 2):
        tune.report({"milestone": milestone, "objective": score + milestone})


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(
        address="local",  # a cluster of its own, even next to one from `ray start`
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


def test_weak_trials_are_cut_at_a_milestone_and_the_baseline_runs_to_the_end(local_ray, tmp_path):
    config = load_config(
        DEMO,
        [
            "tune.num_samples=8",
            "tune.seed=3",
            "tune.search_space={alignment.lr: {low: 1.0e-4, high: 1.0e-3, log: true}}",
            # the weakest setting there is: ASHA would cut it, but a reference point runs on
            "tune.points_to_evaluate={baseline: {alignment.lr: 1.0e-4}}",
            f"tune.storage_path={tmp_path}",
            "tune.name=scripted",
        ],
    )
    directory = tmp_path / "scripted"
    tuner = new_tuner(config, scripted_trial, directory, max_concurrent_trials=1)
    grid = tuner.fit()
    cut = pruned_trials(directory)
    trials = [trial_outcome(result, 2, cut) for result in grid]
    assert len(trials) == 8
    (baseline,) = [t for t in trials if t.params.get(REFERENCE_KEY) == "baseline"]
    assert baseline.status == "finished" and baseline.metrics["milestone"] == 2
    pruned = [t for t in trials if t.status == "pruned"]
    assert pruned, [(t.params, t.status) for t in trials]
    assert all(t.metrics["milestone"] == 1 and cut[t.trial_id] == 1 for t in pruned)
    finished = [t for t in trials if t.status == "finished"]
    best = best_trial(trials, config.tune.metric, config.tune.mode)
    assert best in finished
    assert best.metrics["objective"] == max(t.metrics["objective"] for t in finished)
    # the cut ones were weaker at milestone 1 than the best finished trial
    assert all(t.metrics["objective"] < best.metrics["objective"] - 1 for t in pruned)
    # the rungs a resumed sweep cuts against: every trial at milestone 1, as Tune ran them
    rungs = json.loads((directory / RUNGS_FILE).read_text())["rungs"][0]
    assert dict(rungs)[1].keys() == {t.trial_id for t in trials}


def test_concurrent_trials_count_workers_per_node_not_cluster_totals():
    """Two nodes of 3 CPUs hold two 2-CPU workers; the cluster total (6) said three."""
    config = load_config(DEMO, ["train.cpus_per_worker=2"])
    assert concurrent_trials(config, [{"CPU": 3.0}, {"CPU": 3.0}]) == 2
    assert concurrent_trials(config, [{"CPU": 8.0}]) == 4
    two = load_config(DEMO, ["train.num_workers=2", "train.use_gpu=true"])
    assert concurrent_trials(two, [{"CPU": 16.0, "GPU": 1.0}] * 3) == 1  # 3 GPU workers
    assert concurrent_trials(two, [{"CPU": 1.0}]) == 1  # at least one
    fixed = load_config(DEMO, ["tune.max_concurrent_trials=5"])
    assert concurrent_trials(fixed, [{"CPU": 1.0}]) == 5
