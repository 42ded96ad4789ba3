"""The alignment loss: debiased Sinkhorn divergence between the embeddings of sentence pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ot_ray.config import SinkhornConfig
from ot_ray.ot.costs import CostName, cost_matrix, debiasing_costs
from ot_ray.ot.solver import entropic_ot


def uniform_masses(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Uniform probability weights over the unmasked positions of each row (zeros elsewhere)."""
    weights = mask.to(dtype)
    return weights / weights.sum(dim=-1, keepdim=True).clamp_min(1.0)


def empty_pairs(x_mask: Tensor, y_mask: Tensor) -> Tensor:
    """(B,) True where a side of the pair has no unmasked position (its loss is defined as 0)."""
    return ~(x_mask.any(dim=-1) & y_mask.any(dim=-1))


def sinkhorn_divergence(
    x: Tensor,
    y: Tensor,
    x_mask: Tensor,
    y_mask: Tensor,
    *,
    epsilon: float,
    cost: CostName = "sqeuclidean",
    tau: float | None = None,
    debias: bool = True,
    options: SinkhornConfig | None = None,
) -> Tensor:
    """S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a) / 2 - OT_eps(b, b) / 2 for each pair, shape (B,).

    ``x`` (B, n, D) and ``y`` (B, m, D) with boolean masks (B, n), (B, m); masses are uniform over
    unmasked positions. ``debias=False`` returns OT_eps(a, b). The three problems of a pair are
    solved in two batched calls (the B cross problems, then the 2B symmetric ones). A pair with
    an empty side gets 0 and a zero gradient.

    It computes in float32 (float64 for float64 inputs) also inside a bf16 autocast region:
    costs divided by a small eps need the precision, and the hand-written cost gradient needs
    its inputs and upstream gradient in one dtype.
    """
    _check_inputs(x, y, x_mask, y_mask)
    with torch.autocast(x.device.type, enabled=False):
        return _divergence(x, y, x_mask, y_mask, epsilon, cost, tau, debias, options)


def _divergence(
    x: Tensor,
    y: Tensor,
    x_mask: Tensor,
    y_mask: Tensor,
    epsilon: float,
    cost: CostName,
    tau: float | None,
    debias: bool,
    options: SinkhornConfig | None,
) -> Tensor:
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_mask, y_mask = x_mask.bool(), y_mask.bool()
    # Padded embeddings are zeroed so that whatever they hold never reaches a cost or a gradient.
    x = torch.where(x_mask[..., None], x.to(dtype), 0.0)
    y = torch.where(y_mask[..., None], y.to(dtype), 0.0)
    a, b = uniform_masses(x_mask, dtype), uniform_masses(y_mask, dtype)

    if not debias:
        result = entropic_ot(cost_matrix(x, y, cost), a, b, epsilon, tau=tau, options=options)
        return result.value

    length = max(x.shape[1], y.shape[1])
    x, a = _pad_to(x, length), _pad_to(a, length)
    y, b = _pad_to(y, length), _pad_to(b, length)
    costs = debiasing_costs(x, y, cost)
    batch = x.shape[0]
    cross = entropic_ot(costs[:batch], a, b, epsilon, tau=tau, options=options).value
    selves = entropic_ot(
        costs[batch:],
        torch.cat([a, b]),
        torch.cat([a, b]),
        epsilon,
        tau=tau,
        options=options,
        symmetric=True,
    ).value
    ot_xx, ot_yy = selves.view(2, batch)
    divergence = cross - 0.5 * (ot_xx + ot_yy)
    return torch.where(empty_pairs(x_mask, y_mask), torch.zeros_like(divergence), divergence)


def _pad_to(tensor: Tensor, length: int) -> Tensor:
    """Zero-pad dimension 1 to ``length`` (zero mass, zero embedding)."""
    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 2) + [0, missing]
    return F.pad(tensor, pad)


def _check_inputs(x: Tensor, y: Tensor, x_mask: Tensor, y_mask: Tensor) -> None:
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"x and y must be (B, n, D) and (B, m, D), got {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"x and y disagree in batch size or dimension: {x.shape} vs {y.shape}")
    if x_mask.shape != x.shape[:2] or y_mask.shape != y.shape[:2]:
        raise ValueError(
            f"masks must be (B, n) and (B, m): got {tuple(x_mask.shape)} for x {tuple(x.shape)} "
            f"and {tuple(y_mask.shape)} for y {tuple(y.shape)}"
        )
