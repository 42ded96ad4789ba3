"""The search service end to end with real components: a Ray cluster from ``ray start``, jobs
submitted with ``ray job submit``, a real ``mlflow server`` queried over REST, a killed driver
resumed with ``--resume``, a sweep stopped with ``ray job stop`` (Ctrl-C's signal) and resumed, a
killed worker recovered by Ray Train, and a two-node cluster.

The trials are tiny (the small demo world); these tests check the plumbing, not the science.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clusters import BIN, environment, mlflow_server, ray_cluster, rest, run
from conftest import SMALL_DEMO, tiny_trial_overrides
from mlflow import MlflowClient
from safetensors import safe_open

from ot_ray.config import DemoConfig, load_config
from ot_ray.demo.build import ensure_demo_world

REPO = Path(__file__).resolve().parent.parent
#: Each test waits on its jobs with timeouts of its own (up to about 2,400 s in all on a slow
#: runner), which say what was being waited for; the suite's 600 s would cut them short.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2700)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """The small demo world, built once (the jobs find it in this cache)."""
    root = tmp_path_factory.mktemp("world")
    ensure_demo_world(DemoConfig(**SMALL_DEMO, cache_dir=str(root)))
    return str(root)


def sweep_args(cache: str, root: Path, *, samples: int, tracking: str, **extra: str) -> list[str]:
    sets = [
        *tiny_trial_overrides(cache, str(root / "unused")),
        f"tune.storage_path={root / 'sweeps'}",
        "tune.name=e2e",
        f"tune.num_samples={samples}",
        "train.cpus_per_worker=1",
        f"tracking.uri={tracking}",
        "tracking.experiment=e2e",
        *(f"{key}={value}" for key, value in extra.items()),
    ]
    return [
        "jobs/tune.py",
        "--config",
        "configs/demo.yaml",
        *(a for s in sets for a in ("--set", s)),
    ]


def children_and_parent(runs: list[dict]) -> tuple[list[dict], dict]:
    def tags(run):
        return {t["key"]: t["value"] for t in run["data"].get("tags", [])}

    parents = [r for r in runs if tags(r).get("ot_ray.role") == "sweep"]
    assert len(parents) == 1
    children = [r for r in runs if r not in parents]
    return children, parents[0]


def test_ray_job_submit_runs_the_sweep_tracked_in_an_mlflow_server(cache, tmp_path):
    with mlflow_server(tmp_path / "mlflow") as uri, ray_cluster(tmp_path, head_cpus=2) as cluster:
        # RAY_ADDRESS=auto finds this cluster as ray.init does (the early check passes)
        check = "from ot_ray.launch import check_ray_address; check_ray_address()"
        found = run(
            [str(BIN / "python"), "-c", check],
            timeout=120,
            env={**cluster.env(), "RAY_ADDRESS": "auto"},
        )
        assert found.returncode == 0, found.stderr[-2000:]
        args = sweep_args(
            cache,
            tmp_path,
            samples=3,
            tracking=uri,
            **{"tracking.registered_model_name": "e2e-enc"},
        )
        command = [
            str(BIN / "ray"), "job", "submit", f"--address={cluster.dashboard}",
            f"--working-dir={REPO}", "--", "python", *args,
        ]  # fmt: skip
        done = run(command, timeout=1200, cwd=REPO, env=cluster.env())
        log = done.stdout + done.stderr
        assert done.returncode == 0, log[-4000:]
        assert "succeeded" in log and "## Best trial" in log and "| baseline |" in log
        assert "registered model e2e-enc version 1" in log

        experiment = rest(uri, "experiments/get-by-name?experiment_name=e2e")["experiment"]
        found = rest(
            uri,
            "runs/search",
            {
                "experiment_ids": [experiment["experiment_id"]],
                "filter": "tags.`ot_ray.sweep` = 'e2e'",
            },
        )
        children, parent = children_and_parent(found["runs"])
        parent_id = parent["info"]["run_id"]
        assert len(children) == 3
        finished = 0
        for child in children:
            run_id = child["info"]["run_id"]
            tags = {t["key"]: t["value"] for t in child["data"]["tags"]}
            assert tags["mlflow.parentRunId"] == parent_id
            assert tags["method"] in ("wordot", "subot", "none") and tags["seed"] == "0"
            params = {p["key"]: p["value"] for p in child["data"]["params"]}
            assert params["alignment.method"] == tags["method"]
            assert "search.task.xnli.lr" in params
            assert child["info"]["status"] in ("FINISHED", "KILLED")
            history = rest(uri, f"metrics/get-history?run_id={run_id}&metric_key=xnli/train_loss")
            steps = [m["step"] for m in history["metrics"]]
            assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] > steps[0]
            files = {f["path"] for f in rest(uri, f"artifacts/list?run_id={run_id}")["files"]}
            if child["info"]["status"] != "FINISHED":  # pruned: its last checkpoint's outputs
                assert "predictions" in files
                continue
            finished += 1
            assert {"metrics.json", "predictions", "plots"} <= files
            listed = rest(uri, f"artifacts/list?run_id={run_id}&path=predictions/xnli")
            assert {Path(f["path"]).name for f in listed["files"]} >= {"test-en.tsv", "test-el.tsv"}
        assert finished >= 1  # the baseline is never pruned: some artifacts were checked
        files = {f["path"] for f in rest(uri, f"artifacts/list?run_id={parent_id}")["files"]}
        assert {"summary.md", "best.yaml", "optuna", "search.yaml"} <= files
        model = rest(uri, "registered-models/get?name=e2e-enc")["registered_model"]
        assert model["latest_versions"][0]["version"] == "1"

    best = load_config(tmp_path / "sweeps" / "e2e" / "best.yaml")  # what jobs/train.py reads
    assert best.alignment.method in ("wordot", "subot", "none")
    assert best.data.demo.cache_dir == cache and best.tune.name == "e2e"


def terminated_trials(sweep: Path) -> list[str]:
    """Trials Tune has recorded as finished in its saved experiment state."""
    states = sorted(glob.glob(str(sweep / "experiment_state-*.json")))
    if not states:
        return []
    try:
        data = json.loads(Path(states[-1]).read_text())
    except (OSError, ValueError):
        return []
    trials = [json.loads(entry[0]) for entry in data["trial_data"]]
    return [t["trial_id"] for t in trials if t.get("status") == "TERMINATED"]


def background_driver(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    """``jobs/tune.py`` running in the background, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_while_running(driver, log, condition, what: str, poll: float = 2.0) -> None:
    """Wait for ``condition`` while the driver lives (its log tail if it dies), 10 min at most."""
    deadline = time.monotonic() + 600
    while not condition():
        assert driver.poll() is None, Path(log.name).read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(poll)


