"""Degraded word alignments: what an automatic aligner gives instead of gold links.

The L2 baseline (Cao et al. 2020) needs word alignments; on real data they come from fast_align
or similar, with missing and wrong links. Dropping and moving a share of the gold links lets the
benchmark measure how much the baseline depends on alignment quality.
"""

from __future__ import annotations

import random

from ot_ray.metrics import Link


def degrade_links(
    links: list[set[Link]],
    target_lengths: list[int],
    *,
    drop: float,
    move: float,
    seed: int,
) -> list[set[Link]]:
    """Each link is dropped with probability ``drop``; a kept link has its target word moved to
    another random word of the sentence with probability ``move`` (landing on a link already
    kept, it merges with it: the README's ``l2-noisy`` figures were measured so)."""
    rng = random.Random(seed)
    degraded = []
    for pair_links, length in zip(links, target_lengths, strict=True):
        kept = set()
        for i, j in sorted(pair_links):
            if rng.random() < drop:
                continue
            if length > 1 and rng.random() < move:
                j = rng.choice([k for k in range(length) if k != j])
            kept.add((i, j))
        degraded.append(kept)
    return degraded
