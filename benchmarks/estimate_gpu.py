"""How long, and what cost, would one paper trial take on one A100 or H100? An estimate.

Until a GPU run measures it, the time of a configs/paper_mbert.yaml trial is estimated from what
can be measured here: the FLOPs of every stage, counted exactly by ``torch``'s FLOP counter on
mBERT-shaped models (on the meta device: no weights, no download), and the speed of one real
alignment step of the same encoder on this CPU (FLOP/s achieved). GPU time = FLOPs / (peak bf16
FLOP/s x utilisation), for a range of utilisations; cost = time x an assumed hourly price.

Left out, so the GPU figures are lower bounds: the OT solver's iterations (few FLOPs, but many
small kernels; ``bench_ot.py`` on CUDA measures them), data loading and tokenisation,
checkpoints, and padding beyond the lengths given below.

    python benchmarks/estimate_gpu.py [--align-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import torch
from bench_step import MBERT_VOCAB, random_batch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
)

from ot_ray.align.objective import AlignmentObjective
from ot_ray.cli import positive_int, run
from ot_ray.config import AlignmentConfig, load_config

#: Peak dense bf16 tensor-core FLOP/s (vendor data sheets: A100 SXM 312 TFLOP/s, H100 SXM 989).
PEAK = {"A100": 312e12, "H100": 989e12}
#: Model FLOP utilisation range assumed for BERT-base training with HF's eager attention.
UTILISATION = (0.25, 0.50)
#: Training examples (MultiNLI train; SQuAD v1.1 train less the 2,000 questions held out as the
#: QA dev set, about one 384-token window each).
MNLI_TRAIN, SQUAD_TRAIN = 392_702, 87_599 - 2_000
#: Evaluation examples: XNLI dev + test per language x 15, XQuAD 1,190 x 11, the QA dev set.
XNLI_EVAL, XQUAD_EVAL, SQUAD_DEV = 15 * (2_490 + 5_010), 11 * 1_190, 2_000
#: The pivot's dev set that checkpoint selection (``task.<task>.select_every``) scores: XNLI en.
XNLI_DEV_PIVOT = 2_490


@dataclass
class Stage:
    name: str
    flops: float  # of the whole stage


def train_flops(model: torch.nn.Module, batch: int, tokens: int, **labels) -> float:
    """FLOPs of one forward + backward of ``model`` on a ``batch`` x ``tokens`` batch (meta)."""
    ids = torch.zeros(batch, tokens, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=ids, **labels)  # no mask: all ones, and masks need values
        loss = out.loss if getattr(out, "loss", None) is not None else out.last_hidden_state.sum()
        loss.backward()
    return float(counter.get_total_flops())


def forward_flops(model: torch.nn.Module, batch: int, tokens: int) -> float:
    ids = torch.zeros(batch, tokens, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    return float(counter.get_total_flops())


def cpu_alignment_rate(pairs: int, tokens: int, repeats: int) -> tuple[float, float]:
    """Measured seconds of one alignment step on this CPU, and the FLOP/s that achieves."""
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=MBERT_VOCAB), add_pooling_layer=False)
    reference = BertModel(BertConfig(vocab_size=MBERT_VOCAB), add_pooling_layer=False)
    objective = AlignmentObjective(AlignmentConfig(), reference)
    batch = random_batch(pairs, tokens, torch.Generator().manual_seed(0))

    def step() -> float:
        encoder.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = objective(encoder, batch)
        loss.backward()
        return time.perf_counter() - start

    step()  # warm-up
    seconds = statistics.median(step() for _ in range(repeats))
    return seconds, alignment_step_flops(pairs, tokens) / seconds


def alignment_step_flops(pairs: int, tokens: int) -> float:
    """Trained encoder forward + backward on both sides, frozen reference on the pivot side."""
    with torch.device("meta"):
        encoder = BertModel(BertConfig(vocab_size=MBERT_VOCAB), add_pooling_layer=False)
    return train_flops(encoder, 2 * pairs, tokens) + forward_flops(encoder, pairs, tokens)


def paper_stages(args: argparse.Namespace) -> list[Stage]:
    config = load_config(args.config)
    pairs = len(config.data.languages) * int(config.data.pairs_per_language or 0)
    xnli, xquad = config.task.xnli, config.task.xquad
    bert = BertConfig(vocab_size=MBERT_VOCAB)
    with torch.device("meta"):
        classifier = BertForSequenceClassification(BertConfig(vocab_size=MBERT_VOCAB, num_labels=3))
        reader = BertForQuestionAnswering(bert)
    labels = torch.zeros(xnli.batch_size, dtype=torch.long, device="meta")
    starts = torch.zeros(xquad.batch_size, dtype=torch.long, device="meta")
    per_pair = alignment_step_flops(8, args.align_tokens) / 8
    xnli_step = train_flops(classifier, xnli.batch_size, xnli.max_length, labels=labels)
    qa_step = train_flops(
        reader, xquad.batch_size, xquad.max_length, start_positions=starts, end_positions=starts
    )
    evaluation = forward_flops(classifier, 1, xnli.max_length) * XNLI_EVAL + forward_flops(
        reader, 1, xquad.max_length
    ) * (XQUAD_EVAL + SQUAD_DEV)
    selection, scored = 0.0, []
    for name, settings, examples, dev, model in (
        ("XNLI", xnli, MNLI_TRAIN, XNLI_DEV_PIVOT, classifier),
        ("XQuAD", xquad, SQUAD_TRAIN, SQUAD_DEV, reader),
    ):
        if settings.select_every:
            batch = settings.batch_size * settings.grad_accum
            steps = math.ceil(examples * settings.epochs / batch)
            times = math.ceil(steps / settings.select_every)
            selection += times * dev * forward_flops(model, 1, settings.max_length)
            scored.append(f"{name} {times:,} x {dev:,}")
    selecting = [Stage(f"dev scores for checkpoint selection: {', '.join(scored)}", selection)]
    return [
        Stage(f"alignment: {pairs:,} pairs x {args.align_tokens} tokens", per_pair * pairs),
        Stage(
            f"XNLI: {MNLI_TRAIN:,} x {xnli.epochs:g} epochs x {xnli.max_length} tokens",
            xnli_step / xnli.batch_size * MNLI_TRAIN * xnli.epochs,
        ),
        Stage(
            f"XQuAD: {SQUAD_TRAIN:,} x {xquad.epochs:g} epochs x {xquad.max_length} tokens",
            qa_step / xquad.batch_size * SQUAD_TRAIN * xquad.epochs,
        ),
        Stage("evaluation: XNLI 15 languages, XQuAD 11, QA dev", evaluation),
        *(selecting if scored else []),
    ]


def hours(flops: float, peak: float, utilisation: float) -> float:
    return flops / (peak * utilisation) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/paper_mbert.yaml")
    parser.add_argument(
        "--align-tokens", type=positive_int, default=64, help="padded subwords/sentence"
    )
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--price-a100", type=float, default=3.0, help="assumed $ per GPU-hour")
    parser.add_argument("--price-h100", type=float, default=5.0, help="assumed $ per GPU-hour")
    args = parser.parse_args()

    stages = paper_stages(args)
    total = sum(stage.flops for stage in stages)
    seconds, cpu_rate = cpu_alignment_rate(8, 64, args.repeats)
    print(f"# One {args.config} trial: FLOPs (counted) and time (ESTIMATED, not measured on a GPU)")
    print(
        f"measured here: one alignment step, 8 pairs x 64 tokens, {seconds:.2f} s on "
        f"{torch.get_num_threads()} CPU threads = {cpu_rate / 1e9:.0f} GFLOP/s\n"
    )
    prices = {"A100": args.price_a100, "H100": args.price_h100}
    low, high = UTILISATION
    print(
        f"| stage | PFLOP | this CPU (h) | A100 (h), {low:.0%}-{high:.0%} util. "
        f"| H100 (h), {low:.0%}-{high:.0%} util. |"
    )
    print("|---|---:|---:|---:|---:|")
    for stage in [*stages, Stage("**one trial**", total)]:
        gpu = {
            name: f"{hours(stage.flops, peak, high):.2f}-{hours(stage.flops, peak, low):.2f}"
            for name, peak in PEAK.items()
        }
        print(
            f"| {stage.name} | {stage.flops / 1e15:.0f} | {stage.flops / cpu_rate / 3600:,.0f} "
            f"| {gpu['A100']} | {gpu['H100']} |"
        )
    print()
    for name, peak in PEAK.items():
        span = (hours(total, peak, high), hours(total, peak, low))
        cost = (span[0] * prices[name], span[1] * prices[name])
        print(
            f"{name}: {span[0]:.1f}-{span[1]:.1f} h per trial, ${cost[0]:.0f}-${cost[1]:.0f} at "
            f"an assumed ${prices[name]:.2f}/GPU-hour; the paper_mbert sweep (6 trials) "
            f"${6 * cost[0]:.0f}-${6 * cost[1]:.0f}"
        )


if __name__ == "__main__":
    run(lambda _: main())  # a config or data error: one line, exit 2
