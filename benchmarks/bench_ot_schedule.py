"""How fine the eps-annealing must be for the alignment loss to be the divergence it claims.

At the paper's eps (0.0025) with squared-Euclidean costs of encoder states (costs up to ~100
and more), Sinkhorn started from zero potentials at the target eps crawls; annealing eps down
from the cost range warm-starts it. With a coarse schedule (each temperature half the last, one
sweep each) the cross problems stall in a wrong plan that ``max_iters`` further sweeps at the
target eps do not repair, so the loss's gradient is not the divergence's. This script measures,
for each ``eps_scaling``, the forward + backward of ``sinkhorn_divergence`` as a trial runs it
(float32, ``tol`` 1e-3, ``max_iters`` 1000) against a converged float64 reference on the same
inputs: the sweeps at the target eps, the marginal error left, the error of the value and of
the gradient (per pair: median and worst; and over the batch), and the median time, with its
ratio to the coarse schedule measured in the same run.

Inputs: ``demo`` (the last layer of the demo world's encoder, last subword per word, on the
first ``--pairs`` de-en training pairs; the world of ``configs/demo.yaml`` is built if missing)
and ``bert`` (random BERT-base-sized states, D 768: the anisotropic word-permuted copies of
``bench_ot.py``, scaled to norms like mBERT's last layer, ~15). Usage::

    python benchmarks/bench_ot_schedule.py                  # both inputs, the default grid
    python benchmarks/bench_ot_schedule.py --inputs bert --scalings 0.5 0.9 0.99
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from bench_ot import make_inputs

from ot_ray.cli import positive_int
from ot_ray.config import SinkhornConfig, load_config
from ot_ray.ot import pool_words, record_solver, sinkhorn_divergence, word_ids_tensor

EPSILON = 0.0025  # the paper's: GeomLoss blur 0.05, p = 2
BERT_NORM = 15.0
REPO = Path(__file__).resolve().parents[1]


def demo_states(pairs: int) -> tuple[torch.Tensor, ...]:
    """Word embeddings (last layer, last subword) of the demo world's first de-en pairs."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    from ot_ray.demo.build import ensure_demo_world

    logging.set_verbosity_error()  # the saved masked-LM has no pooler, which AutoModel adds
    world = ensure_demo_world(load_config(REPO / "configs" / "demo.yaml").data.demo)
    tokenizer = AutoTokenizer.from_pretrained(world / "encoder")
    encoder = AutoModel.from_pretrained(world / "encoder").eval()
    lines = (world / "parallel" / "de-en.tsv").read_text(encoding="utf-8").splitlines()[:pairs]
    sides = list(zip(*(line.split("\t") for line in lines), strict=True))
    embedded = []
    for side in sides:
        words = [sentence.split() for sentence in side]
        batch = tokenizer(words, is_split_into_words=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            states = encoder(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).last_hidden_state
        ids = word_ids_tensor([batch.word_ids(k) for k in range(len(words))], states.shape[1])
        embedded += pool_words(states, ids, "last")
    return tuple(embedded)


def bert_states(pairs: int) -> tuple[torch.Tensor, ...]:
    """Random pairs of 8 to 30 words, D 768, padded to the longest, norms ~ mBERT's."""
    x, y = make_inputs(pairs, 30, 768, "cpu", seed=0)
    scale = BERT_NORM / x.norm(dim=-1).mean()
    lengths = torch.randint(8, 31, (2, pairs), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(30)
    x_mask, y_mask = (positions[None, :] < lengths[k][:, None] for k in range(2))
    return x * scale, x_mask, y * scale, y_mask


def divergence_and_gradient(states, options: SinkhornConfig, dtype: torch.dtype):
    """The loss per pair, its gradient w.r.t. the source states, the solver's record, seconds."""
    x, x_mask, y, y_mask = states
    x = x.to(dtype).clone().requires_grad_(True)
    start = time.perf_counter()
    with record_solver() as log:
        loss = sinkhorn_divergence(x, y.to(dtype), x_mask, y_mask, epsilon=EPSILON, options=options)
    loss.sum().backward()
    seconds = time.perf_counter() - start
    return loss.detach().double(), x.grad.double(), log, seconds


def measure(states, scalings: list[float], reps: int) -> None:
    reference = SinkhornConfig(eps_scaling=0.995, tol=1e-9, max_iters=20_000)
    ref_loss, ref_grad, ref_log, _ = divergence_and_gradient(states, reference, torch.float64)
    print(
        f"reference (float64, eps_scaling 0.995, tol 1e-9): {ref_log.sweeps} sweeps at eps, "
        f"marginal error {ref_log.marginal_error:.1e}"
    )
    pairs = ref_loss.shape[0]
    print(
        "| eps_scaling | sweeps at eps | marginal error | value error, worst pair | "
        "gradient error per pair, median / worst | gradient error, batch | ms (median) | "
        "time vs 0.5 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    baseline_ms = None
    for scaling in scalings:
        options = SinkhornConfig(eps_scaling=scaling)
        runs = [divergence_and_gradient(states, options, torch.float32) for _ in range(reps)]
        loss, grad, log, _ = runs[0]
        ms = 1000 * statistics.median(run[3] for run in runs)
        baseline_ms = ms if scaling == 0.5 else baseline_ms
        value_error = float(((loss - ref_loss).abs() / ref_loss.abs().clamp_min(1e-12)).max())
        per_pair = [
            float((grad[k] - ref_grad[k]).norm() / ref_grad[k].norm().clamp_min(1e-12))
            for k in range(pairs)
        ]
        batch = float((grad - ref_grad).norm() / ref_grad.norm())
        ratio = f"{ms / baseline_ms:.2f}" if baseline_ms else "-"
        print(
            f"| {scaling} | {log.sweeps} | {log.marginal_error:.2g} | {value_error:.2%} | "
            f"{statistics.median(per_pair):.2%} / {max(per_pair):.2%} | {batch:.2%} | "
            f"{ms:.0f} | {ratio} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--inputs", nargs="+", choices=["demo", "bert"], default=["demo", "bert"])
    parser.add_argument("--pairs", type=positive_int, default=24)
    parser.add_argument(
        "--scalings", nargs="+", type=float, default=[0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99]
    )
    parser.add_argument("--reps", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    scalings = [0.5, *(s for s in args.scalings if s != 0.5)]  # the ratio's reference first
    torch.set_num_threads(args.threads)
    for name in args.inputs:
        states = demo_states(args.pairs) if name == "demo" else bert_states(args.pairs)
        print(f"\n## {name}: {args.pairs} pairs, eps {EPSILON}, squared-Euclidean costs")
        measure(states, scalings, args.reps)


if __name__ == "__main__":
    main()
