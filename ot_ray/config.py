"""One typed configuration tree for the whole system, loaded from YAML plus ``--set`` overrides.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Validation errors are rewritten into one line per problem that names the file and line (or the
override), the dotted key, what was expected and what was found.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ot_ray.errors import ConfigError
from ot_ray.uris import credentials_in, redacted_text, where_secrets_go

# Finite only: an infinite rate, eps or epoch count would train to NaN or never end.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonNegativeInt = Annotated[int, Field(ge=0)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: numpy takes seeds below 2**32, and each worker adds 1000 x its rank to the trial's.
Seed = Annotated[int, Field(ge=0, lt=2**31)]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors and assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic would read ``true`` as 1 for a number (or a list of numbers, such as layer
        indices): a slip (``num_workers=yes``) that would silently change a setting."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        kinds = _plain_types(field.annotation)
        if isinstance(value, list):
            kinds = {
                item
                for kind in kinds
                if typing.get_origin(kind) is list
                for item in _plain_types(typing.get_args(kind)[0])
            }
            found = next((v for v in value if _is_boolean(v)), None)
        else:
            found = value if _is_boolean(value) else None
        if found is not None and kinds & {int, float} and not kinds & {bool, Any}:
            raise ValueError(f"expected a number, found {str(bool(found)).lower()} (a boolean)")
        return value


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool | numpy.bool_)


def _plain_types(annotation: Any) -> set[Any]:
    """The types a field's annotation admits, through ``Annotated`` and unions."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _plain_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_plain_types(arg) for arg in typing.get_args(annotation)))
    return {annotation}


class ModelConfig(Section):
    """The encoder to align: a Hub id (``bert-base-multilingual-cased``) or a local directory."""

    name_or_path: str = "demo"
    revision: str | None = None
    trust_remote_code: bool = False


class WorldSizes(Section):
    """How much text the demo generator writes (per language where it says so)."""

    mono_sentences: PositiveInt = Field(20_000, description="Pre-training lines per language.")
    parallel_pairs: PositiveInt = Field(10_000, description="Training pairs per seen language.")
    parallel_dev_pairs: PositiveInt = Field(500, description="Held-out pairs per language.")
    xnli_train: PositiveInt = Field(15_000, description="Pivot-language training examples.")
    xnli_dev: PositiveInt = Field(1_000, description="Examples per language.")
    xnli_test: PositiveInt = Field(2_000, description="Examples per language.")
    xquad_train_stories: PositiveInt = Field(2_000, description="Pivot-language contexts.")
    xquad_dev_stories: PositiveInt = Field(100, description="Contexts per language.")
    xquad_test_stories: PositiveInt = Field(250, description="Contexts per language.")


class EncoderPretraining(Section):
    """The tiny BERT pre-trained with masked language modelling on the monolingual text only."""

    vocab_size: PositiveInt = 1_200
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 4
    num_heads: PositiveInt = 4
    intermediate_size: PositiveInt = 512
    max_length: PositiveInt = Field(128, description="Packed sequence length = max position.")
    steps: PositiveInt = 700
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 1e-3
    warmup_steps: int = Field(70, ge=0)
    mlm_probability: Annotated[float, Field(gt=0, lt=1)] = 0.15
    heldout_sentences: PositiveInt = Field(
        500, description="Last lines of each mono file kept out of training for MLM accuracy."
    )
    whole_function_words: bool = Field(
        False,
        description="Give every language's function words (articles, prepositions, question "
        "words, 'does') one WordPiece each, as mBERT's large vocabulary does; the small default "
        "vocabulary splits some pivot question words ('where' -> wh ##er ##e) but not their "
        "translations.",
    )


class DemoConfig(Section):
    """The offline demo world: where it is cached, its seed and how big it is."""

    cache_dir: str | None = Field(
        default=None,
        description="Where the generated data and tiny encoder live; default ~/.cache/ot-ray "
        "(or $OT_RAY_CACHE).",
    )
    seed: Seed = 0
    sizes: WorldSizes = Field(default_factory=WorldSizes)
    encoder: EncoderPretraining = Field(default_factory=EncoderPretraining)


#: What a source's strings may name: see :class:`SourceSpec`.
PLACEHOLDERS = ("root", "lang", "pivot", "pair")


#: ``hub`` values that read local files (``data_files``) rather than a Hub repository's.
LOCAL_FILE_BUILDERS = frozenset({"json", "csv", "text", "parquet", "arrow"})
#: The SourceSpec keys only a local file's reader uses, and those only a Hub dataset's.
LOCAL_KEYS = ("path", "second_path", "alignments")
HUB_KEYS = ("hub", "hub_config", "data_files", "revision")


