"""Generate the demo world's text files: monolingual, parallel (+ gold alignments), XNLI, XQuAD.

Everything is drawn from one seeded ``random.Random`` in a fixed order and written with fixed
formatting, so the same seed and sizes give byte-identical files. Frames used by any evaluation
set are reserved first; training data and pre-training text never reuse them, and the
pre-training text reuses no frame at all. Text can still coincide, as a question leaves out the
part it asks about and an NLI hypothesis is short: in the seed-0 world at ``configs/demo.yaml``'s
sizes, 4 XQuAD test questions (of 1,000 per language, 6 languages) occur in pre-training text, 4 in
parallel pairs, 1 pivot test premise and 4 hypotheses in XNLI training rows (no whole pair), and
71 of the pivot's test questions (25 of 400 dev ones) in the XQuAD training set, asked of other
stories (no question-answer pair, no context sentence). Removing them changes every number
measured on the world, so it waits for a new world version.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from ot_ray.config import WorldSizes
from ot_ray.demo.grammar import Frame, Question, Renderer, Word, answer_span, gold_alignment
from ot_ray.demo.lexicon import LANGUAGES, PIVOT, TARGETS, build_lexicons
from ot_ray.demo.nli import LABELS, NLIExample, sample_nli
from ot_ray.demo.qa import Story, sample_story
from ot_ray.demo.sampling import sample_frame, sample_question

P_QUESTION = 0.15  # share of questions in monolingual and parallel text


@dataclass
class _Reservations:
    """Frames already used; later draws that hit one are redrawn."""

    frames: set[Frame] = field(default_factory=set)

    def add(self, *frames: Frame) -> None:
        self.frames.update(frames)

    def fresh(self, draw: Callable[[], Frame]) -> Frame:
        while (frame := draw()) in self.frames:
            pass
        return frame


def write_world(out: Path, sizes: WorldSizes, seed: int) -> dict[str, object]:
    """Write every data file of the world under ``out``; return the data part of the manifest."""
    rng = random.Random(f"world-{seed}")
    renderers = {
        lang.code: Renderer(lang.grammar, lexicon)
        for lang, lexicon in zip(LANGUAGES, build_lexicons(seed).values(), strict=True)
    }
    reserved = _Reservations()
    codes = [lang.code for lang in LANGUAGES]
    seen = [lang.code for lang in TARGETS if lang.seen_in_alignment]

    # Evaluation sets first: everything after avoids their frames.
    nli_eval = {
        split: _nli_examples(rng, n, reserved)
        for split, n in (("dev", sizes.xnli_dev), ("test", sizes.xnli_test))
    }
    qa_eval = {
        split: _stories(rng, n, reserved)
        for split, n in (("dev", sizes.xquad_dev_stories), ("test", sizes.xquad_test_stories))
    }
    parallel_dev = _sentences(rng, sizes.parallel_dev_pairs, reserved)
    parallel_train = {code: _sentences(rng, sizes.parallel_pairs, reserved) for code in seen}
    nli_train = _nli_examples(rng, sizes.xnli_train, reserved)
    qa_train = _stories(rng, sizes.xquad_train_stories, reserved)
    mono = {code: _documents(rng, sizes.mono_sentences, reserved) for code in codes}

    files: dict[str, str] = {}
    for code in codes:
        files[f"mono/{code}.txt"] = "\n".join(
            "".join(_text(renderers[code], item) + "\n" for item in document)
            for document in mono[code]
        )
    pivot = renderers[PIVOT.code]
    for code in [lang.code for lang in TARGETS]:
        pairs = [("dev/", parallel_dev)]
        if code in seen:
            pairs.append(("", parallel_train[code]))
        for folder, items in pairs:
            tsv, align = _parallel(renderers[code], pivot, items)
            files[f"parallel/{folder}{code}-{PIVOT.code}.tsv"] = tsv
            files[f"parallel/{folder}{code}-{PIVOT.code}.align"] = align
    files[f"xnli/train-{PIVOT.code}.tsv"] = _nli_tsv(pivot, nli_train)
    files[f"xquad/train-{PIVOT.code}.json"] = _squad_json(pivot, qa_train, "train")
    for code in codes:
        for split in ("dev", "test"):
            files[f"xnli/{split}-{code}.tsv"] = _nli_tsv(renderers[code], nli_eval[split])
            files[f"xquad/{split}-{code}.json"] = _squad_json(
                renderers[code], qa_eval[split], split
            )

    checksums = {}
    for name in sorted(files):
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = files[name].encode("utf-8")
        path.write_bytes(data)
        checksums[name] = hashlib.sha256(data).hexdigest()
    return {
        "seed": seed,
        "sizes": sizes.model_dump(),
        "pivot": PIVOT.code,
        "languages": [
            {
                "code": lang.code,
                "description": lang.description,
                "seen_in_alignment": lang is PIVOT or lang.seen_in_alignment,
            }
            for lang in LANGUAGES
        ],
        "seen_in_alignment": seen,
        "labels": list(LABELS),
        "files": checksums,
    }


# -- drawing ----------------------------------------------------------------------------------


def _nli_examples(rng: random.Random, n: int, reserved: _Reservations) -> list[NLIExample]:
    examples = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        while (example := sample_nli(rng, label)).premise in reserved.frames:
            pass
        reserved.add(example.premise, example.hypothesis)
        examples.append(example)
    rng.shuffle(examples)
    return examples


def _stories(rng: random.Random, n: int, reserved: _Reservations) -> list[Story]:
    stories = []
    while len(stories) < n:
        story = sample_story(rng)
        if any(frame in reserved.frames for frame in story.frames):
            continue
        reserved.add(*story.frames, *(q.frame for _, q in story.questions))
        stories.append(story)
    return stories


def _sentences(rng: random.Random, n: int, reserved: _Reservations) -> list[Frame | Question]:
    """Declaratives and some questions, each from a frame nobody used before."""
    items: list[Frame | Question] = []
    for _ in range(n):
        frame = reserved.fresh(lambda: sample_frame(rng))
        reserved.add(frame)
        items.append(sample_question(rng, frame) if rng.random() < P_QUESTION else frame)
    return items


def _documents(rng: random.Random, n: int, reserved: _Reservations) -> list[list[Frame | Question]]:
    """Short documents whose sentences mention earlier people and things again.

    Natural text repeats itself; learning to predict a masked word from its earlier mention is
    what teaches a masked language model to match words across sentences, which the tasks need.
    """
    documents, total = [], 0
    while total < n:
        document: list[Frame | Question] = []
        frames: list[Frame] = []
        for _ in range(min(rng.randint(3, 6), n - total)):
            if frames and rng.random() < P_QUESTION:
                document.append(sample_question(rng, rng.choice(frames)))
                continue

            frame = reserved.fresh(partial(_continuing_frame, rng, frames))
            reserved.add(frame)
            frames.append(frame)
            document.append(frame)
        documents.append(document)
        total += len(document)
    return documents


def _continuing_frame(rng: random.Random, earlier: list[Frame]) -> Frame:
    """A new event, often about someone or something the document mentioned before."""
    frame = sample_frame(rng)
    if earlier and rng.random() < 0.7:
        previous = rng.choice(earlier)
        if rng.random() < 0.5:
            return replace(frame, subject=previous.subject)
        return replace(frame, object=previous.object)
    return frame


# -- formats ----------------------------------------------------------------------------------


def _words(renderer: Renderer, item: Frame | Question) -> list[Word]:
    return renderer.question(item) if isinstance(item, Question) else renderer.sentence(item)


def _text(renderer: Renderer, item: Frame | Question) -> str:
    return " ".join(word.text for word in _words(renderer, item))


def _parallel(
    source: Renderer, target: Renderer, items: Iterable[Frame | Question]
) -> tuple[str, str]:
    """TSV lines ``source<TAB>target`` and Pharaoh lines ``i-j`` (source, target word index)."""
    tsv, align = [], []
    for item in items:
        src, tgt = _words(source, item), _words(target, item)
        tsv.append(" ".join(w.text for w in src) + "\t" + " ".join(w.text for w in tgt) + "\n")
        align.append(" ".join(f"{i}-{j}" for i, j in gold_alignment(src, tgt)) + "\n")
    return "".join(tsv), "".join(align)


def _nli_tsv(renderer: Renderer, examples: list[NLIExample]) -> str:
    lines = ["premise\thypothesis\tlabel\n"]
    for example in examples:
        premise = _text(renderer, example.premise)
        hypothesis = _text(renderer, example.hypothesis)
        lines.append(f"{premise}\t{hypothesis}\t{example.label}\n")
    return "".join(lines)


def _squad_json(renderer: Renderer, stories: list[Story], split: str) -> str:
    """SQuAD v1.1: data -> paragraphs -> context, qas -> id, question, answers."""
    articles = []
    for s, story in enumerate(stories):
        sentences = [renderer.sentence(frame) for frame in story.frames]
        starts, offset = [], 0
        for words in sentences:
            starts.append(offset)
            offset += len(" ".join(w.text for w in words)) + 1
        context = " ".join(" ".join(w.text for w in words) for words in sentences)
        qas = []
        for q, (index, question) in enumerate(story.questions):
            words = sentences[index]
            first, last = answer_span(words, question.asks)
            before = " ".join(w.text for w in words[:first])
            start = starts[index] + len(before) + (1 if before else 0)
            text = " ".join(w.text for w in words[first:last])
            assert context[start : start + len(text)] == text
            qas.append(
                {
                    "id": f"{split}-{s}-{q}",
                    "question": " ".join(w.text for w in renderer.question(question)),
                    "answers": [{"text": text, "answer_start": start}],
                }
            )
        articles.append({"title": f"{split}-{s}", "paragraphs": [{"context": context, "qas": qas}]})
    return json.dumps({"version": "1.1", "data": articles}, ensure_ascii=False, indent=1) + "\n"
