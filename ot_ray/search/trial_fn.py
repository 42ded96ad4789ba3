"""One Tune trial: apply the sampled values, then run the trial as its own Ray Train job.

Ray Train V2 composition: the Tune trial is only a driver. It builds a ``TorchTrainer`` whose
run name is derived from the Tune trial id (so a restored sweep resumes the same Train run from
its checkpoints), forwards worker reports to Tune (``TuneReportCallback``) and to MLflow, and
logs the trial's files into its MLflow child run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ot_ray.config import Config, flatten
from ot_ray.search.space import REFERENCE_KEY, apply_params
from ot_ray.search.tracking import (
    PARENT_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    MLflowMetricsCallback,
    TrackingError,
    failure_text,
    get_or_create_run,
    log_config,
    log_files,
    mlflow_client,
    one_try,
    tracking_failures,
)
from ot_ray.uris import redacted, redacted_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep shares (pickled once into Ray's object store)."""

    base: dict[str, Any]  # the resolved config (absolute paths)
    name: str
    sweep_dir: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    commit: str

    def trial_config(self, params: dict[str, Any], trial_id: str) -> Config:
        """The full config of one trial: sampled values, per-trial output and run name."""
        config = apply_params(Config.model_validate(self.base), params, origin=f"trial {trial_id}")
        config.train.output_dir = str(trial_output_dir(self.sweep_dir, trial_id))
        config.train.storage_path = str(Path(self.sweep_dir) / "train")
        config.train.run_name = f"{self.name}-{trial_id}"
        if config.data.cache_dir is None:  # trials share tokenised data (fingerprinted, locked)
            config.data.cache_dir = str(Path(self.sweep_dir) / "cache")
        return config

    def child_run(self, config: Config, params: dict[str, Any], trial_id: str) -> str:
        """The trial's MLflow run (found again on resume), with its params and tags."""
        client = mlflow_client(self.tracking_uri)
        reference = params.get(REFERENCE_KEY)
        run_id = get_or_create_run(
            client,
            self.experiment_id,
            key_tags={PARENT_TAG: self.parent_run_id, TRIAL_TAG: trial_id},
            name=f"{trial_id}" + (f" ({reference})" if reference else ""),
            tags={
                SWEEP_TAG: self.name,
                "method": config.alignment.method,
                "languages": ",".join(config.data.languages),
                "eval_languages": ",".join(config.data.all_eval_languages),
                "seed": str(config.train.seed),
                "mlflow.source.git.commit": self.commit,
                "reference": str(reference or ""),
            },
        )
        searched = {f"search.{k}": v for k, v in params.items() if k != REFERENCE_KEY}
        log_config(client, run_id, {**flatten(config.model_dump(mode="json")), **searched})
        return run_id


def search_trial(params: dict[str, Any], *, context: SweepContext) -> None:
    """The Tune trainable (a function): run one trial on Ray Train and record it."""
    from ray import tune
    from ray.train import TrainingFailedError
    from ray.tune.integration.ray_train import TuneReportCallback

    from ot_ray.failures import find_user_error
    from ot_ray.launch import build_trainer

    trial_id = tune.get_context().get_trial_id()
    config = context.trial_config(params, trial_id)
    uri = context.tracking_uri
    try:
        run_id = context.child_run(config, params, trial_id)
    except tracking_failures() as err:  # its message quotes the URL, password and all
        raise TrackingError(
            f"trial {trial_id} did not start: its MLflow run could not be opened in "
            f"{redacted(uri)} ({failure_text(err, uri)})"
        ) from None
    client = mlflow_client(uri)
    trainer = build_trainer(
        config,
        show_progress=False,
        callbacks=[TuneReportCallback(), MLflowMetricsCallback(context.tracking_uri, run_id)],
    )
    try:
        trainer.fit()
    except TrainingFailedError as err:
        raise failed_trial(client, uri, run_id, trial_id, find_user_error(err) or err) from None
    close_finished_run(client, run_id, Path(config.train.output_dir))


def failed_trial(
    client, uri: str, run_id: str, trial_id: str, cause: BaseException
) -> RuntimeError:
    """Mark the trial's run failed with the reason; the error for Tune, which says that reason
    (the sweep's summary quotes it). MLflow failing here too (a server restart) is a warning,
    after one try rather than minutes of retries: its error must not stand in for the trial's
    own, and the end of the sweep closes the run."""
    reason = redacted_text(" ".join(str(cause).split()))[:500]  # a tag: shown to all
    try:
        with one_try():
            client.set_tag(run_id, "failure_reason", reason)
            client.set_terminated(run_id, "FAILED")
    except Exception as tracking:
        logger.warning(
            "MLflow did not record the failure of run %s (%s); the end of the sweep closes it "
            "as failed, with its reason",
            run_id,
            failure_text(tracking, uri),
        )
    return RuntimeError(f"trial {trial_id} failed: {reason}")


def trial_output_dir(sweep_dir: str | Path, trial_id: str) -> Path:
    """Where a trial of the sweep writes its outputs (``train.output_dir``)."""
    return Path(sweep_dir) / "trials" / trial_id


def trial_files(out: Path) -> list[tuple[Path, str]]:
    """What a finished trial uploads to its run: its metrics and prediction files."""
    return [(out / "metrics.json", ""), (out / "predictions", "predictions")]


def close_finished_run(client, run_id: str, out: Path) -> None:
    """Upload a trained trial's files and close its run. A tracking server's hiccup must not
    fail a trial whose training is done (Tune would drop it from the best-trial choice, and
    --resume does not rerun it): the run is left open, and the end of the sweep uploads the
    files of a finished trial whose run is still open, then closes it."""
    try:
        log_files(client, run_id, trial_files(out))
    except Exception as err:
        logger.warning(
            "MLflow did not take the files of run %s (%s); they are in %s, and the end of the "
            "sweep uploads them again",
            run_id,
            _one_line(err),
            out,
        )
        return
    try:
        client.set_terminated(run_id, "FINISHED")
    except Exception as err:
        message = _one_line(err)
        logger.warning(
            "MLflow did not close run %s (%s); the end of the sweep closes it", run_id, message
        )


def _one_line(err: Exception) -> str:
    """An MLflow error as shown in a warning (REST errors quote the URI, password and all)."""
    return redacted_text(" ".join(str(err).split()))[:300]
