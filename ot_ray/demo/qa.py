"""XQuAD-style reading comprehension: short stories of several events and questions about them.

Every story has three marked events: the only one with a place (asked "where"), the only one
with several objects (asked "how many"), and the only one with a manner adverb (asked "who" and
"what", the question repeating the adverb); the other events are plain. Subject and object nouns
occur once per story. So every question has exactly one answer, a span of the story in every
language, and finding it takes knowing the question word and the kind of word that marks its
event (a preposition, a number after the verb, an adverb), not a word-by-word comparison: the
tiny demo encoder does not learn comparison in its budget (measured: pivot F1 26 when questions
could only be told apart by their nouns and verbs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ot_ray.demo.grammar import Frame, Question, strip_optional
from ot_ray.demo.lexicon import MANNERS, VERBS
from ot_ray.demo.sampling import MAX_COUNT, sample_entity, sample_location


@dataclass(frozen=True)
class Story:
    frames: tuple[Frame, ...]
    questions: tuple[tuple[int, Question], ...]  # (index of the frame it asks about, question)


def sample_story(rng: random.Random, n_sentences: tuple[int, int] = (3, 5)) -> Story:
    """A story of 3-5 events and its four questions."""
    marks = ["place", "count", "manner"]
    marks += ["plain"] * (rng.randint(*n_sentences) - len(marks))
    rng.shuffle(marks)
    frames: list[Frame] = []
    subjects: set[str] = set()
    objects: set[str] = set()
    for mark in marks:
        subject = sample_entity(rng, agent=True, exclude=subjects)
        obj = sample_entity(rng, agent=False, exclude=objects)
        obj = replace(obj, count=rng.randint(2, MAX_COUNT) if mark == "count" else 1)
        subjects.add(subject.noun)
        objects.add(obj.noun)
        frames.append(
            Frame(
                subject,
                rng.choice(VERBS),
                obj,
                location=sample_location(rng) if mark == "place" else None,
                manner=rng.choice(MANNERS) if mark == "manner" else None,
            )
        )
    asked = [("where", marks.index("place")), ("howmany", marks.index("count"))]
    asked += [("who", marks.index("manner")), ("what", marks.index("manner"))]
    questions = []
    for kind, index in asked:
        adjectives = {
            f"{role}.{attribute}"
            for role in "SO"
            for attribute in ("size", "color")
            if rng.random() < 0.5
        }
        frame = frames[index]
        question = strip_optional(frame, keep_location=kind == "where", keep=adjectives | {"M"})
        questions.append((index, Question(question, kind)))
    return Story(tuple(frames), tuple(questions))
