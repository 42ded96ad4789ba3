"""Random frames of the demo world, drawn from a seeded ``random.Random``."""

from __future__ import annotations

import random

from ot_ray.demo.grammar import Entity, Frame, Location, Question
from ot_ray.demo.lexicon import (
    AGENTS,
    COLORS,
    MANNERS,
    NAMES,
    OBJECTS,
    PLACES,
    PREPOSITIONS,
    SIZES,
    VERBS,
)

MAX_COUNT = 9


def sample_entity(
    rng: random.Random, *, agent: bool, p_adjective: float = 0.5, exclude: set[str] = frozenset()
) -> Entity:
    """A subject (agent or name) or an object noun phrase; nouns in ``exclude`` are avoided."""
    if agent and rng.random() < 0.2:
        name = rng.choice([n for n in NAMES if n not in exclude])
        return Entity(noun=name, is_name=True)
    noun = rng.choice([n for n in (AGENTS if agent else OBJECTS) if n not in exclude])
    return Entity(
        noun=noun,
        count=1 if rng.random() < 0.5 else rng.randint(2, MAX_COUNT),
        size=rng.choice(SIZES) if rng.random() < p_adjective else None,
        color=rng.choice(COLORS) if rng.random() < p_adjective else None,
    )


def sample_location(rng: random.Random) -> Location:
    return Location(rng.choice(PREPOSITIONS), rng.choice(PLACES))


def sample_frame(
    rng: random.Random,
    *,
    p_location: float = 0.7,
    p_negated: float = 0.15,
    p_manner: float = 0.2,
) -> Frame:
    return Frame(
        subject=sample_entity(rng, agent=True),
        verb=rng.choice(VERBS),
        object=sample_entity(rng, agent=False),
        location=sample_location(rng) if rng.random() < p_location else None,
        negated=rng.random() < p_negated,
        manner=rng.choice(MANNERS) if rng.random() < p_manner else None,
    )


def sample_question(rng: random.Random, frame: Frame) -> Question:
    """A question about a frame; only frames with a location get ``where``, plural objects
    ``howmany``."""
    kinds = ["what", "who"]
    if frame.location is not None:
        kinds.append("where")
    if frame.object.count > 1:
        kinds.append("howmany")
    return Question(frame, rng.choice(kinds))


def different(rng: random.Random, choices: tuple[str, ...], current: str | None) -> str:
    """A value from ``choices`` other than ``current``."""
    return rng.choice([c for c in choices if c != current])
