"""After the sweep: close the MLflow runs, write the summary and the best config, log figures,
register the best aligned encoder.

Selection is on the dev objective only; test scores appear once, for the best trial next to the
baseline of the same sweep (per-trial charts show dev scores).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ot_ray.config import Config, dump_config
from ot_ray.errors import UserError
from ot_ray.plots import optuna_figures, scores_against_baseline
from ot_ray.search.space import apply_params, rebuilt_study
from ot_ray.search.sweep import SweepOutcome, TrialOutcome
from ot_ray.search.tracking import (
    PARENT_TAG,
    TRIAL_TAG,
    TrackingError,
    failure_text,
    find_run,
    fluent_tracking_uri,
    log_files,
    log_metrics,
    mlflow_client,
    one_try,
    tracking_failures,
)
from ot_ray.search.trial_fn import trial_files, trial_output_dir
from ot_ray.summary import mean_std
from ot_ray.uris import redacted

DEV_PANELS = (("XNLI dev acc", "xnli/dev/acc"), ("XQuAD dev F1", "xquad/dev/f1"))
TEST_COLUMNS = (("XNLI acc", "xnli/test/acc"), ("XQuAD F1", "xquad/test/f1"))
AVERAGES = ("avg_seen_targets", "avg_unseen", "avg_targets")
SEED_KEY = "train.seed"
#: Tags on a sweep's run: the name and version its best encoder was registered as, so a
#: resumed sweep registers it once per name.
REGISTERED_TAG = "registered_model_version"
REGISTERED_NAME_TAG = "registered_model_name"


def baseline_trial(outcome: SweepOutcome, base_method: str) -> TrialOutcome | None:
    """The finished ``none`` trial of the sweep, a named reference point first."""
    finished = [t for t in outcome.trials if t.status == "finished"]
    nones = [t for t in finished if t.params.get("alignment.method", base_method) == "none"]
    nones.sort(key=lambda t: t.reference is None)
    return nones[0] if nones else None


#: The summary as a file of the sweep's folder (also logged on the sweep's run).
SUMMARY_FILE = "summary.md"


class SweepNotRecorded(TrackingError):
    """MLflow failed while the sweep was being closed; the summary and the best config are
    written in the sweep's folder already (``summary``: the console text, to show anyway)."""

    def __init__(self, message: str, *, summary: str) -> None:
        self.summary = summary
        super().__init__(message)


def finish_sweep(outcome: SweepOutcome, config: Config, user_config: Config) -> str:
    """Everything after ``Tuner.fit``; returns the console summary (also logged on the parent).

    ``user_config`` is the config as the user wrote it (relative paths kept), so the best
    config file can be run by ``jobs/train.py`` as it is. The summary (``summary.md``) and the
    best config are written into the sweep's folder before anything goes to MLflow: a tracking
    server that fails here raises :class:`SweepNotRecorded` (one line, its URI's secrets
    hidden), and rerunning the sweep's command with ``--resume`` closes it again.
    """
    languages = config.data.all_eval_languages
    baseline = baseline_trial(outcome, config.alignment.method)
    text = summary(outcome, config, baseline)
    summary_path = outcome.sweep_dir / SUMMARY_FILE
    summary_path.write_text(text + "\n", encoding="utf-8")
    best_path = None
    if outcome.best is not None:
        best_config = apply_params(user_config, outcome.best.params, origin="best trial")
        best_path = outcome.sweep_dir / config.tune.best_config
        best_path.write_text(dump_config(best_config), encoding="utf-8")
    console = text + (f"\nbest config: {best_path}" if best_path else "")
    with tempfile.TemporaryDirectory(prefix="ot-ray-report-") as scratch:
        work = Path(scratch)
        charts = {}
        for trial in outcome.trials:
            panels = _panels(trial.metrics, languages, DEV_PANELS)
            if trial.status == "finished" and panels:
                charts[trial.trial_id] = scores_against_baseline(
                    panels,
                    _panels(baseline.metrics, languages, DEV_PANELS) if baseline else None,
                    work / trial.trial_id / "dev_scores_vs_baseline.png",
                    f"trial {trial.trial_id} ({_method(trial, config)}) vs baseline, dev",
                )
        study = rebuilt_study(
            config.tune.search_space,
            [
                (t.params, t.metrics.get(config.tune.metric), _optuna_state(t))
                for t in outcome.trials
                if t.status != "interrupted"  # neither a result nor a verdict yet
            ],
            mode=config.tune.mode,
        )
        figures = optuna_figures(study, work / "optuna") if study.trials else []
        uri = outcome.tracking_uri
        try:
            _record_sweep(outcome, config, charts, figures, summary_path, best_path)
        except tracking_failures() as err:  # its message quotes the URL, password and all
            kept = f"the summary is in {summary_path}" + (
                f" and the best config in {best_path}" if best_path else ""
            )
            with contextlib.suppress(Exception), one_try():  # not over: --resume finishes it
                mlflow_client(uri).set_terminated(outcome.parent_run_id, "KILLED")
            raise SweepNotRecorded(
                f"MLflow did not record the end of the sweep in {redacted(uri)} "
                f"({failure_text(err, uri)}); {kept}; once the store answers, run the same "
                "command with --resume to record it (finished trials are not rerun)",
                summary=console,
            ) from None
    return console


