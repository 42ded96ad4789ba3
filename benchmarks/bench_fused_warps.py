"""How many warps should a program of the fused Sinkhorn kernel have, for each problem size?

One Triton program solves one OT problem with its cost matrix in registers. More warps split
the matrix over more threads (fewer registers each, more parallel lanes in every reduction) but
make each of the thousand sweeps' reductions cross more warps. ``fused_sinkhorn._warps`` picks
the count from the padded problem size; this times the alternatives in the same run.

For each batch and sentence length it times the debiased Sinkhorn divergence, forward and
backward, with the fused backend and the default solver at the paper's eps on encoder-like states
(a sentence and a permuted, noisy copy in 768 dimensions, the target side 1/3 to full length),
once per warp count, and prints each count's median ms and, in brackets, its time relative to
the count ``_warps`` picks (below 1: faster than what the kernel uses now).

    python benchmarks/bench_fused_warps.py [--pairs 8 24] [--words 12 24 60 120]
        [--warps 1 2 4 8 16] [--repeats 20]

Needs a CUDA GPU with Triton.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ot_ray.cli import positive_int
from ot_ray.config import SinkhornConfig
from ot_ray.ot import fused_sinkhorn, sinkhorn_divergence

EPSILON = 0.0025  # the paper's


def encoder_like(pairs: int, words: int, generator: torch.Generator):
    """States of a sentence and its translation: permuted noisy copies, ragged target side."""
    x = torch.randn(pairs, words, 768, generator=generator) * 0.4
    noise = torch.randn(x.shape, generator=generator)
    y = x[:, torch.randperm(words, generator=generator)] + 0.3 * noise
    x_mask = torch.ones(pairs, words, dtype=torch.bool)
    lengths = torch.randint(max(1, words // 3), words + 1, (pairs, 1), generator=generator)
    y_mask = torch.arange(words)[None, :] < lengths
    return [t.cuda() for t in (x, y, x_mask, y_mask)]


def time_divergence(inputs, warps: int, repeats: int) -> float:
    """Median ms of forward + backward with the kernel launched with ``warps`` warps."""
    picked = fused_sinkhorn._warps
    fused_sinkhorn._warps = lambda elements: warps
    try:
        x, y, x_mask, y_mask = inputs
        options = SinkhornConfig(backend="fused")
        times = []
        for attempt in range(repeats + 2):  # two warm-ups: compilation, then caches
            states = x.clone().requires_grad_(True)
            torch.cuda.synchronize()
            start = time.perf_counter()
            value = sinkhorn_divergence(states, y, x_mask, y_mask, epsilon=EPSILON, options=options)
            value.sum().backward()
            torch.cuda.synchronize()
            if attempt >= 2:
                times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)
    finally:
        fused_sinkhorn._warps = picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=positive_int, nargs="+", default=[8, 24])
    parser.add_argument("--words", type=positive_int, nargs="+", default=[12, 24, 60, 120])
    parser.add_argument("--warps", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=positive_int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available() or fused_sinkhorn.triton is None:
        sys.exit("bench_fused_warps.py: needs a CUDA GPU with Triton")
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"triton {fused_sinkhorn.triton.__version__}; eps {EPSILON}, default solver; "
        f"median ms of {args.repeats}, forward + backward"
    )
    header = "| pairs | words | block | " + " | ".join(f"{w} warps" for w in args.warps)
    print(header + " | picked | best |")
    print("|---:" * (5 + len(args.warps)) + "|")
    for pairs in args.pairs:
        for words in args.words:
            inputs = encoder_like(pairs, words, torch.Generator().manual_seed(words))
            block = fused_sinkhorn._block(words)
            picked = fused_sinkhorn._warps(block * block)
            ms = {w: time_divergence(inputs, w, args.repeats) for w in args.warps}
            best = min(ms, key=ms.get)
            picked_ms = ms.get(picked) or time_divergence(inputs, picked, args.repeats)
            cells = " | ".join(f"{ms[w]:.2f} ({ms[w] / picked_ms:.2f})" for w in args.warps)
            print(f"| {pairs} | {words} | {block} | {cells} | {picked} | {best} |", flush=True)


if __name__ == "__main__":
    main()
