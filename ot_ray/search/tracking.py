"""MLflow tracking of a sweep: one parent run, one nested child run per Tune trial.

A trial's run is found again by its tags (the sweep's parent run, the Tune trial id), never
created twice, so a resumed sweep (``Tuner.restore``) or a restarted trial logs into the runs it
already has; the parent's id is kept in the sweep's folder. Metrics are
logged from the Ray Train controller as workers report them, with the trial's global optimizer
step as MLflow step; params, tags and artifacts from the Tune trial process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ray.train import UserCallback

from ot_ray.config import Config
from ot_ray.errors import UserError
from ot_ray.uris import redacted, redacted_text

logger = logging.getLogger(__name__)

SWEEP_TAG = "ot_ray.sweep"
TRIAL_TAG = "ot_ray.trial_id"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


class TrackingError(UserError):
    """The tracking store cannot be used: said at start-up, before any training, and where a
    trial opens its run or the sweep closes (one line, its URI's secrets hidden)."""


def tracking_failures() -> tuple[type[Exception], ...]:
    """What MLflow raises when its store fails: a REST error (an unreachable or restarting
    server, which MLflow 3 quotes with the whole URL, password included), a database's (wrapped
    by MLflow), an artifact store's (HTTP, or a local file). Anything else is a bug and keeps its
    traceback."""
    import requests
    from mlflow.exceptions import MlflowException

    return (MlflowException, requests.RequestException, OSError)


def failure_text(err: BaseException, uri: str) -> str:
    """An MLflow error as one line with the secrets of every URI in it hidden (``uri`` itself
    first, whatever its shape)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return redacted_text(text.replace(uri, redacted(uri)))[:300]


@contextlib.contextmanager
def one_try(seconds: int = 10) -> Iterator[None]:
    """MLflow's REST calls in this block try once, for at most ``seconds`` (its default is 7
    retries with backoff, minutes against a server that is down): for best-effort calls after a
    failure, which must not hold up the error that is reported."""
    names = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(dict(zip(names, ("0", str(seconds)), strict=True)))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``start_run``, ``log_model``) pointed at ``uri`` for a block only.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, which
    :func:`tracking_uri` reads first: left set, a later sweep in the same process, or a process
    it starts, would log into this store whatever its config says.
    """
    import mlflow

    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    if previous == previous_env:  # read from the environment, not set: leave it to it
        previous = None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def tracking_uri(config: Config, *, base: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``tracking.uri``; a relative SQLite path is made
    absolute (Tune trials do not run in the driver's working directory)."""
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    uri = from_env or config.tracking.uri
    where = "MLFLOW_TRACKING_URI" if from_env else "tracking.uri"
    if uri != uri.strip():  # " http://..." would miss the quick server check and hang
        raise TrackingError(f"{where} has spaces around it: {redacted(uri.strip())!r}")
    scheme, sep, rest = uri.partition("://")
    uri = scheme.lower() + sep + rest if sep else uri  # HTTP://... is http://...
    prefix = "sqlite:///"
    if scheme.lower() == "sqlite" and (
        not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:")
    ):  # each Ray worker would open its own empty database, and all of it vanishes at exit
        raise TrackingError(
            f"{where}={redacted(uri)}: not a SQLite file (an in-memory store keeps nothing); "
            "name one, e.g. sqlite:///mlflow.db"
        )
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        path = (base or Path.cwd()) / uri[len(prefix) :]
        uri = prefix + str(path.resolve())
    return uri


def _unhealthy(uri: str, timeout: float) -> str | None:
    """Why the server at ``uri`` does not answer ``/health``, or None. Asked the way MLflow's
    own client asks (its user, token and credentials-file settings, and its TLS ones: a private
    CA, a client certificate, ``MLFLOW_TRACKING_INSECURE_TLS``), so a server MLflow would use is
    not refused here."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        answer = http_request(
            get_default_host_creds(uri),
            "/health",
            "GET",
            max_retries=0,
            timeout=timeout,
            raise_on_status=False,
        )
    except Exception as err:  # refused, unresolvable, TLS: the reason is all that is shown
        return " ".join(str(err).split())
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} {answer.reason}"
    return None


def check_tracking(uri: str, experiment: str, *, timeout: float = 5.0, create: bool = True) -> str:
    """Make sure runs can be written to ``uri``; return the experiment id (created if new).

    Raises :class:`TrackingError` with one line for an unreachable server or an unwritable
    store, so a sweep never trains for hours and then fails to record anything. ``create``
    False checks without writing anything (no new SQLite file, no experiment; the id is then
    "" where there is none yet): for start-up checks that other checks may still stop.
    """
    if uri.startswith(("http://", "https://")):
        reason = _unhealthy(uri, timeout)
        if reason is not None:
            reason = redacted_text(reason.replace(uri, redacted(uri)))[:300]
            raise TrackingError(
                f"MLflow tracking server {redacted(uri)} is not reachable ({reason}); start it "
                "or set tracking.uri / MLFLOW_TRACKING_URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        folder = path.parent
        if not folder.is_dir():
            raise TrackingError(f"cannot create the MLflow store {path}: no folder {folder}")
        if not os.access(folder, os.W_OK):
            raise TrackingError(f"cannot write the MLflow store {path}: {folder} is not writable")
        if path.exists() and not os.access(path, os.W_OK):
            raise TrackingError(f"cannot write the MLflow store {path}: the file is read-only")
        if not path.exists() and not create:
            return ""  # opening it would create it
    try:
        client = mlflow_client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            if not create:
                return ""
            return client.create_experiment(experiment, artifact_location=artifact_location(uri))
    except Exception as err:  # any backend failure is the user's store, not our bug
        message = redacted_text(" ".join(str(err).split()).replace(uri, redacted(uri)))[:300]
        raise TrackingError(f"cannot use the MLflow store {redacted(uri)}: {message}") from None
    if found.lifecycle_stage == "deleted":  # MLflow refuses new runs in it, mid-launch
        raise TrackingError(
            f"the MLflow experiment {experiment!r} in {redacted(uri)} is deleted: restore it "
            "(mlflow experiments restore --experiment-id "
            f"{found.experiment_id}) or choose another tracking.experiment"
        )
    return found.experiment_id


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: ``mlartifacts/`` next to
    the database, so both move (or persist in a volume) together. MLflow's default would be
    ``./mlruns`` in whatever directory the sweep ran from. None (the store's default) for
    servers and other databases."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def git_commit(repo: Path) -> str:
    """The commit being run (``OT_RAY_GIT_COMMIT`` wins: a Ray job's working dir has no .git)."""
    if os.environ.get("OT_RAY_GIT_COMMIT"):
        return os.environ["OT_RAY_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def find_run(client, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    """The id of the run with exactly these tag values, if one exists."""
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = client.search_runs([experiment_id], filter_string=query, max_results=2)
    return runs[0].info.run_id if runs else None


def get_or_create_run(
    client, experiment_id: str, *, key_tags: Mapping[str, str], name: str, tags: Mapping[str, str]
) -> str:
    """The run identified by ``key_tags``, created with ``tags`` the first time. A run found
    again (a resumed sweep, a restarted trial) is reopened: the work goes on in it."""
    found = find_run(client, experiment_id, key_tags)
    if found is not None:
        if client.get_run(found).info.status != "RUNNING":
            client.update_run(found, status="RUNNING")
        return found
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **key_tags})
    return run.info.run_id


def log_params(client, run_id: str, params: Mapping[str, Any]) -> None:
    """Params in batches (MLflow takes 100 per call); re-logging the same values is a no-op."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    items = [
        Param(key, str(value)[:MAX_PARAM_LENGTH])
        for key, value in sorted(params.items())
        if key not in existing
    ]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


#: Config keys that say where a run writes on this machine (a different value per trial and
#: per machine): logged as tags ``where.<key>``, so *Compare* lists only settings as params.
LOCATION_KEYS = (
    "train.output_dir",
    "train.storage_path",
    "train.run_name",
    "data.cache_dir",
    "data.demo.cache_dir",
)


def log_config(client, run_id: str, flat: Mapping[str, Any]) -> None:
    """A flattened config: its settings as params, its :data:`LOCATION_KEYS` as tags."""
    log_params(client, run_id, {k: v for k, v in flat.items() if k not in LOCATION_KEYS})
    for key in LOCATION_KEYS:
        if flat.get(key) is not None:
            client.set_tag(run_id, f"where.{key}", str(flat[key])[:MAX_PARAM_LENGTH])


def log_metrics(client, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """The numeric entries of one report at ``step`` (NaN kept: "not measured yet")."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(key, float(value), now, step)
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
        if not math.isinf(value)
    ]
    for start in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[start : start + 1000])


def log_files(client, run_id: str, files: Iterable[tuple[Path, str]]) -> None:
    """Each existing ``(path, artifact folder)``; folders are uploaded whole."""
    for path, folder in files:
        if path.is_dir():
            client.log_artifacts(run_id, str(path), folder)
        elif path.is_file():
            client.log_artifact(run_id, str(path), folder or None)


class MLflowMetricsCallback(UserCallback):
    """A Ray Train user callback: each report of rank 0 becomes MLflow metrics of the trial's
    child run, stepped by the trial's global optimizer step."""

    def __init__(self, uri: str, run_id: str) -> None:
        super().__init__()
        self.uri = uri
        self.run_id = run_id

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if not metrics:
            return
        report = metrics[0]
        step = int(report.get("global_step", 0))
        try:
            log_metrics(mlflow_client(self.uri), self.run_id, report, step)
        except Exception as err:  # a tracking server's hiccup must not fail the trial
            # (Ray Train turns a callback's exception into a failed run); Tune keeps every
            # report for the summary, and the trial uploads its metrics.json when it ends
            message = redacted_text(" ".join(str(err).split()))[:300]
            logger.warning("MLflow did not take the metrics of step %d: %s", step, message)

    def after_exception(self, run_context, worker_exceptions) -> None:
        """Nothing: the trial process marks the run failed with the reason."""
