"""The alignment objectives of stage 1, on a batch of sentence pairs.

* ``ot_alignment_loss``: the paper's WordOT (words = pooled subwords) or SubOT (every subword):
  one debiased Sinkhorn divergence per sentence pair, all pairs solved in one batched call.
* ``l2_link_distances``: Cao et al. 2020, squared distances of the word pairs an external
  aligner linked (summed; the objective divides by the batch's links).
* ``anchor_regulariser``: keeps the pivot language where it was, ||h - h0||^2 summed over the
  pivot's tokens, against a frozen copy of the initial encoder.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ot_ray.config import OTConfig
from ot_ray.metrics import Link
from ot_ray.ot import empty_pairs, pool_words, sinkhorn_divergence

Granularity = Literal["word", "subword"]


def alignment_units(
    hidden: Tensor, word_ids: Tensor, granularity: Granularity, pooling: str = "last"
) -> tuple[Tensor, Tensor]:
    """What gets transported: pooled words (B, W, D), or every non-special subword (B, T, D)."""
    if granularity == "word":
        return pool_words(hidden, word_ids, pooling)
    if granularity == "subword":
        return hidden, word_ids.to(hidden.device) >= 0
    raise ValueError(f"unknown granularity {granularity!r}; expected 'word' or 'subword'")


def ot_alignment_loss(
    source: Tensor,
    target: Tensor,
    source_word_ids: Tensor,
    target_word_ids: Tensor,
    ot: OTConfig,
    *,
    granularity: Granularity = "word",
    pooling: str = "last",
) -> tuple[Tensor, int]:
    """Per-pair divergence (B,) between the units of two sides, and how many pairs were empty.

    ``source``/``target`` are hidden states (B, T, D) of the two sides; ``*_word_ids`` (B, T) the
    tokenizer's word index per token, -1 for special and padding tokens. An empty side gives 0
    and no gradient for that pair (the caller logs the count).
    """
    x, x_mask = alignment_units(source, source_word_ids, granularity, pooling)
    y, y_mask = alignment_units(target, target_word_ids, granularity, pooling)
    loss = sinkhorn_divergence(
        x,
        y,
        x_mask,
        y_mask,
        epsilon=ot.epsilon,
        cost=ot.cost,
        tau=ot.tau,
        debias=ot.debias,
        options=ot.solver,
    )
    return loss, int(empty_pairs(x_mask, y_mask).sum())


def l2_link_distances(
    source_words: Tensor,
    target_words: Tensor,
    source_mask: Tensor,
    target_mask: Tensor,
    links: list[set[Link]],
) -> tuple[Tensor, int]:
    """The sum over linked word pairs of ||x_i - y_j||^2, and the number of links used.

    Links that point at a masked word (a truncated sentence) are dropped; with no link left the
    sum is a zero that still belongs to the graph. A sum, so that a worker's share of a batch
    can be divided by the links of the whole batch (see ``AlignmentObjective``).
    """
    triples = [
        (b, i, j)
        for b, pair_links in enumerate(links)
        for i, j in sorted(pair_links)
        if i < source_mask.shape[1] and j < target_mask.shape[1]
    ]
    index = torch.tensor(triples, dtype=torch.long, device=source_words.device).reshape(-1, 3)
    if len(index):
        keep = source_mask[index[:, 0], index[:, 1]] & target_mask[index[:, 0], index[:, 2]]
        index = index[keep]
    if not len(index):
        return (source_words.sum() + target_words.sum()) * 0.0, 0
    x = source_words[index[:, 0], index[:, 1]].float()
    y = target_words[index[:, 0], index[:, 2]].float()
    return ((x - y) ** 2).sum(dim=-1).sum(), len(index)


def anchor_regulariser(hidden: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """Per sentence (B,): sum over its unmasked tokens of ||h - h0||^2 (h0 from the frozen
    initial encoder, passed in without gradient)."""
    squared = ((hidden.float() - reference.detach().float()) ** 2).sum(dim=-1)
    return (squared * mask.to(squared.dtype)).sum(dim=-1)
