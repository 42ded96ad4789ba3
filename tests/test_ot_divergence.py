"""sinkhorn_divergence: GeomLoss agreement, gradients, divergence axioms, padding, dtypes."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from conftest import padded_batch
from geomloss import SamplesLoss

from ot_ray.config import SinkhornConfig
from ot_ray.ot import empty_pairs, sinkhorn_divergence

TIGHT = SinkhornConfig(tol=1e-11, max_iters=20_000)
# GeomLoss runs a fixed annealing schedule rather than to a tolerance; with scaling=0.999 its
# own error is below this, which is the agreement we assert.
GEOMLOSS_RTOL = 1e-4


@pytest.mark.parametrize("eps", [0.5, 0.05, 0.0025])
@pytest.mark.parametrize("tau", [None, 2.0])
def test_matches_geomloss_samples_loss(eps, tau):
    x, y, x_mask, y_mask = padded_batch(4, 8, 6, 3, seed=10)
    ours = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=eps, tau=tau, options=TIGHT)
    loss = SamplesLoss(
        "sinkhorn",
        p=2,
        blur=math.sqrt(eps),
        debias=True,
        scaling=0.999,
        backend="tensorized",
        reach=None if tau is None else math.sqrt(tau),
    )
    reference = torch.stack([loss(x[k][x_mask[k]], y[k][y_mask[k]]) for k in range(x.shape[0])])
    torch.testing.assert_close(ours, reference, rtol=GEOMLOSS_RTOL, atol=1e-8)


@pytest.mark.parametrize(
    ("cost", "debias"), [("sqeuclidean", True), ("cosine", True), ("sqeuclidean", False)]
)
def test_gradient_matches_finite_differences(cost, debias):
    """Each cost has a backward of its own, and without debiasing only the cross term is left."""
    x, y, x_mask, y_mask = padded_batch(3, 5, 4, 3, seed=11)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def loss(x, y):
        return sinkhorn_divergence(
            x, y, x_mask, y_mask, epsilon=0.3, cost=cost, debias=debias, options=TIGHT
        )

    assert torch.autograd.gradcheck(loss, (x, y), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_unbalanced_gradient_matches_finite_differences():
    x, y, x_mask, y_mask = padded_batch(2, 4, 5, 2, seed=12)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def loss(x, y):
        return sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.3, tau=1.0, options=TIGHT)

    assert torch.autograd.gradcheck(loss, (x, y), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_unbalanced_divergence_of_padded_pairs_with_costs_large_against_tau_is_finite():
    """Encoder states give costs of hundreds; with tau = 1 every padded pair's divergence was
    NaN (a padded position's potential overflowed expm1, times its zero mass)."""
    x, y, x_mask, y_mask = padded_batch(3, 9, 7, 64, seed=16, dtype=torch.float32)
    x, y = 4 * x, 4 * y  # squared distances of ~1000, in training's float32
    x.requires_grad_(True)
    value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.05, tau=1.0)
    assert torch.isfinite(value).all() and x_mask.sum(1).min() < 9  # some pairs are padded
    alone = [
        sinkhorn_divergence(
            x[k : k + 1, : int(x_mask[k].sum())],
            y[k : k + 1, : int(y_mask[k].sum())],
            x_mask[k : k + 1, : int(x_mask[k].sum())],
            y_mask[k : k + 1, : int(y_mask[k].sum())],
            epsilon=0.05,
            tau=1.0,
        )
        for k in range(3)
    ]
    torch.testing.assert_close(value, torch.cat(alone), rtol=1e-3, atol=1e-3)
    value.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_padded_positions_get_no_gradient():
    x, y, x_mask, y_mask = padded_batch(4, 6, 5, 3, seed=13)
    x.requires_grad_(True)
    sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, options=TIGHT).sum().backward()
    assert x.grad[~x_mask].abs().sum() == 0
    assert x.grad[x_mask].abs().sum() > 0


