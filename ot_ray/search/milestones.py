"""Tune's searcher and progress table, told that trials are comparable only when finished.

A trial's ``objective`` is the mean of the dev metrics measured so far, so a trial after XNLI
(accuracy) and one after XQuAD too (XQuAD F1 is far below XNLI accuracy on the demo world) report
values that cannot be compared. ASHA compares trials at the same milestone only, but:

* when ASHA stops a trial, Tune hands the searcher its last result as if it were final, and
  Ray's ``OptunaSearch`` records it as a COMPLETE Optuna trial, so a trial cut after XNLI would
  enter TPE with a value above every finished trial's;
* Tune's "Current best trial" line picks the highest value among all trials' latest results.

Here a trial that ends before its last milestone is recorded as PRUNED (TPE ranks it below every
finished trial), and the best-trial line considers finished trials only.
"""

from __future__ import annotations

from typing import Any

from ray.tune import CLIReporter
from ray.tune.search.optuna import OptunaSearch

from ot_ray.search.scheduler import TIME_ATTR


def finished(result: dict | None, milestones: int) -> bool:
    """Whether a trial's (latest) result comes after its last task stage. A trial's last
    report says stage ``done`` whatever its tasks, so that alone is enough; without task
    stages (``task.tasks: []``) it is the only sign, as every mid-alignment result is
    milestone 0."""
    if not result:
        return False
    if result.get("stage") == "done":
        return True
    return milestones > 0 and result.get(TIME_ATTR, 0) >= milestones


class MilestoneOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records a trial ending before ``milestones`` as PRUNED."""

    def __init__(self, *args: Any, milestones: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.milestones = milestones

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if result and not error and not finished(result, self.milestones):
            result = None  # OptunaSearch tells Optuna PRUNED for no result and no error
        super().on_trial_complete(trial_id, result=result, error=error)


class MilestoneReporter(CLIReporter):
    """Tune's console table whose "Current best trial" is the best finished trial."""

    def __init__(self, *args: Any, milestones: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.milestones = milestones

    def _current_best_trial(self, trials: list) -> tuple[Any, str | None]:
        done = [t for t in trials if finished(t.last_result, self.milestones)]
        return super()._current_best_trial(done)
