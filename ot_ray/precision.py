"""Whether float32 matmuls on CUDA may use TF32, set through whichever of torch's two flag APIs
the process already uses.

Why a module: trials allow TF32 for speed (``train.tf32``), but the OT costs must not use it
(:mod:`ot_ray.ot.costs`). And torch >= 2.9 raises as soon as the legacy flag
(``torch.backends.cuda.matmul.allow_tf32``) and the new one (``fp32_precision``) are mixed, so
a library that writes one while its user's code reads the other breaks that code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def _legacy_flag_in_use() -> bool:
    """False once the process set the new API (reading the legacy flag then raises)."""
    try:
        torch.backends.cuda.matmul.allow_tf32  # noqa: B018 - the read is the check
    except (RuntimeError, AttributeError):  # mixed APIs; or a torch without the legacy flag
        return False
    return True


def allow_tf32(enabled: bool) -> None:
    """Let (or stop) float32 matmuls on CUDA use TF32 from now on, process-wide."""
    matmul = torch.backends.cuda.matmul
    if _legacy_flag_in_use():
        matmul.allow_tf32 = enabled
    else:
        matmul.fp32_precision = "tf32" if enabled else "ieee"


@contextlib.contextmanager
def full_float32_matmuls() -> Iterator[None]:
    """Float32 matmuls at full precision inside the block, whatever the process allows outside.

    TF32 keeps 10 bits of mantissa, and the solver divides the costs by eps. Emulated on
    encoder-like states (``benchmarks/probe_tf32_costs.py``, inputs rounded to nearest): costs
    up to ~600 come out up to 0.025 off (float32: 2e-4), and at the paper's eps of 0.0025 the
    divergence's gradient is 2.5% off its float64 value instead of float32's 1.5%, its value 5e-5
    instead of 3e-6 (with the low bits truncated instead: costs 0.3 off, the value 7e-4).
    """
    matmul = torch.backends.cuda.matmul
    if _legacy_flag_in_use():
        previous = matmul.allow_tf32
        matmul.allow_tf32 = False
        try:
            yield
        finally:
            matmul.allow_tf32 = previous
    else:
        saved = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = saved
