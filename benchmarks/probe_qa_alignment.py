"""How close are a target language's word states to the pivot's inside the inputs QA reads?

For parallel XQuAD stories of the demo world in the pivot and a target language with the pivot's
word order (``de``: word i translates word i), it encodes each story three ways - its sentences
one at a time (what the alignment stage trains on), the whole context, and the QA input
(question + context) - and compares the states of corresponding words (last subword) at every
layer: their mean cosine, and how often a pivot word's nearest target word in the same input is
its translation (acc@1). Run it on the encoder before and after alignment:

    python benchmarks/probe_qa_alignment.py WORLD/xquad ENCODER [ENCODER ...] [--lang de]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from ot_ray.cli import positive_int

Words = list[str]


def stories(path: Path) -> list[dict]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [paragraph for article in data for paragraph in article["paragraphs"]]


def word_states(model, tokenizer, words: Words, question: Words | None) -> list[torch.Tensor]:
    """Per layer, the state of each word's last subword in ``words`` (the second segment when a
    question comes first)."""
    if question is None:
        encoding = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        segments = [0] * encoding["input_ids"].shape[1]
    else:
        encoding = tokenizer(question, words, is_split_into_words=True, return_tensors="pt")
        segments = encoding.sequence_ids()
    wanted = 0 if question is None else 1
    last: dict[int, int] = {}
    for position, (word, segment) in enumerate(zip(encoding.word_ids(), segments, strict=True)):
        if word is not None and segment == wanted:
            last[word] = position
    with torch.no_grad():
        hidden = model(**encoding, output_hidden_states=True).hidden_states
    positions = [last[word] for word in range(len(words))]
    return [layer[0, positions] for layer in hidden]


def pieces(
    pivot: dict, target: dict, mode: str
) -> list[tuple[Words, Words, Words | None, Words | None]]:
    a, b = pivot["context"].split(), target["context"].split()
    if mode == "sentences":
        cuts = [0] + [i + 1 for i, word in enumerate(a) if word == "."]
        return [(a[s:e], b[s:e], None, None) for s, e in itertools.pairwise(cuts)]
    if mode == "context":
        return [(a, b, None, None)]
    questions = pivot["qas"][0]["question"].split(), target["qas"][0]["question"].split()
    return [(a, b, *questions)]


def probe(encoder: str, pivot_path: Path, target_path: Path, count: int) -> None:
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModel.from_pretrained(encoder).eval()
    pairs = [
        (p, t)
        for p, t in zip(stories(pivot_path), stories(target_path), strict=True)
        if len(p["context"].split()) == len(t["context"].split())
    ][:count]
    print(f"{encoder}: {len(pairs)} stories")
    for mode in ("sentences", "context", "qa"):
        hits: list[float] = []
        cosines: list[float] = []
        words = 0
        for pivot, target in pairs:
            for a, b, qa, qb in pieces(pivot, target, mode):
                xs = word_states(model, tokenizer, a, qa)
                ys = word_states(model, tokenizer, b, qb)
                if not hits:
                    hits, cosines = [0.0] * len(xs), [0.0] * len(xs)
                for layer, (x, y) in enumerate(zip(xs, ys, strict=True)):
                    similarity = F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
                    hits[layer] += float((similarity.argmax(1) == torch.arange(len(a))).sum())
                    cosines[layer] += float(similarity.diagonal().sum())
                words += len(a)
        acc = " ".join(f"{100 * h / words:5.1f}" for h in hits)
        cos = " ".join(f"{c / words:4.2f}" for c in cosines)
        print(f"  {mode:9s} acc@1 by layer (0 = embeddings): {acc} | cosine: {cos}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("xquad", type=Path, help="the world's xquad/ folder")
    parser.add_argument("encoders", nargs="+")
    parser.add_argument("--lang", default="de", help="a target with the pivot's word order")
    parser.add_argument("--pivot", default="en")
    parser.add_argument("--stories", type=positive_int, default=60)
    parser.add_argument(
        "--split",
        default="dev",
        choices=["dev", "test"],
        help="dev (default; for deciding what to try) or test",
    )
    args = parser.parse_args()
    for encoder in args.encoders:
        probe(
            encoder,
            args.xquad / f"{args.split}-{args.pivot}.json",
            args.xquad / f"{args.split}-{args.lang}.json",
            args.stories,
        )


if __name__ == "__main__":
    main()