class SourceSpec(Section):
    """Where one split of one dataset comes from: a local file or an HF Hub dataset.

    Strings may use ``{root}`` (``data.root``; the demo world's directory when it is ``demo``),
    ``{lang}``, ``{pivot}`` and ``{pair}`` (the two codes sorted and joined by ``-``, as
    Europarl's Hub configs are named). A Hub dataset is read with ``datasets.load_dataset(hub,
    hub_config, split=split, data_files=data_files)``, so ``hub: json`` with ``data_files`` reads
    local files in a Hub dataset's schema.
    """

    path: str | None = Field(default=None, description="Local file (TSV, JSONL or SQuAD JSON).")
    second_path: str | None = Field(
        default=None, description="Parallel text as two line-aligned files: the pivot side."
    )
    alignments: str | None = Field(default=None, description="Pharaoh word alignments.")
    hub: str | None = Field(default=None, description="HF Hub dataset id (or a builder: json).")
    hub_config: str | None = None
    data_files: str | None = None
    split: str = "train"
    revision: str | None = None
    languages: list[str] | None = Field(
        default=None, description="Only these languages have this split (default: all)."
    )

    @field_validator("path", "second_path", "alignments", "hub", "hub_config", "data_files")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        """A misspelt ``{lnag}`` would otherwise fail only when a worker reads the data."""
        if template is not None:
            try:
                template.format(**dict.fromkeys(PLACEHOLDERS, "x" * 16))
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
                raise ValueError(
                    f"bad placeholder in {template!r} ({type(err).__name__}: {err}); the "
                    f"placeholders are {' '.join('{' + name + '}' for name in PLACEHOLDERS)} "
                    "(double a brace meant literally: {{ }})"
                ) from None
        return template

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (a local file) and 'hub' (a dataset id)")
        # keys the other origin's reader never looks at would be dropped without a word
        # (alignments given with a Hub dataset: no AER, and l2 would find no links)
        unread = HUB_KEYS if self.path is not None else LOCAL_KEYS
        given = [key for key in unread if key not in ("path", "hub") and getattr(self, key)]
        if given:
            origin = "a local file ('path')" if self.path is not None else "a Hub dataset ('hub')"
            raise ValueError(
                f"{', '.join(given)} cannot be used with {origin}: it would be ignored"
            )
        return self

    def covers(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages


def _local(path: str, alignments: str | None = None, **extra: Any) -> Any:
    return Field(default_factory=lambda: SourceSpec(path=path, alignments=alignments, **extra))


def _held_out_splits_named(**specs: SourceSpec) -> None:
    """A held-out Hub source must name its split: the default, ``train``, would score (and
    select) on training data without a word. Local files read by a builder (``hub: json``)
    have only that split."""
    for name, spec in specs.items():
        if spec.hub not in (None, *LOCAL_FILE_BUILDERS) and "split" not in spec.model_fields_set:
            raise ValueError(
                f"{name}: a Hub dataset read for evaluation needs its split named (e.g. split: "
                "validation); the default, train, would evaluate on training data"
            )


class ParallelSources(Section):
    """Parallel text per target language with the pivot: training pairs and held-out pairs."""

    train: SourceSpec = _local(
        "{root}/parallel/{lang}-{pivot}.tsv", "{root}/parallel/{lang}-{pivot}.align"
    )
    dev: SourceSpec = _local(
        "{root}/parallel/dev/{lang}-{pivot}.tsv", "{root}/parallel/dev/{lang}-{pivot}.align"
    )
    by_language: dict[str, list[SourceSpec]] = Field(
        default_factory=dict,
        description="Training sources of languages that do not come from 'train' (LargeWordOT: "
        "MultiUN for ar, Tanzil and GlobalVoices for sw); several sources are concatenated.",
    )

    @model_validator(mode="after")
    def _dev_split_named(self) -> ParallelSources:
        _held_out_splits_named(dev=self.dev)
        return self

    def train_sources(self, lang: str) -> list[SourceSpec]:
        """Where ``lang``'s training pairs come from (empty: that language has none)."""
        if lang in self.by_language:
            return self.by_language[lang]
        return [self.train] if self.train.covers(lang) else []


class NLISources(Section):
    """XNLI: training on the pivot (``{lang}`` is the pivot there), dev and test per language."""

    train: SourceSpec = _local("{root}/xnli/train-{lang}.tsv")
    dev: SourceSpec = _local("{root}/xnli/dev-{lang}.tsv")
    test: SourceSpec = _local("{root}/xnli/test-{lang}.tsv")

    @model_validator(mode="after")
    def _splits_named(self) -> NLISources:
        _held_out_splits_named(dev=self.dev, test=self.test)
        return self


class QASources(Section):
    """XQuAD: SQuAD v1.1 JSON (or the Hub's squad/xquad schema) per split and language."""

    train: SourceSpec = _local("{root}/xquad/train-{lang}.json")
    dev: SourceSpec = _local("{root}/xquad/dev-{lang}.json")
    test: SourceSpec = _local("{root}/xquad/test-{lang}.json")

    @model_validator(mode="after")
    def _splits_named(self) -> QASources:
        _held_out_splits_named(dev=self.dev, test=self.test)
        return self


class DataConfig(Section):
    """Languages and corpora. The pivot plays the role of English: tasks are trained on it."""

    root: str = Field(
        default="demo", description="Fills {root} in paths; 'demo' = the demo world directory."
    )
    pivot: str = "en"
    languages: list[str] = Field(default_factory=list, description="Target languages aligned.")
    eval_languages: list[str] = Field(
        default_factory=list,
        description="Languages evaluated zero-shot besides the pivot (default: data.languages).",
    )
    pairs_per_language: PositiveInt | None = Field(
        default=None, description="Sub- or upsample each language pair to this many pairs."
    )
    max_length: PositiveInt = Field(128, description="Tokens per sentence in alignment.")
    cache_dir: str | None = Field(
        default=None, description="Tokenised datasets (default: <output_dir>/cache)."
    )
    parallel: ParallelSources = Field(default_factory=ParallelSources)
    xnli: NLISources = Field(default_factory=NLISources)
    xquad: QASources = Field(default_factory=QASources)
    demo: DemoConfig = Field(default_factory=DemoConfig)

    @model_validator(mode="after")
    def _pivot_not_a_target(self) -> DataConfig:
        if self.pivot in self.languages:
            raise ValueError(f"the pivot language {self.pivot!r} must not be in data.languages")
        return self

    @field_validator("languages", "eval_languages")
    @classmethod
    def _each_language_once(cls, named: list[str]) -> list[str]:
        twice = sorted({lang for lang in named if named.count(lang) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} named more than once in {named}")
        return named

    @property
    def all_eval_languages(self) -> list[str]:
        """The pivot first, then every other evaluated language once."""
        others = self.eval_languages or self.languages
        return [self.pivot] + [lang for lang in dict.fromkeys(others) if lang != self.pivot]


class SinkhornConfig(Section):
    """How the entropic OT problems are solved (see :mod:`ot_ray.ot`)."""

    backend: Literal["auto", "native", "fused", "pot"] = Field(
        default="auto",
        description="auto: the fused GPU kernel on CUDA (problems up to 128 words a side), "
        "the torch loop elsewhere; native: the torch loop; fused: the Triton kernel; pot: POT.",
    )
    n_iters: PositiveInt | None = Field(
        default=None, description="Fixed iteration count at the target eps (no host sync)."
    )
    tol: PositiveFloat = 1e-3
    check_every: PositiveInt = 10
    max_iters: PositiveInt = 1000
    eps_scaling: Annotated[float, Field(gt=0, lt=1)] | None = 0.5


class OTConfig(Section):
    """The OT loss: debiased Sinkhorn divergence between word embeddings of a sentence pair."""

    epsilon: PositiveFloat = 0.0025
    cost: Literal["sqeuclidean", "cosine"] = "sqeuclidean"
    tau: PositiveFloat | None = Field(default=None, description="Unbalanced OT; None = balanced.")
    debias: bool = True
    solver: SinkhornConfig = Field(default_factory=SinkhornConfig)


class LinkNoise(Section):
    """Degrade gold word alignments the way an automatic aligner would (for the L2 baseline)."""

    drop: Annotated[float, Field(ge=0, le=1)] = 0.0
    move: Annotated[float, Field(ge=0, le=1)] = 0.0


class AlignmentConfig(Section):
    """Stage 1: fine-tune the encoder on parallel text so translations get close embeddings."""

    method: Literal["wordot", "subot", "l2", "none"] = "wordot"
    layers: list[int] = Field(
        default_factory=lambda: [-1], description="Hidden-state indices aligned (-1 = last)."
    )
    pooling: Literal["last", "first", "mean"] = "last"
    ot: OTConfig = Field(default_factory=OTConfig)
    reg_lambda: NonNegativeFloat = 1.0
    lr: PositiveFloat = 5e-5
    epochs: PositiveFloat = 1.0
    batch_size: PositiveInt = 24
    grad_accum: PositiveInt = 2
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    link_noise: LinkNoise = Field(default_factory=LinkNoise)
    pack_sentences: PositiveInt = Field(
        default=1,
        description="Join this many consecutive training pairs into one, so short-sentence "
        "corpora also align the positions that long task inputs use (1 = as given).",
    )
    joint_weight: NonNegativeFloat | None = Field(
        default=None, description="Joint variant: weight of the OT loss during task training."
    )
    joint_detach_pivot: bool = Field(
        default=False,
        description="Joint variant: no gradient through the pivot's side of the OT loss, so it "
        "moves the other languages towards what the task reads instead of moving the pivot.",
    )
    eval_pairs: PositiveInt | None = Field(
        default=None, description="Held-out pairs per language for retrieval/AER (default all)."
    )

    @model_validator(mode="after")
    def _layers_given(self) -> AlignmentConfig:
        if not self.layers:
            raise ValueError("alignment.layers needs at least one layer index")
        return self


class TaskTrainConfig(Section):
    """Fine-tuning settings of one downstream task (XTREME defaults for mBERT)."""

    lr: PositiveFloat
    epochs: PositiveFloat
    batch_size: PositiveInt = 32
    max_length: PositiveInt = 128
    grad_accum: PositiveInt = 1
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.1
    weight_decay: NonNegativeFloat = 0.0
    freeze_embeddings: bool = Field(
        False,
        description="Keep the embedding layer fixed: only pivot tokens get gradients, so "
        "training them moves the pivot away from the other languages (Wu & Dredze 2019).",
    )
    freeze_layers: NonNegativeInt = Field(
        0, description="Also keep the lowest N transformer layers fixed."
    )
    max_train: PositiveInt | None = Field(
        default=None, description="Use only the first N training examples (quick runs)."
    )
    max_eval: PositiveInt | None = Field(
        default=None,
        description="Evaluate only the first N dev/test examples per language (quick runs; "
        "the prediction files then cover those N).",
    )


class QATrainConfig(TaskTrainConfig):
    """Extractive QA adds the sliding-window and span-search settings."""

    doc_stride: PositiveInt = 128
    max_answer_length: PositiveInt = 30
    n_best: PositiveInt = 20

    @model_validator(mode="after")
    def _window_has_room(self) -> QATrainConfig:
        # a window holds the question, the context overlap (doc_stride) and up to 4 special
        # tokens (BERT 3, XLM-R 4); at least one more token must fit
        if self.doc_stride > self.max_length - 6:
            raise ValueError(
                f"doc_stride {self.doc_stride} leaves no room in windows of max_length "
                f"{self.max_length}: at most max_length - 6 ({self.max_length - 6})"
            )
        return self


class TaskConfig(Section):
    """Stage 2: zero-shot transfer tasks trained on the pivot and evaluated on every language."""

    tasks: list[Literal["xnli", "xquad"]] = Field(default_factory=lambda: ["xnli", "xquad"])

    @field_validator("tasks")
    @classmethod
    def _each_task_once(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) < len(tasks):
            raise ValueError(f"a task is named twice in {tasks} (it would be trained twice)")
        return tasks

    xnli: TaskTrainConfig = Field(
        default_factory=lambda: TaskTrainConfig(lr=2e-5, epochs=5, batch_size=32, max_length=128)
    )
    xquad: QATrainConfig = Field(
        default_factory=lambda: QATrainConfig(lr=3e-5, epochs=3, batch_size=32, max_length=384)
    )


class TrainConfig(Section):
    """Ray Train settings shared by both stages."""

    num_workers: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    seed: Seed = 0
    output_dir: str = "outputs"
    run_name: str | None = Field(
        default=None, description="Ray Train run name (default: derived from the config)."
    )
    storage_path: str | None = Field(
        default=None, description="Ray Train storage (checkpoints); default <output_dir>/ray."
    )
    bf16: bool = Field(True, description="bf16 autocast on GPU (ignored on CPU).")
    tf32: bool = Field(
        True,
        description="TF32 float32 matmuls on GPU outside bf16 autocast (never in the OT costs).",
    )
    compile: bool = Field(
        False, description="torch.compile the trained models (GPU; the first steps compile)."
    )
    max_grad_norm: PositiveFloat | None = 1.0
    eval_batch_size: PositiveInt = 128
    checkpoint_every: PositiveInt | None = Field(
        default=200, description="Optimizer steps between checkpoints inside a stage."
    )
    max_failures: int = Field(0, ge=-1, description="Worker-group restarts (Ray FailureConfig).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING", description="Ray Train's own console logs (INFO prints every report)."
    )


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


class SchedulerConfig(Section):
    """Early stopping of weak trials on the dev objective reported at each milestone (the end
    of each task stage). ``asha``: asynchronous successive halving; ``fifo``: none."""

    name: Literal["asha", "fifo"] = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)] = 2.0


