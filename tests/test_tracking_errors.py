"""MLflow failing where a trial opens its run, where a failed trial is recorded, and where the
sweep closes: one line with the URI's secrets hidden, the trial's own reason kept, the summary
and best config kept on disk, and a sweep's model that cannot be registered said, not dropped.

Against real stores: a SQLite store, an ``mlflow server`` stopped and started again on its port,
and a server address where nothing listens (MLflow 3's REST errors quote the whole URL,
``http://alice:s3cret@...``, password included).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from clusters import free_port, mlflow_server
from mlflow import MlflowClient

from ot_ray.config import load_config
from ot_ray.errors import UserError
from ot_ray.search.report import finish_sweep, register_best
from ot_ray.search.sweep import SweepOutcome, TrialOutcome, error_reason
from ot_ray.search.tracking import PARENT_TAG, TRIAL_TAG, TrackingError, check_tracking

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cret"


@pytest.fixture
def one_try(monkeypatch):
    """MLflow's REST client tries once (its default retries a dead server for minutes)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def nowhere() -> str:
    """A tracking server address with credentials where nothing listens."""
    return f"http://alice:{SECRET}@127.0.0.1:{free_port()}"


def test_a_trial_that_cannot_open_its_run_fails_in_one_line_without_the_password(tmp_path, one_try):
    """The real trainable in a real Tune sweep, its tracking server unreachable: the MLflow
    error (the URL with the password) was the trial's error, in Tune's error.txt and in the
    sweep's summary."""
    import ray
    from ray import tune

    from ot_ray.search.trial_fn import SweepContext, search_trial

    uri = nowhere()
    config = load_config(None, ["data.languages=[de]"])
    context = SweepContext(
        base=config.model_dump(mode="json"), name="s", sweep_dir=str(tmp_path / "s"),
        tracking_uri=uri, experiment_id="0", parent_run_id="0" * 32, commit="unknown",
    )  # fmt: skip
    env = {
        k: os.environ[k] for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    ray.init(
        address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR",
        log_to_driver=False, runtime_env={"env_vars": env},
    )  # fmt: skip
    try:
        tuner = tune.Tuner(
            tune.with_parameters(search_trial, context=context),
            run_config=tune.RunConfig(name="s", storage_path=str(tmp_path), verbose=0),
        )
        (result,) = tuner.fit()
    finally:
        ray.shutdown()
    assert isinstance(result.error, TrackingError)  # a UserError: Ray keeps the class
    reason = error_reason(result.error)
    assert reason.startswith("trial ")  # the class name Ray prints is not part of the reason
    assert "did not start: its MLflow run could not be opened in http://alice:***@127.0.0" in reason
    assert "(API request to http://alice:***@127.0.0.1:" in reason and SECRET not in reason
    (error_file,) = glob.glob(str(tmp_path / "s" / "*" / "error.txt"))
    written = Path(error_file).read_text(encoding="utf-8")
    assert SECRET not in written and "MlflowException" not in written


def test_a_failed_trial_keeps_its_reason_when_mlflow_cannot_record_it(tmp_path, one_try, caplog):
    """The failure path's set_tag, against a server that is down, raised MLflow's error (the
    URL, password and all) in place of the trial's own reason; the end of the sweep then tags
    the reason on the run it finds still open, and closes it as failed."""
    from ot_ray.search.trial_fn import failed_trial

    cause = ValueError("loss is NaN at step 12 (alignment.lr too high?)")
    with caplog.at_level("WARNING", logger="ot_ray.search.trial_fn"):
        down = nowhere()
        error = failed_trial(MlflowClient(down), down, "r1", "t1", cause)
    assert str(error) == "trial t1 failed: loss is NaN at step 12 (alignment.lr too high?)"
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith("MLflow did not record the failure of run r1 (API request to")
    assert SECRET not in warned and "alice:***@127.0.0.1" in warned

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    client = MlflowClient(uri)
    parent = client.create_run(experiment).info.run_id
    run_id = client.create_run(experiment, tags={PARENT_TAG: parent, TRIAL_TAG: "t1"}).info.run_id
    done = TrialOutcome("t0", {}, {"objective": 60.0}, "finished")
    failed = TrialOutcome("t1", {}, {}, "failed", error_reason(error))
    outcome = SweepOutcome("s", tmp_path, parent, experiment, uri, [done, failed], done)
    finish_sweep(outcome, load_config(None, ["task.tasks=[xnli]"]), load_config(None))
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert run.data.tags["failure_reason"] == str(error)


def test_a_server_down_at_the_sweeps_end_is_one_line_and_loses_nothing(tmp_path, one_try):
    """The tracking server stops before the sweep closes: closing raised MLflow's traceback
    with the password, the summary and best.yaml were lost and the sweep's run stayed RUNNING.
    Now both files are in the sweep's folder, the error is one line that says so, and closing
    again once the server is back (what --resume does after Tune's instant restore of a
    finished sweep) records everything."""
    port = free_port()
    uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
    server = tmp_path / "server"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    config = load_config(None, ["task.tasks=[xnli]"])
    with mlflow_server(server, port):
        experiment = check_tracking(uri, "sweeps")
        client = MlflowClient(uri)
        parent = client.create_run(experiment).info.run_id
        tags = {PARENT_TAG: parent, TRIAL_TAG: "t1"}
        run_id = client.create_run(experiment, tags=tags).info.run_id
    metrics = {"objective": 70.0, "xnli/dev/acc/de": 70.0, "xnli/test/acc/de": 68.0}
    best = TrialOutcome("t1", {"alignment.lr": 2.0e-4}, metrics, "finished")
    outcome = SweepOutcome("s", sweep, parent, experiment, uri, [best], best)

    with pytest.raises(TrackingError) as refused:
        finish_sweep(outcome, config, config)
    message = str(refused.value)
    assert "\n" not in message and SECRET not in message
    assert message.startswith(
        f"MLflow did not record the end of the sweep in http://alice:***@127.0.0.1:{port} "
        f"(API request to http://alice:***@127.0.0.1:{port}/api/2.0/mlflow/"
    )
    assert message.endswith(
        f"the summary is in {sweep / 'summary.md'} and the best config in {sweep / 'best.yaml'}; "
        "once the store answers, run the same command with --resume to record it (finished "
        "trials are not rerun)"
    )
    assert "## Best trial t1" in (sweep / "summary.md").read_text(encoding="utf-8")
    assert load_config(sweep / "best.yaml").alignment.lr == 2.0e-4
    assert refused.value.summary.endswith(f"best config: {sweep / 'best.yaml'}")

    with mlflow_server(server, port):  # back: closing again records it all
        text = finish_sweep(outcome, config, config)
        assert "## Best trial t1" in text
        assert client.get_run(parent).info.status == "FINISHED"
        assert client.get_run(run_id).info.status == "FINISHED"
        logged = {a.path for a in client.list_artifacts(parent)}
        assert {"summary.md", "best.yaml"} <= logged
        assert client.get_run(parent).data.tags["best_trial"] == "t1"


@pytest.fixture
def stand_in_sweep(tmp_path, monkeypatch, one_try):
    """``jobs/tune.py``'s own code from its arguments to its exit status, with the training in
    between (preflight, Ray, Tune) replaced by a finished sweep of one trial in a real SQLite
    store; the test sets ``the_store`` to the URI that sweep reports (the store may be down by
    the time the sweep ends)."""
    from ot_ray import launch, preflight
    from ot_ray.search import sweep as sweeps

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ended = {"uri": store}

    def finished_sweep(config, *, resume, repo, connect, given=None):
        experiment = check_tracking(store, config.tracking.experiment)
        client = MlflowClient(store)
        parent = client.create_run(experiment).info.run_id
        tags = {PARENT_TAG: parent, TRIAL_TAG: "t1"}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        client.set_terminated(run_id, "FINISHED")
        directory = sweeps.sweep_dir(config)
        directory.mkdir(parents=True)
        metrics = {"objective": 70.0, "xnli/dev/acc/de": 70.0, "xnli/test/acc/de": 68.0}
        best = TrialOutcome("t1", {}, metrics, "finished")
        return SweepOutcome(
            config.tune.name, directory, parent, experiment, ended["uri"], [best], best
        )

    monkeypatch.setattr(launch, "resolve_paths", lambda config: config)
    monkeypatch.setattr(preflight, "check_data", lambda config: None)
    monkeypatch.setattr(sweeps, "run_sweep", finished_sweep)

    def tune(*sets: str) -> int:
        from ot_ray import cli

        base = [f"tracking.uri={store}", f"tune.storage_path={tmp_path / 'sweeps'}", "tune.name=s"]
        argv = [a for s in (*base, *sets) for a in ("--set", s)]
        with pytest.raises(SystemExit) as exited:
            cli.run(cli.tune, argv)
        return exited.value.code

    tune.ended = ended
    return tune


def test_the_job_shows_the_summary_then_one_line_when_mlflow_fails_at_the_end(
    stand_in_sweep, tmp_path, capsys
):
    stand_in_sweep.ended["uri"] = nowhere()  # the server is gone when the sweep ends
    assert stand_in_sweep() == 2
    out, err = capsys.readouterr()
    assert "## Best trial t1" in out and "best config: " in out
    said = [line for line in err.splitlines() if " INFO " not in line]  # MLflow's own log
    assert len(said) == 1 and "Traceback" not in err
    assert said[0].startswith("error: MLflow did not record the end of the sweep in http://alice:*")
    assert SECRET not in out + err
    assert (tmp_path / "sweeps" / "s" / "summary.md").is_file()
    assert (tmp_path / "sweeps" / "s" / "best.yaml").is_file()


def test_a_best_encoder_that_is_not_here_is_a_warning_not_silence(stand_in_sweep, capsys):
    """tracking.registered_model_name set, but the best trial's aligned_encoder/ is not on the
    driver's machine (written on another node): the sweep ended with no model and no word."""
    assert stand_in_sweep("tracking.registered_model_name=enc") == 0  # the results are fine
    out, err = capsys.readouterr()
    assert "## Best trial t1" in out and "registered model" not in out
    (warning,) = [line for line in err.splitlines() if " INFO " not in line]  # MLflow's own log
    assert warning.startswith("warning: the best trial t1 was not registered as 'enc': its ")
    assert "aligned encoder " in warning and "/trials/t1/aligned_encoder is not on this" in warning
    assert warning.endswith("run the same command with --resume to register it")


def test_a_best_trial_whose_run_was_deleted_is_not_registered_silently(tmp_path, one_try):
    from conftest import tiny_encoder

    from ot_ray.search.report import NotRegistered

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = check_tracking(uri, "sweeps")
    client = MlflowClient(uri)
    parent = client.create_run(experiment).info.run_id
    run_id = client.create_run(experiment, tags={PARENT_TAG: parent, TRIAL_TAG: "t1"}).info.run_id
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    tiny_encoder(tmp_path / "trials" / "t1" / "aligned_encoder")
    best = TrialOutcome("t1", {}, {}, "finished")
    outcome = SweepOutcome("s", tmp_path, parent, experiment, uri, [best], best)
    client.delete_run(run_id)
    with pytest.raises(UserError) as refused:
        register_best(outcome, "enc")
    assert isinstance(refused.value, NotRegistered)
    assert str(refused.value) == (
        f"the best trial t1 was not registered as 'enc': its run {run_id} is deleted in {uri}: "
        f"restore it (mlflow runs restore --run-id {run_id}) and run the same command with "
        "--resume to register it"
    )
