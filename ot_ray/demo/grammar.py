"""Meanings (frames) of the demo world and how each language renders them as words.

Every rendered word carries the set of meaning elements it expresses ("S.noun", "V", "L.prep"
...). Two words of a translation pair are aligned exactly when they share an element, which gives
gold word alignments for free, including the one-to-many and many-to-one cases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ot_ray.demo.lexicon import Grammar

PUNCT = "PUNCT"
WH = "Q.wh"
QUESTION_MARK = "Q.mark"


@dataclass(frozen=True)
class Entity:
    """A noun phrase: a person's name, or a counted noun with optional size and colour."""

    noun: str
    count: int = 1
    size: str | None = None
    color: str | None = None
    is_name: bool = False


@dataclass(frozen=True)
class Location:
    preposition: str
    place: str


@dataclass(frozen=True)
class Frame:
    """One event: who does what to what, where. Labels of both tasks are computed from it."""

    subject: Entity
    verb: str
    object: Entity
    location: Location | None = None
    negated: bool = False
    manner: str | None = None  # "quickly" ...: how it was done


@dataclass(frozen=True)
class Question:
    """A question about one part of a frame: ``what`` (object), ``who`` (subject), ``where``
    (location) or ``howmany`` (object count)."""

    frame: Frame
    asks: str


@dataclass(frozen=True)
class Word:
    text: str
    meaning: frozenset[str]


#: Which meaning elements form the answer to each kind of question.
ANSWER_ROLE = {"what": "O", "who": "S", "where": "L", "howmany": "O.num"}


class Renderer:
    """Turns frames and questions into words of one language."""

    def __init__(self, grammar: Grammar, lexicon: dict[str, str]) -> None:
        self.grammar = grammar
        self.lexicon = lexicon

    def sentence(self, frame: Frame) -> list[Word]:
        """A declarative sentence, ending with a full stop."""
        return [*self._clause(frame, asks=None), Word(".", frozenset({PUNCT}))]

    def question(self, question: Question) -> list[Word]:
        """A question whose answer is the asked part of the frame."""
        words = self._clause(question.frame, asks=question.asks)
        if self.grammar.question_particle:
            words.append(self._word("do", QUESTION_MARK))
        return [*words, Word("?", frozenset({PUNCT}))]

    # -- constituents -------------------------------------------------------------------------

    def _clause(self, frame: Frame, asks: str | None) -> list[Word]:
        parts = {
            "S": self._entity(frame.subject, "S", wh=asks == "who"),
            "V": self._verb(frame.verb, negated=frame.negated),
            "O": self._entity(frame.object, "O", wh=asks == "what", wh_count=asks == "howmany"),
            "M": [self._word(frame.manner, "M")] if frame.manner else [],
            "L": self._location(frame.location, wh=asks == "where"),
        }
        order = {"SVO": "SVOML", "SOV": "SLMOV", "VSO": "VSOML"}[self.grammar.order]
        if asks is not None and self.grammar.wh_fronting:
            fronted = ANSWER_ROLE[asks][0]
            order = fronted + order.replace(fronted, "")
            if self.grammar.do_support and fronted != "S":
                parts[fronted] = [*parts[fronted], self._word("do", QUESTION_MARK)]
        return [word for role in order for word in parts[role]]

    def _entity(self, entity: Entity, role: str, *, wh: bool = False, wh_count: bool = False):
        if wh:
            return self._phrase(self.lexicon["what" if role == "O" else "who"], {WH})
        if entity.is_name:
            return [Word(entity.noun, frozenset({f"{role}.noun"}))]
        words: list[Word] = []
        if wh_count:
            words += self._phrase(self.lexicon["howmany"], {WH})
        elif entity.count > 1:
            words.append(Word(str(entity.count), frozenset({f"{role}.num"})))
        elif self.grammar.has_article:
            words.append(self._word("the", f"{role}.det"))
        noun = self.lexicon[entity.noun] + (self.grammar.plural_suffix if entity.count > 1 else "")
        adjectives = [
            self._word(value, f"{role}.{kind}")
            for kind, value in (("size", entity.size), ("color", entity.color))
            if value is not None
        ]
        noun_word = Word(noun, frozenset({f"{role}.noun"}))
        if self.grammar.adjective_after_noun:
            words += [noun_word, *reversed(adjectives)]
        else:
            words += [*adjectives, noun_word]
        return self._fuse_article(words) if self.grammar.fused_article else words

    def _verb(self, verb: str, *, negated: bool) -> list[Word]:
        words = [self._word(verb, "V")]
        if self.grammar.split_verbs:
            words.insert(0, self._word("light_verb", "V"))
        if negated:
            words.insert(0, self._word("not", "V.neg"))
        return words

    def _location(self, location: Location | None, *, wh: bool = False) -> list[Word]:
        if wh:
            return self._phrase(self.lexicon["where"], {WH})
        if location is None:
            return []
        if self.grammar.fused_locations:
            text = self.lexicon[location.place] + self.lexicon[location.preposition]
            return [Word(text, frozenset({"L.prep", "L.det", "L.noun"}))]
        noun_phrase = [self._word(location.place, "L.noun")]
        if self.grammar.has_article:
            noun_phrase.insert(0, self._word("the", "L.det"))
        preposition = self._word(location.preposition, "L.prep")
        if self.grammar.postpositions:
            return [*noun_phrase, preposition]
        return [preposition, *noun_phrase]

    # -- helpers ------------------------------------------------------------------------------

    def _word(self, concept: str, meaning: str) -> Word:
        return Word(self.lexicon[concept], frozenset({meaning}))

    @staticmethod
    def _phrase(text: str, meaning: set[str]) -> list[Word]:
        return [Word(part, frozenset(meaning)) for part in text.split()]

    @staticmethod
    def _fuse_article(words: list[Word]) -> list[Word]:
        if len(words) < 2 or not any(m.endswith(".det") for m in words[0].meaning):
            return words
        article, following = words[0], words[1]
        fused = Word(article.text + following.text, article.meaning | following.meaning)
        return [fused, *words[2:]]


def answer_span(words: list[Word], asks: str) -> tuple[int, int]:
    """Index range [start, end) of the words that answer ``asks`` in a declarative sentence."""
    role = ANSWER_ROLE[asks]
    inside = [
        i
        for i, word in enumerate(words)
        if any(m == role or m.startswith(role + ".") for m in word.meaning)
    ]
    if not inside or inside[-1] - inside[0] + 1 != len(inside):
        raise ValueError(f"answer to {asks!r} is not one contiguous span")
    return inside[0], inside[-1] + 1


def gold_alignment(source: list[Word], target: list[Word]) -> list[tuple[int, int]]:
    """Pharaoh pairs (source index, target index) of words that express a common meaning."""
    return [
        (i, j) for i, s in enumerate(source) for j, t in enumerate(target) if s.meaning & t.meaning
    ]


def strip_optional(frame: Frame, keep_location: bool, keep: set[str]) -> Frame:
    """The frame with only the adjectives named in ``keep`` ("S.size", "O.color" ...) and the
    manner if ``keep`` has "M"."""

    def trimmed(entity: Entity, role: str) -> Entity:
        return replace(
            entity,
            size=entity.size if f"{role}.size" in keep else None,
            color=entity.color if f"{role}.color" in keep else None,
        )

    return replace(
        frame,
        subject=trimmed(frame.subject, "S"),
        object=trimmed(frame.object, "O"),
        location=frame.location if keep_location else None,
        manner=frame.manner if "M" in keep else None,
    )
