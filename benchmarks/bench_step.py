"""What does the OT loss cost inside one alignment step of an mBERT-sized encoder?

A BERT-base-shaped encoder (12 layers, hidden 768, mBERT's 119,547-token vocabulary), randomly
initialised (no download), aligns 8 sentence pairs of 64 tokens: one forward pass over both
sides, the frozen reference on the pivot side, WordOT (last-subword pooling, debiased Sinkhorn
divergence) + the anchor regulariser, backward. The OT part (pooling + divergence, forward and
backward) is timed on its own with the same inputs, and its share of the step is printed.

    python benchmarks/bench_step.py [--pairs 8] [--tokens 64] [--repeats 7]
        [--bf16] [--n-iters N] [--backends native fused]

On a GPU, ``--bf16`` times the step under the autocast the trainer uses there, ``--n-iters``
replaces the tolerance check (a host sync every ``check_every`` iterations) by a fixed count, and
``--backends native fused`` times the torch-op Sinkhorn loop against the fused Triton kernel in
the same run (``auto``, the default, is the fused kernel on a GPU and the torch loop on a CPU).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import BertConfig, BertModel

from ot_ray.align.batches import ParallelBatch
from ot_ray.align.losses import ot_alignment_loss
from ot_ray.align.objective import AlignmentObjective
from ot_ray.cli import positive_int
from ot_ray.config import AlignmentConfig
from ot_ray.training import autocast

MBERT_VOCAB = 119_547


def random_batch(pairs: int, tokens: int, generator: torch.Generator) -> ParallelBatch:
    """Random subword ids; words of 1-3 subwords between [CLS] and [SEP]."""
    rows = 2 * pairs
    input_ids = torch.randint(1000, MBERT_VOCAB, (rows, tokens), generator=generator)
    word_ids = torch.full((rows, tokens), -1, dtype=torch.long)
    for row in range(rows):
        position, word = 1, 0
        while position < tokens - 1:
            width = int(torch.randint(1, 4, (1,), generator=generator))
            word_ids[row, position : min(position + width, tokens - 1)] = word
            position, word = position + width, word + 1
    mask = torch.ones_like(input_ids)
    return ParallelBatch(input_ids, mask, word_ids, None, pairs)


def timed(function, repeats: int) -> tuple[float, object]:
    function()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=positive_int, default=8)
    parser.add_argument("--tokens", type=positive_int, default=64)
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument(
        "--n-iters", type=positive_int, default=None, help="fixed Sinkhorn iterations"
    )
    parser.add_argument(
        "--backends", nargs="+", default=["auto"], choices=["auto", "native", "fused", "pot"]
    )
    args = parser.parse_args()
    if not 4 <= args.tokens <= 512:  # [CLS], a word, [SEP]; BERT-base's positions
        parser.error("--tokens must be between 4 and 512")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = args.bf16 and device.type == "cuda"  # the trainer's autocast is CUDA only
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=MBERT_VOCAB), add_pooling_layer=False).to(device)
    reference = copy.deepcopy(encoder)
    config = AlignmentConfig()  # the paper's setting: wordot, last layer, last subword, eps
    if args.n_iters:
        config.ot.solver.n_iters = args.n_iters
    precision = autocast(device, bf16)
    objective = AlignmentObjective(config, reference)
    batch = random_batch(args.pairs, args.tokens, torch.Generator().manual_seed(0)).to(device)
    size = batch.size

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def full_step() -> dict[str, float]:
        encoder.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with precision:
            loss, _ = objective(encoder, batch)
        sync()
        middle = time.perf_counter()
        loss.backward()
        sync()
        return {"forward": middle - start, "backward": time.perf_counter() - middle}

    def encoder_forward() -> None:
        with torch.no_grad(), precision:
            encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        sync()

    def reference_forward() -> None:
        with torch.no_grad(), precision:
            reference(input_ids=batch.input_ids[size:], attention_mask=batch.attention_mask[size:])
        sync()

    with torch.no_grad(), precision:  # the OT part gets the encoder's real states, detached
        hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        hidden = hidden.last_hidden_state

    def ot_part() -> None:  # the objective's own OT loss (tau, debias, pooling as configured)
        states = hidden.clone().requires_grad_(True)
        with precision:
            loss, _ = ot_alignment_loss(
                states[:size],
                states[size:],
                batch.word_ids[:size],
                batch.word_ids[size:],
                config.ot,
                pooling=config.pooling,
            )
        loss.mean().backward()
        sync()

    encoder_ms, _ = timed(encoder_forward, args.repeats)
    reference_ms, _ = timed(reference_forward, args.repeats)
    params = sum(p.numel() for p in encoder.parameters())
    print(
        f"device {device}, threads {torch.get_num_threads()}, encoder {params / 1e6:.0f}M "
        f"parameters, {args.pairs} pairs x {args.tokens} tokens, eps {config.ot.epsilon}, "
        f"bf16 {bf16}{' (asked; CPU runs float32)' if args.bf16 and not bf16 else ''}, "
        f"Sinkhorn {args.n_iters or 'to tolerance'}"
    )
    measured: dict[str, tuple[float, float]] = {}
    for backend in args.backends:
        config.ot.solver.backend = backend  # the objective reads its config at every call
        step_times = []
        full_step()
        for _ in range(args.repeats):
            step_times.append(full_step())
        forward = statistics.median(t["forward"] for t in step_times)
        backward = statistics.median(t["backward"] for t in step_times)
        step = statistics.median(t["forward"] + t["backward"] for t in step_times)
        ot_ms, _ = timed(ot_part, args.repeats)
        measured[backend] = (step, ot_ms)
        print(f"\nSinkhorn backend: {backend}")
        print("| part | median ms | share of step |")
        print("|---|---:|---:|")
        rows = [
            ("step: forward (encoder both sides + reference + losses)", forward),
            ("step: backward", backward),
            ("step: total", step),
            ("  of which: encoder forward, both sides (no grad)", encoder_ms),
            ("  of which: reference forward, pivot side", reference_ms),
            ("  of which: OT loss with pooling, forward + backward", ot_ms),
        ]
        for name, seconds in rows:
            print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / step:.1f}% |")
        verdict = "met" if ot_ms / step <= 0.05 else "NOT met"
        print(f"OT share {100 * ot_ms / step:.2f}% of the step (target <= 5%: {verdict})")
    if len(measured) > 1:
        base_step, base_ot = measured[args.backends[0]]
        for backend, (step, ot_ms) in list(measured.items())[1:]:
            print(
                f"{backend} against {args.backends[0]}: step {base_step / step:.2f}x faster, "
                f"OT loss {base_ot / ot_ms:.2f}x faster"
            )


if __name__ == "__main__":
    main()
