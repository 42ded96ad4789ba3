"""One trial, run by every worker: align the encoder, measure the alignment, train and evaluate
each task zero-shot, write the outputs.

:func:`run_trial` is plain library code: Ray Train calls it in each worker (through
:mod:`ot_ray.launch`) and tests call it in-process. Stages run in order, each ending in a
checkpoint, and long stages checkpoint every ``train.checkpoint_every`` steps, so a restarted
worker group resumes where it stopped instead of starting over.

This module keeps the trial's life cycle: resuming, the order of stages and the outputs. The
stages are in :mod:`ot_ray.trial_align` and :mod:`ot_ray.trial_tasks`, the state and
bookkeeping they share in :mod:`ot_ray.trial_base`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import torch
import transformers
from transformers import AutoModel

from ot_ray import distributed
from ot_ray.checkpoints import (
    ALIGNED,
    CheckpointError,
    TrialState,
    read_state,
)
from ot_ray.config import Config
from ot_ray.fingerprint import changed_settings, result_settings
from ot_ray.folders import replace_folder
from ot_ray.reporters import Reporter
from ot_ray.training import compiled
from ot_ray.trial_align import AlignStages
from ot_ray.trial_tasks import TaskStages

logger = logging.getLogger(__name__)


def run_trial(config: Config, reporter: Reporter, *, show_progress: bool = True) -> dict:
    """Run (or resume) the whole trial on this worker; returns the final metrics."""
    return Trial(config, reporter, show_progress=show_progress).run()


class Trial(AlignStages, TaskStages):
    """One trial on one worker: its stages in order, resumed from the latest checkpoint."""

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

    def _encoder(self, state: TrialState) -> torch.nn.Module:
        """The base encoder, or the aligned one from the checkpoint once stage 1 is done."""
        source = self.base
        if state.stage != "align" and self.restored is not None:
            source = str(self.restored / ALIGNED)
        encoder = AutoModel.from_pretrained(
            source,
            revision=None if source != self.base else self.config.model.revision,
            trust_remote_code=self.config.model.trust_remote_code,
        ).float()
        # float32 weights whatever the checkpoint holds: transformers 5 loads a model in the dtype
        # it was saved in, and AdamW's small updates to bf16 weights mostly round away (bf16 is
        # for autocast only, train.bf16)
        return compiled(encoder.to(self.device), self.config.train.compile)

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
