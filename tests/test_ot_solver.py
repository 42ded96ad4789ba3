"""entropic_ot against POT, in float64, on padded batches of mixed lengths."""

from __future__ import annotations

import itertools
import math

import ot
import pytest
import torch
from conftest import padded_batch

from ot_ray.config import SinkhornConfig
from ot_ray.ot import cost_matrix, entropic_ot, record_solver, uniform_masses

TIGHT = SinkhornConfig(tol=1e-12, max_iters=20_000)


def _problem(seed: int = 0):
    x, y, x_mask, y_mask = padded_batch(6, 9, 7, 4, seed=seed)
    # Halved embeddings keep costs below ~3, where Sinkhorn (ours and POT's) converges to 1e-12.
    x = torch.where(x_mask[..., None], 0.5 * x, 0.0)
    y = torch.where(y_mask[..., None], 0.5 * y, 0.0)
    cost = cost_matrix(x, y)
    return cost, uniform_masses(x_mask, torch.float64), uniform_masses(y_mask, torch.float64)


def _primal(plan, cost, a, b, eps, tau):
    """<P, C> + eps KL(P | a x b) [+ tau KL(P1 | a) + tau KL(P^T 1 | b)], generalised KL."""

    def kl(p, q):
        return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q) - p + q).sum()

    value = (plan * cost).sum() + eps * kl(plan, a[:, None] * b[None, :])
    if tau is not None:
        value = value + tau * (kl(plan.sum(1), a) + kl(plan.sum(0), b))
    return value


@pytest.mark.parametrize("eps", [1.0, 0.1, 0.02])
def test_balanced_value_matches_pot_solve(eps):
    cost, a, b = _problem()
    result = entropic_ot(cost, a, b, eps, options=TIGHT)
    for k in range(cost.shape[0]):
        rows, cols = a[k] > 0, b[k] > 0
        reference = ot.solve(
            cost[k][rows][:, cols],
            a[k][rows],
            b[k][cols],
            reg=eps,
            reg_type="KL",
            max_iter=200_000,
            tol=1e-13,
        )
        assert result.value[k].item() == pytest.approx(reference.value.item(), rel=1e-4)
        torch.testing.assert_close(result.plan[k][rows][:, cols], reference.plan, atol=1e-5, rtol=0)
        assert result.plan[k][~rows].abs().sum() == 0 and result.plan[k][:, ~cols].abs().sum() == 0


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_unbalanced_plan_and_objective_match_pot(tau):
    """POT's ``value`` for entropic + unbalanced is not the objective, so the objective is
    evaluated on POT's plan; the plans themselves must agree too."""
    eps = 0.1
    cost, a, b = _problem(seed=1)
    result = entropic_ot(cost, a, b, eps, tau=tau, options=TIGHT)
    for k in range(cost.shape[0]):
        rows, cols = a[k] > 0, b[k] > 0
        sub_cost, sub_a, sub_b = cost[k][rows][:, cols], a[k][rows], b[k][cols]
        reference = ot.solve(
            sub_cost,
            sub_a,
            sub_b,
            reg=eps,
            reg_type="KL",
            unbalanced=tau,
            unbalanced_type="KL",
            max_iter=200_000,
            tol=1e-13,
        )
        torch.testing.assert_close(result.plan[k][rows][:, cols], reference.plan, atol=1e-5, rtol=0)
        expected = _primal(reference.plan, sub_cost, sub_a, sub_b, eps, tau)
        assert result.value[k].item() == pytest.approx(expected.item(), rel=1e-4)


