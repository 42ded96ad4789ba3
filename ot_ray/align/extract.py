"""Word alignments read off transport plans: ot-ray doubles as an unsupervised word aligner."""

from __future__ import annotations

import torch

from ot_ray.metrics import Link


def mutual_argmax_links(
    plan: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor
) -> list[set[Link]]:
    """Links (i, j) where j is i's heaviest target and i is j's heaviest source, per pair.

    ``plan`` (B, n, m) with masks (B, n), (B, m); padded rows and columns never link, and an
    empty side gives an empty set.
    """
    valid = x_mask[:, :, None] & y_mask[:, None, :]
    weights = plan.detach().float().masked_fill(~valid, -1.0)
    best_target = weights.argmax(dim=2, keepdim=True)  # (B, n, 1)
    best_source = weights.argmax(dim=1, keepdim=True)  # (B, 1, m)
    n_index = torch.arange(plan.shape[1], device=plan.device)[None, :, None]
    m_index = torch.arange(plan.shape[2], device=plan.device)[None, None, :]
    mutual = (best_target == m_index) & (best_source == n_index) & valid
    links: list[set[Link]] = [set() for _ in range(plan.shape[0])]
    for b, i, j in mutual.nonzero().tolist():
        links[b].add((i, j))
    return links
