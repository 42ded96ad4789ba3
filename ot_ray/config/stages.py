"""What the two stages and their workers do: the encoder, the alignment method and its OT
loss, the task fine-tuning, and the Ray Train settings shared by both."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ot_ray.config.fields import (
    NonBlank,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
    StorageFolder,
)


class ModelConfig(Section):
    """The encoder to align: a Hub id (``bert-base-multilingual-cased``) or a local directory."""

    name_or_path: NonBlank = "demo"
    revision: str | None = None
    trust_remote_code: bool = False

    @field_validator("trust_remote_code", mode="before")
    @classmethod
    def _only_true_trusts(cls, value: object) -> object:
        """Running a repository's own code is the one switch not taken from ``yes``, ``on`` or
        ``1``, which the other yes/no settings accept: only ``true`` turns it on."""
        if not isinstance(value, bool):
            raise ValueError(
                f"expected true or false (only true runs a model repository's own code), found "
                f"{value!r}"
            )
        return value


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
    """Fine-tuning settings of one downstream task (configs/paper_mbert.yaml sets XTREME's
    mBERT rates, epochs, batches, lengths, warmup and weight decay)."""

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
    select_every: PositiveInt | None = Field(
        default=None,
        description="Score the pivot's dev set every N optimizer steps and after the last, and "
        "test the best of those models (XTREME's XNLI recipe: 100); null: the last step's.",
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


#: Each task's own defaults (XTREME's), which its fields' defaults lack (lr and epochs have
#: none, XQuAD's windows are longer): a task section written in part keeps the rest of these.
XNLI_DEFAULTS: dict[str, Any] = {"lr": 2e-5, "epochs": 5, "batch_size": 32, "max_length": 128}
XQUAD_DEFAULTS: dict[str, Any] = {"lr": 3e-5, "epochs": 3, "batch_size": 32, "max_length": 384}


def _over_defaults(defaults: dict[str, Any]) -> BeforeValidator:
    """A file's ``task.xnli: {select_every: 100}`` merged over the task's defaults, as ``--set
    task.xnli.select_every=100`` is (it was refused: lr and epochs missing)."""

    def merged(value: Any) -> Any:
        return {**defaults, **value} if isinstance(value, dict) else value

    return BeforeValidator(merged)


class TaskConfig(Section):
    """Stage 2: zero-shot transfer tasks trained on the pivot and evaluated on every language."""

    tasks: list[Literal["xnli", "xquad"]] = Field(default_factory=lambda: ["xnli", "xquad"])

    @field_validator("tasks")
    @classmethod
    def _each_task_once(cls, tasks: list[str]) -> list[str]:
        if len(set(tasks)) < len(tasks):
            raise ValueError(f"a task is named twice in {tasks} (it would be trained twice)")
        return tasks

    xnli: Annotated[TaskTrainConfig, _over_defaults(XNLI_DEFAULTS)] = Field(
        default_factory=lambda: TaskTrainConfig(**XNLI_DEFAULTS)
    )
    xquad: Annotated[QATrainConfig, _over_defaults(XQUAD_DEFAULTS)] = Field(
        default_factory=lambda: QATrainConfig(**XQUAD_DEFAULTS)
    )


#: The task stages, which name their metrics (``xnli/dev/acc/de``): what task.tasks may list.
TASK_NAMES: tuple[str, ...] = get_args(get_args(TaskConfig.model_fields["tasks"].annotation)[0])


class TrainConfig(Section):
    """Ray Train settings shared by both stages."""

    num_workers: PositiveInt = 1
    use_gpu: bool = False
    cpus_per_worker: PositiveFloat = 1.0
    seed: Seed = 0
    output_dir: NonBlank = "outputs"
    run_name: str | None = Field(
        default=None, description="Ray Train run name (default: derived from the config)."
    )
    storage_path: StorageFolder | None = Field(
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
