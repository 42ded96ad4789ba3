"""Moses tokenisation of parallel text (sacremoses), as the paper's corpora were tokenised.

WordOT's words, and the words Pharaoh links index, are the text's whitespace-separated tokens.
Raw text (Europarl from the Hub) keeps punctuation on words: "Parliament," is one word, and
last-subword pooling would transport its comma. The Moses tokenizer splits it off (escaping of
special characters is left out: the encoder's tokenizer reads the characters themselves). The
result is cached on disk like the subword tokenisation, so workers and later trials reuse it.

Moses splits at spaces and punctuation only. Languages written without spaces between words
get their words another way (:data:`WORD_SEGMENTATION`); every other language is Moses alone.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.tokenized import cached_map
from ot_ray.errors import ConfigError

if TYPE_CHECKING:
    from ot_ray.config import DataConfig

Segmentation = Literal["cjk", "thai"]

WORD_SEGMENTATION: dict[str, Segmentation] = {"zh": "cjk", "ja": "cjk", "th": "thai"}
"""Languages whose words Moses cannot find, as their text has no spaces between words (Moses
would make a clause one "word", and WordOT would pool one vector for it):

- ``cjk`` (Chinese, Japanese): Moses, then every CJK ideograph a word of its own, the code
  points BERT's BasicTokenizer treats as Chinese characters. mBERT makes each of them a token of
  its own anyway, so a word is one mBERT token. Wide punctuation ("。", "「") is split off too,
  as Moses does for ASCII punctuation and leaves these on kana, Latin words or digits. Other
  runs (Latin words, digits, Japanese kana) stay Moses tokens.
- ``thai``: pythainlp's dictionary segmenter (newmm, offline) on runs of Thai script, Moses on
  the text between them. Moses itself would also cut Thai words at their tone marks. Thai
  abbreviations keep their full stops (``พ.ศ.``, ``ก.พ.``, ``ดร.``): :func:`split_thai_run`.
"""

SEGMENTATION_VERSION: dict[Segmentation, int] = {"cjk": 1, "thai": 3}
"""Our own rules' version per kind, in the cache fingerprint: raise a kind's when its rules
change (its cached corpora are then made again, the other kinds' stay valid). thai 2: its
abbreviations keep their full stops; 3: Thai decimals (๑๐.๓๐) stay whole."""

PRETOKENIZE_KEY = "data.parallel.pretokenize"

# The code point ranges of BERT's BasicTokenizer._is_chinese_char (transformers): the CJK
# Unified Ideographs, their extensions A to E and the compatibility ideographs. Hangul, kana
# and CJK punctuation are not among them. (tokenizers' Rust normaliser starts extension E at
# 0x2B920: every ideograph here is a word of its own either way.)
CJK_IDEOGRAPHS: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def is_cjk_ideograph(char: str) -> bool:
    """Whether mBERT's tokenizer makes ``char`` a token of its own as a Chinese character."""
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_IDEOGRAPHS)


def _wide_punctuation() -> str:
    """Punctuation of East Asian text (full- and half-width forms, "。", "、", "「"), which
    Moses's rules, written for European text, leave on the word before or after."""
    return "".join(
        char
        for char in map(chr, range(0x2E80, 0x10000))
        if unicodedata.category(char).startswith("P")
        and unicodedata.east_asian_width(char) in ("W", "F", "H")
    )


@functools.cache
def _alone_in_cjk() -> re.Pattern[str]:
    """What stands as a word of its own in CJK text (built on first use: the punctuation scan
    reads 53,000 code points, and every worker imports this module)."""
    ideographs = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in CJK_IDEOGRAPHS)
    return re.compile(f"[{ideographs}{re.escape(_wide_punctuation())}]")


# A run of the Thai block (letters, marks, digits, signs), with the full stops inside it and one
# after it (not an ellipsis's): the stops of its abbreviations.
_THAI_RUN = re.compile(r"([\u0E00-\u0E7F]+(?:\.[\u0E00-\u0E7F]+)*(?:\.(?!\.))?)")


def segmentation(lang: str) -> Segmentation | None:
    """How ``lang``'s words are found beyond Moses (``zh-TW``, ``zh_Hans``: as ``zh``)."""
    return WORD_SEGMENTATION.get(re.split(r"[-_]", lang, maxsplit=1)[0].lower())