def _record_sweep(
    outcome: SweepOutcome,
    config: Config,
    charts: dict[str, Path],
    figures: list[Path],
    summary_path: Path,
    best_path: Path | None,
) -> None:
    """The MLflow part of :func:`finish_sweep`: close the trials' runs (with their charts), log
    the summary, figures and best config on the sweep's run, and close it. Each step can be
    repeated (a resumed sweep closes again)."""
    client = mlflow_client(outcome.tracking_uri)
    for trial in outcome.trials:
        run_id = find_run(
            client,
            outcome.experiment_id,
            {PARENT_TAG: outcome.parent_run_id, TRIAL_TAG: trial.trial_id},
        )
        if run_id is None:
            continue
        _close_run(client, run_id, trial, trial_output_dir(outcome.sweep_dir, trial.trial_id))
        if trial.trial_id in charts:
            client.log_artifact(run_id, str(charts[trial.trial_id]), "plots")
    parent = outcome.parent_run_id
    client.log_artifact(parent, str(summary_path))
    for figure in figures:
        client.log_artifact(parent, str(figure), "optuna")
    if outcome.best is not None and best_path is not None:
        client.log_artifact(parent, str(best_path))
        client.set_tag(parent, "best_trial", outcome.best.trial_id)
        best_metrics = {
            f"best/{k}": v
            for k, v in outcome.best.metrics.items()
            if k.startswith(("xnli/", "xquad/", "align/")) or k == config.tune.metric
        }
        log_metrics(client, parent, best_metrics, 0)
    statuses = ("finished", "pruned", "interrupted")
    counts = {s: sum(t.status == s for t in outcome.trials) for s in statuses}
    failed = len(outcome.trials) - sum(counts.values())
    log_metrics(client, parent, {**counts, "failed": failed}, 0)
    # An interrupted sweep is not over: --resume reopens its runs (RUNNING) and finishes them.
    client.set_terminated(parent, "KILLED" if outcome.interrupted else "FINISHED")


def served_layer(config: Config, outcome: SweepOutcome) -> int:
    """The hidden state the best trial aligned (the last of its ``alignment.layers``), which
    its registered model embeds with."""
    if outcome.best is None:
        return -1
    return apply_params(config, outcome.best.params, origin="best trial").alignment.layers[-1]


class NotRegistered(UserError):
    """The best trial's encoder could not be registered for a reason the user can mend (its
    folder or its MLflow run is not there); the sweep's results are fine: a warning."""


def register_best(outcome: SweepOutcome, name: str, *, layer: int = -1) -> str | None:
    """Log the best trial's aligned encoder as an MLflow model and register it (embedding with
    hidden state ``layer``: :func:`served_layer`); the version (None: no best trial). Raises
    :class:`NotRegistered` where the encoder's folder or the trial's run is missing."""
    if outcome.best is None:
        return None
    import mlflow
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    from ot_ray.serving import log_encoder_model

    client = mlflow_client(outcome.tracking_uri)
    run_id = None
    try:
        tags = client.get_run(outcome.parent_run_id).data.tags
        # a finished sweep resumed: registered already (a sweep registered by an older ot-ray
        # has no name tag: under the name it is resumed with)
        if tags.get(REGISTERED_TAG) and tags.get(REGISTERED_NAME_TAG, name) == name:
            return tags[REGISTERED_TAG]
        run_id = find_run(
            client,
            outcome.experiment_id,
            {PARENT_TAG: outcome.parent_run_id, TRIAL_TAG: outcome.best.trial_id},
        )
        encoder = outcome.sweep_dir / "trials" / outcome.best.trial_id / "aligned_encoder"
        if run_id is None:
            raise _missing_run(client, outcome, name, encoder)
        if not encoder.is_dir():
            raise NotRegistered(
                f"the best trial {outcome.best.trial_id} was not registered as {name!r}: its "
                f"aligned encoder {encoder} is not on this machine (written on another node, or "
                "removed); make the sweep's trials/ folder visible here (a volume shared with "
                "the Ray workers) and run the same command with --resume to register it"
            )
        with fluent_tracking_uri(outcome.tracking_uri), mlflow.start_run(run_id=run_id):
            info = log_encoder_model(str(encoder), registered_name=name, layer=layer)
        version = str(info.registered_model_version)
        registered = [RunTag(REGISTERED_NAME_TAG, name), RunTag(REGISTERED_TAG, version)]
        client.log_batch(outcome.parent_run_id, tags=registered)  # both or neither
    except (MlflowException, OSError) as err:  # the registry or the artifact store refused
        if run_id is not None:
            with contextlib.suppress(Exception):  # the trial did finish; start_run failed it
                client.set_terminated(run_id, "FINISHED")
        message = failure_text(err, outcome.tracking_uri)  # MLflow quotes the URI
        raise UserError(
            f"registering the best trial's encoder as {name!r} failed ({message}); the sweep's "
            f"results are kept (MLflow run {outcome.parent_run_id}, {outcome.sweep_dir})"
        ) from None
    return version


