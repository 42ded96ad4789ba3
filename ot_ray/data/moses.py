"""Moses tokenisation of parallel text (sacremoses), as the paper's corpora were tokenised.

WordOT's words, and the words Pharaoh links index, are the text's whitespace-separated tokens.
Raw text (Europarl from the Hub) keeps punctuation on words: "Parliament," is one word, and
last-subword pooling would transport its comma. The Moses tokenizer splits it off (escaping of
special characters is left out: the encoder's tokenizer reads the characters themselves). The
result is cached on disk like the subword tokenisation, so workers and later trials reuse it.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.tokenized import cached_map


@lru_cache(maxsize=32)
def _tokenizer(lang: str):
    from sacremoses import MosesTokenizer  # languages without rules of their own get the default

    return MosesTokenizer(lang=lang)


def moses_tokenized(
    corpus: ParallelCorpus, *, lang: str, pivot: str, cache_dir: Path | None
) -> ParallelCorpus:
    """``corpus`` with both sides Moses-tokenised (``lang`` the source's rules, ``pivot`` the
    target's), tokens joined by single spaces; links, rows and counts are kept."""

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        return {
            side: [_tokenizer(code).tokenize(text, escape=False, return_str=True) for text in texts]
            for side, code, texts in (
                ("source", lang, batch["source"]),
                ("target", pivot, batch["target"]),
            )
        }

    tokenized = cached_map(
        {"source": corpus.sources, "target": corpus.targets},
        tokenize,
        cache_dir=cache_dir,
        name="moses",
        settings={
            "lang": lang,
            "pivot": pivot,
            "escape": False,
            "sacremoses": version("sacremoses"),  # its rules and prefix lists change with it
            "v": 1,
        },
    )
    return dataclasses.replace(
        corpus, sources=list(tokenized["source"]), targets=list(tokenized["target"])
    )
