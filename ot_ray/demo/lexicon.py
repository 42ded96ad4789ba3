"""The concepts of the demo world and the words each artificial language uses for them.

The pivot language borrows real English words so that plots and predictions stay readable; every
other language gets invented words with its own sound inventory, drawn deterministically from the
seed. Only digits, person names and punctuation are shared by all languages: the weak
cross-lingual anchor that shared subwords give mBERT.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

AGENTS = (
    "dog", "cat", "horse", "bird", "farmer", "teacher", "doctor", "student", "girl", "boy",
    "baker", "sailor", "monkey", "rabbit", "soldier", "singer", "driver", "painter", "lion",
    "nurse",
)  # fmt: skip
OBJECTS = (
    "apple", "book", "car", "ball", "letter", "cake", "box", "key", "chair", "cup", "lamp",
    "rope", "coin", "hat", "shoe", "bottle", "flower", "table", "bag", "stone", "basket", "drum",
    "pencil", "ring", "shirt", "plate", "clock", "boat", "map", "egg",
)  # fmt: skip
VERBS = (
    "see", "carry", "buy", "sell", "find", "hide", "paint", "wash", "throw", "catch", "open",
    "break", "hold", "push", "pull", "drop", "clean", "build", "lift", "keep",
)  # fmt: skip
COLORS = ("red", "blue", "green", "black", "white", "yellow")
SIZES = ("big", "small", "huge", "tiny")
PLACES = (
    "park", "market", "school", "house", "garden", "river", "forest", "station", "kitchen",
    "village", "church", "harbor",
)  # fmt: skip
PREPOSITIONS = ("in", "near", "behind", "beside")
MANNERS = ("quickly", "slowly", "happily", "carefully", "quietly", "loudly")
QUESTION_WORDS = ("what", "who", "where", "howmany")

#: Tokens every language writes the same way.
NAMES = ("Anna", "Omar", "Yuki", "Lena", "Ravi", "Maria", "Ivan", "Sara", "Ali", "Nina")
DIGITS = tuple(str(d) for d in range(2, 10))
PUNCTUATION = (".", "?")
SHARED_TOKENS = frozenset(NAMES + DIGITS + PUNCTUATION)

#: Concepts that get a word in every language (function words included).
CONTENT_CONCEPTS = AGENTS + OBJECTS + VERBS + COLORS + SIZES + PLACES + PREPOSITIONS + MANNERS
FUNCTION_CONCEPTS = ("the", "do", "not", *QUESTION_WORDS)


@dataclass(frozen=True)
class Grammar:
    """How one language orders and marks the parts of a frame."""

    order: str  # "SVO", "SOV" or "VSO"
    adjective_after_noun: bool
    postpositions: bool
    has_article: bool
    plural_suffix: str
    wh_fronting: bool  # False: the question word stays where the answer would be
    question_particle: bool  # a final particle marks questions (the "do" concept)
    do_support: bool = False  # "what does the dog see ?": the "do" word after a fronted wh
    split_verbs: bool = False  # fertility 1 -> 2: a light verb before every verb stem
    fused_locations: bool = False  # fertility 3 -> 1: "in the park" is one word
    fused_article: bool = False  # fertility 2 -> 1: the article is a prefix of the next word


@dataclass(frozen=True)
class LanguageProfile:
    """A language of the demo world: a code, its grammar and its sound inventory."""

    code: str
    description: str
    grammar: Grammar
    consonants: str = ""
    vowels: str = ""
    seen_in_alignment: bool = True


PIVOT = LanguageProfile(
    code="en",
    description="pivot (English-like): SVO, adjectives before the noun, prepositions",
    grammar=Grammar(
        order="SVO",
        adjective_after_noun=False,
        postpositions=False,
        has_article=True,
        plural_suffix="s",
        wh_fronting=True,
        question_particle=False,
        do_support=True,
    ),
)

TARGETS = (
    LanguageProfile(
        code="de",
        description="new lexicon, same word order as the pivot",
        grammar=Grammar(
            order="SVO",
            adjective_after_noun=False,
            postpositions=False,
            has_article=True,
            plural_suffix="en",
            wh_fronting=True,
            question_particle=False,
        ),
        consonants="bdgkrstzw",
        vowels="aeiou",
    ),
    LanguageProfile(
        code="fr",
        description="adjectives after the noun, question words in place",
        grammar=Grammar(
            order="SVO",
            adjective_after_noun=True,
            postpositions=False,
            has_article=True,
            plural_suffix="i",
            wh_fronting=False,
            question_particle=False,
        ),
        consonants="lmnprsv",
        vowels="aeiouy",
    ),
    LanguageProfile(
        code="bg",
        description="verb-final (SOV), adjectives after the noun, postpositions, no article",
        grammar=Grammar(
            order="SOV",
            adjective_after_noun=True,
            postpositions=True,
            has_article=False,
            plural_suffix="ov",
            wh_fronting=False,
            question_particle=True,
        ),
        consonants="bdklmnprstvz",
        vowels="aeiou",
    ),
    LanguageProfile(
        code="es",
        description="fertility: verbs are two words, 'in the park' and 'the dog' are one word",
        grammar=Grammar(
            order="SVO",
            adjective_after_noun=False,
            postpositions=False,
            has_article=True,
            plural_suffix="ra",
            wh_fronting=True,
            question_particle=False,
            split_verbs=True,
            fused_locations=True,
            fused_article=True,
        ),
        consonants="fhjlmnrsty",
        vowels="aeiou",
    ),
    LanguageProfile(
        code="el",
        description="left out of the parallel data: verb-initial (VSO), adjectives after the noun",
        grammar=Grammar(
            order="VSO",
            adjective_after_noun=True,
            postpositions=False,
            has_article=True,
            plural_suffix="oi",
            wh_fronting=True,
            question_particle=False,
        ),
        consonants="ghkmnpstx",
        vowels="aeio",
        seen_in_alignment=False,
    ),
)

LANGUAGES = (PIVOT, *TARGETS)


def profile(code: str) -> LanguageProfile:
    """The profile of language ``code``; a clear error for an unknown one."""
    for language in LANGUAGES:
        if language.code == code:
            return language
    known = ", ".join(language.code for language in LANGUAGES)
    raise KeyError(f"the demo world has no language {code!r} (it has {known})")


def build_lexicons(seed: int) -> dict[str, dict[str, str]]:
    """One word per concept per language; no written word (a plural, a fused article or
    location included) is used by two languages or two concepts. Draws that would make one
    are drawn again, from another stream, so seeds without a clash keep their words."""
    for attempt in range(100):
        lexicons = _draw_lexicons(seed, attempt)
        if not _clashes(lexicons):
            return lexicons
    raise RuntimeError(f"no lexicon without clashing words for seed {seed} in 100 draws")


def _draw_lexicons(seed: int, attempt: int) -> dict[str, dict[str, str]]:
    lexicons = {PIVOT.code: _pivot_lexicon()}
    taken = set(SHARED_TOKENS) | {w for p in lexicons[PIVOT.code].values() for w in p.split()}
    for language in TARGETS:
        stream = f"lexicon-{seed}-{language.code}" + (f"-redraw{attempt}" if attempt else "")
        rng = random.Random(stream)
        words: dict[str, str] = {}
        for concept in CONTENT_CONCEPTS + FUNCTION_CONCEPTS:
            short = concept in FUNCTION_CONCEPTS or concept in PREPOSITIONS
            word = _new_word(rng, language, taken, syllables=(1, 2) if short else (2, 3))
            taken.add(word)
            words[concept] = word
        if language.grammar.split_verbs:
            words["light_verb"] = _new_word(rng, language, taken, syllables=(1, 1))
            taken.add(words["light_verb"])
        lexicons[language.code] = words
    return lexicons


def written_forms(lexicon: dict[str, str], grammar: Grammar) -> list[tuple[str, str]]:
    """Every word a language writes, with what it means: the lexicon's words, plural nouns,
    and the words an article or a preposition fuses into (see ``grammar.py``)."""
    forms = [(word, concept) for concept, text in lexicon.items() for word in text.split()]
    nouns = AGENTS + OBJECTS
    forms += [(lexicon[n] + grammar.plural_suffix, f"{n} (plural)") for n in nouns]
    if grammar.fused_locations:
        forms += [(lexicon[p] + lexicon[q], f"{q} the {p}") for p in PLACES for q in PREPOSITIONS]
    if grammar.fused_article:
        forms += [(lexicon["the"] + lexicon[x], f"the {x}") for x in nouns + SIZES + COLORS]
    return forms


def _clashes(lexicons: dict[str, dict[str, str]]) -> list[str]:
    """Written words two languages, or two meanings of one language, share."""
    seen: dict[str, str] = {token: "shared" for token in SHARED_TOKENS}
    clashes = []
    for language in LANGUAGES:
        own: dict[str, str] = {}
        for word, meaning in written_forms(lexicons[language.code], language.grammar):
            if own.setdefault(word, meaning) != meaning:
                clashes.append(f"{language.code} {word}: {own[word]} / {meaning}")
        for word in own:
            if seen.setdefault(word, language.code) != language.code:
                clashes.append(f"{word}: {seen[word]} / {language.code}")
    return clashes


def function_words(seed: int) -> list[str]:
    """Every language's words for the function concepts and prepositions, each word once."""
    lexicons = build_lexicons(seed).values()
    concepts = FUNCTION_CONCEPTS + PREPOSITIONS
    return sorted({word for lexicon in lexicons for c in concepts for word in lexicon[c].split()})


def _pivot_lexicon() -> dict[str, str]:
    words = {concept: concept for concept in CONTENT_CONCEPTS + FUNCTION_CONCEPTS}
    words["do"] = "does"
    words["howmany"] = "how many"
    return words


def _new_word(
    rng: random.Random, language: LanguageProfile, taken: set[str], syllables: tuple[int, int]
) -> str:
    while True:
        count = rng.randint(*syllables)
        word = "".join(
            rng.choice(language.consonants) + rng.choice(language.vowels) for _ in range(count)
        )
        if rng.random() < 0.5:
            word += rng.choice(language.consonants)
        if word not in taken and len(word) > 1:
            return word
