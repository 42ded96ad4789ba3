"""A whole sweep: Tune + Optuna (+ ASHA) over Ray Train trials, with one MLflow parent run.

The sweep's state lives under ``tune.storage_path/tune.name``: Tune's experiment state
(searcher included), each trial's Ray Train run (checkpoints), each trial's outputs, and
``sweep.json`` with the MLflow parent run id and the settings the sweep started with.
``--resume`` restores all of it with ``Tuner.restore``: finished trials are not rerun, no MLflow
run is created twice, and settings other than the sweep's own are refused (the restored searcher,
sample count and parent run's params would stay the old ones while new trials took the new
settings: one sweep of two configs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ot_ray.config import Config, flatten
from ot_ray.config.stages import TASK_NAMES
from ot_ray.errors import UserError
from ot_ray.launch import absolute_locations, writable_folder
from ot_ray.metrics import language_averages
from ot_ray.search.milestones import finished
from ot_ray.search.scheduler import make_scheduler, pruned_trials
from ot_ray.search.space import REFERENCE_KEY, DefineByRun, enqueued_points, listed_settings
from ot_ray.search.tracking import (
    SWEEP_TAG,
    check_tracking,
    git_commit,
    log_config,
    mlflow_client,
    tracking_uri,
)
from ot_ray.search.trial_fn import SweepContext, search_trial
from ot_ray.uris import redacted, redacted_text

logger = logging.getLogger(__name__)

#: The Tune trial only drives a Train run: it reserves memory for itself but no CPU, so the
#: cluster's CPUs go to Train workers. It runs on the head node (Ray's own resource there), as
#: does the Train controller Ray attaches to its node: on a worker node that is lost (a
#: preempted GPU node) the trial would fail for good, where Train restarts lost workers.
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 2**20, "node:__internal_head__": 0.001}
STATE_FILE = "sweep.json"
#: Suffix of a settings key that holds where a relative path led (``data.root (resolved)``).
RESOLVED = "(resolved)"
#: Keys a resumed sweep may be given otherwise: those that find its folder (any spelling that
#: finds it is the same sweep), those each trial sets for itself, and those that change no
#: result (a moved tracking store is checked by finding the sweep's run in it).
UNCHECKED_KEYS = frozenset(
    {
        "tune.storage_path",
        "tune.name",
        "train.output_dir",
        "train.storage_path",
        "train.run_name",
        "train.log_level",
        "tracking.uri",
        "tracking.registered_model_name",
    }
)


class SweepError(UserError):
    """A sweep that cannot start as asked (exists already, nothing to resume, no resources)."""


@dataclass
class TrialOutcome:
    """What the summary needs of one finished, pruned, interrupted or failed trial."""

    trial_id: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    status: str  # finished | pruned (cut by the scheduler) | interrupted | failed
    error: str | None = None

    @property
    def reference(self) -> str | None:
        return self.params.get(REFERENCE_KEY)


@dataclass
class SweepOutcome:
    name: str
    sweep_dir: Path
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    trials: list[TrialOutcome] = field(default_factory=list)
    best: TrialOutcome | None = None

    @property
    def interrupted(self) -> list[TrialOutcome]:
        """Trials the sweep left unfinished (Ctrl-C, a stopped job): ``--resume`` runs them."""
        return [t for t in self.trials if t.status == "interrupted"]


def concurrent_trials(config: Config, nodes: list[dict[str, float]]) -> int:
    """How many trials' worker groups fit the cluster's nodes at once (at least one).

    Workers are counted per node (``nodes``: each live node's resources): a worker cannot
    span two nodes, so two nodes of 3 CPUs hold two 2-CPU workers, not three. A trial
    started beyond that would hold its slot while its workers wait.
    """
    if config.tune.max_concurrent_trials:
        return config.tune.max_concurrent_trials
    train = config.train
    workers = sum(
        min(
            math.floor(node.get("CPU", 0) / train.cpus_per_worker),
            math.floor(node.get("GPU", 0)) if train.use_gpu else math.inf,
        )
        for node in nodes
    )
    return max(1, math.floor(workers / train.num_workers))


def progress_table(config: Config):
    """Tune's progress table with the columns that matter here (the default result printout
    lists every one of a trial's ~150 metrics). Used when ``RAY_AIR_NEW_OUTPUT=0``, which the
    CLI sets."""
    from ot_ray.search.milestones import MilestoneReporter

    return MilestoneReporter(
        metric_columns={
            "stage": "stage",
            "milestone": "milestone",
            config.tune.metric: config.tune.metric,
        },
        # Conditional parameters are missing from some trials, which the table cannot show.
        parameter_columns={
            name: name.split(".")[-1]
            for name, spec in config.tune.search_space.items()
            if not spec.when
        },
        max_report_frequency=30,
        # No sorting by objective: a trial midway (XNLI only) would rank above finished ones.
        sort_by_metric=False,
        milestones=len(config.task.tasks),
    )


def trial_name(trial) -> str:
    """Short trial names and folders (Tune's default spells out every sampled value)."""
    return f"trial_{trial.trial_id}"


def sweep_dir(config: Config) -> Path:
    return Path(config.tune.storage_path).expanduser().resolve() / config.tune.name


def settings_record(config: Config) -> dict[str, str]:
    """The settings a sweep is identified by, as kept in ``sweep.json``: every key of the
    config as the user gave it (paths as written) that is not at its default, at any depth (so
    a field a newer ot-ray adds, at its default, changes nothing), values as JSON, any URI's
    secrets hidden."""
    flat = flatten(config.model_dump(mode="json", exclude_defaults=True))
    located = flatten(absolute_locations(config).model_dump(mode="json", exclude_defaults=True))
    # where a relative path led from the folder the sweep started in: from another folder the
    # same text reads other data
    flat |= {f"{k} {RESOLVED}": v for k, v in located.items() if flat.get(k, v) != v}
    return {key: redacted_text(json.dumps(value, sort_keys=True)) for key, value in flat.items()}


def check_same_settings(config: Config, directory: Path) -> None:
    """Refuse ``--resume`` with settings other than those the sweep started with."""
    state = directory / STATE_FILE
    if not state.exists():  # stopped before its first run was recorded: nothing to compare
        return
    kept = _read_state(state).get("settings")
    if not isinstance(kept, dict):  # a sweep from before settings were kept: nothing to compare
        return
    now = settings_record(config)
    if not any(key.endswith(RESOLVED) for key in kept):  # kept by an older ot-ray: not known
        now = {key: value for key, value in now.items() if not key.endswith(RESOLVED)}
    keys = (kept.keys() | now.keys()) - UNCHECKED_KEYS
    changed = [key for key in sorted(keys) if kept.get(key) != now.get(key)]
    if not changed:
        return
    shown = "; ".join(
        f"{key}: {kept.get(key, '(default)')} (sweep) -> {now.get(key, '(default)')} (now)"
        for key in changed[:5]
    )
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    where = ""
    if any(key.endswith(RESOLVED) for key in changed):
        where = " from the folder it was started in (its relative paths lead elsewhere from here)"
    raise SweepError(
        f"--resume with settings other than the sweep's: {shown}{more}. A sweep goes on with "
        f"the settings it started with (they are in {directory / STATE_FILE}): resume with the "
        f"command that started it{where}, or set tune.name to start another sweep"
    )


def tune_state_recorded(directory: Path) -> bool:
    """Tune can restore the sweep: its Tuner (written when built) and its experiment state
    (written at the first step of ``fit``); a start stopped between the two left nothing to
    resume, and ``Tuner.restore`` would fail on it with a traceback."""
    from ray import tune

    return tune.Tuner.can_restore(str(directory)) and any(directory.glob("experiment_state-*.json"))


def check_sweep_request(config: Config, *, resume: bool) -> Path:
    """The sweep's folder, after checking the request fits it (a new sweep must not overwrite
    one, ``--resume`` needs one with the same settings); cheap, so the CLI says it before the
    world is built. ``config`` is the config as the user gave it (before paths are resolved)."""

    if not config.tune.search_space:
        raise SweepError("tune.search_space is empty: nothing to search")
    check_metric_is_measured(config)
    check_languages_are_scored(config)
    check_not_on_the_selecting_score(config)
    directory = writable_folder(sweep_dir(config), "tune.storage_path")
    restorable = tune_state_recorded(directory)
    if resume and not restorable:
        raise SweepError(f"nothing to resume at {directory} (no Tune experiment state there)")
    if not resume and restorable:
        raise SweepError(
            f"a sweep named {config.tune.name!r} exists at {directory}; pass --resume to "
            "continue it or set tune.name to start another"
        )
    if resume:
        check_same_settings(config, directory)
    return directory


def check_metric_is_measured(config: Config) -> None:
    """The metric searched on must come from a stage the trials run: a task left out of
    ``task.tasks`` leaves it NaN in every trial, and the sweep ended after all of them with no
    best trial (every trial runs ``task.tasks``: a search may not vary it)."""
    tasks = set(config.task.tasks)

    def measured(metric: str) -> bool:
        stage = metric.split("/", 1)[0]
        return stage not in TASK_NAMES or stage in tasks

    metric = config.tune.metric
    if metric == "objective" and not config.tune.objective:
        raise SweepError(
            "tune.metric: 'objective' averages tune.objective, which is empty: every trial's "
            "objective would be NaN; name the dev metrics to average"
        )
    if metric == "objective":
        if not any(measured(m) for m in config.tune.objective):
            raise SweepError(
                f"tune.metric: 'objective' averages tune.objective {config.tune.objective}, "
                f"and task.tasks {sorted(tasks)} runs none of their tasks: every trial's "
                "objective would be NaN; add the task, or search on a metric the trials "
                "measure (e.g. tune.metric=align/retrieval_acc/avg_targets)"
            )
    elif not measured(metric):
        raise SweepError(
            f"tune.metric: {metric!r} is measured by the task {metric.split('/', 1)[0]}, which "
            f"task.tasks {sorted(tasks)} does not run: every trial would report NaN"
        )


def check_languages_are_scored(config: Config) -> None:
    """Every dev metric the search ranks on must name a language (or an average) the trials
    score: one a dev source leaves out (the paper config's XQuAD dev holds the pivot only) was
    dropped from the objective without a word, or left ``tune.metric`` NaN in every trial."""
    named = [("tune.objective", m) for m in config.tune.objective]
    if config.tune.metric != "objective":
        named.append(("tune.metric", config.tune.metric))
    for key, metric in named:
        stage, _, rest = metric.partition("/")
        which = rest.rpartition("/")[2]
        scored = _scored_languages(config, stage, rest.partition("/")[0])
        if scored is None or _measured_for(config, which, scored, stage):
            continue
        source = "data.parallel.dev" if stage == "align" else f"data.{stage}.dev"
        raise SweepError(
            f"{key}: {metric} is never measured: the languages scored there are {scored} "
            f"(data.eval_languages and {source}.languages), and "
            + (
                f"{which} is not one of them"
                if not which.startswith("avg_")
                else f"{which} averages none of them"
            )
            + "; every trial would leave it out"
        )


def _scored_languages(config: Config, stage: str, split: str) -> list[str] | None:
    """The languages a trial scores ``stage``'s dev metrics on (None: not a dev metric)."""
    data = config.data
    if stage in TASK_NAMES and split == "dev":
        source = getattr(data, stage).dev
        return [lang for lang in data.all_eval_languages if source.covers(lang)]
    if stage == "align" and split in ("retrieval_acc", "aer"):  # per held-out language
        # the targets' held-out pairs; the pivot has no score of its own
        return [lang for lang in data.all_eval_languages[1:] if data.parallel.dev.covers(lang)]
    return None  # not scored per language (align/loss, align/ot/sweeps, ...)


def _measured_for(config: Config, which: str, scored: list[str], stage: str) -> bool:
    """Whether ``which`` (a language or an average) has a value over ``scored``."""
    if not which.startswith("avg_"):
        return which in scored
    values = {lang: 0.0 for lang in scored}
    averages = language_averages(values, pivot=config.data.pivot, seen=config.data.seen)
    return which in averages


def check_not_on_the_selecting_score(config: Config) -> None:
    """With ``select_every``, a task's pivot dev score is the best of the curve that picked the
    tested model: ranking trials on it (or on an average that holds it) would choose on a number
    already maximised on the same data, and every trial's would overstate."""
    pivot = config.data.pivot
    named = [("tune.objective", m) for m in config.tune.objective]
    for key, metric in [*named, ("tune.metric", config.tune.metric)]:
        task, _, rest = metric.partition("/")
        split, _, family_and_name = rest.partition("/")
        family, _, which = family_and_name.rpartition("/")
        if task not in TASK_NAMES or split != "dev" or which not in (pivot, "avg_seen", "avg_all"):
            continue
        select = f"task.{task}.select_every"
        if select in config.tune.search_space or getattr(config.task, task).select_every:
            raise SweepError(
                f"{key}: {metric!r} holds the pivot's dev score, which {select} maximises to "
                "pick the model it tests: searching on it chooses on a score already chosen on "
                f"the same data; use the targets' dev scores (e.g. {task}/dev/{family}/avg_targets)"
            )


def run_sweep(
    config: Config,
    *,
    resume: bool,
    repo: Path,
    connect: Callable[[], None],
    given: Config | None = None,
) -> SweepOutcome:
    """Run (or resume) the sweep of an already resolved ``config``; ``given`` is the config as
    the user gave it (paths as written), which identifies the sweep (default: ``config``).

    Everything that can be wrong with the request (an existing or missing sweep, changed
    settings, the tracking store) is checked before ``connect`` starts or joins the Ray cluster.
    """
    import ray
    from ray import tune

    given = given or config
    directory = check_sweep_request(given, resume=resume)
    uri = tracking_uri(config)
    experiment_id = check_tracking(uri, config.tracking.experiment)
    parent = _parent_run(config, directory, uri, experiment_id, repo, resume=resume, settings=given)
    try:
        connect()
        context = SweepContext(
            base=config.model_dump(mode="json"),
            name=config.tune.name,
            sweep_dir=str(directory),
            tracking_uri=uri,
            experiment_id=experiment_id,
            parent_run_id=parent,
            commit=git_commit(repo),
        )
        trainable = tune.with_resources(
            tune.with_parameters(search_trial, context=context), TRIAL_DRIVER_RESOURCES
        )
        if resume:
            tuner = tune.Tuner.restore(str(directory), trainable=trainable)
        else:
            live = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            concurrent = concurrent_trials(config, live)
            tuner = new_tuner(config, trainable, directory, max_concurrent_trials=concurrent)
    except BaseException:
        if not resume:  # Tune recorded nothing yet: the next start is a new sweep, not this one
            _forget_parent_run(directory, uri, parent)
        raise  # a resume that did not start leaves its run as it was (not RUNNING)
    if resume:
        _set_parent_status(uri, parent, "RUNNING")  # the sweep goes on in its run
    try:
        grid = tuner.fit()
    except BaseException:
        if not resume and not tune_state_recorded(directory):  # stopped before its first step
            _forget_parent_run(directory, uri, parent)
        else:  # Tune has the sweep: like an interrupted one, --resume goes on with it
            _set_parent_status(uri, parent, "KILLED")
        raise
    outcome = SweepOutcome(config.tune.name, directory, parent, experiment_id, uri)
    pruned = pruned_trials(directory)
    for result in grid:
        outcome.trials.append(trial_outcome(result, len(config.task.tasks), pruned))
    outcome.best = best_trial(outcome.trials, config.tune.metric, config.tune.mode)
    return outcome


def new_tuner(config: Config, trainable: Any, directory: Path, *, max_concurrent_trials: int):
    """The sweep's ``Tuner``: Optuna (TPE) samples ``tune.search_space`` after the enqueued
    points (:func:`ot_ray.search.space.enqueued_points`), and the scheduler cuts weak trials at
    task milestones."""
    import optuna
    from ray import tune

    from ot_ray.search.milestones import MilestoneOptunaSearch

    space, points = config.tune.search_space, config.tune.points_to_evaluate
    search = MilestoneOptunaSearch(
        space=DefineByRun(space, points),
        metric=config.tune.metric,
        mode=config.tune.mode,
        points_to_evaluate=enqueued_points(space, points, config.tune.seed) or None,
        sampler=optuna.samplers.TPESampler(seed=config.tune.seed),
        milestones=len(config.task.tasks),
    )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=make_scheduler(config, directory),
            num_samples=trials_to_run(config),
            max_concurrent_trials=max_concurrent_trials,
            metric=config.tune.metric,
            mode=config.tune.mode,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=config.tune.name,
            storage_path=str(directory.parent),
            progress_reporter=progress_table(config),
            verbose=1,
        ),
    )