@pytest.mark.parametrize("eps", [0.5, 0.1])
@pytest.mark.parametrize("tau", [None, 1.0])
def test_divergence_of_a_measure_with_itself_is_zero(eps, tau):
    x, _, x_mask, _ = padded_batch(5, 7, 7, 4, seed=14)
    x = 0.5 * x  # costs up to ~2.5
    value = sinkhorn_divergence(x, x, x_mask, x_mask, epsilon=eps, tau=tau, options=TIGHT)
    # The self problems use the symmetric update and converge at once; the cross problem OT(a, a)
    # uses alternating updates, which crawl on symmetric problems (eigenvalue near -1), so the two
    # meet only to ~1e-7 here after the iteration cap. Values are O(1).
    torch.testing.assert_close(value, torch.zeros_like(value), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_divergence_is_nonnegative(cost):
    for seed in range(5):
        x, y, x_mask, y_mask = padded_batch(6, 8, 6, 5, seed=20 + seed)
        y = 0.3 * y + 0.7 * x[:, : y.shape[1]]  # nearby measures, where S is small
        value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.05, cost=cost, options=TIGHT)
        assert (value >= -1e-10).all(), value


def test_permuting_padded_positions_changes_nothing():
    x, y, x_mask, y_mask = padded_batch(4, 7, 6, 3, seed=15)
    base = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, options=TIGHT)
    generator = torch.Generator().manual_seed(0)
    perm_x = torch.randperm(x.shape[1], generator=generator)
    perm_y = torch.randperm(y.shape[1], generator=generator)
    shuffled = sinkhorn_divergence(
        x[:, perm_x],
        y[:, perm_y],
        x_mask[:, perm_x],
        y_mask[:, perm_y],
        epsilon=0.1,
        options=TIGHT,
    )
    torch.testing.assert_close(shuffled, base, rtol=1e-9, atol=1e-12)


def test_padding_length_changes_nothing():
    x, y, x_mask, y_mask = padded_batch(3, 5, 4, 3, seed=16)
    base = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, options=TIGHT)
    pad_x = torch.nn.functional.pad(x, (0, 0, 0, 4), value=7.0)
    pad_mask = torch.nn.functional.pad(x_mask, (0, 4), value=False)
    longer = sinkhorn_divergence(pad_x, y, pad_mask, y_mask, epsilon=0.1, options=TIGHT)
    torch.testing.assert_close(longer, base, rtol=1e-9, atol=1e-12)


def test_empty_side_gives_zero_loss_and_zero_gradient():
    x, y, x_mask, y_mask = padded_batch(4, 5, 5, 3, seed=17)
    x_mask[1] = False
    y_mask[2] = False
    x.requires_grad_(True)
    y.requires_grad_(True)
    value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.01, options=TIGHT)
    assert empty_pairs(x_mask, y_mask).tolist() == [False, True, True, False]
    assert value[1] == 0 and value[2] == 0 and value[0] > 0 and value[3] > 0
    value.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert x.grad[1].abs().sum() == 0 and y.grad[2].abs().sum() == 0
    assert y.grad[1].abs().sum() == 0 and x.grad[2].abs().sum() == 0


def test_not_debiased_is_plain_entropic_ot():
    """Against POT on each pair's own words (padding cut off), with GeomLoss's p = 2 cost
    |x - y|^2 / 2 and uniform masses."""
    x, y, x_mask, y_mask = padded_batch(3, 6, 5, 3, seed=18)
    raw = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, debias=False, options=TIGHT)
    for k in range(3):
        xs, ys = x[k][x_mask[k]].numpy(), y[k][y_mask[k]].numpy()
        a = np.full(len(xs), 1 / len(xs))
        b = np.full(len(ys), 1 / len(ys))
        cost = ot.dist(xs, ys) / 2
        expected = ot.solve(cost, a, b, reg=0.1, reg_type="KL", max_iter=100_000, tol=1e-13).value
        assert float(raw[k]) == pytest.approx(float(expected), rel=1e-8)


