"""Where a trial sends its metrics and checkpoints: Ray Train, or plain files when run in-process.

The trial code only sees :class:`Reporter`, so the same per-worker function runs inside a Ray
Train worker (``ray.train.report`` / ``ray.train.get_checkpoint``) and in a test or notebook.
Every worker calls :meth:`Reporter.report`; only rank 0 passes a checkpoint directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from ot_ray.errors import UserError
from ot_ray.folders import recover_folder, replace_folder
from ot_ray.scratch import scratch_folder


class Reporter(Protocol):
    def report(self, metrics: dict[str, float], checkpoint: Path | None) -> None: ...

    def latest_checkpoint(self) -> Path | None: ...


def require_checkpoint(directory: Path) -> None:
    """A local run's checkpoint to resume from is there: starting over instead would silently
    redo, and overwrite, what the user asked to keep."""
    recover_folder(directory / "checkpoint")
    if not (directory / "checkpoint" / "state.json").is_file():
        raise UserError(
            f"--resume: no checkpoint to go on from at {directory / 'checkpoint'}; run without "
            "--resume to start the trial (or point train.output_dir at the run)"
        )


class LocalReporter:
    """Appends metrics to ``progress.jsonl`` and keeps the latest checkpoint in ``checkpoint/``."""

    def __init__(self, directory: Path, *, resume: bool = False) -> None:
        """``resume``: go on from ``directory/checkpoint``, which must be there."""
        self.directory = directory
        self.resume = resume
        if resume:
            require_checkpoint(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if not resume:  # a run that starts over logs only its own progress
            (directory / "progress.jsonl").unlink(missing_ok=True)

    def report(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        with (self.directory / "progress.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(metrics) + "\n")
        if checkpoint is not None:
            replace_folder(checkpoint, self.directory / "checkpoint")

    def latest_checkpoint(self) -> Path | None:
        target = self.directory / "checkpoint"
        return target if self.resume and (target / "state.json").exists() else None


class RayReporter:
    """Reports through Ray Train (V2): metrics to the controller, checkpoints to storage."""

    def report(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        import ray.train

        saved = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        ray.train.report(metrics, checkpoint=saved)

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        local = scratch_folder("restore")
        checkpoint.to_directory(str(local))
        return local
