"""The search space, declared in YAML and sampled define-by-run by Optuna.

``tune.search_space`` maps a dotted config key (or a search-only switch without a dot, such as
``unbalanced``) to a parameter::

    alignment.ot.epsilon: {low: 1.0e-4, high: 1.0e-1, log: true}
    alignment.layers: {choices: [[-1], [-2, -1]]}
    unbalanced: {choices: [false, true]}
    alignment.ot.tau: {low: 10.0, high: 1000.0, log: true, when: {unbalanced: true}}

Parameters are sampled in the order written (a conditional one after the parameter its
``when`` names), so conditional parameters (tau only for unbalanced OT, the joint weight only for
the joint variant) are never sampled, and never logged, where they mean nothing. Optuna's TPE
sees the same tree. A key that a switch gates takes its default where the switch is off (tau:
null, balanced), not the base config's value.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any, Protocol

from ot_ray.config import (
    Config,
    ParamSpec,
    condition_holds,
    load_config_data,
    sampling_order,
)
from ot_ray.config.search import default_setting, distinct_settings, every_setting, switched

#: The key of the constant a define-by-run function returns for an enqueued reference point.
REFERENCE_KEY = "reference"


class SuggestingTrial(Protocol):
    """What the define-by-run function needs of an ``optuna.Trial``."""

    number: int

    def suggest_float(self, name: str, low: float, high: float, *, step=None, log=False) -> float:
        """Sample a float."""

    def suggest_int(self, name: str, low: int, high: int, *, step=1, log=False) -> int:
        """Sample an int."""

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """Sample one of ``choices``."""


def choice_label(value: Any) -> Any:
    """Optuna's categorical choices must be scalars; lists such as layer sets become labels."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


class DefineByRun:
    """The function ``OptunaSearch(space=...)`` calls once per trial (a class, because Tune
    pickles the searcher into its experiment state for ``--resume``).

    It returns constants: decoded non-scalar choices, and ``reference: <label>`` for an
    enqueued point (so the scheduler keeps it and the summary can find the baseline). Optuna
    numbers the enqueued points first, in order; matching values alone would also label any
    later trial that happens to draw a point's choices.
    """

    def __init__(
        self, space: Mapping[str, ParamSpec], points: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self.space = dict(space)
        self.points = {label: dict(point) for label, point in points.items()}

    def __call__(self, trial: SuggestingTrial) -> dict[str, Any]:
        sampled: dict[str, Any] = {}
        decoded: dict[str, Any] = {}
        for name in sampling_order(self.space):
            spec = self.space[name]
            if spec.when and not condition_holds(spec.when, sampled):
                continue
            if spec.choices is not None:
                labels = [choice_label(choice) for choice in spec.choices]
                label = trial.suggest_categorical(name, labels)
                value = spec.choices[labels.index(label)]
                if label is not value:
                    decoded[name] = value
            elif spec.is_int:
                value = trial.suggest_int(
                    name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log
                )
            else:
                value = trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
            sampled[name] = value
        labels = list(self.points)
        if trial.number < len(labels):
            label = labels[trial.number]
            if all(sampled.get(key) == value for key, value in self.points[label].items()):
                decoded[REFERENCE_KEY] = label
        return decoded


def optuna_points(
    space: Mapping[str, ParamSpec], points: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``points_to_evaluate`` for ``OptunaSearch``: list choices given as their labels."""
    return [
        {
            key: choice_label(value) if space[key].choices is not None else value
            for key, value in point.items()
        }
        for point in points.values()
    ]


#: The most settings a space of choices only may hold for :func:`enqueued_points` to list them.
LISTED_AT_MOST = 10_000


def enqueued_points(
    space: Mapping[str, ParamSpec], points: Mapping[str, Mapping[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """What the sweep enqueues: the reference points, then, for a space of choices only (of at
    most :data:`LISTED_AT_MOST` settings), every other setting (:func:`listed_settings`).
    Optuna numbers the enqueued trials in order, so only the points get a reference label."""
    listed = listed_settings(space, points, seed)
    return optuna_points(space, points if listed is None else dict(enumerate(listed)))


def listed_settings(
    space: Mapping[str, ParamSpec], points: Mapping[str, Mapping[str, Any]], seed: int
) -> list[dict[str, Any]] | None:
    """For a space of choices only (of at most :data:`LISTED_AT_MOST` settings), every setting
    once: the points first, then the others in an order ``seed`` fixes; None for other spaces.
    TPE draws such a space's settings again, each a trial identical to one already run.

    A point may name only some parameters (``baseline: {alignment.method: none}``): it takes
    the first setting that agrees with it and that no earlier point took (Optuna would draw the
    rest, perhaps a setting listed after it)."""
    space = dict(space)
    if distinct_settings(space, LISTED_AT_MOST) in (None, LISTED_AT_MOST + 1):
        return None
    settings = list(every_setting(space))
    taken: list[dict[str, Any]] = []
    for point in points.values():
        agreeing = (
            setting
            for setting in settings
            if setting not in taken
            and all(k in setting and setting[k] == v for k, v in point.items())
        )
        taken.append(next(agreeing, dict(point)))
    rest = [setting for setting in settings if setting not in taken]
    random.Random(seed).shuffle(rest)
    return taken + rest


def trial_overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The config keys among a trial's sampled values (switches and the reference label are
    search-only)."""
    return {key: value for key, value in params.items() if "." in key}


def switched_off(space: Mapping[str, ParamSpec], params: Mapping[str, Any]) -> dict[str, Any]:
    """The default of each key that a search-only switch gates and that ``params`` did not
    sample: a switch has no setting of its own, so ``unbalanced: false`` must mean balanced OT
    even where the base config sets a tau (which the search decides)."""
    return {
        name: default_setting(name)
        for name, spec in space.items()
        if "." in name and switched(spec) and not condition_holds(spec.when, params)
    }


def apply_params(config: Config, params: Mapping[str, Any], *, origin: str = "trial") -> Config:
    """``config`` with a trial's sampled values set (validated like a ``--set``), and the keys
    whose switch is off at their defaults."""
    overrides = {**switched_off(config.tune.search_space, params), **trial_overrides(params)}
    return load_config_data(config.model_dump(mode="json"), overrides, origin=origin)


def optuna_distributions(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Optuna distributions of the space (to rebuild a study from finished Tune trials)."""
    import optuna.distributions as dist

    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.choices is not None:
            out[name] = dist.CategoricalDistribution([choice_label(c) for c in spec.choices])
        elif spec.is_int:
            out[name] = dist.IntDistribution(
                int(spec.low), int(spec.high), log=spec.log, step=int(spec.step or 1)
            )
        else:
            out[name] = dist.FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return out


def rebuilt_study(
    space: Mapping[str, ParamSpec], trials: list[tuple[dict, float | None, str]], *, mode: str
):
    """An in-memory Optuna study of ``(params, value, state)`` rows, for Optuna's plots."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = optuna_distributions(space)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    for params, value, state in trials:
        if state == "COMPLETE" and (value is None or not math.isfinite(value)):
            state = "FAIL"  # Optuna refuses a NaN value; such a trial chose nothing
        sampled = {
            name: choice_label(params[name]) if space[name].choices is not None else params[name]
            for name in space
            if name in params
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=sampled,
                distributions={name: distributions[name] for name in sampled},
                value=value if state == "COMPLETE" else None,
                state=getattr(optuna.trial.TrialState, state),
            )
        )
    return study
