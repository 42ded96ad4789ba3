"""The fused Sinkhorn kernel gives the torch loop's answers.

On a GPU the kernel runs compiled; elsewhere it runs under Triton's CPU interpreter, which
executes the same kernel code with numpy (slowly), so the tests use small problems. Skipped where
Triton is not installed.
"""

from __future__ import annotations

import pytest
import torch
from conftest import padded_batch

from ot_ray.config import SinkhornConfig
from ot_ray.ot import cost_matrix, entropic_ot, sinkhorn_divergence, uniform_masses
from ot_ray.ot.solver import resolve_backend

pytest.importorskip("triton")
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def fused():
    """The kernel module (conftest.py turns the interpreter on where there is no GPU)."""
    import ot_ray.ot.fused_sinkhorn as module

    if DEVICE.type == "cpu" and not module._interpreted():
        pytest.skip("TRITON_INTERPRET was turned off for this CPU-only run")
    return module


def _float32_batch(seed: int):
    x, y, x_mask, y_mask = padded_batch(5, 9, 6, 4, seed=seed, dtype=torch.float32)
    return [t.to(DEVICE) for t in (x, y, x_mask, y_mask)]


SETTINGS = {
    "to tolerance": SinkhornConfig(tol=1e-5, max_iters=3000),
    "fixed count": SinkhornConfig(n_iters=25),
    "no annealing": SinkhornConfig(tol=1e-4, max_iters=2000, eps_scaling=None),
}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("tau", [None, 0.5])
def test_divergence_and_gradient_match_the_torch_loop(fused, setting, tau):
    """Padded pairs, unequal lengths, the symmetric debiasing terms: value and gradient."""
    x, y, x_mask, y_mask = _float32_batch(seed=1)
    results = {}
    for backend in ("native", "fused"):
        options = SETTINGS[setting].model_copy(update={"backend": backend})
        xs = x.clone().requires_grad_(True)
        value = sinkhorn_divergence(xs, y, x_mask, y_mask, epsilon=0.1, tau=tau, options=options)
        value.sum().backward()
        results[backend] = (value.detach(), xs.grad)
    (value, grad), (fused_value, fused_grad) = results["native"], results["fused"]
    assert torch.isfinite(fused_value).all() and (fused_value.abs() > 0).any()
    torch.testing.assert_close(fused_value, value, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_grad, grad, rtol=1e-4, atol=1e-5)


def test_each_problem_stops_at_its_own_tolerance(fused):
    """The torch loop runs every problem until the worst converges; the kernel stops each one
    when its own marginals are within tol, so none runs longer and all meet the tolerance."""
    x, y, x_mask, y_mask = _float32_batch(seed=2)
    cost = cost_matrix(torch.where(x_mask[..., None], x, 0), torch.where(y_mask[..., None], y, 0))
    a, b = uniform_masses(x_mask, torch.float32), uniform_masses(y_mask, torch.float32)
    options = SinkhornConfig(tol=1e-4, max_iters=5000, check_every=5)
    native = entropic_ot(cost, a, b, 0.1, options=options.model_copy(update={"backend": "native"}))
    kernel = entropic_ot(cost, a, b, 0.1, options=options.model_copy(update={"backend": "fused"}))
    assert kernel.n_iters == native.n_iters  # the slowest problem sets both counts
    assert kernel.marginal_error < options.tol and native.marginal_error < options.tol
    row_error = (kernel.plan.sum(dim=2) - a).abs().sum(dim=1)
    assert row_error.max() < options.tol
    torch.testing.assert_close(kernel.value, native.value, rtol=1e-5, atol=1e-6)
    # Each problem solved alone by the torch loop stops at its own tolerance: the kernel's
    # plans are those, the batched torch loop's (run on to the slowest problem's count) are not.
    native_options = options.model_copy(update={"backend": "native"})
    kernel_gap, batch_gap = 0.0, 0.0
    for i in range(cost.shape[0]):
        alone = entropic_ot(
            cost[i : i + 1], a[i : i + 1], b[i : i + 1], 0.1, options=native_options
        )
        kernel_gap = max(kernel_gap, (kernel.plan[i] - alone.plan[0]).abs().max().item())
        batch_gap = max(batch_gap, (native.plan[i] - alone.plan[0]).abs().max().item())
    assert kernel_gap < 5e-6 and batch_gap > 2 * kernel_gap, (kernel_gap, batch_gap)


def test_empty_pairs_give_zero_and_no_nan(fused):
    x, y, x_mask, y_mask = _float32_batch(seed=3)
    y_mask[2] = False
    options = SinkhornConfig(backend="fused", tol=1e-4)
    value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, options=options)
    assert value[2] == 0 and torch.isfinite(value).all()


def test_what_the_kernel_cannot_hold_is_refused_with_the_remedy(fused):
    """float64, or more than MAX_SIDE words a side: a clear error for backend fused, the torch
    loop for backend auto."""
    a = torch.full((1, 3), 1 / 3, device=DEVICE)
    wide = torch.rand(1, 3, fused.MAX_SIDE + 1, device=DEVICE)
    assert not fused.fused_available(wide)
    assert not fused.fused_available(torch.rand(1, 3, 3, device=DEVICE, dtype=torch.float64))
    b = torch.full((1, fused.MAX_SIDE + 1), 1 / (fused.MAX_SIDE + 1), device=DEVICE)
    with pytest.raises(ValueError, match="backend: native"):
        entropic_ot(wide, a, b, 0.1, options=SinkhornConfig(backend="fused"))
    if DEVICE.type == "cuda":
        assert resolve_backend("auto", wide) == "native"
        assert resolve_backend("auto", wide[:, :, :3].contiguous()) == "fused"


def test_auto_uses_the_torch_loop_on_the_cpu():
    assert SinkhornConfig().backend == "auto"
    assert resolve_backend("auto", torch.zeros(1, 2, 2)) == "native"


def test_every_tile_gets_a_power_of_two_warp_count_that_grows_with_it(fused):
    """Triton takes only powers of two; square tiles get the counts timed fastest at 8 pairs on
    an H200 (within 19% of the fastest at 24 pairs: README, "Warps per program"), and no tile
    gets fewer warps than a smaller one."""
    blocks = [fused._block(side) for side in (1, 16, 17, 33, 65, fused.MAX_SIDE)]
    assert blocks == [16, 16, 32, 64, 128, 128]
    assert [fused._warps(b * b) for b in (16, 32, 64, 128)] == [2, 4, 8, 16]
    tiles = sorted({n * m for n in blocks for m in blocks})
    counts = [fused._warps(elements) for elements in tiles]
    assert all(count & (count - 1) == 0 and 2 <= count <= 16 for count in counts)
    assert counts == sorted(counts)
