"""One trial, run by every worker: align the encoder, measure the alignment, train and evaluate
each task zero-shot, write the outputs.

:func:`run_trial` is plain library code: Ray Train calls it in each worker (through
:mod:`ot_ray.launch`) and tests call it in-process. Stages run in order, each ending in a
checkpoint, and long stages checkpoint every ``train.checkpoint_every`` steps, so a restarted
worker group resumes where it stopped instead of starting over.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import AutoModel, AutoTokenizer

from ot_ray import distributed
from ot_ray.align.batches import ParallelData
from ot_ray.align.links import degrade_links
from ot_ray.align.objective import AlignmentObjective
from ot_ray.align.quality import alignment_quality
from ot_ray.align.stage import align_encoder
from ot_ray.checkpoints import (
    ALIGNED,
    CheckpointError,
    TrialState,
    load_stage,
    read_state,
    rng_state,
    save_checkpoint,
)
from ot_ray.config import Config
from ot_ray.data.parallel import ParallelCorpus, packed
from ot_ray.data.sources import (
    data_root,
    model_path,
    read_nli,
    read_parallel,
    read_parallel_sources,
    read_qa,
)
from ot_ray.data.tokenized import tokenize_parallel
from ot_ray.errors import ConfigError
from ot_ray.fingerprint import changed_settings, result_settings
from ot_ray.folders import replace_folder
from ot_ray.precision import allow_tf32
from ot_ray.reporters import Reporter
from ot_ray.tasks.predictions import write_xnli_predictions, write_xquad_predictions
from ot_ray.tasks.stage import fine_tune
from ot_ray.tasks.xnli import evaluate_nli, nli_collate, nli_dataset
from ot_ray.tasks.xquad import evaluate_qa, qa_collate, qa_eval_dataset, qa_train_dataset
from ot_ray.training import StageState, batch_count, compiled

EVAL_SPLITS = ("dev", "test")
#: Stage-1 step values reported as their mean over the steps since the last report.
STAGE1_MEANS = ("align/loss", "align/ot/sweeps", "align/ot/marginal_error")


logger = logging.getLogger(__name__)

#: Held-out pairs per language whose transport plan is drawn after alignment.
PLANS_PICTURED = 2


def run_trial(config: Config, reporter: Reporter, *, show_progress: bool = True) -> dict:
    """Run (or resume) the whole trial on this worker; returns the final metrics."""
    return Trial(config, reporter, show_progress=show_progress).run()


def check_data(config: Config) -> None:
    """Read every input the trial will read, so bad data fails in the driver with its file and
    line before any worker starts (and before a Ray worker's traceback can bury the message)."""
    root, data = data_root(config), config.data
    pivot = data.pivot
    evaluated = data.all_eval_languages
    _check_alignment_data(config, root)
    for lang in evaluated[1:]:
        if data.parallel.dev.covers(lang):
            read_parallel(data.parallel.dev, root=root, lang=lang, pivot=pivot)
    for task in config.task.tasks:
        sources = getattr(data, task)
        if task == "xnli":
            train = read_nli(sources.train, root=root, lang=pivot, pivot=pivot, training=True)
            _check_one_task_step(config, task, len(train.head(config.task.xnli.max_train)))
        else:
            read_qa(sources.train, root=root, lang=pivot, pivot=pivot, training=True)
        for split in EVAL_SPLITS:
            spec = getattr(sources, split)
            for lang in (x for x in evaluated if spec.covers(x)):
                if task == "xnli":
                    read_nli(spec, root=root, lang=lang, pivot=pivot, training=False)
                else:
                    read_qa(spec, root=root, lang=lang, pivot=pivot)


def _check_alignment_data(config: Config, root: str) -> None:
    """Stage 1 (if this trial or the search runs it) has target languages whose training pairs
    each fill a batch, and enough batches for one optimizer step: the stage draws whole
    batches per language, and a language without one would silently never be aligned."""
    data, alignment = config.data, config.alignment
    searched = config.tune.search_space.get("alignment.method")
    sampled = searched is not None and set(searched.choices or []) - {"none"}
    if alignment.method == "none" and not alignment.joint_weight and not sampled:
        return
    if not data.languages:
        raise ConfigError(
            f"alignment.method {alignment.method} needs at least one target language to align",
            key="data.languages",
        )
    batch_size = _largest(config, "alignment.batch_size", alignment.batch_size)
    pack = _largest(config, "alignment.pack_sentences", alignment.pack_sentences)
    batches = 0
    for lang in data.languages:
        sources = data.parallel.train_sources(lang)
        if not sources:
            raise ConfigError(
                f"{lang} has no training pairs (data.parallel.train.languages or "
                "data.parallel.by_language leave it out), so it would never be aligned",
                key="data.languages",
            )
        corpus = read_parallel_sources(sources, root=root, lang=lang, pivot=data.pivot)
        rows = math.ceil((data.pairs_per_language or len(corpus)) / pack)
        if rows < batch_size:
            raise ConfigError(
                f"{batch_size} is more than the {rows} training rows of {lang} "
                f"({corpus.origin}), which would never be aligned",
                key="alignment.batch_size",
            )
        batches += batch_count(rows, batch_size, alignment.epochs)
    grad_accum = _largest(config, "alignment.grad_accum", alignment.grad_accum)
    if batches < grad_accum:
        raise ConfigError(
            f"{grad_accum} micro-batches per step, but stage 1 has only {batches}",
            key="alignment.grad_accum",
        )


def _check_one_task_step(config: Config, task: str, examples: int) -> None:
    """The task stage keeps whole batches only, so fewer examples than one optimizer step's
    would fail after the alignment stage has run; XNLI's count is known now (XQuAD's windows
    are known only once tokenised, so its stage says so itself)."""
    settings = getattr(config.task, task)
    batch_size = _largest(config, f"task.{task}.batch_size", settings.batch_size)
    grad_accum = _largest(config, f"task.{task}.grad_accum", settings.grad_accum)
    if batch_count(examples, batch_size, settings.epochs) < grad_accum:
        raise ConfigError(
            f"{examples} training examples make fewer than one optimizer step of "
            f"{grad_accum} batches of {batch_size}; use more data or a smaller batch",
            key=f"task.{task}.batch_size",
        )


def _largest(config: Config, key: str, value: float) -> int:
    """``value``, or the largest the search can sample for ``key`` (checks hold for all)."""
    spec = config.tune.search_space.get(key)
    if spec is None:
        return int(value)
    return int(max(spec.choices) if spec.choices is not None else spec.high)


def check_model(config: Config) -> None:
    """The encoder's config can be loaded (a misspelt id, or one not cached offline, fails here
    rather than in every worker) and ``alignment.layers`` are layers it has."""
    name = model_path(config)
    if _names_a_folder(name) and not Path(name).expanduser().exists():
        raise ConfigError(
            f"{name}: no such folder (a Hub id has the form org/name)", key="model.name_or_path"
        )
    try:
        model_config = transformers.AutoConfig.from_pretrained(
            name,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
        )
    except (OSError, ValueError) as err:
        message = " ".join(str(err).split())[:300]
        raise ConfigError(f"cannot load {name!r}: {message}", key="model.name_or_path") from None
    _check_weights_and_tokenizer(config, name, model_config)
    layers = getattr(model_config, "num_hidden_layers", None)
    if layers is None:
        return
    for layer in config.alignment.layers:
        if not -(layers + 1) <= layer <= layers:
            raise ConfigError(
                f"layer {layer} does not exist: {config.model.name_or_path!r} has the "
                f"embeddings (0) and {layers} "
                f"layers (1 to {layers}, or -1 to -{layers + 1} from the top)",
                key="alignment.layers",
            )


def _names_a_folder(name: str) -> bool:
    """A path, not a Hub id (``org/name``): transformers would report a missing folder as an
    invalid repo id."""
    return name.startswith(("/", "~", ".")) or name.count("/") > 1


#: The files a local model folder keeps its weights in (one of them, or its shard index).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _check_weights_and_tokenizer(config: Config, name: str, model_config) -> None:
    """A local folder has weights, and the tokenizer fits the embeddings: without its files
    transformers builds a near-empty tokenizer that reads every word as [UNK] and trains on."""
    folder = Path(name)
    if folder.is_dir() and not any(
        (folder / f).is_file() or (folder / f"{f}.index.json").is_file() for f in WEIGHT_FILES
    ):
        raise ConfigError(
            f"{name} has no weights ({' or '.join(WEIGHT_FILES)}, or a shard index)",
            key="model.name_or_path",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code
        )
    except (OSError, ValueError, TypeError) as err:
        message = " ".join(str(err).split())[:300]
        raise ConfigError(
            f"cannot load the tokenizer of {name!r}: {message}", key="model.name_or_path"
        ) from None
    if not tokenizer.is_fast:  # word ids and overflow rows come from the Rust tokenizers only
        raise ConfigError(
            f"the tokenizer of {name!r} is not a fast (tokenizers) one: ot-ray needs its word "
            "ids; save the model with a tokenizer.json, or convert it (AutoTokenizer "
            "from_pretrained(..., use_fast=True) then save_pretrained)",
            key="model.name_or_path",
        )
    vocab = getattr(model_config, "vocab_size", None)
    if vocab and not vocab // 2 <= len(tokenizer) <= vocab:
        raise ConfigError(
            f"the tokenizer of {name!r} has {len(tokenizer)} tokens for embeddings of {vocab}: "
            "its files are missing or belong to another model",
            key="model.name_or_path",
        )


def language_averages(scores: dict[str, float], *, pivot: str, seen: list[str]) -> dict[str, float]:
    """Averages named as in the paper: ``avg_seen`` = pivot + languages seen in alignment,
    ``avg_seen_targets`` = those without the pivot, ``avg_unseen``, ``avg_targets`` = every
    language but the pivot (the search objective's default), ``avg_all``."""
    groups = {
        "avg_seen": [lang for lang in scores if lang == pivot or lang in seen],
        "avg_seen_targets": [lang for lang in scores if lang in seen],
        "avg_unseen": [lang for lang in scores if lang != pivot and lang not in seen],
        "avg_targets": [lang for lang in scores if lang != pivot],
        "avg_all": list(scores),
    }
    return {
        name: statistics.fmean(scores[lang] for lang in langs)
        for name, langs in groups.items()
        if langs
    }


class Trial:
    """The stages of one trial and the state they share."""

    def __init__(self, config: Config, reporter: Reporter, *, show_progress: bool = True):
        self.config = config
        self.reporter = reporter
        self.show_progress = show_progress
        transformers.logging.set_verbosity_error()  # load reports list every unused MLM weight
        transformers.logging.disable_progress_bar()
        self.is_main = distributed.rank() == 0
        use_cuda = config.train.use_gpu and torch.cuda.is_available()
        index = torch.cuda.current_device() if use_cuda else None
        self.device = torch.device("cuda", index) if use_cuda else torch.device("cpu")
        if use_cuda:
            allow_tf32(config.train.tf32)
        self.out = Path(config.train.output_dir).expanduser()
        self.cache = Path(config.data.cache_dir).expanduser() if config.data.cache_dir else None
        self.cache = self.cache or self.out / "cache"
        self.root = data_root(config)
        self.base = model_path(config)
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.base,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
        )
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.work = Path(tempfile.mkdtemp(prefix="ot-ray-trial-"))
        self.predictions = self.work / "predictions"
        self.predictions.mkdir()
        self.restored: Path | None = None
        self._dev: ParallelData | None = None
        self._dev_corpora: dict[str, ParallelCorpus] = {}  # held-out pairs: texts, input lines
        self.counts: dict[str, float] = {}  # skipped and truncated inputs, logged as metrics

    # ---------------------------------------------------------------- orchestration

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            if self.restored is not None and self.restored.name.startswith("ot-ray-restore-"):
                shutil.rmtree(self.restored, ignore_errors=True)

    def _run(self) -> dict:
        # Each worker its own dropout stream; task heads are seeded alike and broadcast anyway.
        transformers.set_seed(self.config.train.seed + 1000 * distributed.rank())
        self.restored = self.reporter.latest_checkpoint()
        state = read_state(self.restored) if self.restored else TrialState()
        settings = result_settings(self.config)
        if self.restored and state.settings and state.settings != settings:
            raise CheckpointError(
                "the checkpoint to resume from was written by a trial of other settings ("
                + "; ".join(changed_settings(state.settings, settings))
                + f"; output folder {self.out}): resume with the settings it was written with, "
                "or start a new trial (no --resume, or another train.run_name)"
            )
        state.settings = settings
        if self.restored:  # a restarted worker group: counted, and said where it goes on
            state.metrics["restarts"] = state.metrics.get("restarts", 0.0) + 1
            if self.is_main and state.stage == "done":  # resubmitted after it finished
                logger.warning(
                    "ot-ray: this trial finished before: its outputs are written again from its "
                    "last checkpoint and nothing is retrained; to train it anew (data or code "
                    "changed since), set another train.run_name"
                )
            elif self.is_main:
                logger.warning(
                    "ot-ray: resuming stage %s at step %d from its checkpoint",
                    state.stage,
                    state.step,
                )
        if self.restored and (self.restored / "predictions").exists():
            shutil.copytree(self.restored / "predictions", self.predictions, dirs_exist_ok=True)
        encoder = self._encoder(state)
        if state.stage == "align":
            self._align(encoder, state)
        if state.stage == "quality":
            self._quality(encoder, state)
        for task in self.config.task.tasks:
            if state.stage == task:
                self._task(task, encoder, state)
        state.stage = "done"
        if self.is_main:
            self._write_outputs(encoder, state)
        distributed.barrier()
        return state.metrics

    def _next_stage(self, state: TrialState) -> str:
        order = ["align", "quality", *self.config.task.tasks, "done"]
        return order[order.index(state.stage) + 1]

    def _finish_stage(self, state: TrialState, encoder: torch.nn.Module) -> None:
        state.done.append(state.stage)
        state.stage, state.step = self._next_stage(state), 0
        self._checkpoint(state, encoder)

    def _checkpoint(self, state: TrialState, encoder: torch.nn.Module, **stage) -> None:
        """Report the metrics so far; rank 0 attaches a checkpoint of the trial state."""
        state.metrics.update(self.counts)
        rng = distributed.gather_objects(rng_state())  # every worker's, for an exact resume
        directory = None
        if self.is_main:
            directory = Path(tempfile.mkdtemp(prefix="ot-ray-ckpt-"))
            aligned = encoder if state.stage != "align" else None
            save_checkpoint(
                directory, state, aligned=aligned, tokenizer=self.tokenizer, rng=rng, **stage
            )
            shutil.copytree(self.predictions, directory / "predictions")
        metrics = {**state.metrics, **self._progress(state)}
        self.reporter.report(metrics, directory)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _progress(self, state: TrialState) -> dict[str, float | str]:
        """Where the trial is, in the terms Tune schedules on.

        ``milestone`` counts finished task stages, and ``objective`` is the mean of the
        configured dev metrics measured so far (NaN before the first task is evaluated), so
        every trial reports comparable values at the same milestones whatever its method.
        ``tune.metric`` is in every report too (NaN until measured): Tune fails a sweep whose
        result lacks the metric it searches on.
        """
        tasks = self.config.task.tasks
        finished = [stage for stage in state.done if stage in tasks]
        measured = [state.metrics[m] for m in self.config.tune.objective if m in state.metrics]
        steps = sum(state.metrics.get(f"{stage}/steps", 0.0) for stage in state.done)
        progress: dict[str, float | str] = {
            "stage": state.stage,
            "step": state.step,
            "global_step": int(steps) + (state.step if state.stage not in state.done else 0),
            "milestone": len(finished),
            "objective": statistics.fmean(measured) if measured else math.nan,
        }
        searched = self.config.tune.metric
        progress.setdefault(searched, state.metrics.get(searched, math.nan))
        return progress

    def _encoder(self, state: TrialState) -> torch.nn.Module:
        """The base encoder, or the aligned one from the checkpoint once stage 1 is done."""
        source = self.base
        if state.stage != "align" and self.restored is not None:
            source = str(self.restored / ALIGNED)
        encoder = AutoModel.from_pretrained(
            source,
            revision=None if source != self.base else self.config.model.revision,
            trust_remote_code=self.config.model.trust_remote_code,
        )
        return compiled(encoder.to(self.device), self.config.train.compile)

    # ---------------------------------------------------------------- stage 1

    def _parallel(self, split: str, languages: list[str]) -> ParallelData:
        """Tokenised parallel data of ``split`` (train or dev) for the languages that have it."""
        config = self.config
        parallel = config.data.parallel
        datasets, links = {}, {}
        specs = {
            lang: parallel.train_sources(lang)
            if split == "train"
            else ([parallel.dev] if parallel.dev.covers(lang) else [])
            for lang in languages
        }
        kept = [lang for lang in languages if specs[lang]]
        for k, lang in enumerate(kept):
            corpus = read_parallel_sources(
                specs[lang], root=self.root, lang=lang, pivot=config.data.pivot
            )
            if split == "train" and config.data.pairs_per_language:
                corpus = corpus.resized(config.data.pairs_per_language, config.train.seed + k)
            if split == "dev" and config.alignment.eval_pairs:
                corpus = corpus.head(config.alignment.eval_pairs)
            noise = config.alignment.link_noise
            if split == "train" and corpus.links is not None and (noise.drop or noise.move):
                corpus.links = degrade_links(
                    corpus.links,
                    [len(t.split()) for t in corpus.targets],
                    drop=noise.drop,
                    move=noise.move,
                    seed=config.train.seed + k,
                )
            if split == "train":
                corpus = packed(corpus, config.alignment.pack_sentences)
            datasets[lang] = tokenize_parallel(
                corpus, self.tokenizer, config.data.max_length, cache_dir=self.cache
            )
            links[lang] = corpus.links
            if split == "dev":
                self._dev_corpora[lang] = corpus
            prefix = f"data/parallel_{split}"
            self._count(f"{prefix}/skipped_empty/{lang}", corpus.skipped_empty)
            truncated = sum(datasets[lang]["src_truncated"]) + sum(datasets[lang]["tgt_truncated"])
            self._count(f"{prefix}/truncated/{lang}", truncated)
        return ParallelData(kept, datasets, links)

    def _count(self, name: str, value: float) -> None:
        self.counts[name] = float(value)

    def _align(self, encoder: torch.nn.Module, state: TrialState) -> None:
        config = self.config
        if config.alignment.method != "none":
            data = self._parallel("train", config.data.languages)
            reference = AutoModel.from_pretrained(
                self.base,
                revision=config.model.revision,
                trust_remote_code=config.model.trust_remote_code,
            ).to(self.device)
            objective = AlignmentObjective(config.alignment, reference)
            optimizer_state = None
            if self.restored is not None and state.step > 0:
                optimizer_state = load_stage(self.restored, encoder, distributed.rank())
            stage_state = StageState(step=state.step)
            windows: dict[str, list[float]] = {key: [] for key in STAGE1_MEANS}

            def after_step(progress: StageState, means: dict[str, float]) -> None:
                for key, window in windows.items():
                    if key in means:
                        window.append(means[key])
                every = config.train.checkpoint_every
                if every and progress.step % every == 0:
                    state.step = progress.step
                    _record_means(state.metrics, windows)
                    self._measure_alignment(encoder, state, write_links=False)
                    encoder.train()
                    self._checkpoint(
                        state,
                        encoder,
                        stage_model=encoder,
                        optimizer=progress.optimizer,
                        scheduler=progress.scheduler,
                    )

            optimizer, scheduler = align_encoder(
                encoder,
                objective,
                data,
                config.alignment,
                config.train,
                pad_id=self.pad_id,
                device=self.device,
                state=stage_state,
                optimizer_state=optimizer_state,
                after_step=after_step,
                show_progress=self.show_progress,
            )
            _record_means(state.metrics, windows)
            state.metrics["align/steps"] = float(stage_state.step)
            del reference, objective, optimizer, scheduler
        self._finish_stage(state, encoder)

    def _quality(self, encoder: torch.nn.Module, state: TrialState) -> None:
        self._measure_alignment(encoder, state, write_links=True)
        self._finish_stage(state, encoder)

    def _measure_alignment(
        self, encoder: torch.nn.Module, state: TrialState, *, write_links: bool
    ) -> None:
        """Retrieval accuracy and AER on the held-out pairs of every evaluated language."""
        config = self.config
        if self._dev is None:
            languages = [x for x in config.data.all_eval_languages if x != config.data.pivot]
            self._dev = self._parallel("dev", languages)
        retrieval, aer = {}, {}
        for lang in self._dev.languages:
            quality = alignment_quality(
                encoder,
                self._dev.datasets[lang],
                self._dev.links[lang],
                config.alignment,
                possible=self._dev_corpora[lang].possible,
                texts=(self._dev_corpora[lang].sources, self._dev_corpora[lang].targets),
                pad_id=self.pad_id,
                batch_size=config.train.eval_batch_size,
                device=self.device,
                keep_plans=PLANS_PICTURED if write_links else 0,
            )
            retrieval[lang] = quality.retrieval
            if quality.aer is not None:
                aer[lang] = quality.aer
            if write_links and self.is_main:
                path = self.predictions / "alignments" / f"dev-{lang}.pharaoh"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(quality.pharaoh(self._dev_corpora[lang].rows), encoding="utf-8")
                self._picture_plans(lang, quality.plans)
        self._record("align/retrieval_acc", retrieval, state)
        self._record("align/aer", aer, state)

    def _picture_plans(self, lang: str, plans: dict[int, torch.Tensor]) -> None:
        """Heat maps of the transport plans of a few held-out pairs (logged to MLflow)."""
        from ot_ray.plots import transport_heatmap

        corpus = self._dev_corpora[lang]
        for row, plan in sorted(plans.items()):
            rows, columns = plan.shape
            transport_heatmap(
                plan.numpy(),
                corpus.sources[row].split()[:rows],
                corpus.targets[row].split()[:columns],
                self.predictions / "plots" / f"transport-dev-{lang}-{row}.png",
                f"{lang}-{self.config.data.pivot} dev pair {row} ({self.config.alignment.method})",
            )

    def _record(self, prefix: str, scores: dict[str, float], state: TrialState) -> None:
        for lang, value in scores.items():
            state.metrics[f"{prefix}/{lang}"] = value
        averages = language_averages(
            scores, pivot=self.config.data.pivot, seen=self.config.data.languages
        )
        for name, value in averages.items():
            state.metrics[f"{prefix}/{name}"] = value

    # ---------------------------------------------------------------- stage 2

    def _task(self, task: str, encoder: torch.nn.Module, state: TrialState) -> None:
        config = self.config
        settings = getattr(config.task, task)
        spec = getattr(config.data, task)
        pivot = config.data.pivot
        if task == "xnli":
            data = read_nli(spec.train, root=self.root, lang=pivot, pivot=pivot, training=True)
            self._count("data/xnli_train/skipped_empty", data.skipped_empty)
            data = data.head(settings.max_train)
            train = nli_dataset(data, self.tokenizer, settings.max_length, self.cache)
            self._count("data/xnli_train/truncated", sum(train["truncated"]))
            collate = nli_collate(self.tokenizer)
            model_class = transformers.AutoModelForSequenceClassification
            extra = {"num_labels": 3}
        else:
            examples = read_qa(spec.train, root=self.root, lang=pivot, pivot=pivot, training=True)
            self._count("data/xquad_train/skipped_empty", examples.skipped_empty)
            examples = examples[: settings.max_train]
            train = qa_train_dataset(examples, self.tokenizer, settings, self.cache)
            self._count("data/xquad_train/question_truncated", sum(train["question_truncated"]))
            collate = qa_collate
            model_class = transformers.AutoModelForQuestionAnswering
            extra = {}
        torch.manual_seed(config.train.seed)  # the same head on every worker
        model = model_class.from_pretrained(
            self.base,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
            **extra,
        )
        _load_encoder_weights(model, encoder)
        model.to(self.device)
        distributed.broadcast_parameters(model)
        if distributed.rank() > 0:  # each worker its own dropout stream again, as in _run
            torch.manual_seed(config.train.seed + 1000 * distributed.rank())
        compiled(model, config.train.compile)
        optimizer_state = None
        if self.restored is not None and state.stage == task and state.step > 0:
            optimizer_state = load_stage(self.restored, model, distributed.rank())

        progress = StageState(step=state.step)

        last_means: dict[str, float] = {}

        def after_step(progress: StageState, means: dict[str, float]) -> None:
            last_means.update(means)
            every = config.train.checkpoint_every
            if every and progress.step % every == 0:
                state.step = progress.step
                state.metrics[f"{task}/train_loss"] = means[f"{task}/loss"]
                # kept with the checkpoint: a resume at the stage's last step runs no step that
                # would give them again
                state.metrics.update(_joint_terms(task, means))
                self._checkpoint(
                    state,
                    encoder,
                    stage_model=model,
                    optimizer=progress.optimizer,
                    scheduler=progress.scheduler,
                )

        fine_tune(
            model,
            train,
            collate,
            settings,
            name=task,
            seed=config.train.seed,
            device=self.device,
            bf16=config.train.bf16,
            max_grad_norm=config.train.max_grad_norm,
            state=progress,
            optimizer_state=optimizer_state,
            after_step=after_step,
            extra_loss=self._joint_loss(),
            show_progress=self.show_progress,
        )
        state.metrics[f"{task}/steps"] = float(progress.step)
        state.metrics.update(_joint_terms(task, last_means))  # at the last step run here
        self._evaluate_task(task, model, state)
        self._finish_stage(state, encoder)

    def _joint_loss(self):
        """The joint variant: weight x alignment loss on the next parallel batch.

        No anchor here: holding the pivot's states where stage 1 left them also stops the task
        from adapting the encoder (measured: pivot XNLI 49.6 instead of 89.5 on the demo world).
        With ``joint_detach_pivot`` the pivot's current states are the fixed target, so the loss
        moves the other languages after the pivot as the task changes it."""
        weight = self.config.alignment.joint_weight
        if not weight or self.config.alignment.method == "none":
            return None
        data = self._parallel("train", self.config.data.languages)
        objective = AlignmentObjective(
            self.config.alignment,
            reference=None,
            detach_pivot=self.config.alignment.joint_detach_pivot,
        )
        # One epoch of parallel batches, cycled; the task's micro-batch index picks the batch, so
        # every worker draws the same one and a resumed stage continues the same sequence.
        plan = data.plan(self.config.alignment.batch_size, 1.0, self.config.train.seed)

        def extra(model: torch.nn.Module, micro: int) -> tuple[torch.Tensor, dict, float]:
            pairs = plan[micro % len(plan)]
            rows = distributed.shard(pairs)
            if not rows:
                return torch.zeros((), device=self.device), {}, 0.0
            batch = data.batch(rows, self.pad_id).to(self.device)
            loss, parts = objective(model.base_model, batch)
            share = len(rows) / len(pairs)
            return weight * loss, {"joint/" + k: v for k, v in parts.items()}, share

        return extra

    def _evaluate_task(self, task: str, model: torch.nn.Module, state: TrialState) -> None:
        config = self.config
        spec = getattr(config.data, task)
        settings = getattr(config.task, task)
        options = {
            "batch_size": config.train.eval_batch_size,
            "device": self.device,
            "bf16": config.train.bf16,
        }
        for split in EVAL_SPLITS:
            source = getattr(spec, split)
            scores: dict[str, dict[str, float]] = {}
            for lang in config.data.all_eval_languages:
                if not source.covers(lang):
                    continue
                where = {"root": self.root, "lang": lang, "pivot": config.data.pivot}
                if task == "xnli":
                    data = read_nli(source, training=False, **where).head(settings.max_eval)
                    encoded = nli_dataset(data, self.tokenizer, settings.max_length, self.cache)
                    self._count(f"data/xnli_{split}/truncated/{lang}", sum(encoded["truncated"]))
                    accuracy, labels = evaluate_nli(model, encoded, self.tokenizer, **options)
                    scores.setdefault("acc", {})[lang] = accuracy
                    if split == "test" and self.is_main:
                        write_xnli_predictions(
                            self.predictions / "xnli" / f"test-{lang}.tsv", labels
                        )
                else:
                    examples = read_qa(source, **where)[: settings.max_eval]
                    windows = qa_eval_dataset(examples, self.tokenizer, settings, self.cache)
                    flags = zip(windows["example_id"], windows["question_truncated"], strict=True)
                    self._count(  # questions, not windows: one question spans several
                        f"data/xquad_{split}/question_truncated/{lang}",
                        len({question for question, cut in flags if cut}),
                    )
                    result, answers = evaluate_qa(model, examples, windows, settings, **options)
                    scores.setdefault("f1", {})[lang] = result["f1"]
                    scores.setdefault("em", {})[lang] = result["em"]
                    if split == "test" and self.is_main:
                        write_xquad_predictions(
                            self.predictions / "xquad" / f"test-{lang}.json", answers
                        )
            for metric, values in scores.items():
                self._record(f"{task}/{split}/{metric}", values, state)

    # ---------------------------------------------------------------- outputs

    def _write_outputs(self, encoder: torch.nn.Module, state: TrialState) -> None:
        """``metrics.json``, XTREME predictions, the aligned encoder and its tokenizer."""
        self.out.mkdir(parents=True, exist_ok=True)
        # each output replaces the old one whole: a kill mid-write leaves the earlier one
        staged = self.work / ALIGNED
        encoder.save_pretrained(staged, safe_serialization=True)
        self.tokenizer.save_pretrained(staged)
        replace_folder(staged, self.out / ALIGNED)
        replace_folder(self.predictions, self.out / "predictions")
        partial = self.out / ".metrics.json.partial"
        partial.write_text(
            json.dumps(dict(sorted(state.metrics.items())), indent=1), encoding="utf-8"
        )
        os.replace(partial, self.out / "metrics.json")


def _record_means(metrics: dict, windows: dict[str, list[float]]) -> None:
    """Each window's mean into ``metrics`` (windows with no values are left out), then empty."""
    for key, window in windows.items():
        if window:
            metrics[key] = statistics.fmean(window)
            window.clear()


def _load_encoder_weights(model: torch.nn.Module, encoder: torch.nn.Module) -> None:
    """Put the aligned encoder into a task model (whose base may lack the pooler)."""
    result = model.base_model.load_state_dict(encoder.state_dict(), strict=False)
    if result.missing_keys:
        raise RuntimeError(f"the aligned encoder lacks weights the task model needs: {result}")


def _joint_terms(task: str, means: dict[str, float]) -> dict[str, float]:
    """The joint variant's loss terms of a task step, named ``{task}/joint/...``."""
    return {f"{task}/{key}": value for key, value in means.items() if key.startswith("joint/")}
