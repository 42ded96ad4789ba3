"""Parallel text as training batches: tokenised corpora per language pair, padded on demand.

Every batch holds pairs of one language pair only (the paper draws batches per pair), and the
sequence of batches is fixed by the seed, so all workers agree on it and a resumed run continues
exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import datasets
import torch

from ot_ray.data.tokenized import PAD_WORD
from ot_ray.metrics import Link
from ot_ray.training import epoch_batches, to_device


@dataclass
class ParallelBatch:
    """Both sides of some sentence pairs, padded to one length so they share a forward pass."""

    input_ids: torch.Tensor  # (2B, T): the B source rows, then the B pivot rows
    attention_mask: torch.Tensor  # (2B, T)
    word_ids: torch.Tensor  # (2B, T), -1 for special and padding tokens
    links: list[set[Link]] | None  # per pair, source word -> pivot word
    size: int  # B
    # The global micro-batch this batch is one worker's share of (None: the batch itself): its
    # pairs, and its links that survive tokenisation. ``l2`` averages over the whole batch's
    # links, so that its gradient does not depend on how the workers split the pairs.
    whole_pairs: int | None = None
    whole_links: int | None = None

    def to(self, device: torch.device) -> ParallelBatch:
        return dataclasses.replace(
            self,
            input_ids=to_device(self.input_ids, device),
            attention_mask=to_device(self.attention_mask, device),
            word_ids=to_device(self.word_ids, device),
        )


def collate_pairs(
    dataset: datasets.Dataset, rows: list[int], pad_id: int, links: list[set[Link]] | None = None
) -> ParallelBatch:
    """Rows of a :func:`~ot_ray.data.tokenized.tokenize_parallel` dataset as one batch."""
    picked = dataset[rows]
    sequences = picked["src_input_ids"] + picked["tgt_input_ids"]
    word_ids = picked["src_word_ids"] + picked["tgt_word_ids"]
    length = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    words = torch.full((len(sequences), length), PAD_WORD, dtype=torch.long)
    for i, (ids, wids) in enumerate(zip(sequences, word_ids, strict=True)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        words[i, : len(wids)] = torch.tensor(wids)
    picked_links = [links[r] for r in rows] if links is not None else None
    return ParallelBatch(input_ids, mask, words, picked_links, len(rows))


@dataclass
class ParallelData:
    """Tokenised parallel corpora of several language pairs behind one global index."""

    languages: list[str]
    datasets: dict[str, datasets.Dataset]
    links: dict[str, list[set[Link]] | None]
    #: the corpora's text and links as tokenised (:func:`ot_ray.fingerprint.rows_digest`)
    digest: str = ""

    def offsets(self) -> dict[str, int]:
        starts, total = {}, 0
        for lang in self.languages:
            starts[lang] = total
            total += len(self.datasets[lang])
        return starts

    def locate(self, rows: list[int]) -> tuple[str, list[int]]:
        """The language and local row numbers of global rows that belong to one language."""
        for lang, start in reversed(list(self.offsets().items())):
            if rows[0] >= start:
                local = [r - start for r in rows]
                if max(local) >= len(self.datasets[lang]):
                    raise ValueError("rows of a batch span two language pairs")
                return lang, local
        raise ValueError(f"row {rows[0]} is outside the parallel data")

    def batch(self, rows: list[int], pad_id: int, whole: list[int] | None = None) -> ParallelBatch:
        """The pairs ``rows``: this worker's share of the global micro-batch ``whole`` (by
        default the rows themselves), whose pairs and links every worker counts alike from the
        data, without communicating."""
        lang, local = self.locate(rows)
        batch = collate_pairs(self.datasets[lang], local, pad_id, self.links[lang])
        whole = rows if whole is None else whole
        batch.whole_pairs, batch.whole_links = len(whole), self.kept_links(whole)
        return batch

    def kept_links(self, rows: list[int]) -> int | None:
        """How many gold links of ``rows`` join two words that tokenisation kept (a truncated
        sentence loses its last words): the links the ``l2`` loss uses. None without links."""
        lang, local = self.locate(rows)
        links = self.links[lang]
        if links is None:
            return None
        picked = self.datasets[lang].select_columns(["src_word_ids", "tgt_word_ids"])[local]
        kept = 0
        for row, source, target in zip(
            local, picked["src_word_ids"], picked["tgt_word_ids"], strict=True
        ):
            source_words, target_words = set(source), set(target)
            kept += sum(i in source_words and j in target_words for i, j in links[row])
        return kept

    def plan(self, batch_size: int, epochs: float, seed: int) -> list[list[int]]:
        """Seeded batches of one language pair each, the language pairs interleaved at random."""
        starts = self.offsets()
        batches = []
        for k, lang in enumerate(self.languages):
            local = epoch_batches(len(self.datasets[lang]), batch_size, epochs, seed + 1000 * k)
            batches += [[starts[lang] + r for r in batch] for batch in local]
        random.Random(seed).shuffle(batches)
        return batches