def test_unbalanced_approaches_balanced_as_tau_grows():
    cost, a, b = _problem(seed=2)
    balanced = entropic_ot(cost, a, b, 0.1, options=TIGHT).value
    gaps = [
        (entropic_ot(cost, a, b, 0.1, tau=tau, options=TIGHT).value - balanced).abs().max().item()
        for tau in (1.0, 10.0, 100.0, 1e4)
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[-1] < 1e-3


def test_pot_backend_matches_native():
    cost, a, b = _problem(seed=3)
    native = entropic_ot(cost, a, b, 0.1, options=TIGHT)
    pot_options = TIGHT.model_copy(update={"backend": "pot"})
    via_pot = entropic_ot(cost, a, b, 0.1, options=pot_options)
    torch.testing.assert_close(via_pot.value, native.value, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(via_pot.plan, native.plan, rtol=0, atol=1e-7)


def test_pot_backend_unbalanced_matches_native():
    cost, a, b = _problem(seed=4)
    pot_options = TIGHT.model_copy(update={"backend": "pot"})
    native = entropic_ot(cost, a, b, 0.1, tau=1.0, options=TIGHT).value
    via_pot = entropic_ot(cost, a, b, 0.1, tau=1.0, options=pot_options).value
    torch.testing.assert_close(via_pot, native, rtol=1e-5, atol=1e-8)


def test_gradient_with_respect_to_the_cost_matches_finite_differences():
    """The value's backward hands back the plan (envelope theorem): that must be the
    derivative of the converged value, which finite differences of the solver measure."""
    cost, a, b = _problem(seed=5)
    weights = torch.linspace(0.5, 2.0, cost.shape[0], dtype=torch.float64)

    def weighted_value(cost):
        return entropic_ot(cost, a, b, 0.2, options=TIGHT).value * weights

    assert torch.autograd.gradcheck(
        weighted_value, (cost.clone().requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5
    )


def test_fixed_iteration_count_runs_exactly_that_many():
    cost, a, b = _problem(seed=6)
    options = SinkhornConfig(n_iters=7, eps_scaling=None)
    result = entropic_ot(cost, a, b, 0.5, options=options)
    assert result.n_iters == 7 and result.marginal_error is None


def test_tolerance_mode_reports_converged_error():
    cost, a, b = _problem(seed=7)
    options = SinkhornConfig(tol=1e-6, check_every=5, max_iters=10_000)
    result = entropic_ot(cost, a, b, 0.2, options=options)
    assert result.marginal_error is not None and result.marginal_error < 1e-6
    assert result.n_iters % 5 == 0
    row_error = (result.plan.sum(dim=2) - a).abs().sum(dim=1).max().item()
    assert row_error < 1e-5


def test_empty_problem_is_zero_and_counted():
    cost, a, b = _problem(seed=8)
    a[1] = 0.0
    b[3] = 0.0
    cost = cost.clone().requires_grad_(True)
    result = entropic_ot(cost, a, b, 0.1, options=TIGHT)
    assert result.empty.tolist() == [False, True, False, True, False, False]
    assert result.value[1] == 0 and result.value[3] == 0
    result.value.sum().backward()
    assert torch.isfinite(cost.grad).all()
    assert cost.grad[1].abs().sum() == 0 and cost.grad[3].abs().sum() == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("shape", r"masses must have shapes \(B, n\)=\(\d+, \d+\) and \(B, m\)=.*got"),
        ("eps", r"epsilon must be > 0, got 0\.0"),
        ("tau", r"tau must be > 0 or None, got -1\.0"),
    ],
)
def test_invalid_arguments_are_rejected(bad, message):
    cost, a, b = _problem()
    with pytest.raises(ValueError, match=message):
        if bad == "shape":
            entropic_ot(cost, a[:, :-1], b, 0.1)
        elif bad == "eps":
            entropic_ot(cost, a, b, 0.0)
        else:
            entropic_ot(cost, a, b, 0.1, tau=-1.0)


def test_float32_stable_at_small_eps_and_large_costs():
    """eps down to 1e-3 with costs up to 10: no NaN or inf in value or gradient."""
    generator = torch.Generator().manual_seed(9)
    cost = (torch.rand(8, 12, 10, generator=generator) * 10.0).requires_grad_(True)
    a = torch.full((8, 12), 1 / 12)
    b = torch.full((8, 10), 1 / 10)
    for eps in (1e-1, 1e-2, 1e-3):
        result = entropic_ot(cost, a, b, eps, options=SinkhornConfig(tol=1e-3, max_iters=5000))
        (grad,) = torch.autograd.grad(result.value.sum(), cost)
        assert torch.isfinite(result.value).all() and torch.isfinite(grad).all()
        assert result.value.min() >= 0 and result.value.max() <= 10.0 + 1e-3
        assert not math.isnan(result.marginal_error)


def test_record_solver_collects_the_sweeps_and_the_worst_marginal_error():
    cost, a, b = _problem()
    with record_solver() as log:
        to_tolerance = entropic_ot(cost, a, b, 0.1, options=SinkhornConfig(tol=1e-6))
        fixed = entropic_ot(cost, a, b, 0.1, options=SinkhornConfig(n_iters=7))
    assert log.calls == 2
    assert log.sweeps == max(to_tolerance.n_iters, 7) and to_tolerance.n_iters > 7
    assert log.marginal_error == to_tolerance.marginal_error and fixed.marginal_error is None
    entropic_ot(cost, a, b, 0.1, options=SinkhornConfig(max_iters=3000))
    assert log.calls == 2  # nothing is recorded outside the block
