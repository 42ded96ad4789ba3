"""XQuAD-style reading comprehension: short stories of several events and questions about them.

Within one story every subject and every object noun occurs once, so each question (which names
the other parts of its event) has exactly one answer: a span of the story in every language.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ot_ray.demo.grammar import Frame, Question, strip_optional
from ot_ray.demo.lexicon import MANNERS, VERBS
from ot_ray.demo.sampling import sample_entity, sample_location, sample_question


@dataclass(frozen=True)
class Story:
    frames: tuple[Frame, ...]
    questions: tuple[tuple[int, Question], ...]  # (index of the frame it asks about, question)


def sample_story(rng: random.Random, n_sentences: tuple[int, int] = (3, 5)) -> Story:
    """A story and one question per sentence."""
    frames: list[Frame] = []
    subjects: set[str] = set()
    objects: set[str] = set()
    for _ in range(rng.randint(*n_sentences)):
        subject = sample_entity(rng, agent=True, exclude=subjects)
        obj = sample_entity(rng, agent=False, exclude=objects)
        subjects.add(subject.noun)
        objects.add(obj.noun)
        location = sample_location(rng) if rng.random() < 0.8 else None
        manner = rng.choice(MANNERS) if rng.random() < 0.2 else None
        frames.append(Frame(subject, rng.choice(VERBS), obj, location, manner=manner))
    questions = []
    for index, frame in enumerate(frames):
        question = sample_question(rng, frame)
        adjectives = {
            f"{role}.{kind}" for role in "SO" for kind in ("size", "color") if rng.random() < 0.5
        }
        keep_location = question.asks != "where" and rng.random() < 0.5
        asked = strip_optional(frame, keep_location=keep_location, keep=adjectives)
        if question.asks == "where":
            asked = replace(asked, location=frame.location)
        questions.append((index, Question(asked, question.asks)))
    return Story(tuple(frames), tuple(questions))