def test_a_killed_driver_resumes_without_rerunning_or_duplicating(cache, tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = sweep_args(
        cache, tmp_path, samples=2, tracking=store, **{"tune.max_concurrent_trials": 1}
    )
    sweep = tmp_path / "sweeps" / "e2e"
    with ray_cluster(tmp_path, head_cpus=2) as cluster:
        env = cluster.env()
        log = (tmp_path / "first.log").open("w")
        driver = background_driver(args, env, log)
        wait_while_running(driver, log, lambda: terminated_trials(sweep), "a finished trial")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
        log.close()
        first = terminated_trials(sweep)
        assert first, "the trial seen finished is not in Tune's state any more"
        stamps = {t: (sweep / "trials" / t / "metrics.json").stat().st_mtime_ns for t in first}

        again = subprocess.run(
            [sys.executable, *args, "--resume"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    for trial, stamp in stamps.items():  # not rerun
        assert (sweep / "trials" / trial / "metrics.json").stat().st_mtime_ns == stamp
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("e2e").experiment_id
    runs = client.search_runs([experiment], "tags.`ot_ray.sweep` = 'e2e'")
    trial_ids = [
        r.data.tags.get("ot_ray.trial_id") for r in runs if "ot_ray.trial_id" in r.data.tags
    ]
    assert len(trial_ids) == len(set(trial_ids)) == 2  # one MLflow run per trial, none twice
    assert sum(r.data.tags.get("ot_ray.role") == "sweep" for r in runs) == 1
    assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    # resumed with another setting: refused, naming it (it used to run the old settings)
    changed = subprocess.run(
        [sys.executable, *args, "--resume", "--set", "train.seed=7"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert changed.returncode == 2, changed.stderr[-2000:]
    last = changed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --resume with settings other than the sweep's: train.seed: ")
    # a new sweep would clash: refused with one line, before the world is built or Ray starts
    refused = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("error: a sweep named 'e2e' exists")
    assert "pass --resume" in refused.stderr and "Traceback" not in refused.stderr


class InterruptedSweep:
    """Watches a two-trial sweep tracked in SQLite: when to stop it, and what it left behind."""

    def __init__(self, root: Path) -> None:
        self.store = f"sqlite:///{root}/mlflow.db"
        self.sweep = root / "sweeps" / "e2e"
        self.client = MlflowClient(self.store)

    def trial_runs(self) -> list:
        experiment = self.client.get_experiment_by_name("e2e")
        if experiment is None:
            return []
        runs = self.client.search_runs([experiment.experiment_id], "tags.`ot_ray.sweep` = 'e2e'")
        return [r for r in runs if "ot_ray.trial_id" in r.data.tags]

    def second_trial_training(self) -> bool:
        """The first trial has finished and the second has reported metrics."""
        done = terminated_trials(self.sweep)
        return bool(done) and any(
            r.data.metrics for r in self.trial_runs() if r.data.tags["ot_ray.trial_id"] not in done
        )

    def check(self, output: str) -> None:
        """One trial finished, one interrupted (not pruned), the sweep's parent run KILLED."""
        assert "Interrupted: 1 of the 2 trials started did not finish" in output, output[-4000:]
        assert "continue it with the same command and --resume" in output
        assert self.statuses() == [("finished", "FINISHED"), ("interrupted", "KILLED")]
        assert self.parent_status() == "KILLED"  # --resume finishes it

    def statuses(self) -> list[tuple[str, str]]:
        """(``status`` tag, MLflow run status) of every trial run."""
        return sorted((r.data.tags["status"], r.info.status) for r in self.trial_runs())

    def parent_status(self) -> str:
        experiment = self.client.get_experiment_by_name("e2e").experiment_id
        (parent,) = [
            r
            for r in self.client.search_runs([experiment])
            if r.data.tags.get("ot_ray.role") == "sweep"
        ]
        return parent.info.status


def test_a_stopped_sweep_marks_its_running_trial_interrupted_and_resumes_it(cache, tmp_path):
    """``ray job stop`` sends SIGTERM and kills 3 s later unless the job's runtime env asks for
    SIGINT and a longer wait (README, KubeRay manifest): then the driver gets Ctrl-C's signal,
    Tune stops, the summary still comes, and the unfinished trial is told apart from a pruned
    one (MLflow run KILLED with status ``interrupted``); ``--resume`` finishes it in its run."""
    watch = InterruptedSweep(tmp_path)
    args = sweep_args(
        cache, tmp_path, samples=2, tracking=watch.store, **{"tune.max_concurrent_trials": 1}
    )
    stop_env = {"env_vars": {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "300"}}
    with ray_cluster(tmp_path, head_cpus=2) as cluster:
        ray_job = [str(BIN / "ray"), "job"]
        address = f"--address={cluster.dashboard}"
        submitted = run(
            [
                *ray_job, "submit", address, "--no-wait", "--submission-id=e2e-stop",
                f"--working-dir={REPO}", f"--runtime-env-json={json.dumps(stop_env)}",
                "--", "python", *args,
            ],
            timeout=300, cwd=REPO, env=cluster.env(),
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        deadline = time.monotonic() + 600
        while not watch.second_trial_training():
            assert time.monotonic() < deadline, "no second trial training in time"
            status = run([*ray_job, "status", address, "e2e-stop"], timeout=120, env=cluster.env())
            said = status.stdout + status.stderr
            assert "RUNNING" in said or "PENDING" in said, said[-3000:]  # not ended early
            time.sleep(5)
        stopped = run([*ray_job, "stop", address, "e2e-stop"], timeout=400, env=cluster.env())
        assert stopped.returncode == 0, (stopped.stdout + stopped.stderr)[-3000:]
        logs = run([*ray_job, "logs", address, "e2e-stop"], timeout=120, env=cluster.env())
        watch.check(logs.stdout)
        again = run([sys.executable, *args, "--resume"], timeout=900, cwd=REPO, env=cluster.env())
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "Interrupted" not in again.stdout
    assert watch.statuses() == [("finished", "FINISHED"), ("finished", "FINISHED")]
    assert watch.parent_status() == "FINISHED"


WORKER_PIDS_SCRIPT = """
import json, sys, ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1], logging_level="ERROR")
alive = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
print(json.dumps([a.pid for a in list_actors(filters=alive, limit=1000)]))
"""


def ray_worker_pids(cluster) -> list[int]:
    """The live Ray Train workers of ``cluster`` (through Ray's state API: not another Ray's
    workers that run on the same machine)."""
    listed = run(
        [str(BIN / "python"), "-c", WORKER_PIDS_SCRIPT, cluster.address],
        timeout=120,
        env=cluster.env(),
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    return json.loads(listed.stdout.strip().splitlines()[-1])


def registered_checkpoints(pattern: str) -> int:
    """The checkpoints Ray Train's checkpoint manager has registered (its snapshot file)."""
    for path in glob.glob(pattern):
        try:
            return len(json.loads(Path(path).read_text(encoding="utf-8"))["checkpoint_results"])
        except (OSError, ValueError, KeyError):  # being written
            continue
    return 0


def test_a_killed_worker_is_restarted_and_the_trial_finishes_from_its_checkpoint(cache, tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = sweep_args(cache, tmp_path, samples=1, tracking=store, **{"train.max_failures": 1})
    with ray_cluster(tmp_path, head_cpus=2) as cluster:
        env = cluster.env()
        log = (tmp_path / "sweep.log").open("w")
        driver = background_driver(args, env, log)
        snapshots = tmp_path / "sweeps" / "e2e" / "train" / "*" / "checkpoint_manager_snapshot.json"
        # A checkpoint registered with Ray Train (its checkpoint manager has written it down): a
        # worker killed while its checkpoints are still being reported restarts from nothing,
        # rightly, and on a fast machine two checkpoints reach storage before either is.
        wait_while_running(
            driver,
            log,
            lambda: registered_checkpoints(str(snapshots)) >= 1,
            "a checkpoint",
            poll=0.5,
        )
        victims = ray_worker_pids(cluster)
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        assert driver.wait(timeout=900) == 0, (tmp_path / "sweep.log").read_text()[-4000:]
        log.close()
    metrics = json.loads(
        next((tmp_path / "sweeps" / "e2e" / "trials").glob("*/metrics.json")).read_text()
    )
    for lang in ("en", "de", "fr", "bg", "es", "el"):
        assert f"xnli/test/acc/{lang}" in metrics and f"xquad/test/f1/{lang}" in metrics
    text = (tmp_path / "sweep.log").read_text()
    assert "finished" in text and "failed" not in text.split("## Sweep")[-1]
    assert metrics["restarts"] == 1  # restored from the checkpoint, not started from nothing


def test_two_node_cluster_runs_a_two_worker_trial_with_shared_storage(cache, tmp_path):
    """The README's single-trial command, 2 DDP workers, every output. One CPU per node and one
    CPU per worker: the worker group can only be placed across both nodes, so success means Ray
    Train ran the trial on two nodes."""
    out = tmp_path / "out"
    with ray_cluster(tmp_path, head_cpus=1, extra_nodes=1) as cluster:
        assert cluster.alive_nodes(expect=2) == 2
        sets = [
            *tiny_trial_overrides(cache, str(out)),
            "train.num_workers=2",
            "train.cpus_per_worker=1",
            f"train.storage_path={tmp_path / 'shared'}",
            "task.xquad.select_every=5",  # every worker scores its share of the pivot's dev set
        ]
        done = subprocess.run(
            [
                sys.executable, "jobs/train.py", "--config", "configs/demo.yaml",
                *(a for s in sets for a in ("--set", s)),
            ],
            cwd=REPO, env=cluster.env(), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        listed = run(  # the workers' nodes, as Ray's state API recorded them
            [str(BIN / "python"), "-c", ACTORS_SCRIPT, cluster.address],
            timeout=120,
            env=cluster.env(),
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
    placed = json.loads(listed.stdout.strip().splitlines()[-1])
    assert len(placed["RayTrainWorker"]) == 2 and len(set(placed["RayTrainWorker"])) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert "xquad/test/f1/el" in metrics and "align/aer/de" in metrics
    assert "| de |" in done.stdout and "XNLI acc" in done.stdout
    assert len(list((out / "predictions" / "xnli").glob("test-*.tsv"))) == 6
    checkpoints = list((tmp_path / "shared").rglob("stage_model.safetensors"))
    assert checkpoints, "rank 0 wrote no checkpoint through ray.train.report to the shared storage"
    curve = json.loads((out / "predictions" / "selection" / "xquad.json").read_text())
    assert curve["chosen_step"] == metrics["xquad/select/step"]
    chosen_score = curve["scores"][str(curve["chosen_step"])]
    assert chosen_score == max(curve["scores"].values())
    last = curve["scores"][str(curve["total_steps"])]
    assert chosen_score > last, "the last step scored best: a restore could not be seen"
    assert chosen_score == pytest.approx(metrics["xquad/dev/f1/en"], abs=1e-9)  # tested: chosen
    assert list((tmp_path / "shared").rglob("selected_model.safetensors"))
    # real safetensors files that hold the encoder (a checkpoint's may add a task head)
    for path in [out / "aligned_encoder" / "model.safetensors", *checkpoints]:
        with safe_open(path, "pt") as weights:
            keys = list(weights.keys())
        assert any(key.endswith("embeddings.word_embeddings.weight") for key in keys), path


ACTORS_SCRIPT = """
import json, sys, ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1], logging_level="ERROR")
head = [n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"]]
# by the class's own name: Ray gives a Tune trial's actor its qualified name
# (wrap_function.<locals>.ImplicitFunc) or its plain one, depending on how it was made
actors = list_actors(limit=1000)
nodes = {c: [a.node_id for a in actors if a.class_name.rsplit(".", 1)[-1] == c]
         for c in ("ImplicitFunc", "TrainController", "RayTrainWorker")}
print(json.dumps({"head": head, **nodes}))
"""


def test_trial_drivers_stay_on_the_head_so_a_lost_worker_node_cannot_fail_a_trial(cache, tmp_path):
    """As on Kubernetes: a head without CPUs (it runs no trial work) and a worker node whose
    loss (a preempted GPU node) Ray Train recovers from by restarting its workers. A trial's
    driver, and the Train controller Ray attaches to its node, placed on that worker node would
    fail the trial for good. The head's memory holds both trials' drivers, but two of them use
    more than half of it, where Ray's scheduler would otherwise spread the second one out.
    The sweep is alignment-only, searching on a dev alignment metric (finished at its end)."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = sweep_args(
        cache,
        tmp_path,
        samples=2,
        tracking=store,
        **{
            "task.tasks": "[]",
            "tune.metric": "align/retrieval_acc/avg_targets",
            "tune.search_space": json.dumps({"alignment.lr": {"choices": [1.0e-3, 2.0e-3]}}),
            "tune.points_to_evaluate": "{}",
        },
    )
    with ray_cluster(
        tmp_path, head_cpus=0, extra_nodes=1, extra_cpus=2, head_memory=600 * 2**20
    ) as cluster:
        assert cluster.alive_nodes(expect=2) == 2
        done = subprocess.run(
            [sys.executable, *args], cwd=REPO, env=cluster.env(), capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        listed = run(
            [str(BIN / "python"), "-c", ACTORS_SCRIPT, cluster.address],
            timeout=120,
            env=cluster.env(),
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
    placed = json.loads(listed.stdout.strip().splitlines()[-1])
    (head,) = placed["head"]
    assert len(placed["ImplicitFunc"]) == 2 and set(placed["ImplicitFunc"]) == {head}
    assert placed["TrainController"] and set(placed["TrainController"]) == {head}
    assert placed["RayTrainWorker"] and head not in placed["RayTrainWorker"]  # no CPU there
    summary = done.stdout.split("## Sweep")[-1]
    assert summary.count("| finished |") == 2, summary


def test_a_failing_trial_is_reported_with_its_reason_and_the_sweep_goes_on(cache, tmp_path):
    """jobs/tune.py on its own local Ray (no RAY_ADDRESS); one trial reads a missing file."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    missing = tmp_path / "nowhere" / "{lang}-{pivot}.tsv"
    good = "{root}/parallel/{lang}-{pivot}.tsv"
    args = sweep_args(
        cache,
        tmp_path,
        samples=2,
        tracking=store,
        **{
            "tune.search_space": json.dumps(
                {"data.parallel.train.path": {"choices": [good, str(missing)]}}
            ),
            "tune.points_to_evaluate": json.dumps(
                {
                    "good": {"data.parallel.train.path": good},
                    "broken": {"data.parallel.train.path": str(missing)},
                }
            ),
        },
    )
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=environment(), capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    summary = done.stdout.split("## Sweep")[-1]
    assert "| broken | failed (" in summary and "no such file" in summary
    assert "| good | finished |" in summary
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    failed = [r for r in runs if r.data.tags.get("reference") == "broken"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "no such file" in failed[0].data.tags["failure_reason"]