def test_bfloat16_inputs_give_float32_results_close_to_float64():
    x, y, x_mask, y_mask = padded_batch(4, 8, 8, 16, seed=19)
    x, y = x / 4, y / 4
    reference = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.01, options=TIGHT)
    x16 = x.to(torch.bfloat16).requires_grad_(True)
    y16 = y.to(torch.bfloat16)
    options = SinkhornConfig(tol=1e-5)
    value = sinkhorn_divergence(x16, y16, x_mask, y_mask, epsilon=0.01, options=options)
    assert value.dtype == torch.float32
    value.sum().backward()
    assert x16.grad.dtype == torch.bfloat16 and torch.isfinite(x16.grad.float()).all()
    # bfloat16 keeps ~3 significant digits of the inputs; the solve itself runs in float32.
    torch.testing.assert_close(value.double(), reference, rtol=3e-2, atol=1e-3)


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_inside_bf16_autocast_it_computes_as_without(cost):
    """Trainers call the loss under bf16 autocast on GPU; CPU autocast has the same casting
    rules. (Before the fix, the cost matrices came out bf16 and backward failed on mixed
    dtypes.)"""
    x, y, x_mask, y_mask = padded_batch(4, 8, 7, 16, seed=23)
    x, y = x.float(), y.float()
    options = SinkhornConfig(tol=1e-6)

    def value_and_grad(autocast: bool):
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            value = sinkhorn_divergence(
                leaf, y, x_mask, y_mask, epsilon=0.05, cost=cost, options=options
            )
        value.sum().backward()
        return value, leaf.grad

    plain_value, plain_grad = value_and_grad(False)
    value, grad = value_and_grad(True)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, plain_value, rtol=0, atol=0)
    torch.testing.assert_close(grad, plain_grad, rtol=0, atol=0)


def test_float32_small_eps_large_costs_stays_finite():
    x, y, x_mask, y_mask = padded_batch(6, 10, 9, 4, seed=21, dtype=torch.float32)
    x.requires_grad_(True)
    # |x - y|^2 / 2 reaches ~10 here
    for eps in (1e-2, 1e-3):
        value = sinkhorn_divergence(
            x, y, x_mask, y_mask, epsilon=eps, options=SinkhornConfig(tol=1e-3)
        )
        (grad,) = torch.autograd.grad(value.sum(), x)
        assert torch.isfinite(value).all() and torch.isfinite(grad).all()


def test_mismatched_shapes_are_rejected():
    x, y, x_mask, y_mask = padded_batch(2, 4, 4, 3, seed=22)
    with pytest.raises(ValueError, match="masks"):
        sinkhorn_divergence(x, y, x_mask[:, :-1], y_mask, epsilon=0.1)
    with pytest.raises(ValueError, match="dimension"):
        sinkhorn_divergence(x, y[..., :2], x_mask, y_mask, epsilon=0.1)


def _saved_bytes_for(n_iters: int) -> int:
    """Bytes autograd keeps for backward of one divergence computed with ``n_iters`` sweeps."""
    x, y, x_mask, y_mask = padded_batch(4, 16, 16, 8, seed=23, dtype=torch.float32)
    x.requires_grad_(True)
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    options = SinkhornConfig(n_iters=n_iters, eps_scaling=None)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value = sinkhorn_divergence(x, y, x_mask, y_mask, epsilon=0.1, options=options)
    value.sum().backward()
    return sum(saved)


def test_backward_memory_does_not_grow_with_iterations():
    """Envelope gradients: nothing per iteration is kept for backward, only O(B n m)."""
    few, many = _saved_bytes_for(2), _saved_bytes_for(200)
    assert few == many
    assert many < 4 * 3 * 16 * 16 * 4 * 8  # a handful of (3B, n, m) float32 arrays at most
