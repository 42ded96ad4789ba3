"""Ground costs between batches of embeddings."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ot_ray.precision import full_float32_matmuls

CostName = Literal["sqeuclidean", "cosine"]


def cost_matrix(x: Tensor, y: Tensor, cost: CostName = "sqeuclidean") -> Tensor:
    """Pairwise costs (B, n, m) between ``x`` (B, n, D) and ``y`` (B, m, D).

    ``sqeuclidean`` is |x - y|^2 / 2 (GeomLoss's p=2 convention), computed with one batched GEMM;
    ``cosine`` is 1 - cos(x, y). The GEMMs, and those of their gradient, run without TF32 even
    where the trial allows it: the solver divides these costs by eps.
    """
    if cost == "sqeuclidean":
        half_norms = _half_sq_norms(x)[:, :, None] + _half_sq_norms(y)[:, None, :]
        return (half_norms - _FullFloat32Bmm.apply(x, y.transpose(1, 2))).clamp_min_(0.0)
    if cost == "cosine":
        unit_x, unit_y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
        return 1.0 - _FullFloat32Bmm.apply(unit_x, unit_y.transpose(1, 2))
    raise ValueError(f"unknown cost {cost!r}; expected 'sqeuclidean' or 'cosine'")


class _FullFloat32Bmm(torch.autograd.Function):
    """``torch.bmm(a, b)`` with TF32 off in the forward and in the two GEMMs of its gradient
    (autograd's own backward would run them after the forward's guard is gone)."""

    @staticmethod
    @full_float32_matmuls()
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        return torch.bmm(a, b)

    @staticmethod
    @full_float32_matmuls()
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        grad_a = torch.bmm(grad, b.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        grad_b = torch.bmm(a.transpose(1, 2), grad) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


def debiasing_costs(x: Tensor, y: Tensor, cost: CostName = "sqeuclidean") -> Tensor:
    """The three cost matrices of a Sinkhorn divergence stacked as (3B, n, n): xy, xx, yy.

    ``x`` and ``y`` must have the same length n. For ``sqeuclidean`` the backward pass is written
    out (four GEMMs instead of the six autograd would run, and no norm recomputation): this is
    the dominant fixed cost of the loss at D=768.
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if cost == "sqeuclidean":
        return _DebiasingSqEuclidean.apply(x, y)
    return torch.cat([cost_matrix(x, y, cost), cost_matrix(x, x, cost), cost_matrix(y, y, cost)])


def _half_sq_norms(x: Tensor) -> Tensor:
    return 0.5 * x.square().sum(dim=-1)


def _sqeuclidean(x: Tensor, y: Tensor, x_norms: Tensor, y_norms: Tensor) -> Tensor:
    half_norms = x_norms[:, :, None] + y_norms[:, None, :]
    return torch.baddbmm(half_norms, x, y.transpose(1, 2), alpha=-1.0).clamp_min_(0.0)


class _DebiasingSqEuclidean(torch.autograd.Function):
    """C_xy, C_xx, C_yy with C(u, v)_ij = |u_i - v_j|^2 / 2, and their gradient.

    For an upstream gradient G of C(u, v): dL/du_i = (G 1)_i u_i - (G v)_i and
    dL/dv_j = (G^T 1)_j v_j - (G^T u)_j; for C(u, u) both contributions land on u.
    """

    @staticmethod
    @full_float32_matmuls()
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        x_norms, y_norms = _half_sq_norms(x), _half_sq_norms(y)
        costs = torch.cat(
            [
                _sqeuclidean(x, y, x_norms, y_norms),
                _sqeuclidean(x, x, x_norms, x_norms),
                _sqeuclidean(y, y, y_norms, y_norms),
            ]
        )
        ctx.save_for_backward(x, y)
        return costs

    @staticmethod
    @full_float32_matmuls()
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        g_xy, g_xx, g_yy = grad.view(3, *x.shape[:2], x.shape[1])
        g_xx = g_xx + g_xx.transpose(1, 2)
        g_yy = g_yy + g_yy.transpose(1, 2)
        row_weight = g_xy.sum(dim=2) + g_xx.sum(dim=2)
        col_weight = g_xy.sum(dim=1) + g_yy.sum(dim=2)
        grad_x = torch.baddbmm(x * row_weight[..., None], g_xy, y, alpha=-1.0)
        grad_x.baddbmm_(g_xx, x, alpha=-1.0)
        grad_y = torch.baddbmm(y * col_weight[..., None], g_xy.transpose(1, 2), x, alpha=-1.0)
        grad_y.baddbmm_(g_yy, y, alpha=-1.0)
        return grad_x, grad_y
