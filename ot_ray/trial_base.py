"""The state a trial's stages share, and its bookkeeping: set up once per worker (device,
tokenizer, output and cache folders), the parallel data both stages read (stage 1, and the
joint variant in task training), and the reports and checkpoints that end each stage.

:class:`ot_ray.trial_align.AlignStages` and :class:`ot_ray.trial_tasks.TaskStages` build on it,
and :class:`ot_ray.trial.Trial` runs them in order.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers

from ot_ray import distributed
from ot_ray.align.batches import ParallelData
from ot_ray.align.links import degrade_links
from ot_ray.checkpoints import CheckpointError, TrialState, rng_state, save_checkpoint
from ot_ray.config import Config
from ot_ray.data.moses import check_word_segmenters, moses_tokenized
from ot_ray.data.overlap import HeldOut
from ot_ray.data.parallel import ParallelCorpus, packed
from ot_ray.data.sources import data_root, load_tokenizer, model_path, read_parallel_sources
from ot_ray.data.tokenized import pairs_with_words, tokenize_parallel
from ot_ray.errors import DataError, UserError
from ot_ray.fingerprint import rows_digest
from ot_ray.metrics import language_averages
from ot_ray.precision import allow_tf32
from ot_ray.reporters import Reporter
from ot_ray.scratch import remove_leftovers, scratch_folder


class TrialBase:
    """One worker's view of a trial: its settings, folders, tokenizer and counters."""

    def __init__(self, config: Config, reporter: Reporter, *, show_progress: bool = True):
        self.config = config
        self.reporter = reporter
        self.show_progress = show_progress
        transformers.logging.set_verbosity_error()  # load reports list every unused MLM weight
        transformers.logging.disable_progress_bar()
        self.is_main = distributed.rank() == 0
        use_cuda = config.train.use_gpu
        if use_cuda and not torch.cuda.is_available():  # not hours on the CPU, a GPU held idle
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
            raise UserError(
                f"train.use_gpu is set and this worker sees no usable GPU (torch "
                f"{torch.__version__}, {built}): install torch's CUDA build, check the driver "
                "and CUDA_VISIBLE_DEVICES, or set train.use_gpu=false"
            )
        index = torch.cuda.current_device() if use_cuda else None
        self.device = torch.device("cuda", index) if use_cuda else torch.device("cpu")
        if use_cuda:
            allow_tf32(config.train.tf32)
        self.out = Path(config.train.output_dir).expanduser()
        self.cache = Path(config.data.cache_dir).expanduser() if config.data.cache_dir else None
        self.cache = self.cache or self.out / "cache"
        self.root = data_root(config)
        self.base = model_path(config)
        self.tokenizer = load_tokenizer(self.base, config)
        self.pad_id = self.tokenizer.pad_token_id or 0
        remove_leftovers()  # of workers Ray killed before they could
        self.work = scratch_folder("trial")
        self.predictions = self.work / "predictions"
        self.predictions.mkdir()
        self.restored: Path | None = None
        self._dev: ParallelData | None = None
        self._dev_corpora: dict[str, ParallelCorpus] = {}  # held-out pairs: texts, input lines
        self._held_out: dict[str, ParallelCorpus] = {}  # as read, before Moses
        # a task's dev and test examples as read, by (task, split, language): read once, for
        # the training data's filter and for the evaluation
        self._eval_sets: dict[tuple[str, str, str], HeldOut] = {}
        self.counts: dict[str, float] = {}  # skipped and truncated inputs, logged as metrics

    # ---------------------------------------------------------------- data

    def _held_out_pairs(self, lang: str) -> ParallelCorpus:
        """The held-out pairs of ``lang`` as read (before Moses), the ones alignment quality is
        measured on; read once, for the training data's filter and for the measurement."""
        if lang not in self._held_out:
            config = self.config
            corpus = read_parallel_sources(
                [config.data.parallel.dev], root=self.root, lang=lang, pivot=config.data.pivot
            )
            eval_pairs = config.alignment.eval_pairs
            self._held_out[lang] = corpus.head(eval_pairs) if eval_pairs else corpus
        return self._held_out[lang]

    def _held_out_sentences(self, lang: str) -> tuple[list[str], list[str]]:
        """What ``lang``'s training pairs must not repeat: its own held-out pairs' sentences,
        and the pivot sentences of every language's. Multi-parallel corpora (Europarl, the UN's)
        translate one English sentence into each language: held out for de, it would otherwise
        be trained on through fr, and de's retrieval and AER measured on it."""
        parallel = self.config.data.parallel
        evaluated = self.config.data.all_eval_languages[1:]
        measured = [code for code in evaluated if parallel.dev.covers(code)]
        own = self._held_out_pairs(lang).sources if lang in measured else []
        return own, [s for code in measured for s in self._held_out_pairs(code).targets]

    def _parallel(self, split: str, languages: list[str]) -> ParallelData:
        """Tokenised parallel data of ``split`` (train or dev) for the languages that have it."""
        config = self.config
        parallel = config.data.parallel
        datasets, links, texts = {}, {}, {}
        specs = {
            lang: parallel.train_sources(lang)
            if split == "train"
            else ([parallel.dev] if parallel.dev.covers(lang) else [])
            for lang in languages
        }
        kept = [lang for lang in languages if specs[lang]]
        if parallel.pretokenize == "moses":  # a missing segmenter said before any text is read
            check_word_segmenters([config.data.pivot, *kept])
        for k, lang in enumerate(kept):
            if split == "dev":
                corpus = self._held_out_pairs(lang)
            else:
                corpus = read_parallel_sources(
                    specs[lang], root=self.root, lang=lang, pivot=config.data.pivot
                )
            copies = 0  # training pairs that repeat a held-out sentence
            if split == "train":
                corpus, copies = corpus.without_sentences_of(*self._held_out_sentences(lang))
                self._count(f"data/parallel_train/held_out_sentences/{lang}", copies)
                if copies and not len(corpus):
                    raise DataError(
                        f"every one of the {copies} training pairs of {lang} repeats a sentence "
                        "of the held-out pairs (data.parallel.dev): are train and dev the same "
                        "file or slice?",
                        path=corpus.origin,
                    )
            if split == "train" and config.data.pairs_per_language:
                corpus = corpus.resized(config.data.pairs_per_language, config.train.seed + k)
            if parallel.pretokenize == "moses":
                corpus = moses_tokenized(
                    corpus, lang=lang, pivot=config.data.pivot, cache_dir=self.cache
                )
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
            texts[lang] = corpus
            datasets[lang] = tokenize_parallel(
                corpus, self.tokenizer, config.data.max_length, cache_dir=self.cache
            )
            links[lang] = corpus.links
            prefix = f"data/parallel_{split}"
            if split == "train":
                kept_pairs = pairs_with_words(datasets[lang], links[lang])
                datasets[lang], links[lang], wordless = kept_pairs
                self._count(f"{prefix}/no_words/{lang}", wordless)
                if not len(datasets[lang]):
                    raise DataError(
                        f"none of the {wordless} training pairs of {lang} keeps a word on both "
                        "sides once tokenised (zero-width characters only, control characters "
                        "only, which Moses removes, or a first word longer than data.max_length "
                        "allows)",
                        path=corpus.origin,
                    )
                self._check_fills_a_batch(lang, len(datasets[lang]), copies, wordless, corpus)
            if split == "dev":
                self._dev_corpora[lang] = corpus
            self._count(f"{prefix}/skipped_empty/{lang}", corpus.skipped_empty)
            truncated = sum(datasets[lang]["src_truncated"]) + sum(datasets[lang]["tgt_truncated"])
            self._count(f"{prefix}/truncated/{lang}", truncated)
        digest = rows_digest(_pairs(texts)) if split == "train" else ""  # what stages train on
        return ParallelData(kept, datasets, links, digest=digest)

    def _check_fills_a_batch(
        self, lang: str, kept: int, copies: int, wordless: int, corpus: ParallelCorpus
    ) -> None:
        """Stage 1 draws whole batches of one language pair: a language the filters left with
        fewer pairs than a batch would silently never be aligned (the driver's check counted
        the pairs before the filters)."""
        size = self.config.alignment.batch_size
        if kept < size:
            raise DataError(
                f"{lang} keeps {kept} training pairs, fewer than one batch (alignment.batch_size "
                f"{size}), so stage 1 would never align it ({copies} left out for repeating a "
                f"held-out sentence, {wordless} for having no word on a side); give it more "
                "pairs, or leave it out of data.languages",
                path=corpus.origin,
            )

    # ---------------------------------------------------------------- stages and reports

    def _check_same_data(self, state: TrialState, name: str, digest: str) -> None:
        """Keep the digest of what the stage in progress trains on (``name``: ``align``,
        ``xnli``, ``xnli/joint``...), the same on every worker; a stage resumed mid-way must
        find the same examples."""
        check_workers_agree(name, digest)
        kept = state.data.get(name)
        if state.step > 0 and kept is not None and kept != digest:
            raise CheckpointError(
                f"the {name} training data is not what this stage trained on up to its "
                f"checkpoint (step {state.step}, output folder {self.out}): its files changed "
                "since, or this version of ot-ray reads or filters them otherwise. Resume with "
                "the data the checkpoint was written with, or train anew (another "
                "train.run_name)"
            )
        state.data[name] = digest

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
        directory = scratch_folder("ckpt") if self.is_main else None
        try:
            if directory is not None:
                aligned = encoder if state.stage != "align" else None
                save_checkpoint(
                    directory, state, aligned=aligned, tokenizer=self.tokenizer, rng=rng, **stage
                )
                shutil.copytree(self.predictions, directory / "predictions")
            metrics = {**state.metrics, **self._progress(state)}
            self.reporter.report(metrics, directory)
        finally:  # a failed save or upload must not leave a model-sized folder behind
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

    # ---------------------------------------------------------------- bookkeeping

    def _count(self, name: str, value: float) -> None:
        self.counts[name] = float(value)

    def _record(self, prefix: str, scores: dict[str, float], state: TrialState) -> None:
        for lang, value in scores.items():
            state.metrics[f"{prefix}/{lang}"] = value
        averages = language_averages(
            scores, pivot=self.config.data.pivot, seen=self.config.data.seen
        )
        for name, value in averages.items():
            state.metrics[f"{prefix}/{name}"] = value


def check_workers_agree(name: str, digest: str) -> None:
    """Refuse training data that differs between workers: each reads its own node's copy (a
    folder not shared, a Hub cache of another snapshot), and workers drawing batches from
    different data either train on mismatched examples or, with another number of steps,
    wait in a collective the others never join until the timeout. Every worker raises."""
    found = distributed.gather_objects(digest)
    if len(set(found)) > 1:
        ranks = ", ".join(f"rank {rank}: {value}" for rank, value in enumerate(found))
        raise UserError(
            f"the workers read different {name} training data (digests {ranks}): each node "
            "reads its own copy of the data sources; put local files on a folder every node "
            "mounts, or pin each Hub source's revision"
        )


def _pairs(corpora: dict[str, ParallelCorpus]) -> Iterator[list]:
    """Each language's pairs as tokenised, with their links (sorted), for :func:`rows_digest`."""
    for lang, corpus in corpora.items():
        links = corpus.links if corpus.links is not None else [None] * len(corpus)
        for source, target, pair_links in zip(corpus.sources, corpus.targets, links, strict=True):
            yield [lang, source, target, sorted(pair_links) if pair_links is not None else None]
