"""Tokenisation through ``datasets.map(batched=True)``, cached on disk and shared by workers.

The cache key covers the texts, the tokenizer (its full serialisation) and the settings, so a
changed corpus or tokenizer never reuses a stale file; a file lock lets the first Ray worker
tokenise while the others wait and then read the cached Arrow file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from datasets.table import InMemoryTable
from filelock import FileLock
from transformers import PreTrainedTokenizerBase

from ot_ray.data.parallel import ParallelCorpus
from ot_ray.data.tasks import NLIData

datasets.disable_progress_bars()
PAD_WORD = -1


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short hash of everything that decides what the tokenizer makes of a text: its
    serialisation, the sides it truncates and pads on, the inputs it returns, and the
    libraries' versions (a fix in either can change a split). Not the truncation and padding
    state a call leaves on the backend (each call sets its own), which would give one tokenizer
    other cache keys after other calls."""
    import tokenizers
    import transformers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state: Any = tokenizer.get_vocab()
    else:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    calls = {
        "truncation_side": tokenizer.truncation_side,
        "padding_side": tokenizer.padding_side,
        "model_input_names": list(tokenizer.model_input_names),
        "versions": [tokenizers.__version__, transformers.__version__],
    }
    text = json.dumps([state, calls], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_map(
    columns: Mapping[str, Sequence[Any]],
    function: Callable[[dict[str, list]], dict[str, list]],
    *,
    cache_dir: Path | None,
    name: str,
    settings: Mapping[str, Any],
    remove_columns: bool = True,
) -> datasets.Dataset:
    """``Dataset.from_dict(columns).map(function, batched=True)``, cached under ``cache_dir``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for key in sorted(columns):
        digest.update(key.encode())
        digest.update(json.dumps(list(columns[key]), ensure_ascii=False).encode())
    fingerprint = digest.hexdigest()[:24]
    # Given our own fingerprint, datasets does not hash the table and the function itself
    # (slow on big corpora, and its dill-based hashing prints disassembly inside Ray workers).
    table = InMemoryTable.from_pydict(dict(columns))
    dataset = datasets.Dataset(table, fingerprint=f"{fingerprint}-input")
    removed = dataset.column_names if remove_columns else None
    if cache_dir is None:
        return dataset.map(
            function,
            batched=True,
            remove_columns=removed,
            keep_in_memory=True,
            new_fingerprint=fingerprint,
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"{name}-{fingerprint}.arrow"
    with FileLock(str(cache_file) + ".lock"):
        return dataset.map(
            function,
            batched=True,
            remove_columns=removed,
            cache_file_name=str(cache_file),
            new_fingerprint=fingerprint,
            load_from_cache_file=True,
        )


def tokenize_parallel(
    corpus: ParallelCorpus,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    cache_dir: Path | None,
) -> datasets.Dataset:
    """Both sides as whitespace words (``is_split_into_words``), so token word ids index the
    same words as Pharaoh links. Columns: ``{src,tgt}_input_ids``, ``{src,tgt}_word_ids`` (-1
    for special tokens and for a word ``max_length`` cut in its middle) and
    ``{src,tgt}_truncated`` (some words cut by ``max_length``) and ``{src,tgt}_has_words``
    (a whole word is left: a side of only zero-width spaces, or whose first word ``max_length``
    already cuts, has none)."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {}
        for side, texts in (("src", batch["source"]), ("tgt", batch["target"])):
            words = [text.split() for text in texts]
            # one pass: the tokens cut off come back as extra rows of the same input, so an
            # input is truncated exactly when it has more than one row (a last word cut in its
            # middle still counts; a word the tokenizer drops whole, a lone zero-width space,
            # does not)
            encoded = tokenizer(
                words,
                is_split_into_words=True,
                truncation=True,
                max_length=max_length,
                return_overflowing_tokens=True,
            )
            owners = encoded["overflow_to_sample_mapping"]
            first = [i for i, owner in enumerate(owners) if i == 0 or owners[i - 1] != owner]
            out[f"{side}_input_ids"] = [encoded["input_ids"][i] for i in first]
            out[f"{side}_word_ids"] = [_whole_words(encoded, i, owners) for i in first]
            rows = Counter(owners)
            out[f"{side}_truncated"] = [rows[owner] > 1 for owner in range(len(words))]
            out[f"{side}_has_words"] = [
                any(w != PAD_WORD for w in ids) for ids in out[f"{side}_word_ids"]
            ]
        return out

    return cached_map(
        {"source": corpus.sources, "target": corpus.targets},
        encode,
        cache_dir=cache_dir,
        name="parallel",
        settings={"tokenizer": tokenizer_digest(tokenizer), "max_length": max_length, "v": 4},
    )


def pairs_with_words(
    dataset: datasets.Dataset, links: list | None
) -> tuple[datasets.Dataset, list | None, int]:
    """The training pairs that have a word on both sides, their links, and how many were
    dropped: a pair with nothing to transport would count as a zero loss in its batch's mean."""
    keep = [
        row
        for row, (source, target) in enumerate(
            zip(dataset["src_has_words"], dataset["tgt_has_words"], strict=True)
        )
        if source and target
    ]
    if len(keep) == len(dataset):
        return dataset, links, 0
    kept_links = [links[row] for row in keep] if links is not None else None
    return dataset.select(keep), kept_links, len(dataset) - len(keep)


def _whole_words(encoded, row: int, owners: list[int]) -> list[int]:
    """Word ids of ``row`` (``PAD_WORD`` for special tokens), with a word that ``max_length``
    cut in its middle marked ``PAD_WORD`` too: its kept pieces are not the word (last-piece
    pooling would read a prefix), so it stays out of the transport like the words cut whole."""
    ids = [PAD_WORD if w is None else w for w in encoded.word_ids(row)]
    if row + 1 < len(owners) and owners[row + 1] == owners[row]:
        rest = [w for w in encoded.word_ids(row + 1) if w is not None]
        if rest and rest[0] in ids:
            ids = [PAD_WORD if w == rest[0] else w for w in ids]
    return ids


def tokenize_nli(
    data: NLIData,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    *,
    cache_dir: Path | None,
) -> datasets.Dataset:
    """Premise/hypothesis pairs as one sequence pair, labels kept; ``truncated`` flags rows cut
    by ``max_length``."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        full = tokenizer(batch["premise"], batch["hypothesis"])
        encoded = tokenizer(
            batch["premise"], batch["hypothesis"], truncation=True, max_length=max_length
        )
        encoded["labels"] = batch["label"]
        encoded["truncated"] = [len(ids) > max_length for ids in full["input_ids"]]
        return dict(encoded)

    return cached_map(
        {"premise": data.premises, "hypothesis": data.hypotheses, "label": data.labels},
        encode,
        cache_dir=cache_dir,
        name="nli",
        settings={"tokenizer": tokenizer_digest(tokenizer), "max_length": max_length, "v": 1},
    )