@functools.lru_cache(maxsize=32)
def _tokenizer(lang: str):
    from sacremoses import MosesTokenizer  # languages without rules of their own get the default

    return MosesTokenizer(lang=lang)


def _moses(text: str, lang: str) -> str:
    return _tokenizer(lang).tokenize(text, escape=False, return_str=True)


def split_cjk(text: str) -> str:
    """``text`` (Moses-tokenised) with each CJK ideograph and wide punctuation mark a word."""
    return " ".join(_alone_in_cjk().sub(r" \g<0> ", text).split())


def thai_word_tokenizer() -> Callable[[str], list[str]]:
    """pythainlp's newmm segmenter, or the error that says how to install it (an optional
    dependency: only Thai needs it)."""
    try:
        from pythainlp.tokenize import word_tokenize
    except ImportError:
        raise ConfigError(
            "moses needs pythainlp to split th (Thai) into words, and it is not installed: "
            "pip install 'pythainlp>=5' (ot-ray's 'thai' extra)",
            key=PRETOKENIZE_KEY,
        ) from None

    def words(text: str) -> list[str]:
        return word_tokenize(text, engine="newmm", keep_whitespace=False)

    return words


# A full stop, unless it is a decimal point between two Thai digits (newmm keeps ๑๐.๓๐ whole).
_THAI_STOP = re.compile(r"(?<![\u0E50-\u0E59])\.|\.(?![\u0E50-\u0E59])")


def _short_letters(piece: str) -> bool:
    """One to three Thai characters, no Thai digit: a piece of a dotted abbreviation."""
    return 1 <= len(piece) <= 3 and not any("\u0e50" <= char <= "\u0e59" for char in piece)


@functools.cache
def thai_abbreviations() -> tuple[frozenset[str], int]:
    """The abbreviations with one full stop in pythainlp's word list (newmm's dictionary), without
    their stop (``กทม``, ``ดร``, ``น``, ``อบต``), and the length of the longest."""
    from pythainlp.corpus import thai_words

    known = frozenset(
        word[:-1] for word in thai_words() if word.endswith(".") and word.count(".") == 1
    )
    return known, max(map(len, known), default=0)


def split_thai_run(run: str, words: Callable[[str], list[str]]) -> tuple[list[str], bool]:
    """The words of a Thai run (:data:`_THAI_RUN`), and whether it ends with a full stop that is
    no abbreviation's, which the caller leaves to Moses with the text after it.

    Thai abbreviations are written with ASCII full stops (``ก.พ.`` February, ``พ.ศ.`` Buddhist
    era, ``ดร.`` Dr, ``น.`` o'clock), and Moses would cut them at each stop. newmm given the
    stops keeps the abbreviations of its word list, but also cuts ordinary words before a
    sentence's stop (``มาก.`` "very." becomes ``มา ก.``: ``ก.`` is an abbreviation too). So
    newmm segments the text between the stops, and a stop stays on the words before it when:

    - those words (newmm's last ones before it) and the stop are an abbreviation of pythainlp's
      word list (:func:`thai_abbreviations`; newmm cuts some of them, ``อบ ต`` for ``อบต``), or
    - it begins a chain: one to three Thai characters (or such an abbreviation) and a stop,
      then one or more pieces of one to three Thai characters each followed by a stop
      (``มี.ค.`` March, ``พ.ย.``, ``พ.ต.อ.``, which the word list lacks): sentences that short,
      without a space between them, are rare.

    Any other stop is a word of its own, as Moses makes it.
    """
    pieces = _THAI_STOP.split(run)  # a stop after each piece but the last
    stops = len(pieces) - 1
    known, longest = thai_abbreviations()
    out: list[str] = []
    i = 0
    while i <= stops:
        tokens = words(pieces[i]) if pieces[i] else []
        if i == stops:  # the run's last piece, no stop after it
            out += tokens
            break
        # the abbreviation that ends at this stop: the longest run of newmm's last words known
        # as one, else its last word
        start, tail, joined = 1, "", ""
        for n in range(1, len(tokens) + 1):
            joined = tokens[-n] + joined
            if len(joined) > longest:
                break
            if joined in known:
                start, tail = n, joined
        abbreviation = tail or tokens[-1]
        j = i + 1  # a chain: short pieces each followed by a stop
        if tail or _short_letters(abbreviation):
            while j < stops and _short_letters(pieces[j]):
                abbreviation += "." + pieces[j]
                j += 1
        if tail or j > i + 1:
            out += [*tokens[:-start], abbreviation + "."]
            i = j
        else:
            out += [*tokens, "."]
            i += 1
    left = run.endswith(".") and out[-1] == "."
    return (out[:-1] if left else out), left