def trials_to_run(config: Config) -> int:
    """``tune.num_samples``, or fewer where a space of choices only holds fewer settings: the
    trials beyond them would repeat one exactly. Both this and reference points left out by
    too few trials (Tune runs the first ``num_samples``) are said in a warning."""
    wanted, points = config.tune.num_samples, list(config.tune.points_to_evaluate)
    if wanted < len(points):
        logger.warning(
            "tune.num_samples is %d: of the points_to_evaluate, %s do not run, and the summary "
            "cannot compare the best trial with them",
            wanted,
            ", ".join(points[wanted:]),
        )
    tune = config.tune
    listed = listed_settings(tune.search_space, tune.points_to_evaluate, tune.seed)
    if listed is None or len(listed) >= wanted:
        return wanted
    logger.warning(
        "tune.num_samples is %d, and the search space (choices only) holds %d distinct "
        "settings: the sweep runs %d trials, each setting once",
        wanted,
        len(listed),
        len(listed),
    )
    return len(listed)


def _read_state(state: Path) -> dict[str, Any]:
    """``sweep.json``: a clear error if it cannot be read (it names the sweep's MLflow run)."""
    try:
        record = json.loads(state.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record["parent_run_id"], str):
            raise TypeError("not an object naming parent_run_id")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise SweepError(
            f"{state}: unreadable ({type(err).__name__}: {err}); it names the sweep's MLflow "
            "run: restore it from a backup, or start another sweep with tune.name"
        ) from None
    return record


