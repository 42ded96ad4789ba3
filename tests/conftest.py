"""Shared fixtures: small random padded batches of embeddings."""

from __future__ import annotations

import pytest
import torch


def padded_batch(batch: int, max_n: int, max_m: int, dim: int, *, seed: int, dtype=torch.float64):
    """Embeddings with random lengths in [1, max]; padded slots hold garbage, not zeros."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, max_n, dim, generator=generator, dtype=dtype)
    y = torch.randn(batch, max_m, dim, generator=generator, dtype=dtype) * 0.8 + 0.3
    n_lengths = torch.randint(1, max_n + 1, (batch,), generator=generator)
    m_lengths = torch.randint(1, max_m + 1, (batch,), generator=generator)
    n_lengths[0], m_lengths[0] = max_n, max_m  # at least one full-length pair
    x_mask = torch.arange(max_n)[None, :] < n_lengths[:, None]
    y_mask = torch.arange(max_m)[None, :] < m_lengths[:, None]
    x = torch.where(x_mask[..., None], x, torch.full_like(x, 1e3))
    y = torch.where(y_mask[..., None], y, torch.full_like(y, -1e3))
    return x, y, x_mask, y_mask


@pytest.fixture
def batch64():
    return padded_batch(6, 9, 7, 4, seed=0)


def write_small_world(out, seed: int, **sizes: int):
    """The demo world's data files (no encoder) at toy sizes: real formats in a second."""
    from ot_ray.config import WorldSizes
    from ot_ray.demo.world import write_world

    defaults = dict(
        mono_sentences=20,
        parallel_pairs=5,
        parallel_dev_pairs=5,
        xnli_train=3,
        xnli_dev=3,
        xnli_test=3,
        xquad_train_stories=1,
        xquad_dev_stories=1,
        xquad_test_stories=1,
    )
    write_world(out, WorldSizes(**{**defaults, **sizes}), seed=seed)
    return out
