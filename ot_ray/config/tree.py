"""The whole configuration tree, with the checks that span sections (batches shared by
workers, no secrets in any logged setting, l2's word links, the searched metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from ot_ray.config.data import DataConfig
from ot_ray.config.fields import NonBlank, Section
from ot_ray.config.metric_names import unknown_metric
from ot_ray.config.search import TuneConfig, searched_settings, setting_problem
from ot_ray.config.stages import AlignmentConfig, ModelConfig, TaskConfig, TrainConfig
from ot_ray.uris import credentials_in, where_secrets_go

#: The language averages that depend on which targets count as seen.
SEEN_AVERAGES = ("avg_seen", "avg_seen_targets", "avg_unseen")


class TrackingConfig(Section):
    """MLflow: where runs go. ``MLFLOW_TRACKING_URI`` in the environment overrides ``uri``."""

    uri: NonBlank = "sqlite:///mlflow.db"
    experiment: NonBlank = "ot-ray"
    registered_model_name: str | None = None

    @field_validator("registered_model_name")
    @classmethod
    def _registrable(cls, name: str | None) -> str | None:
        """MLflow refuses these names only when the sweep registers its best model, at the end."""
        if name is not None and (not name.strip() or "/" in name or ":" in name):
            raise ValueError(f"{name!r} cannot name an MLflow model: not blank, no '/' or ':'")
        return name

    @field_validator("uri")
    @classmethod
    def _no_secrets(cls, uri: str) -> str:
        # a config is logged (MLflow params, best.yaml, show_config): secrets must not be in it
        secret = credentials_in(uri)
        if secret is not None:
            raise ValueError(
                f"the URI carries {secret}, and configs are logged; {where_secrets_go(uri)}"
            )
        return uri


class Config(Section):
    """The whole system."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _batches_shared_by_workers(self) -> Config:
        # every worker takes a share of each batch (the DDP split), so none may be left empty
        workers = self.train.num_workers
        for key, size in (
            ("alignment.batch_size", self.alignment.batch_size),
            ("task.xnli.batch_size", self.task.xnli.batch_size),
            ("task.xquad.batch_size", self.task.xquad.batch_size),
        ):
            if size < workers:
                raise ValueError(
                    f"{key}: {size} cannot be shared by train.num_workers {workers} workers"
                )
        return self

    @model_validator(mode="after")
    def _no_secrets(self) -> Config:
        # every setting is logged (MLflow params and tags, best.yaml): a password in a model or
        # data URI would be shown to everyone who can read the experiment
        for key, value in _string_settings(self.model_dump(mode="json", exclude={"tracking"})):
            secret = credentials_in(value)
            if secret is not None:
                raise ValueError(
                    f"{key}: the value carries {secret}, and configs are logged; give "
                    "credentials through the environment (HF_TOKEN for the Hub, the storage's "
                    "own variables such as AWS_ACCESS_KEY_ID)"
                )
        return self

    @model_validator(mode="after")
    def _l2_has_links(self) -> Config:
        # l2 learns from word links only: without them it would fail at its first step
        method = self.tune.search_space.get("alignment.method")
        offered = method is not None and "l2" in (method.choices or [])
        if self.alignment.method != "l2" and not offered:
            return self
        parallel = self.data.parallel
        missing = [
            lang
            for lang in self.data.languages
            if any(spec.alignments is None for spec in parallel.train_sources(lang))
        ]
        if missing:
            key = "alignment.method" if self.alignment.method == "l2" else "tune.search_space"
            raise ValueError(
                f"{key}: l2 needs word alignments ('alignments' on data.parallel.train or "
                f"by_language), and the training pairs of {', '.join(missing)} have none"
            )
        return self

    @model_validator(mode="after")
    def _searched_values_fit_this_config(self) -> Config:
        # what a trial sets, against the settings next to it in this config (the search
        # section alone checked it against the defaults' neighbours)
        for where, name, value in searched_settings(self.tune):
            problem = setting_problem(self, name, value, cross_field=True)
            if problem:
                section, _, entry = where.partition(".")  # the key first, then its entry
                raise ValueError(f"tune.{section}: {entry}: {value!r} cannot be {name} ({problem})")
        return self

    @model_validator(mode="after")
    def _searched_languages_keep_the_scoring(self) -> Config:
        # data.languages also decides the languages scored (with data.eval_languages empty) and
        # the 'seen' averages (with data.seen_languages unset): trials would optimise different
        # objectives
        if "data.languages" not in self.tune.search_space:
            return self
        key = "tune.search_space: data.languages"
        if not self.data.eval_languages:
            raise ValueError(
                f"{key}: with data.eval_languages empty, the languages each trial is scored on "
                "are its data.languages: set data.eval_languages so all are scored alike"
            )
        metrics = [*self.tune.objective, self.tune.metric]
        seen = [m for m in metrics if m.rsplit("/", 1)[-1] in SEEN_AVERAGES]
        if seen and self.data.seen_languages is None:
            raise ValueError(
                f"{key}: {seen[0]} averages the seen languages, which are each trial's "
                "data.languages while data.seen_languages is unset: set it so all are "
                "scored alike"
            )
        return self

    @model_validator(mode="after")
    def _search_metrics_exist(self) -> Config:
        # a misspelt name leaves every trial's objective NaN: said now, not after the sweep
        named = [("tune.objective", m) for m in self.tune.objective]
        for key, metric in [*named, ("tune.metric", self.tune.metric)]:
            problem = unknown_metric(metric, self.data.all_eval_languages)
            if problem:
                raise ValueError(f"{key}: {metric!r} is not a metric a trial reports ({problem})")
        return self


def _string_settings(tree: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a dumped config (in lists and the search space too), with its key."""
    if isinstance(tree, str):
        yield key, tree
    elif isinstance(tree, dict):
        for name, value in tree.items():
            yield from _string_settings(value, f"{key}.{name}" if key else str(name))
    elif isinstance(tree, list):
        for value in tree:
            yield from _string_settings(value, key)
