"""Early stopping: ASHA on the dev objective at task milestones, never stopping reference points.

A sweep's reference points (the ``none`` baseline, the paper's setting) must finish, or the
summary has nothing to compare the best trial with; they still enter ASHA's rungs, so they
set the bar that other trials are cut against.

Every cut is written down (``PRUNED_LOG`` in the sweep directory): a trial that stopped early
without one was interrupted (Ctrl-C, a stopped job), not pruned, and ``--resume`` continues it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ot_ray.config import Config
from ot_ray.search.space import REFERENCE_KEY

logger = logging.getLogger(__name__)

#: The reported counter ASHA's rungs are placed on (finished task stages).
TIME_ATTR = "milestone"
#: One line per trial the scheduler cut, in the sweep directory; it survives ``--resume``.
PRUNED_LOG = "pruned_trials.txt"


class ReferenceKeepingASHA(AsyncHyperBandScheduler):
    """ASHA that records every trial in its rungs but lets reference points run to the end,
    and writes each trial it cuts, with the milestone it was cut at, to ``pruned_log``."""

    pruned_log: str | None = None  # also for schedulers pickled before it existed (--resume)

    def __init__(self, *args, pruned_log: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pruned_log = pruned_log

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
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
    Its cuts are written to ``PRUNED_LOG`` in ``sweep_dir``."""
    settings = config.tune.scheduler
    if settings.name == "fifo":
        return FIFOScheduler()
    milestones = len(config.task.tasks)
    return ReferenceKeepingASHA(
        time_attr=TIME_ATTR,
        max_t=max(milestones, settings.grace_period),
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
        stop_last_trials=False,
        pruned_log=str(sweep_dir / PRUNED_LOG),
    )
