"""POT as an alternative solver behind :func:`ot_ray.ot.entropic_ot`, for cross-checking runs.

Balanced problems go to POT's batched ``ot.solve_batch`` (log-domain Sinkhorn); unbalanced ones,
which that function does not handle, to ``ot.solve`` one pair at a time. The potentials are
converted to ot-ray's convention so the value, its gradient and the plan are computed exactly as
for the native kernel.
"""

from __future__ import annotations

import ot
import torch
from torch import Tensor

from ot_ray.config import SinkhornConfig


def pot_potentials(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    epsilon: float,
    tau: float | None,
    options: SinkhornConfig,
) -> tuple[Tensor, Tensor, int, float | None]:
    """Dual potentials ``f`` (B, n), ``g`` (B, m) in ot-ray's convention, computed by POT."""
    max_iter = options.n_iters or options.max_iters
    tol = 0.0 if options.n_iters else options.tol
    if tau is None:
        result = ot.solve_batch(
            cost,
            reg=epsilon,
            a=a,
            b=b,
            method="log_sinkhorn",
            reg_type="kl",
            max_iter=max_iter,
            tol=tol,
            grad="detach",
        )
        log_u, log_v = result.potentials
        # POT's plan is exp(log_u + log_v - C / eps); ours is a b exp((f + g - C) / eps).
        f = epsilon * (log_u - a.log())
        g = epsilon * (log_v - b.log())
        n_iters = int(result.log["n_iter"]) + 1
    else:
        f, g = _unbalanced_potentials(cost, a, b, epsilon, tau, max_iter, tol)
        n_iters = max_iter
    f = torch.where(a > 0, f, torch.zeros_like(f))
    g = torch.where(b > 0, g, torch.zeros_like(g))
    return f, g, n_iters, None


def _unbalanced_potentials(
    cost: Tensor, a: Tensor, b: Tensor, epsilon: float, tau: float, max_iter: int, tol: float
) -> tuple[Tensor, Tensor]:
    """Per-pair ``ot.solve``; potentials recovered from the plan's marginals.

    At the optimum of the KL-penalised problem, a_i exp(-f_i / tau) = (P 1)_i, so
    f = -tau log(P 1 / a), and likewise for g.
    """
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for k in range(cost.shape[0]):
        rows, cols = a[k] > 0, b[k] > 0
        result = ot.solve(
            cost[k][rows][:, cols],
            a[k][rows],
            b[k][cols],
            reg=epsilon,
            reg_type="KL",
            unbalanced=tau,
            unbalanced_type="KL",
            max_iter=max_iter,
            tol=tol,
        )
        plan = result.plan
        f[k, rows] = -tau * torch.log(plan.sum(dim=1) / a[k][rows])
        g[k, cols] = -tau * torch.log(plan.sum(dim=0) / b[k][cols])
    if not (torch.isfinite(f).all() and torch.isfinite(g).all()):
        raise FloatingPointError(
            f"POT's unbalanced solver returned a plan with an empty row or column "
            f"(eps={epsilon}, tau={tau}); try the native backend or a larger eps"
        )
    return f, g