def _missing_run(client, outcome: SweepOutcome, name: str, encoder: Path) -> NotRegistered:
    """The best trial has no (live) MLflow run to log its model in: deleted in MLflow, say."""
    from mlflow.entities import ViewType

    best = outcome.best.trial_id
    query = f"tags.`{PARENT_TAG}` = '{outcome.parent_run_id}' and tags.`{TRIAL_TAG}` = '{best}'"
    deleted = client.search_runs(
        [outcome.experiment_id], query, run_view_type=ViewType.DELETED_ONLY, max_results=1
    )
    where = f"in {redacted(outcome.tracking_uri)}"
    if deleted:
        run_id = deleted[0].info.run_id
        fix = (
            f"its run {run_id} is deleted {where}: restore it (mlflow runs restore --run-id "
            f"{run_id}) and run the same command with --resume to register it"
        )
    else:
        fix = (
            f"it has no MLflow run {where} under the sweep's run {outcome.parent_run_id} "
            f"(removed from the store?); its aligned encoder is kept in {encoder}"
        )
    return NotRegistered(f"the best trial {best} was not registered as {name!r}: {fix}")


def summary(outcome: SweepOutcome, config: Config, baseline: TrialOutcome | None) -> str:
    """All trials (dev objective, status), then the best trial's test scores next to the
    baseline's: the one place test scores are shown."""
    metric = config.tune.metric
    objective = metric
    if metric == "objective":
        objective = "objective = mean of " + ", ".join(config.tune.objective)
    searched = list(config.tune.search_space)
    lines = [
        f"## Sweep {outcome.name}: {len(outcome.trials)} trials, chosen on {objective}",
        "",
        "| trial | reference | status | " + " | ".join(searched) + f" | {metric} |",
        "|---|---|---|" + "---|" * len(searched) + "---:|",
    ]
    ranked = sorted(outcome.trials, key=lambda t: _sort_key(t, metric, config.tune.mode))
    partial = False
    for trial in ranked:
        values = [_cell(trial.params.get(name)) for name in searched]
        score = _number(trial.metrics.get(metric))
        status = trial.status + (f" ({trial.error})" if trial.error else "")
        if trial.status in ("pruned", "interrupted"):
            status += f" after milestone {trial.metrics.get('milestone', 0)}"
        if trial.status != "finished" and metric == "objective" and score:
            score, partial = f"({score})", True  # failed ones too: all stopped before the end
        row = [trial.trial_id, trial.reference or "", status, *values, score]
        lines.append("| " + " | ".join(row) + " |")
    best = outcome.best
    lines.append("")
    if partial:
        lines += [
            "In parentheses: the objective of a trial that stopped early, the mean over the "
            "task stages it finished; not comparable with a finished trial's.",
            "",
        ]
    if outcome.interrupted:
        lines += [
            f"Interrupted: {len(outcome.interrupted)} of the {len(outcome.trials)} trials started "
            "did not finish; `--resume` runs them and the trials not started yet, and the best "
            "trial below is the best so far.",
            "",
        ]
    if best is None:
        lines.append("No trial finished: no best trial.")
        return "\n".join(lines)
    lines.append(
        f"## Best trial {best.trial_id} ({_method(best, config)}), test scores "
        + (f"next to the baseline {baseline.trial_id}" if baseline else "(no finished baseline)")
    )
    lines.append("")
    header = "| language |"
    rule = "|---|"
    for title, _ in TEST_COLUMNS:
        header += f" {title} best |" + (f" {title} baseline | delta |" if baseline else "")
        rule += "---:|" + ("---:|---:|" if baseline else "")
    lines += [header, rule]
    for row in [*config.data.all_eval_languages, *AVERAGES]:
        cells = []
        for _, prefix in TEST_COLUMNS:
            mine = best.metrics.get(f"{prefix}/{row}")
            cells.append(_number(mine))
            if baseline:
                theirs = baseline.metrics.get(f"{prefix}/{row}")
                cells.append(_number(theirs))
                both = mine is not None and theirs is not None
                cells.append(f"{mine - theirs:+.1f}" if both else "")
        if any(cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += ["", *selection_caveat(outcome, config, baseline)]
    if SEED_KEY in config.tune.search_space:
        lines += ["", *over_seeds(outcome, config)]
    return "\n".join(lines)


def selection_caveat(
    outcome: SweepOutcome, config: Config, baseline: TrialOutcome | None
) -> list[str]:
    """Why the delta above flatters the best trial, and where the fair comparison is.

    The best of N trials on dev is also lucky on test (its seed, data order and head init
    help on both splits), while the baseline is one unselected run: the gap overstates what the
    best setting gains. Comparing settings over seeds chooses nothing, so it is unbiased.
    """
    finished = sum(t.status == "finished" for t in outcome.trials)
    best = outcome.best
    if (
        baseline is None
        or finished < 2
        or (best is not None and best.trial_id == baseline.trial_id)
    ):
        return []  # no delta to flatter (the baseline winning on dev is not a gain)
    text = (
        f"The best trial is the best of {finished} finished trials on dev. What lifted it on dev "
        "(its seed, data order, head initialisation) tends to lift it on test too, while the "
        "baseline is one run, not chosen from several: the delta overstates what the best setting "
        "gains. "
    )
    if SEED_KEY in config.tune.search_space:
        text += "The over-seeds table below compares settings without choosing among runs."
    else:
        text += (
            "To compare fairly, run the best config and the baseline at several seeds "
            "(`train.seed` in the search space gives the over-seeds table) and compare means."
        )
    labelled = target_labelled(config)
    if labelled:
        pivot = sorted({f"{m.rsplit('/', 1)[0]}/{config.data.pivot}" for m in labelled})
        text += (
            f" It was also chosen on task labels of the languages it is tested on "
            f"({', '.join(labelled)}): not strictly zero-shot; the pivot's dev scores "
            f"({', '.join(pivot)}) choose without them."
        )
    return [text]


def target_labelled(config: Config) -> list[str]:
    """The task metrics the search chooses on that read target languages' dev labels (the
    default objective does): a zero-shot protocol (XTREME's) picks on the pivot's dev set."""
    chosen = config.tune.objective if config.tune.metric == "objective" else [config.tune.metric]
    pivot = f"/{config.data.pivot}"
    return [m for m in chosen if m.startswith(("xnli/", "xquad/")) and not m.endswith(pivot)]


def over_seeds(outcome: SweepOutcome, config: Config) -> list[str]:
    """Test scores as mean +- std over seeds per setting (the sampled values but the seed), the
    paper's way of reporting; nothing is chosen on them. Trials of one setting at one seed (a
    categorical space can sample the same point twice) are one seed: their mean stands for it,
    so a repeat neither shrinks the spread nor weighs twice in the mean."""
    by_setting: dict[str, tuple[dict, dict[str, list[TrialOutcome]]]] = {}
    for trial in outcome.trials:
        if trial.status == "finished":
            setting = {k: v for k, v in trial.params.items() if "." in k and k != SEED_KEY}
            key = json.dumps(setting, sort_keys=True, default=str)  # exact values, not shown ones
            seed = json.dumps(trial.params.get(SEED_KEY, config.train.seed), default=str)
            by_setting.setdefault(key, (setting, {}))[1].setdefault(seed, []).append(trial)

    def label(setting: dict, cell: Callable[[Any], str], name: Callable[[str], str]) -> str:
        return ", ".join(f"{name(k)}={cell(v)}" for k, v in setting.items()) or "all"

    labels = [label(s, _cell, lambda k: k.split(".")[-1]) for s, _ in by_setting.values()]
    if len(set(labels)) < len(labels):  # settings that differ past the shown digits or names
        labels = [label(s, _exact_cell, str) for s, _ in by_setting.values()]
    groups = {shown: g for shown, (_, g) in zip(labels, by_setting.values(), strict=True)}
    repeats = {shown: sum(len(runs) - 1 for runs in g.values()) for shown, g in groups.items()}
    heads = [f"{shown} (n={len(g)}{_merged(repeats[shown])})" for shown, g in groups.items()]
    lines = [
        "## Over seeds: test scores, mean +- sample std (n seeds) per setting",
        "",
        "| score | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for title, prefix in TEST_COLUMNS:
        for row in [*config.data.all_eval_languages, *AVERAGES]:
            name = f"{prefix}/{row}"
            cells = [
                mean_std([_mean([t.metrics.get(name) for t in runs]) for runs in g.values()])
                for g in groups.values()
            ]
            if any(cells):
                lines.append(f"| {title} {row} | " + " | ".join(cells) + " |")
    if any(repeats.values()):
        lines += [
            "",
            "A setting run again at a seed it already ran (the search sampled the same point "
            "twice) counts as one seed: the mean of its runs stands for that seed, so repeats "
            "neither narrow the spread nor weigh twice in the mean.",
        ]
    return lines


def _merged(repeats: int) -> str:
    return f", {repeats} repeated run{'s' if repeats > 1 else ''} merged" if repeats else ""


def _mean(values: list[Any]) -> float | None:
    """The mean of the finite numbers among ``values`` (None where there are none)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return sum(numbers) / len(numbers) if numbers else None


def _exact_cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else _cell(value)


def _close_run(client, run_id: str, trial: TrialOutcome, out: Path) -> None:
    """Pruned and interrupted trials were stopped from outside, so their run is still open:
    close it (KILLED; the ``status`` tag says which). A finished trial's run still open is one
    whose upload failed (:func:`close_finished_run`): its files in ``out`` are uploaded again;
    a failed trial's still open is one whose failure MLflow did not take: its reason is tagged."""
    run = client.get_run(run_id)
    if trial.status == "finished" and run.info.status == "RUNNING":
        log_files(client, run_id, trial_files(out))
    if trial.status == "failed" and trial.error and "failure_reason" not in run.data.tags:
        client.set_tag(run_id, "failure_reason", trial.error)
    client.set_tag(run_id, "status", trial.status)
    if trial.status == "pruned":
        client.set_tag(run_id, "pruned_at_milestone", str(trial.metrics.get("milestone", 0)))
    kept = _checkpointed_predictions(trial)
    if kept is not None:  # it never got to upload its outputs itself
        client.log_artifacts(run_id, str(kept), "predictions")
    if run.info.status == "RUNNING":
        closing = {"failed": "FAILED", "pruned": "KILLED", "interrupted": "KILLED"}
        client.set_terminated(run_id, closing.get(trial.status))


def _checkpointed_predictions(trial: TrialOutcome) -> Path | None:
    """The predictions and plots of the stages a stopped trial finished, from its last
    checkpoint (Ray's ``TuneReportCallback`` adds the path of a report's checkpoint to its
    metrics as ``checkpoint_path``); None for a finished trial, which uploads its own, or where
    the checkpoint is not a local folder (cloud storage)."""
    path = trial.metrics.get("checkpoint_path")
    if trial.status == "finished" or not isinstance(path, str):
        return None
    predictions = Path(path) / "predictions"
    return predictions if predictions.is_dir() else None


def _panels(metrics: dict[str, Any], languages: list[str], panels) -> dict[str, dict[str, float]]:
    """Each panel with the languages that have its score (the paper's QA dev set is the
    pivot's alone, and a language may lack one task's data); a panel with none is left out."""
    found = {
        title: {
            lang: metrics[f"{prefix}/{lang}"] for lang in languages if f"{prefix}/{lang}" in metrics
        }
        for title, prefix in panels
    }
    return {title: scores for title, scores in found.items() if scores}


def _optuna_state(trial: TrialOutcome) -> str:
    return {"finished": "COMPLETE", "pruned": "PRUNED"}.get(trial.status, "FAIL")


def _method(trial: TrialOutcome, config: Config) -> str:
    return str(trial.params.get("alignment.method", config.alignment.method))


def _sort_key(trial: TrialOutcome, metric: str, mode: str) -> tuple[int, float]:
    value = trial.metrics.get(metric)
    ok = isinstance(value, int | float) and math.isfinite(value)
    order = {"finished": 0, "pruned": 1, "interrupted": 2}.get(trial.status, 3)
    return (order, -value if ok and mode == "max" else (value if ok else math.inf))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _number(value: Any) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.1f}"
    return ""
