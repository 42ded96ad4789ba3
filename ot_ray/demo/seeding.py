"""Seeded work that leaves the caller's global random generators as it found them.

Pre-training the demo encoder and the probes seed torch's and Python's global generators (the
MLM collator and dropout draw from torch's). Called from a trial, a benchmark or a test that
builds the world on first use, they reset the caller's generators to the world's seed, so the
caller's later draws depended on whether the world was built in that process or found cached.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

Params = ParamSpec("Params")
Result = TypeVar("Result")


def keeps_global_rngs(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """``function`` run on forks of torch's CPU generator and Python's ``random``: whatever it
    seeds or draws, the caller's states are as they were when it returns (or raises). The
    functions wrapped run on the CPU and seed only its generator: ``torch.manual_seed`` would
    also seed every GPU's, or queue that seed for a process whose CUDA has not started yet,
    which no fork undoes."""

    @functools.wraps(function)
    def forked(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                return function(*args, **kwargs)
        finally:
            random.setstate(state)

    return forked
