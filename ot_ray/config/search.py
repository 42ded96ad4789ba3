"""The sweep's settings: the Optuna search space (conditional parameters, named points) and
ASHA's early stopping, checked against the settings a trial will take before any trial
runs."""

from __future__ import annotations

import difflib
import itertools
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ot_ray.config.fields import (
    FiniteFloat,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
    StorageFolder,
)
from ot_ray.config.keys import flatten, is_config_key, setting_keys


class ParamSpec(Section):
    """One searched parameter: ``choices``, or a ``low``..``high`` range (``log``, ``step``,
    ``int``); ``when`` samples it only if earlier parameters have the given value(s)."""

    choices: list[Any] | None = None
    low: FiniteFloat | None = None
    high: FiniteFloat | None = None
    log: bool = False
    step: PositiveFloat | None = None
    is_int: bool = Field(False, alias="int")
    when: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        ranged = self.low is not None or self.high is not None
        if (self.choices is None) == (not ranged):
            raise ValueError("give either choices: [...] or low: and high:")
        if self.choices is not None and not self.choices:
            raise ValueError("choices is empty")
        if ranged:
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"need low < high, found low={self.low} high={self.high}")
            if self.log and self.low <= 0:
                raise ValueError("a log range needs low > 0")
            if self.log and self.step is not None and not (self.is_int and self.step == 1):
                raise ValueError("a log range cannot have a step (Optuna refuses one but int's 1)")
            bounds = {"low": self.low, "high": self.high, "step": self.step}
            for name, bound in bounds.items():
                if self.is_int and bound is not None and bound != int(bound):
                    raise ValueError(f"int: true needs whole numbers, found {name}={bound}")
            if self.step is not None and not self._on_grid(self.high):
                raise ValueError(
                    f"high={self.high} is not low={self.low} plus a whole number of "
                    f"step={self.step} (Optuna would lower it)"
                )
        return self

    def _on_grid(self, value: float) -> bool:
        if self.step is None or self.low is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-8

    def contains(self, value: Any) -> bool:
        """Whether Optuna could sample ``value``: a reference point off a ``step`` grid runs,
        but Optuna refuses it when the sweep's study is rebuilt at the end."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.is_int and value != int(value):
            return False
        return self.low <= value <= self.high and self._on_grid(value)


def condition_holds(when: Mapping[str, Any], sampled: Mapping[str, Any]) -> bool:
    """``when: {key: value}`` or ``{key: [allowed values]}``; an unsampled key never holds."""
    for key, wanted in when.items():
        if key not in sampled:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if sampled[key] not in allowed:
            return False
    return True


def sampling_order(space: dict[str, ParamSpec]) -> list[str]:
    """Parameters in the order written, except that one sampled ``when`` another has a value
    comes after it (YAML tools may reorder keys; the meaning must not change)."""
    order: list[str] = []
    pending = list(space)
    while pending:
        ready = [name for name in pending if all(k in order for k in space[name].when)]
        if not ready:
            raise ValueError(f"search_space: the 'when' conditions of {pending} form a cycle")
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def every_setting(space: dict[str, ParamSpec]) -> Iterator[dict[str, Any]]:
    """Each distinct setting of a space of ``choices`` only, in sampling order (a parameter off
    by its ``when`` takes no value)."""
    order = sampling_order(space)

    def walk(position: int, sampled: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if position == len(order):
            yield sampled
            return
        name = order[position]
        spec = space[name]
        if spec.when and not condition_holds(spec.when, sampled):
            yield from walk(position + 1, sampled)
            return
        for value in spec.choices or []:
            yield from walk(position + 1, {**sampled, name: value})

    yield from walk(0, {})


def distinct_settings(space: dict[str, ParamSpec], limit: int) -> int | None:
    """How many distinct settings a space of ``choices`` only holds, counted up to
    ``limit + 1``; None where a range makes them endless. Optuna's TPE draws such a space's
    settings again (a paper config's method x seed space gave the same trial three times in
    nine), each a trial identical to another."""
    if not space or any(spec.choices is None for spec in space.values()):
        return None
    return sum(1 for _ in itertools.islice(every_setting(space), limit + 1))


class SchedulerConfig(Section):
    """Early stopping of weak trials on the dev objective reported at each milestone (the end
    of each task stage). ``asha``: asynchronous successive halving; ``fifo``: none."""

    name: Literal["asha", "fifo"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 2.0


#: Keys (and the sections under them) a search must not vary, and why: trials are ranked
#: against each other stage by stage on one dev objective, and recorded in one place.
FIXED_BY_THE_SWEEP: dict[str, str] = {
    "task.tasks": "trials must run the same tasks in the same order: milestones, ASHA's rungs "
    "and the objective compare trials stage by stage",
    "tune": "the sweep's own settings (objective, metric, scheduler, space) are one for all "
    "its trials",
    "tracking": "all the sweep's trials are recorded in its one MLflow experiment",
    "data.pivot": "the objective's averages leave the pivot out: trials would be scored on "
    "other languages",
    "data.eval_languages": "it sets the languages the objective averages",
    "data.seen_languages": "it trains nothing and only changes which targets the 'seen' "
    "averages take",
    "data.xnli.dev": "trials would be scored on other dev data",
    "data.xquad.dev": "trials would be scored on other dev data",
    "data.xnli.test": "the summary compares the best trial's test scores with the baseline's",
    "data.xquad.test": "the summary compares the best trial's test scores with the baseline's",
    "data.parallel.dev": "its held-out pairs score alignment (retrieval, AER): trials would be "
    "scored on other pairs",
    "alignment.eval_pairs": "it sets how many held-out pairs score alignment (retrieval among "
    "fewer candidates is easier)",
    "task.xnli.max_eval": "it sets how many dev examples score each trial",
    "task.xquad.max_eval": "it sets how many dev examples score each trial",
}


def fixed_key_problem(name: str) -> str | None:
    """Why ``name`` cannot be searched (a searched section replaces every key in it), or None."""
    for fixed, why in FIXED_BY_THE_SWEEP.items():
        if name == fixed or name.startswith(f"{fixed}."):
            return f"a search cannot vary {name}: {why}; set it in the config instead"
        if fixed.startswith(f"{name}."):
            return (
                f"a search cannot vary {name}: it holds {fixed}, and {why}; search the other "
                "keys of the section one by one"
            )
    return None


def default_setting(dotted: str) -> Any:
    """The built-in default of a config key (a section as a mapping), as a config writes it."""
    from ot_ray.config.tree import Config  # the tree holds this section

    node: Any = Config().model_dump(mode="json")
    for part in dotted.split("."):
        node = node[part]
    return node


def switched(spec: ParamSpec) -> bool:
    """Whether ``spec`` is sampled only when a search-only switch (no dot) is on: where it is
    off, a trial takes the key's default (``unbalanced: false`` means balanced OT), not the
    base config's value."""
    return any("." not in key for key in spec.when)


