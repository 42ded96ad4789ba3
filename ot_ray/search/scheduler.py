"""Early stopping: ASHA on the dev objective at task milestones, never stopping reference points.

A sweep's reference points (the ``none`` baseline, the paper's setting) must finish, or the
summary has nothing to compare the best trial with; they still enter ASHA's rungs, so they
set the bar that other trials are cut against.
"""

from __future__ import annotations

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from ot_ray.config import Config
from ot_ray.search.space import REFERENCE_KEY

#: The reported counter ASHA's rungs are placed on (finished task stages).
TIME_ATTR = "milestone"


class ReferenceKeepingASHA(AsyncHyperBandScheduler):
    """ASHA that records every trial in its rungs but lets reference points run to the end."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action != TrialScheduler.STOP:
            return action
        # A reference point runs to the end; a trial at its last milestone has nothing left
        # to save, and stopping it would cut off the logging of its outputs.
        if trial.config.get(REFERENCE_KEY) or result.get(self._time_attr, 0) >= self._max_t:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action


def make_scheduler(config: Config) -> TrialScheduler:
    """The scheduler named in ``tune.scheduler``; its horizon is the number of task stages."""
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
    )
