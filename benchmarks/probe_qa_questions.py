"""Which part of a target-language QA input does the pivot-trained QA model fail to read?

Fine-tunes the QA stage on the pivot from an encoder (the trial's own ``fine_tune`` with the
config's ``task.xquad`` settings), then evaluates it on a target language that keeps the pivot's
word order and fronts its question word (``de`` in the demo world) with parts of the input
swapped for the pivot's:

- ``pivot``: pivot question, pivot context (the reference);
- ``target``: target question, target context (what zero-shot transfer gets);
- ``pivot question``: pivot question on the target context (does the context transfer?);
- ``pivot wh-word``: the target question with its first word (the question word) replaced by
  the pivot's question words ("where does", "how many") (is the question word the gap?);
- ``target wh-word``: the pivot question with its question words replaced by the target's.

Exact matches are counted per question kind (the demo world asks where / how many / who / what,
in that order per story). Dev split by default: this is a diagnosis, not a result.

    python benchmarks/probe_qa_questions.py ENCODER [ENCODER ...] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from pathlib import Path

import torch
import transformers

from ot_ray.cli import run
from ot_ray.config import load_config
from ot_ray.data.sources import data_root, read_qa
from ot_ray.data.tasks import QAExample
from ot_ray.demo.lexicon import PIVOT, QUESTION_WORDS, build_lexicons, profile
from ot_ray.metrics import squad_em_f1
from ot_ray.tasks.stage import fine_tune
from ot_ray.tasks.xquad import evaluate_qa, qa_collate, qa_eval_dataset, qa_train_dataset
from ot_ray.training import StageState

REPO = Path(__file__).resolve().parent.parent
KINDS = ("where", "howmany", "who", "what")  # the order of a demo story's questions


def pivot_question_words(seed: int) -> set[str]:
    """The pivot's words for the question concepts and its do-support word ("does")."""
    pivot = build_lexicons(seed)[PIVOT.code]
    return {word for concept in (*QUESTION_WORDS, "do") for word in pivot[concept].split()}


def with_questions(examples: list[QAExample], questions: list[str]) -> list[QAExample]:
    return [dataclasses.replace(e, question=q) for e, q in zip(examples, questions, strict=True)]


def exact_by_kind(answers: dict[str, str], examples: list[QAExample]) -> dict[str, int]:
    hits: Counter[str] = Counter()
    for example in examples:
        kind = KINDS[int(example.id.rsplit("-", 1)[1])]
        hits[kind] += int(squad_em_f1(answers[example.id], example.answers)[0])
    return {kind: hits[kind] for kind in KINDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("encoders", nargs="+", help="aligned encoder directories")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--lang", default="de")
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--save", type=Path, help="write each fine-tuned QA model under here")
    args = parser.parse_args()
    try:
        grammar = profile(args.lang).grammar
    except KeyError as err:
        parser.error(f"--lang {args.lang}: {err.args[0]}")
    if grammar.order != PIVOT.grammar.order or not grammar.wh_fronting:
        parser.error(f"--lang {args.lang}: the swaps need the pivot's word order and a fronted wh")
    config = load_config(args.config, args.overrides)
    if config.alignment.joint_weight:
        parser.error("alignment.joint_weight: the probe's QA stage has no joint term (set it to 0)")
    settings, spec, pivot = config.task.xquad, config.data.xquad, config.data.pivot
    root = data_root(config)
    pivot_words = pivot_question_words(config.data.demo.seed)

    def pivot_leading(words: list[str]) -> int:
        count = 0
        while count < len(words) and words[count] in pivot_words:
            count += 1
        return count

    # the trial's data: its training and evaluation limits (task.xquad.max_train, max_eval)
    train = read_qa(spec.train, root=root, lang=pivot, pivot=pivot, training=True)
    train = train[: settings.max_train]
    source = getattr(spec, args.split)
    pivot_eval = read_qa(source, root=root, lang=pivot, pivot=pivot)[: settings.max_eval]
    target_eval = read_qa(source, root=root, lang=args.lang, pivot=pivot)[: settings.max_eval]
    by_id = {e.id: e for e in pivot_eval}
    transformers.logging.set_verbosity_error()
    for number, encoder in enumerate(args.encoders, start=1):
        tokenizer = transformers.AutoTokenizer.from_pretrained(encoder)
        torch.manual_seed(config.train.seed)
        model = transformers.AutoModelForQuestionAnswering.from_pretrained(encoder)
        features = qa_train_dataset(train, tokenizer, settings, None)
        fine_tune(
            model,
            features,
            qa_collate,
            settings,
            name="xquad",
            seed=config.train.seed,
            device=torch.device("cpu"),
            bf16=False,
            max_grad_norm=config.train.max_grad_norm,
            state=StageState(),
            show_progress=False,
        )
        if args.save:  # numbered: trials name every encoder folder aligned_encoder
            saved = args.save / f"{number}-{Path(encoder).resolve().name}"
            model.save_pretrained(saved, safe_serialization=True)
            tokenizer.save_pretrained(saved)
            print(f"QA model of {encoder} saved in {saved}")
        questions = [(by_id[t.id].question.split(), t.question.split()) for t in target_eval]
        variants = {
            "pivot": pivot_eval,
            "target": target_eval,
            "pivot question": with_questions(target_eval, [" ".join(p) for p, _ in questions]),
            "pivot wh-word": with_questions(
                target_eval, [" ".join(p[: pivot_leading(p)] + t[1:]) for p, t in questions]
            ),
            "target wh-word": with_questions(
                pivot_eval, [" ".join(t[:1] + p[pivot_leading(p) :]) for p, t in questions]
            ),
        }
        print(f"{encoder} ({args.lang}, {args.split}; exact matches out of {len(pivot_eval) // 4})")
        print(f"  {'input':16s} {'F1':>5s}  " + " ".join(f"{k:>7s}" for k in KINDS))
        for name, examples in variants.items():
            windows = qa_eval_dataset(examples, tokenizer, settings, None)
            scores, answers = evaluate_qa(
                model,
                examples,
                windows,
                settings,
                batch_size=config.train.eval_batch_size,
                device=torch.device("cpu"),
                bf16=False,
            )
            hits = exact_by_kind(answers, examples)
            print(f"  {name:16s} {scores['f1']:5.1f}  " + " ".join(f"{hits[k]:7d}" for k in KINDS))


if __name__ == "__main__":
    run(lambda _: main())  # a config or data error: one line, exit 2
