"""Checkpoint selection inside a task stage: keep the model that scores best on the pivot's dev
set, and test that one rather than the last step's.

This is XTREME's XNLI recipe (``run_classify.py --save_only_best_checkpoint``: English dev every
100 optimizer steps). Only the pivot's dev set is read, so the choice stays zero-shot: no target
language's data decides which model is tested.

Every worker scores its share of the dev set and all reach the same choice; only rank 0 keeps
the chosen weights in host memory (about 0.7 GB for mBERT) and hands them to the others at the
end. They go into the trial's mid-stage checkpoints, so a resumed stage still tests the best
model it saw before the interruption. The dev curve is written next to the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from ot_ray import distributed
from ot_ray.checkpoints import SELECTED_MODEL, CheckpointError


class BestOnDev:
    """The pivot's dev score after every ``every``-th optimizer step and after the last, and
    the weights of the first step that scored highest."""

    def __init__(
        self,
        *,
        task: str,
        metric: str,
        language: str,
        every: int,
        total_steps: int,
        score_of: Callable[[torch.nn.Module], float],
    ) -> None:
        self.task, self.metric, self.language = task, metric, language
        self.every, self.total_steps = every, total_steps
        self.score_of = score_of
        self.keeps_weights = distributed.rank() == 0
        self.scores: dict[int, float] = {}
        self.best_step: int | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def due(self, step: int) -> bool:
        """Whether the model after optimizer step ``step`` is scored. XTREME scores multiples
        of its interval only; the last model is a candidate here as well."""
        return step % self.every == 0 or step == self.total_steps

    def score_if_due(self, model: torch.nn.Module, step: int) -> bool:
        """Score the model after optimizer step ``step`` if that step is due; whether it was.
        Every worker calls this (scoring shards the dev set), and all reach the same choice."""
        if not self.due(step):
            return False
        self.offer(step, self.score_of(model), model)
        return True

    def offer(self, step: int, score: float, model: torch.nn.Module) -> None:
        """Record the score of the model after ``step``; keep its weights if it is the best so
        far (ties keep the earlier model, as XTREME's strict ``>`` does)."""
        self.scores[step] = score
        if self.best_step is not None and score <= self.scores[self.best_step]:
            return
        self.best_step = step
        if self.keeps_weights:
            self.weights = None  # the old copy goes first: one model's copy at a time
            # host copies that share no storage and are contiguous, as safetensors needs
            self.weights = {
                k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in model.state_dict().items()
            }

    def restore(self, model: torch.nn.Module) -> None:
        """Put the chosen weights into ``model`` on every worker (rank 0's, broadcast)."""
        # checked on every worker (each knows the scores): one that raised alone would leave
        # the others waiting in the broadcast
        if self.best_step is None:
            raise RuntimeError(f"{self.task}: no model was scored on dev, so none is chosen")
        if self.keeps_weights:
            assert self.weights is not None  # rank 0 keeps the model of every best score
            model.load_state_dict(self.weights)
        distributed.broadcast_parameters(model)

    # ---------------------------------------------------------------- files

    def summary(self) -> dict[str, object]:
        """What was scored and what was chosen, as written to ``selection/<task>.json``."""
        return {
            "task": self.task,
            "split": "dev",
            "language": self.language,
            "metric": self.metric,
            "every": self.every,
            "total_steps": self.total_steps,
            "chosen_step": self.best_step,
            "scores": {str(step): score for step, score in sorted(self.scores.items())},
        }

    def write(self, path: Path) -> None:
        """The summary as JSON: in the predictions folder, so checkpoints carry it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=1), encoding="utf-8")

    def plot(self, path: Path) -> Path:
        """The dev curve with the chosen step marked (logged to MLflow with the predictions)."""
        from ot_ray.plots import dev_curve  # matplotlib only where a figure is drawn

        steps = sorted(self.scores)
        return dev_curve(
            steps,
            [self.scores[step] for step in steps],
            self.best_step,
            path,
            title=f"{self.task}: {self.language} dev {self.metric} during training",
        )

    def resume(self, summary_path: Path, checkpoint: Path) -> None:
        """Pick up the scores, and on rank 0 the chosen weights, of an interrupted stage (the
        weights are saved by :func:`ot_ray.checkpoints.save_checkpoint`)."""
        if not summary_path.is_file():
            return  # interrupted before the first score
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        self.scores = {int(step): score for step, score in summary["scores"].items()}
        self.best_step = summary["chosen_step"]
        weights = checkpoint / SELECTED_MODEL
        if not weights.is_file():  # every worker has the checkpoint: all of them stop here
            raise CheckpointError(
                f"{checkpoint}: a checkpoint taken after a dev score lacks {SELECTED_MODEL} "
                "(damaged or copied in part); resume from a whole checkpoint, or start anew"
            )
        if self.keeps_weights:
            self.weights = load_file(str(weights))