#: The keys of one search-space entry, as written in a config (``int``, not ``is_int``).
PARAM_SPEC_KEYS = frozenset(field.alias or name for name, field in ParamSpec.model_fields.items())


class TuneConfig(Section):
    """Ray Tune + Optuna search over the rest of this config."""

    num_samples: PositiveInt = 8
    objective: list[str] = Field(
        default_factory=lambda: ["xnli/dev/acc/avg_targets", "xquad/dev/f1/avg_targets"],
        description="Dev metrics averaged into the reported 'objective' (never test metrics).",
    )
    metric: str = Field("objective", description="The reported metric the search optimises.")
    mode: Literal["max", "min"] = "max"
    seed: Seed = 0
    max_concurrent_trials: PositiveInt | None = Field(
        default=None,
        description="Default: as many trials' workers as the live nodes' CPUs/GPUs hold.",
    )
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    search_space: dict[str, ParamSpec] = Field(default_factory=dict)
    points_to_evaluate: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named points run first and never pruned, e.g. baseline: {alignment.method: "
        "none}; the summary compares the best trial with them.",
    )
    name: str = Field("ot-ray-sweep", description="Tune experiment name (resume uses it).")
    storage_path: StorageFolder = Field(
        "outputs/sweeps", description="Tune + Train storage (a folder shared by the nodes)."
    )
    best_config: str = Field("best.yaml", description="Written after the sweep, under the run.")

    @field_validator("name", "best_config")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        """Both name something inside the sweep's storage: a path would put the sweep or its
        best config elsewhere (``../x``, ``/etc/x``), an empty name the storage root itself."""
        if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{name!r}: a plain file name is needed here (no '/', not empty)")
        return name

    @field_validator("search_space", mode="before")
    @classmethod
    def _named_by_config_keys(cls, space: Any) -> Any:
        """Checked before the entries, so a misspelt key is named as such rather than by the
        error its half-written entry gives (``--set ...epsilonn.low=0.1``: no ``high``)."""
        for name in space if isinstance(space, dict) else []:
            if isinstance(name, str) and "." in name and not is_config_key(name):
                close = difflib.get_close_matches(name, list(setting_keys()), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ValueError(f"{name}: not a config key{hint}")
        return space

    @model_validator(mode="after")
    def _space_consistent(self) -> TuneConfig:
        for metric in [*self.objective, self.metric]:
            if "/test/" in metric:
                raise ValueError(
                    f"the search must not select on test metrics ({metric}): use dev metrics"
                )
        switches = {key for spec in self.search_space.values() for key in spec.when}
        for name in self.search_space:
            problem = fixed_key_problem(name)
            if problem:
                raise ValueError(f"search_space.{name}: {problem}")
        for name, spec in self.search_space.items():
            if "." not in name and name not in switches:
                raise ValueError(
                    f"search_space.{name}: not a config key (those have a dot, e.g. "
                    "alignment.lr), and no parameter's 'when' uses it as a switch"
                )
            for key, wanted in spec.when.items():
                if key not in self.search_space:
                    raise ValueError(
                        f"search_space.{name}: 'when' refers to {key!r}, which is not a "
                        "parameter of the search space"
                    )
                for value in wanted if isinstance(wanted, list) else [wanted]:
                    if not self.search_space[key].contains(value):
                        raise ValueError(
                            f"search_space.{name}: 'when' asks for {key} = {value!r}, which "
                            f"{key} never takes{_boolean_word_hint(value, self.search_space[key])}"
                        )
        sampling_order(self.search_space)  # raises on a cycle of conditions
        # each trial logs its config (the search space and points included) and its sampled
        # values as MLflow params: a name MLflow refuses failed every trial as it started,
        # after the cluster and the data were set up
        logged = [
            *((f"search_space.{name}", f"search.{name}") for name in self.search_space),
            *(
                (f"search_space.{name}", param)
                for name, spec in self.search_space.items()
                for param in flatten({name: spec.model_dump(mode="json")}, "tune.search_space.")
            ),
            *(
                (f"points_to_evaluate.{label}", param)
                for label, point in self.points_to_evaluate.items()
                for param in flatten({label: point}, "tune.points_to_evaluate.")
            ),
        ]
        for where, param in logged:
            problem = mlflow_param_name_problem(param)
            if problem:
                raise ValueError(f"{where}: {problem}")
        for label, point in self.points_to_evaluate.items():
            for key, value in point.items():
                if key not in self.search_space:
                    raise ValueError(f"points_to_evaluate.{label}.{key}: not in search_space")
                spec = self.search_space[key]
                if not spec.contains(value):
                    grid = f" (low + a whole number of step={spec.step})" if spec.step else ""
                    raise ValueError(
                        f"points_to_evaluate.{label}.{key}: {value!r} is outside its search "
                        f"space{grid}{_boolean_word_hint(value, spec)}"
                    )
                for switch, wanted in spec.when.items():  # else Optuna never samples it
                    if not condition_holds({switch: wanted}, point):
                        given = "leaves it out"
                        if switch in point:
                            given = f"sets it to {point[switch]!r}"
                        raise ValueError(
                            f"points_to_evaluate.{label}.{key}: sampled only when {switch} is "
                            f"{wanted!r}, and the point {given}"
                        )
        for where, name, value in searched_settings(self):
            _check_setting(name, value, where)
        return self


def searched_settings(tune: TuneConfig) -> Iterator[tuple[str, str, Any]]:
    """``(where, config key, value)`` for each value a trial may set a config key to: every
    point's, each choice, and a range's two ends and one value inside it (what the checks of a
    setting test): a float range over an integer setting has whole ends, and only its
    sampled values between them fail."""
    for label, point in tune.points_to_evaluate.items():
        for key, value in point.items():
            if "." in key:
                yield f"points_to_evaluate.{label}.{key}", key, value
    for name, spec in tune.search_space.items():
        if "." in name:
            for value in spec.choices or [spec.low, spec.high, _inside(spec)]:
                value = int(value) if spec.is_int and spec.choices is None else value
                yield f"search_space.{name}", name, value
            if switched(spec):
                where = f"search_space.{name} (its default, taken where its switch is off)"
                yield where, name, default_setting(name)


def _inside(spec: ParamSpec) -> float:
    """A value of a range that Optuna may sample between its ends, not a whole number unless
    every value it samples is one (an ``int`` range, or a grid of whole steps)."""
    low, high = float(spec.low), float(spec.high)
    if spec.step is not None:  # on the grid, and fractional where low or the step is
        return low + spec.step
    middle = (low + high) / 2
    return middle if middle != int(middle) else middle + min(0.25, (high - low) / 4)


#: MLflow's rule for param names (``mlflow.utils.validation``, outside Windows)
_MLFLOW_NAME = re.compile(r"[/\w.\- :]*")
#: MLflow's longest param name
MLFLOW_NAME_LENGTH = 250


def mlflow_param_name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a param name, or None."""
    if not _MLFLOW_NAME.fullmatch(name):
        return (
            f"each trial logs the MLflow param {name!r}, and MLflow's names hold only letters, "
            "digits, spaces and _ - . : /"
        )
    if posixpath.normpath(name) != name or name.startswith("/"):
        return (
            f"each trial logs the MLflow param {name!r}, which MLflow refuses (a '/' at an end, "
            "'//' or '..' parts)"
        )
    if len(name) > MLFLOW_NAME_LENGTH:
        return (
            f"each trial logs the MLflow param {name!r}, longer than MLflow's "
            f"{MLFLOW_NAME_LENGTH} characters"
        )
    return None


def _boolean_word_hint(value: Any, spec: ParamSpec) -> str:
    """YAML 1.1 read ``yes``/``no``/``on``/``off`` as booleans; a config reads them as text,
    so a ``when`` or point written that way misses boolean choices, or the other way round."""
    choices = spec.choices or []
    word = None
    if _is_boolean_word(value) and any(isinstance(choice, bool) for choice in choices):
        word = value
    elif isinstance(value, bool):
        word = next((choice for choice in choices if _is_boolean_word(choice)), None)
    if word is None:
        return ""
    return f" (a config reads {word} as text, not a boolean: write true or false)"


def _is_boolean_word(value: Any) -> bool:
    return isinstance(value, str) and value.lower() in ("yes", "no", "on", "off", "y", "n")


def _check_setting(dotted: str, value: Any, where: str) -> None:
    """What a trial will set ``dotted`` to, checked now against that setting's type and bounds,
    rather than in a trial partway through the sweep. Rules that tie it to the settings next
    to it are checked with the whole config (``Config._searched_values_fit_this_config``):
    here those are the defaults, not the config's."""
    from ot_ray.config.tree import Config  # the tree holds this section

    problem = setting_problem(Config(), dotted, value, cross_field=False)
    if problem:
        hint = ""
        if isinstance(value, float) and "valid integer" in problem:
            hint = "; a range over a whole-number setting needs int: true"
        raise ValueError(f"{where}: {value!r} cannot be {dotted} ({problem}){hint}")


def setting_problem(root: Any, dotted: str, value: Any, *, cross_field: bool) -> str | None:
    """Why the section of ``root`` that holds ``dotted`` refuses ``value`` (None if it takes
    it): the field's own rules, or with ``cross_field`` also the section's rules that relate
    it to its other settings."""
    *path, leaf = dotted.split(".")
    section = root
    for part in path:
        section = getattr(section, part)
    try:
        setattr(section.model_copy(), leaf, value)
    except ValidationError as err:
        problem = err.errors()[0]
        if problem["loc"] == () and not cross_field:
            return None
        return problem["msg"].removeprefix("Value error, ")
    return None