#: The keys of one search-space entry, as written in a config (``int``, not ``is_int``).
_PARAM_SPEC_KEYS = frozenset(field.alias or name for name, field in ParamSpec.model_fields.items())


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
    storage_path: str = Field("outputs/sweeps", description="Tune + Train storage (shared).")
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
                close = difflib.get_close_matches(name, list(_setting_keys()), n=1)
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
                if "." in key:
                    _check_setting(key, value, f"points_to_evaluate.{label}.{key}")
        for name, spec in self.search_space.items():
            if "." in name:
                for value in spec.choices or [spec.low, spec.high]:
                    value = int(value) if spec.is_int and spec.choices is None else value
                    _check_setting(name, value, f"search_space.{name}")
        return self


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
    rather than in a trial partway through the sweep."""
    *path, leaf = dotted.split(".")
    section = Config()
    for part in path:
        section = getattr(section, part)
    try:
        setattr(section.model_copy(), leaf, value)
    except ValidationError as err:
        problem = err.errors()[0]
        detail = problem["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {value!r} cannot be {dotted} ({detail})") from None


class TrackingConfig(Section):
    """MLflow: where runs go. ``MLFLOW_TRACKING_URI`` in the environment overrides ``uri``."""

    uri: str = "sqlite:///mlflow.db"
    experiment: str = "ot-ray"
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


#: Language averages reported next to the per-language scores (see ``ot_ray.trial``).
LANGUAGE_AVERAGES = ("avg_seen", "avg_seen_targets", "avg_unseen", "avg_targets", "avg_all")
#: Per-language metric families ``<family>/<language or average>`` a trial reports.
METRIC_FAMILIES = (
    "xnli/dev/acc",
    "xnli/test/acc",
    "xquad/dev/f1",
    "xquad/dev/em",
    "xquad/test/f1",
    "xquad/test/em",
    "align/retrieval_acc",
    "align/aer",
)
#: Single metrics of the alignment stage (means over the steps of a report).
ALIGNMENT_METRICS = (
    "align/loss",
    "align/ot/sweeps",
    "align/ot/marginal_error",
    "align/steps",
    "xnli/train_loss",
    "xquad/train_loss",
    "xnli/steps",
    "xquad/steps",
)


def unknown_metric(name: str, languages: list[str]) -> str | None:
    """Why ``name`` is not a metric a trial reports (None when it is one)."""
    if name == "objective" or name in ALIGNMENT_METRICS:
        return None
    if name.startswith(("xnli/joint/", "xquad/joint/")):  # the joint variant's last-step terms
        return None
    family, _, suffix = name.rpartition("/")
    if family not in METRIC_FAMILIES:
        known = ["objective", *ALIGNMENT_METRICS, *(f"{f}/<language>" for f in METRIC_FAMILIES)]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    if suffix in LANGUAGE_AVERAGES or suffix in languages:
        return None
    return f"{suffix!r} is neither an evaluated language ({', '.join(languages)}) nor one of " + (
        ", ".join(LANGUAGE_AVERAGES)
    )


# --------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load ``path`` (YAML; ``None`` means all defaults) and apply ``key=value`` overrides.

    Raises :class:`ConfigError` naming file, line and dotted key for any problem.
    """
    data: dict[str, Any] = {}
    origins: dict[str, str] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        data, origins = _read_tree(Path(path), [])
    for override in overrides or []:
        key, value = parse_override(override)
        shown = f"--set {_redacted_override(override)}"  # messages quote it: no secrets
        _assign(data, key, value, origin=shown)
        origins = {k: where for k, where in origins.items() if not k.startswith(f"{key}.")}
        origins[key] = shown
    return _validated(data, origins, source)