def _parent_run(
    config: Config,
    directory: Path,
    uri: str,
    experiment_id: str,
    repo: Path,
    *,
    resume: bool,
    settings: Config | None = None,
) -> str:
    """The sweep's MLflow run: created for each new sweep (never an older sweep's run of the
    same name, whose params and trials are another sweep's), its id and ``settings`` kept in
    ``sweep.json`` for ``--resume``."""
    state = directory / STATE_FILE
    if resume and state.exists():  # the sweep goes on in its run (closed KILLED on Ctrl-C)
        run_id = _read_state(state)["parent_run_id"]
        from mlflow.exceptions import MlflowException

        try:
            mlflow_client(uri).get_run(run_id)  # reopened once the sweep is under way
        except MlflowException:
            raise SweepError(
                f"{state} names the MLflow run {run_id}, which the tracking store "
                f"{redacted(uri)} does not have: resume with the store the sweep started with "
                "(tracking.uri, or MLFLOW_TRACKING_URI if it was set)"
            ) from None
        return run_id
    client = mlflow_client(uri)
    run_id = client.create_run(
        experiment_id,
        run_name=config.tune.name,
        tags={
            SWEEP_TAG: config.tune.name,
            "ot_ray.role": "sweep",
            "mlflow.source.git.commit": git_commit(repo),
            "role": "sweep",
        },
    ).info.run_id
    try:
        log_config(client, run_id, flatten(config.model_dump(mode="json", exclude={"tune"})))
        client.log_dict(run_id, config.model_dump(mode="json", include={"tune"}), "search.yaml")
        directory.mkdir(parents=True, exist_ok=True)
        record = {"parent_run_id": run_id, "settings": settings_record(settings or config)}
        partial = state.with_name(f".{STATE_FILE}.partial")
        partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        partial.replace(state)  # whole or not at all: it is all --resume has
    except BaseException:
        _forget_parent_run(directory, uri, run_id)
        raise
    return run_id


