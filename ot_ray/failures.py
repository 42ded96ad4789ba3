"""Which failures of a Ray Train run are worth a restart.

Ray Train restarts the worker group after any worker error, up to ``train.max_failures`` times
(``-1``: forever). That is right for a lost node or a killed worker, but a :class:`UserError`
(bad data, a NaN loss, a config the workers refuse) fails the same way on every attempt: each
restart reloads the checkpoint and repeats the work up to the error, and with ``-1`` the run
never ends. :class:`StopOnUserError` ends the run at the first such error instead.
"""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback

from ot_ray.errors import UserError


def find_user_error(error: BaseException, depth: int = 0) -> UserError | None:
    """The :class:`UserError` a worker raised, wherever Ray wrapped it."""
    if isinstance(error, UserError):
        return error
    if depth > 8 or error is None:
        return None
    candidates: list[Any] = [error.__cause__, error.__context__, getattr(error, "cause", None)]
    candidates.append(getattr(error, "controller_failure", None))  # raised by StopOnUserError
    candidates += list(getattr(error, "worker_failures", {}).values())
    for candidate in candidates:
        if isinstance(candidate, BaseException):
            found = find_user_error(candidate, depth + 1)
            if found is not None:
                return found
    return None


class StopOnUserError(UserCallback):
    """Ends the run, without a restart, when a worker raised a :class:`UserError`.

    Ray Train's controller retries worker errors but not an error raised in a user callback
    (it becomes a ``ControllerError``, which its failure policy does not retry), and
    ``after_exception`` sees the workers' errors before that policy decides.
    """

    def after_exception(self, run_context, worker_exceptions: dict[int, BaseException]) -> None:
        for rank in sorted(worker_exceptions):
            found = find_user_error(worker_exceptions[rank])
            if found is not None:
                raise found
