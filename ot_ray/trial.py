"""One trial, run by every worker: align the encoder, measure the alignment, train and evaluate
each task zero-shot, write the outputs.

:func:`run_trial` is plain library code: Ray Train calls it in each worker (through
:mod:`ot_ray.launch`) and tests call it in-process. Stages run in order, each ending in a
checkpoint, and long stages checkpoint every ``train.checkpoint_every`` steps, so a restarted
worker group resumes where it stopped instead of starting over.

This module keeps the trial's life cycle: resuming, the order of stages, checkpoints, progress
reports and the outputs. The stages are in :mod:`ot_ray.trial_align` and :mod:`ot_ray.trial_tasks`.
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
from ot_ray.checkpoints import (
    ALIGNED,
    CheckpointError,
    TrialState,
    read_state,
    rng_state,
    save_checkpoint,
)
from ot_ray.config import Config
from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.sources import data_root, model_path
from ot_ray.fingerprint import changed_settings, result_settings
from ot_ray.folders import replace_folder
from ot_ray.metrics import language_averages
from ot_ray.precision import allow_tf32
from ot_ray.reporters import Reporter
from ot_ray.training import compiled
from ot_ray.trial_align import AlignStages
from ot_ray.trial_tasks import TaskStages

logger = logging.getLogger(__name__)


def run_trial(config: Config, reporter: Reporter, *, show_progress: bool = True) -> dict:
    """Run (or resume) the whole trial on this worker; returns the final metrics."""
    return Trial(config, reporter, show_progress=show_progress).run()


class Trial(AlignStages, TaskStages):
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

    # ---------------------------------------------------------------- bookkeeping

    def _count(self, name: str, value: float) -> None:
        self.counts[name] = float(value)

    def _record(self, prefix: str, scores: dict[str, float], state: TrialState) -> None:
        for lang, value in scores.items():
            state.metrics[f"{prefix}/{lang}"] = value
        averages = language_averages(
            scores, pivot=self.config.data.pivot, seen=self.config.data.languages
        )
        for name, value in averages.items():
            state.metrics[f"{prefix}/{name}"] = value

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