def load_config_data(data: dict[str, Any], overrides: dict[str, Any], *, origin: str) -> Config:
    """A config from an already-loaded mapping plus dotted overrides (a Tune trial's values)."""
    data = copy.deepcopy(data)
    origins: dict[str, str] = {}
    for key, value in overrides.items():
        _assign(data, key, value, origin=f"{origin} {key}={value!r}")
        origins[key] = f"{origin} {key}={value!r}"
    return _validated(data, origins, origin)


def _redacted_override(text: str) -> str:
    """``key=value`` with the value's URI secrets hidden (error messages quote overrides)."""
    return redacted_text(text)


def _validated(data: dict[str, Any], origins: dict[str, str], source: str) -> Config:
    """The typed config, or one error line per problem naming where each key came from."""
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _rewrite(err, origins, source) from None


def _setting_keys(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a setting (not of a section) in :class:`Config`."""
    for name, field in (model or Config).model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _setting_keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def is_config_key(dotted: str, *, sections: bool = True) -> bool:
    """Whether ``dotted`` names a setting of :class:`Config`: a leaf, or (if ``sections``) a
    whole section."""
    model: type[BaseModel] = Config
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            if depth == len(parts) - 1 and not sections:
                return False
        elif depth < len(parts) - 1:
            return False
    return True


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value``; the value is parsed as a YAML scalar or flow list/mapping."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or any(not part or any(c.isspace() for c in part) for part in parts):
        raise ConfigError(
            "expected KEY=VALUE with a dotted KEY such as alignment.ot.epsilon=0.01, "
            f"found {redacted_text(repr(text))}",
            source="--set",
        )
    try:
        value = yaml.load(raw, Loader=ConfigLoader) if raw.strip() else None
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a tag such as !!int on bad text
        quote = ""
        if raw.lstrip()[:1] in "{[":
            quote = f" (if it is text, quote it: --set '{key}=\"...\"')"
        raise ConfigError(
            redacted_text(f"the value {raw!r} is not valid YAML ({_one_line(err)}){quote}"),
            source=f"--set {_redacted_override(text)}",
        ) from None
    return key, value


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers and booleans: ``1e-5`` is a float (YAML 1.1
    reads the text "1e-5"), ``010`` or ``1:30`` are not the octal 8 or the base-60 90
    (``250_000`` stays an integer), and only ``true``/``false`` are booleans, so the language
    code ``no`` (Norwegian) stays text; a yes/no setting still takes ``yes``, ``on``, ``1``."""


class ConfigDumper(yaml.SafeDumper):
    """Quotes every string that :class:`ConfigLoader` (or a YAML 1.1 reader) would read as a
    number, such as the revision ``1234e56``, so what is written reads back the same."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rule) for tag, rule in resolvers if not tag.endswith((":int", ":float", ":bool"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ConfigDumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
for _yaml_class in (ConfigLoader, ConfigDumper):
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:int",
        re.compile(r"^[-+]?[0-9][0-9_]*$|^0o[0-7]+$|^0x[0-9a-fA-F]+$"),
        list("-+0123456789"),
    )
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"
            r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
        ),
        list("-+0123456789."),
    )


def _yaml_1_2_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text.replace("_", ""), 10)


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _yaml_1_2_int)


def _read_tree(path: Path, chain: list[Path]) -> tuple[dict[str, Any], dict[str, str]]:
    """A YAML file merged over the file its ``extends:`` names (relative to it), recursively;
    every key keeps the ``file:line`` it came from."""
    data, lines = _read_yaml(path)
    origins = {key: f"{path}:{line}" for key, line in lines.items()}
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, origins
    where = f"{path}:{lines.get('extends', 1)}"
    if not isinstance(base_name, str):
        raise ConfigError("expected a file name", source=where, key="extends")
    base_path = (path.parent / base_name).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{base_name} extends itself (through {len(chain)} files)", source=where)
    if not base_path.is_file():
        raise ConfigError(f"no such config file {base_path}", source=where, key="extends")
    base, base_origins = _read_tree(base_path, [*chain, path.resolve()])
    replaced = [key for key in origins if key.rsplit(".", 1)[-1] in REPLACED]
    base_origins = {
        key: where
        for key, where in base_origins.items()
        if not any(key.startswith(f"{whole}.") for whole in replaced)
    }
    return _merged(base, data), {**base_origins, **origins}


#: Sections an ``extends``-ing file replaces whole instead of merging into.
REPLACED = ("search_space", "points_to_evaluate")


def _merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in REPLACED:
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    if path.is_dir():
        raise ConfigError("a directory, not a config file", source=str(path))
    if not path.exists():
        raise ConfigError("no such config file", source=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (byte {err.start})", source=str(path)) from None
    except OSError as err:  # permissions, a device
        raise ConfigError(
            f"cannot read the file: {err.strerror or err}", source=str(path)
        ) from None
    try:
        node = yaml.compose(text, Loader=ConfigLoader)
        data = yaml.load(text, Loader=ConfigLoader)
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a tag such as !!int on bad text
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or _one_line(err)
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"invalid YAML: {detail}", source=where) from None
    if data is None:
        # an empty file is more likely a slip (a truncated copy, /dev/null) than a wish for
        # the built-in defaults, which a file holding {} asks for
        raise ConfigError(
            "the config file has no settings (a file holding {} means the built-in defaults)",
            source=str(path),
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level, found {type(data).__name__}", source=str(path)
        )
    _refuse_cycles(node, set(), set(), path)
    _refuse_keys_that_are_not_names(node, set(), path)
    size = _expanded_size(node, {})
    if size > MAX_CONFIG_VALUES:
        # a few lines of aliases to aliases expand to billions of values (a "YAML bomb")
        raise ConfigError(
            f"expands to {size:,} values through its aliases (more than {MAX_CONFIG_VALUES:,})",
            source=str(path),
        )
    lines: dict[str, int] = {}
    _collect_lines(node, "", lines, path)
    return _unshared(data), lines


#: More values than any config needs once its aliases are expanded.
MAX_CONFIG_VALUES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias is copied out; ``sizes`` remembers each
    node's, so a node that aliases reach many times is counted without walking it again."""
    if id(node) not in sizes:
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _unshared(value: Any) -> Any:
    """``value`` with every alias made a copy of its anchor (YAML loads the same object), so
    that ``--set task.xnli.epochs=5`` does not also change a ``task.xquad: *same``."""
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def _refuse_cycles(node: yaml.Node, open_nodes: set[int], done: set[int], path: Path) -> None:
    """An alias inside the node its anchor names (``a: &x {b: *x}``) makes an endless value.
    ``done`` holds nodes already checked, which aliases may reach many times."""
    if not isinstance(node, yaml.CollectionNode) or id(node) in done:
        return
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        children = [(value, key.start_mark) for key, value in node.value]
    else:
        children = [(item, node.start_mark) for item in node.value]
    for child, mark in children:
        if id(child) in open_nodes:
            raise ConfigError(
                "an alias (*name) refers to a section or list that contains it, an endless value",
                source=f"{path}:{mark.line + 1}",
            )
        _refuse_cycles(child, open_nodes, done, path)
    open_nodes.discard(id(node))
    done.add(id(node))


#: The tags a mapping key may carry: a name, or YAML's merge key ``<<``.
NAME_KEY_TAGS = ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")


def _refuse_keys_that_are_not_names(node: yaml.Node, done: set[int], path: Path) -> None:
    """Every key of a config is a name: ``null:`` or ``~:`` read as the key None (two of
    them, or ``1:`` and ``true:``, silently become one key), and pydantic would report them at
    the enclosing section's line. Runs after :func:`_refuse_cycles`."""
    if not isinstance(node, yaml.CollectionNode) or id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_keys_that_are_not_names(item, done, path)
        return
    for key, value in node.value:
        if key.tag not in NAME_KEY_TAGS:
            kind = key.tag.rpartition(":")[2] if key.tag.startswith("tag:yaml.org") else key.tag
            text = key.value if isinstance(key, yaml.ScalarNode) else "a list or mapping"
            raise ConfigError(
                f"the key {text!r} reads as {kind}, not a name: quote it if it is meant as one",
                source=f"{path}:{key.start_mark.line + 1}",
            )
        _refuse_keys_that_are_not_names(value, done, path)


def _collect_lines(node: yaml.Node | None, prefix: str, out: dict[str, int], path: Path) -> None:
    """Record the 1-based line of every dotted key, rejecting duplicate keys on the way."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen:
            raise ConfigError(
                "duplicate key (the second would silently win)",
                source=f"{path}:{key_node.start_mark.line + 1}",
                key=key,
            )
        seen.add(key)
        out[key] = key_node.start_mark.line + 1
        _collect_lines(value_node, f"{key}.", out, path)


def _assign(data: dict[str, Any], dotted: str, value: Any, *, origin: str) -> None:
    parts = _key_path(dotted)
    node = data
    for depth, part in enumerate(parts[:-1]):
        if part not in node:  # start from the section's defaults, not from nothing
            node[part] = _section_default(parts[: depth + 1], leaf=parts[-1])
        child = node[part]
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"cannot set {dotted!r}: {prefix!r} is a {type(child).__name__}, not a section",
                source=origin,
                key=dotted,
            )
        node = child
    node[parts[-1]] = value


def _key_path(dotted: str) -> list[str]:
    """The mapping keys ``dotted`` walks through. Search spaces and named points are keyed by
    dotted config keys, so ``tune.search_space.alignment.ot.epsilon.low`` is the ``low`` of
    the entry ``alignment.ot.epsilon``, and ``tune.points_to_evaluate.paper.alignment.lr`` is
    the entry ``alignment.lr`` of the point ``paper``."""
    parts = dotted.split(".")
    if parts[:2] == ["tune", "search_space"] and len(parts) > 3:
        name = ".".join(parts[2:])
        parent = ".".join(parts[2:-1])
        switch = "." not in parent and not is_config_key(parent)  # a search-only switch
        in_spec = parts[-1] in _PARAM_SPEC_KEYS or switch or is_config_key(parent, sections=False)
        if not is_config_key(name) and in_spec:
            return [*parts[:2], ".".join(parts[2:-1]), parts[-1]]
        return [*parts[:2], name]
    if parts[:2] == ["tune", "points_to_evaluate"] and len(parts) > 4:
        return [*parts[:3], ".".join(parts[3:])]
    return parts


def _section_default(parts: list[str], *, leaf: str) -> dict[str, Any]:
    """The default of the section ``parts`` names, as plain data: some sections' defaults are
    not their fields' defaults (``task.xquad`` sets lr and epochs), so ``--set
    task.xquad.doc_stride=64`` must start from them. A source's default origin is dropped when
    ``leaf`` gives another one (``--set data.xnli.test.hub=...``, ``...path=...``), and kept when
    it adds to it (``--set data.parallel.train.alignments=...``: links for the default pairs)."""
    model: type[BaseModel] = Config
    default: Any = None
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return {}  # not a section: validation names the key
        if default is None or not isinstance(default, BaseModel):
            default = field.get_default(call_default_factory=True)
        else:
            default = getattr(default, part)
        model = annotation
    dumped = default.model_dump(mode="json", exclude_defaults=True)
    if model is SourceSpec and leaf in (*LOCAL_KEYS, *HUB_KEYS):
        # a new file or dataset brings its own links and config; a link file alone does not
        dropped = {*LOCAL_KEYS, *HUB_KEYS} if leaf in ("path", "hub") else set(HUB_KEYS)
        if leaf in HUB_KEYS:
            dropped |= set(LOCAL_KEYS)
        dumped = {k: v for k, v in dumped.items() if k not in dropped}
    return dumped


def _rewrite(err: ValidationError, origins: dict[str, str], source: str) -> ConfigError:
    """Turn pydantic's report into one line per problem: where, key, expected, found."""
    messages: list[str] = []
    first_key: str | None = None
    for problem in err.errors():
        loc = [str(part) for part in problem["loc"] if not str(part).startswith("function-")]
        key = ".".join(loc)
        first_key = first_key or key
        where = _origin_of(key, origins, source)
        found = problem.get("input")
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            expected = f"unknown key (allowed here: {', '.join(sorted(allowed))}){suggestion}"
            messages.append(f"{where}: {key}: {expected}")
        elif problem["type"] == "value_error":
            message = _expected(problem["msg"])
            head = message.split(": ", 1)[0]
            if not key and is_config_key(head):
                # a whole-config check names its key first ("tune.metric: ...")
                key, message = head, message.split(": ", 1)[1]
                where = _origin_of(key, origins, source)
                first_key = first_key or key
            elif key and " " not in head and _origin_of(f"{key}.{head}", origins, "") != where:
                # a section's check that names one of its keys ("search_space.x: ...") is
                # located at that key's line
                where = _origin_of(f"{key}.{head}", origins, source)
            overrides = [
                o for k, o in origins.items() if "--set" in o and o != where and _related(k, key)
            ]
            after = f" (after {', '.join(overrides)})" if overrides else ""
            messages.append(f"{where}: {key}: {message}{after}")
        else:
            # a revision such as 1234e56 or 0123 reads as a number in YAML: quoting keeps text
            quote = problem["type"] == "string_type" and type(found) in (int, float, bool)
            messages.append(
                f"{where}: {key or '<top level>'}: expected {_expected(problem['msg'])}; "
                f"found {_describe(found)}" + ("; quote it to keep it as text" if quote else "")
            )
    error = ConfigError("\n".join(messages))
    error.key = first_key
    return error


def _related(one: str, other: str) -> bool:
    """Whether one dotted key holds the other, or is it."""
    return one == other or one.startswith(f"{other}.") or other.startswith(f"{one}.")


def _origin_of(key: str, origins: dict[str, str], source: str) -> str:
    """Where ``key`` was written: its own origin or an override of a section holding it, else
    the one place that wrote keys inside it (``--set a.b.c=1`` builds ``a.b``), else its
    nearest enclosing section's line."""
    parts = key.split(".")
    enclosing = next(
        (
            origins[k]
            for k in (".".join(parts[:end]) for end in range(len(parts), 0, -1))
            if k in origins
        ),
        source,
    )
    if key not in origins and "--set" not in enclosing:
        inside = {where for name, where in origins.items() if name.startswith(f"{key}.")}
        if len(inside) == 1:  # several: the enclosing section's, and "(after ...)" lists them
            return inside.pop()
    return enclosing


def _allowed_keys(loc: list[str]) -> list[str]:
    """The keys a config may write at ``loc``, through sections and the mappings and lists
    that hold them (``tune.search_space.<name>`` is a :class:`ParamSpec`)."""
    model: type[BaseModel] = Config
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        while typing.get_origin(annotation) in (dict, list) and next(parts, None) is not None:
            annotation = typing.get_args(annotation)[-1]  # the value or item type
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [field.alias or name for name, field in model.model_fields.items()]


def _describe(value: Any) -> str:
    text = redacted_text(repr(value))
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _expected(message: str) -> str:
    """Pydantic says "Input should be a valid number"; we say "expected a valid number"."""
    for prefix in ("Input should be ", "Value error, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message[:1].lower() + message[1:]


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def dump_config(config: Config) -> str:
    """YAML text of ``config`` that :func:`load_config` reads back to an equal config."""
    return yaml.dump(config.model_dump(mode="json"), Dumper=ConfigDumper, sort_keys=False)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as dotted keys (``alignment.ot.epsilon``), the way MLflow shows params."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
