"""TF32 control: the OT costs are computed with TF32 off whatever the trial allows, and the
flags are written through whichever of torch's two APIs the process uses (mixing them raises in
torch >= 2.9). The numerical effect needs a GPU (tests/test_gpu.py); the flags exist on CPU
builds too, so what is switched, and when, is checked here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import padded_batch
from packaging.version import Version
from torch.utils._python_dispatch import TorchDispatchMode

from ot_ray.ot import sinkhorn_divergence
from ot_ray.precision import allow_tf32, full_float32_matmuls


class MatmulSpy(TorchDispatchMode):
    """Records whether TF32 was allowed at every batched matrix product torch ran, autograd's
    backward ones included (they are dispatched after the forward's Python code has returned)."""

    PRODUCTS = ("bmm", "baddbmm", "mm", "addmm")

    def __init__(self):
        super().__init__()
        self.allowed: list[bool] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__.rstrip("_") in self.PRODUCTS:
            self.allowed.append(torch.backends.cuda.matmul.allow_tf32)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "cost, debias", [("sqeuclidean", True), ("cosine", True), ("sqeuclidean", False)]
)
def test_the_costs_and_their_gradients_are_computed_with_tf32_off(cost, debias):
    x, y, x_mask, y_mask = padded_batch(3, 5, 5, 8, seed=1)
    x.requires_grad_(True)
    allow_tf32(True)
    try:
        with MatmulSpy() as forward_only, torch.no_grad():
            sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, cost=cost, debias=debias)
        with MatmulSpy() as spy:
            value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, cost=cost, debias=debias)
            value.sum().backward()
        assert torch.backends.cuda.matmul.allow_tf32  # what the trial allowed is back
    finally:
        allow_tf32(False)
    assert forward_only.allowed and len(spy.allowed) > len(forward_only.allowed)  # backward too
    assert not any(spy.allowed)


def test_the_spy_sees_a_product_run_with_tf32_allowed():
    a = torch.randn(2, 3, 4, requires_grad=True)
    allow_tf32(True)
    try:
        with MatmulSpy() as spy:
            torch.bmm(a, a.transpose(1, 2)).sum().backward()
    finally:
        allow_tf32(False)
    assert len(spy.allowed) == 3 and all(spy.allowed)  # the forward and two backward GEMMs


def test_the_guard_restores_the_legacy_flag_it_found():
    for allowed in (True, False):
        allow_tf32(allowed)
        with full_float32_matmuls():
            assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is allowed


def test_a_process_on_the_new_api_keeps_it():
    """After ``fp32_precision`` was set, reading ``allow_tf32`` raises in torch >= 2.9: the guard
    and ``allow_tf32`` must then speak the new API (in a subprocess: the flags are global)."""
    script = """
import torch
from ot_ray.precision import allow_tf32, full_float32_matmuls
matmul = torch.backends.cuda.matmul
if not hasattr(matmul, "fp32_precision"):
    print("old torch"); raise SystemExit
matmul.fp32_precision = "tf32"
with full_float32_matmuls():
    assert matmul.fp32_precision == "ieee", matmul.fp32_precision
assert matmul.fp32_precision == "tf32", matmul.fp32_precision
allow_tf32(False)
assert matmul.fp32_precision == "ieee", matmul.fp32_precision
print("new api kept")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"new api kept", "old torch"}
    old_torch = Version(torch.__version__).release < (2, 9)  # "2.13" < "2.9" as text
    assert old_torch or done.stdout.strip() == "new api kept"