def _set_parent_status(uri: str, run_id: str, status: str) -> None:
    """Best effort: a store that fails here must not hide the error that got us here."""
    with contextlib.suppress(Exception):
        client = mlflow_client(uri)
        if status == "RUNNING":
            client.update_run(run_id, status=status)
        else:
            client.set_terminated(run_id, status)


def _forget_parent_run(directory: Path, uri: str, run_id: str) -> None:
    """Undo :func:`_parent_run` for a sweep whose start failed before Tune recorded anything:
    no orphan run in MLflow, no ``sweep.json`` for a later start to mistake for its own. Best
    effort: the error that stopped the start is the one to report."""
    with contextlib.suppress(Exception):  # the store itself may be what failed
        (directory / STATE_FILE).unlink(missing_ok=True)
        mlflow_client(uri).delete_run(run_id)


def trial_outcome(result, milestones: int, pruned: Mapping[str, int]) -> TrialOutcome:
    """A trial that stopped before its last milestone was pruned only if the scheduler cut it
    there (``pruned``: trial id -> milestone of the cut); otherwise the sweep was interrupted
    under it."""
    metrics = dict(result.metrics or {})
    params = dict(result.config or {})
    trial_id = metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_")
    if result.error is not None:
        return TrialOutcome(trial_id, params, metrics, "failed", error_reason(result.error))
    if finished(metrics, milestones):
        return TrialOutcome(trial_id, params, metrics, "finished")
    cut_here = pruned.get(trial_id) == metrics.get("milestone", 0)
    status = "pruned" if cut_here else "interrupted"
    return TrialOutcome(trial_id, params, metrics, status)


def error_reason(error: BaseException) -> str:
    """The one line that says why a trial failed (Ray wraps it in a remote traceback), its URIs'
    secrets hidden: it goes into summary.md, an artifact everyone with the experiment reads, and
    MLflow's own REST errors quote the whole URI (``http://user:password@host/api/...``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        for prefix in (
            "RuntimeError: ",
            "UserError: ",
            "DataError: ",
            "ConfigError: ",
            "ot_ray.search.tracking.TrackingError: ",  # a trial whose run could not be opened
        ):
            if line.startswith(prefix):
                return redacted_text(line[len(prefix) :])[:300]
    return redacted_text(lines[-1] if lines else type(error).__name__)[:300]


def best_trial(trials: list[TrialOutcome], metric: str, mode: str) -> TrialOutcome | None:
    """The best trial that ran to the end (a pruned trial's objective covers fewer tasks)."""
    candidates = [
        t
        for t in trials
        if t.status == "finished"
        and isinstance(t.metrics.get(metric), int | float)
        and math.isfinite(t.metrics[metric])
    ]
    if not candidates:
        return None
    pick = max if mode == "max" else min
    return pick(candidates, key=lambda t: t.metrics[metric])
