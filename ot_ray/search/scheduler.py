"""Early stopping: ASHA on the dev objective at task milestones, never stopping reference points.

A sweep's reference points (the ``none`` baseline, the paper's setting) must finish, or the
summary has nothing to compare the best trial with; they still enter ASHA's rungs, so they
set the bar that other trials are cut against.

Every cut is written down (``PRUNED_LOG`` in the sweep directory): a trial that stopped early
without one was interrupted (Ctrl-C, a stopped job), not pruned, and ``--resume`` continues it.
The rungs (each trial's objective at each milestone) are kept there too (``RUNGS_FILE``): Tune
saves the searcher's state but not the scheduler's, so a resumed sweep would otherwise cut its
next trials against an empty rung, with the baseline's bar forgotten. Both files are found
through Tune's controller, not a path stored in the scheduler: ``Tuner.restore`` brings back the
scheduler pickled when the sweep was made, and a sweep folder moved since would otherwise be
written and read at its old place.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ot_ray.config import Config
from ot_ray.search.space import REFERENCE_KEY

logger = logging.getLogger(__name__)

#: The reported counter ASHA's rungs are placed on (finished task stages).
TIME_ATTR = "milestone"
#: One line per trial the scheduler cut, in the sweep directory; it survives ``--resume``.
PRUNED_LOG = "pruned_trials.txt"
#: ASHA's rungs, rewritten after every result, read back by a resumed sweep's scheduler.
RUNGS_FILE = "asha_rungs.json"


class ReferenceKeepingASHA(AsyncHyperBandScheduler):
    """ASHA that records every trial in its rungs but lets reference points run to the end,
    and writes each trial it cuts (with the milestone it was cut at) and its rungs to the sweep
    folder Tune runs in."""

    # class defaults also serve schedulers pickled before these existed (--resume)
    _rungs_read = False
    _folder: Path | None = None

    @property
    def pruned_log(self) -> Path | None:
        return self._folder / PRUNED_LOG if self._folder else None

    @property
    def rungs_file(self) -> Path | None:
        return self._folder / RUNGS_FILE if self._folder else None

    def _locate(self, tune_controller) -> None:
        """The sweep folder as Tune runs it now (a restored sweep's may have moved). Tune hands
        some callbacks a wrapper that warns on every attribute it passes on: the controller
        it wraps is read directly."""
        controller = getattr(tune_controller, "_tune_controller", tune_controller)
        folder = getattr(controller, "experiment_path", None)
        if folder:  # the sweep folder is local: sweep_dir() resolves tune.storage_path
            self._folder = Path(folder)

    def on_trial_add(self, tune_controller, trial) -> None:
        self._locate(tune_controller)
        self._read_rungs()
        super().on_trial_add(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._locate(tune_controller)
        self._read_rungs()
        super().on_trial_complete(tune_controller, trial, result)
        self._write_rungs()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self._locate(tune_controller)
        self._read_rungs()
        action = self._decide(tune_controller, trial, result)
        self._write_rungs()
        return action

    def _decide(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.STOP:
            return action
        # A reference point runs to the end; a trial at its last milestone has nothing left
        # to save, and stopping it would cut off the logging of its outputs.
        if trial.config.get(REFERENCE_KEY) or result.get(self._time_attr, 0) >= self._max_t:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        if self.pruned_log is not None:
            try:
                with open(self.pruned_log, "a", encoding="utf-8") as log:
                    log.write(f"{trial.trial_id} {result.get(self._time_attr, 0)}\n")
            except OSError as error:  # the cut stands; only its label is at stake
                logger.warning("could not record pruned trial %s: %s", trial.trial_id, error)
        return action

    def _read_rungs(self) -> None:
        """Once, before the first decision: the rungs an earlier run of this sweep recorded."""
        if self._rungs_read or self.rungs_file is None:
            return
        self._rungs_read = True
        if not self.rungs_file.exists():
            return
        try:
            with open(self.rungs_file, encoding="utf-8") as file:
                saved = json.load(file)
            rungs = [[(float(m), dict(rec)) for m, rec in bracket] for bracket in saved["rungs"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "ASHA starts with empty rungs: cannot read %s: %s", self.rungs_file, error
            )
            return
        if [[m for m, _ in b] for b in rungs] != [[m for m, _ in b._rungs] for b in self._brackets]:
            logger.warning("ASHA starts with empty rungs: %s has other milestones", self.rungs_file)
            return
        for bracket, saved_rungs in zip(self._brackets, rungs, strict=True):
            for (_, recorded), (_, saved_recorded) in zip(bracket._rungs, saved_rungs, strict=True):
                recorded.update(saved_recorded)
        self._num_stopped = int(saved.get("num_stopped", 0))

    def _write_rungs(self) -> None:
        """The rungs as they are now, replaced whole (a killed driver leaves the old file)."""
        if self.rungs_file is None:
            return
        partial = self.rungs_file.with_name(f"{RUNGS_FILE}.partial")
        try:
            rungs = [
                [[m, {t: float(v) for t, v in recorded.items()}] for m, recorded in b._rungs]
                for b in self._brackets
            ]
            with open(partial, "w", encoding="utf-8") as file:
                json.dump({"rungs": rungs, "num_stopped": self._num_stopped}, file)
            os.replace(partial, self.rungs_file)
        except (OSError, TypeError, ValueError) as error:  # the decisions stand: only a
            # resume's bar is at stake
            logger.warning("could not record ASHA's rungs in %s: %s", self.rungs_file, error)


def pruned_trials(sweep_dir: Path) -> dict[str, int]:
    """The trials the scheduler cut in this sweep (resumed runs included) and the milestone
    each was cut at. A trial counts as pruned only if it stopped at that milestone: one whose
    cut was written just before the driver was killed goes on after ``--resume``."""
    log = sweep_dir / PRUNED_LOG
    if not log.exists():
        return {}
    cuts: dict[str, int] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        trial_id, _, milestone = line.strip().partition(" ")
        if trial_id and milestone.isdigit():
            cuts[trial_id] = int(milestone)
    return cuts


def make_scheduler(config: Config, sweep_dir: Path) -> TrialScheduler:
    """The scheduler named in ``tune.scheduler``; its horizon is the number of task stages.
    Its cuts are written to ``PRUNED_LOG`` in the sweep folder, its rungs to ``RUNGS_FILE``."""
    settings = config.tune.scheduler
    if settings.name == "fifo":
        return FIFOScheduler()
    milestones = len(config.task.tasks)
    if settings.grace_period >= milestones:  # its first rung at or past the last milestone
        logger.warning(
            "ASHA cuts trials only at a task milestone before the last one, and with %d task "
            "stage(s) and tune.scheduler.grace_period %d it has none: no trial is pruned "
            "(tune.scheduler.name: fifo says so)",
            milestones,
            settings.grace_period,
        )
    (sweep_dir / RUNGS_FILE).unlink(missing_ok=True)  # a new sweep: its own rungs only
    return ReferenceKeepingASHA(
        time_attr=TIME_ATTR,
        max_t=max(milestones, settings.grace_period),
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
        stop_last_trials=False,
    )