def check_word_segmenters(languages: Iterable[str]) -> None:
    """Raise the installation hint now if a language's segmenter is missing, before any text
    is read (a worker would otherwise stop at that language, after the ones before it)."""
    if any(segmentation(lang) == "thai" for lang in languages):
        thai_word_tokenizer()


def _blank(text: str) -> bool:
    """Spaces and format characters only: Thai text often separates phrases with zero-width
    spaces, which would otherwise stand as words of no subword token between the Thai words."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def pretokenized_languages(data: DataConfig) -> list[str]:
    """The languages whose parallel text a trial Moses-tokenises: the pivot, the targets with
    training pairs and the evaluated languages with held-out pairs (the paper's main setting
    evaluates th and zh without parallel text for them)."""
    parallel = data.parallel
    trained = [lang for lang in data.languages if parallel.train_sources(lang)]
    held_out = [lang for lang in data.all_eval_languages[1:] if parallel.dev.covers(lang)]
    return list(dict.fromkeys([data.pivot, *trained, *held_out]))


def word_splitter(lang: str) -> Callable[[str], str]:
    """The function that turns a line of ``lang`` into its words joined by single spaces."""
    kind = segmentation(lang)
    if kind == "cjk":
        return lambda text: split_cjk(_moses(text, lang))
    if kind == "thai":
        thai_words = thai_word_tokenizer()

        def split_thai(text: str) -> str:
            parts = _THAI_RUN.split(text)  # odd indices: the Thai runs
            words: list[str] = []
            for k, part in enumerate(parts):
                if k % 2:
                    run_words, stop_left = split_thai_run(part, thai_words)
                    words += run_words
                    if stop_left:  # a sentence's stop: Moses's, with what follows it
                        parts[k + 1] = "." + parts[k + 1]
                elif not _blank(part):
                    words.append(_moses(part, lang))
            return " ".join(" ".join(words).split())

        return split_thai
    return lambda text: _moses(text, lang)


def segmenter_version(lang: str) -> str | None:
    """What ``lang``'s segmentation beyond Moses depends on, for the cache fingerprint."""
    kind = segmentation(lang)
    if kind == "thai":
        return f"thai-{SEGMENTATION_VERSION[kind]}/pythainlp-{version('pythainlp')}/newmm"
    return f"{kind}-{SEGMENTATION_VERSION[kind]}" if kind else None


def moses_settings(lang: str, pivot: str) -> dict[str, Any]:
    """The cache fingerprint's settings. Languages that are Moses alone keep the settings they
    had before segmentation existed, so their cached corpora stay valid."""
    settings: dict[str, Any] = {
        "lang": lang,
        "pivot": pivot,
        "escape": False,
        "sacremoses": version("sacremoses"),  # its rules and prefix lists change with it
        "v": 1,
    }
    words = {side: segmenter_version(code) for side, code in (("source", lang), ("target", pivot))}
    if any(words.values()):
        settings["words"] = words
    return settings


def moses_tokenized(
    corpus: ParallelCorpus, *, lang: str, pivot: str, cache_dir: Path | None
) -> ParallelCorpus:
    """``corpus`` with both sides Moses-tokenised (``lang`` the source's rules, ``pivot`` the
    target's) and segmented into words where Moses cannot (:data:`WORD_SEGMENTATION`), tokens
    joined by single spaces; links, rows and counts are kept."""
    splitters = {"source": word_splitter(lang), "target": word_splitter(pivot)}

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return {side: [split(text) for text in batch[side]] for side, split in splitters.items()}

    tokenized = cached_map(
        {"source": corpus.sources, "target": corpus.targets},
        tokenize,
        cache_dir=cache_dir,
        name="moses",
        settings=moses_settings(lang, pivot),
    )
    return dataclasses.replace(
        corpus, sources=list(tokenized["source"]), targets=list(tokenized["target"])
    )
