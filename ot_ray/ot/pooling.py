"""From subword embeddings to word embeddings (WordOT aligns words, not subwords)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

PoolingMode = Literal["last", "first", "mean"]


def word_ids_tensor(word_ids: Sequence[Sequence[int | None]], length: int | None = None) -> Tensor:
    """Stack a fast tokenizer's per-sequence ``word_ids()`` into a (B, T) tensor, -1 for None.

    ``length`` pads every row to that many tokens (default: the longest row).
    """
    length = length if length is not None else max((len(row) for row in word_ids), default=0)
    table = torch.full((len(word_ids), length), -1, dtype=torch.long)
    for i, row in enumerate(word_ids):
        values = [-1 if w is None else w for w in row[:length]]
        table[i, : len(values)] = torch.tensor(values, dtype=torch.long)
    return table


def pool_words(
    hidden: Tensor, word_ids: Tensor, mode: PoolingMode = "last"
) -> tuple[Tensor, Tensor]:
    """Word embeddings (B, W, D) and their mask (B, W) from subword embeddings (B, T, D).

    ``word_ids`` (B, T) gives each token's word index, -1 for special and padding tokens. ``last``
    takes each word's last subword (the paper's choice), ``first`` its first, ``mean`` the average.
    W is the largest word index + 1 in the batch; words absent from a row are masked.
    """
    if hidden.shape[:2] != word_ids.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and word_ids {tuple(word_ids.shape)}")
    batch, length, dim = hidden.shape
    word_ids = word_ids.to(hidden.device)
    is_word = word_ids >= 0
    n_words = max(int(word_ids.max()) + 1 if word_ids.numel() else 0, 1)
    index = word_ids.clamp_min(0)

    if mode == "mean":
        weights = is_word.to(hidden.dtype)
        sums = hidden.new_zeros(batch, n_words, dim).scatter_add(
            1, index[..., None].expand(-1, -1, dim), hidden * weights[..., None]
        )
        counts = hidden.new_zeros(batch, n_words).scatter_add(1, index, weights)
        mask = counts > 0
        return sums / counts.clamp_min(1.0)[..., None], mask

    if mode not in ("last", "first"):
        raise ValueError(f"unknown pooling {mode!r}; expected 'last', 'first' or 'mean'")
    positions = torch.arange(length, device=hidden.device).expand(batch, length)
    missing = -1 if mode == "last" else length
    positions = torch.where(is_word, positions, missing)
    chosen = torch.full((batch, n_words), missing, dtype=torch.long, device=hidden.device)
    chosen = chosen.scatter_reduce(
        1, index, positions, reduce="amax" if mode == "last" else "amin", include_self=True
    )
    mask = chosen != missing
    gathered = hidden.gather(1, chosen.clamp(0, length - 1)[..., None].expand(-1, -1, dim))
    return gathered * mask[..., None].to(hidden.dtype), mask
