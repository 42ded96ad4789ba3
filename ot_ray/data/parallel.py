"""Parallel corpora from local files: a TSV ``source<TAB>target`` or two line-aligned files,
optionally with Pharaoh word alignments.

Bad input is reported with its file and line and nothing is silently repaired: non-UTF-8 bytes,
a TSV line without exactly one tab, files or alignments whose line counts differ, links that
point past the end of a sentence. Pairs with an empty side are skipped and counted (the counts
become metrics), since one empty line in a million-line corpus should not stop a run.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ot_ray.errors import DataError
from ot_ray.metrics import Link, parse_gold_pharaoh

#: The first bytes of a gzip file, which a corpus download often still is.
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class ParallelCorpus:
    """Sentence pairs (whitespace-tokenised words are what alignments index)."""

    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    links: list[set[Link]] | None = None
    skipped_empty: int = 0
    #: Where the pairs came from (file names or a Hub dataset), for error messages.
    origin: str = ""
    #: The input line (or Hub row) of each pair, from 1, where pairs map to one input's lines:
    #: outputs per pair (Pharaoh links) keep the input's line numbering although empty pairs
    #: were skipped. None once pairs are resampled, joined or drawn from several inputs.
    rows: list[int] | None = None
    #: Possible-only gold links (``ipj`` in the alignment file; Och & Ney's P less S), per
    #: pair, used by AER only; ``links`` holds the sure ones (what l2 trains on). None where
    #: the file has none, and once pairs are resampled, packed or joined (training's copies).
    possible: list[set[Link]] | None = None

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def input_lines(self) -> int:
        """How many input lines (or Hub rows) the pairs were read from, skipped ones included,
        where the pairs map to one input's lines (0 where they do not)."""
        return 0 if self.rows is None else len(self.rows) + self.skipped_empty

    def head(self, n: int) -> ParallelCorpus:
        """The first ``n`` pairs, their links and input lines kept with them. Where fewer than
        all are kept and the input lines are known, ``skipped_empty`` counts the empty pairs
        among the lines before the last one kept (each line is a pair or a skipped one), not
        those of the whole input."""
        skipped = self.skipped_empty
        if self.rows is not None and 0 < n < len(self.rows):
            skipped = self.rows[n - 1] - n
        return ParallelCorpus(
            sources=self.sources[:n],
            targets=self.targets[:n],
            links=None if self.links is None else self.links[:n],
            skipped_empty=skipped,
            origin=self.origin,
            rows=None if self.rows is None else self.rows[:n],
            possible=None if self.possible is None else self.possible[:n],
        )

    def without_sentences_of(
        self, sources: Collection[str], targets: Collection[str]
    ) -> tuple[ParallelCorpus, int]:
        """The pairs whose source is none of ``sources`` and whose target is none of
        ``targets`` (held-out sentences), and how many were dropped: a corpus whose held-out
        pairs are its last lines (Europarl's ``train[-2000:]``) repeats sentences
        (``(Applause)``, the procedural ones) that training would otherwise see, and retrieval
        and AER would be measured on them."""
        sources, targets = set(sources), set(targets)
        keep = [
            i
            for i, (source, target) in enumerate(zip(self.sources, self.targets, strict=True))
            if source not in sources and target not in targets
        ]
        if len(keep) == len(self):
            return self, 0

        def kept(values: list | None) -> list | None:
            return None if values is None else [values[i] for i in keep]

        corpus = ParallelCorpus(
            sources=kept(self.sources),
            targets=kept(self.targets),
            links=kept(self.links),
            skipped_empty=self.skipped_empty,
            origin=self.origin,
            rows=kept(self.rows),
            possible=kept(self.possible),
        )
        return corpus, len(self) - len(keep)

    def resized(self, n: int, seed: int) -> ParallelCorpus:
        """Exactly ``n`` pairs: a seeded subsample, or whole copies plus a seeded remainder
        (the paper upsamples small corpora to 250K pairs)."""
        if not self.sources:
            raise DataError(
                f"no sentence pairs to resize to {n} ({self.skipped_empty} skipped for an empty "
                "side)",
                path=self.origin or "parallel corpus",
            )
        rng = random.Random(seed)
        copies, remainder = divmod(n, len(self))
        order = [i for _ in range(copies) for i in range(len(self))]
        order += sorted(rng.sample(range(len(self)), remainder))
        return ParallelCorpus(
            sources=[self.sources[i] for i in order],
            targets=[self.targets[i] for i in order],
            links=None if self.links is None else [self.links[i] for i in order],
            skipped_empty=self.skipped_empty,
            origin=self.origin,
        )


def packed(corpus: ParallelCorpus, k: int) -> ParallelCorpus:
    """Every ``k`` consecutive pairs joined into one pair (the last group may be shorter), with
    link indices shifted to the joined word positions.

    Why: a corpus of short sentences only ever shows the encoder's first positions to the
    alignment loss and the anchor; tasks with long inputs (QA contexts) then meet positions the
    alignment stage never constrained. Joining neighbours keeps every word pair and its links.
    """
    if k == 1:
        return corpus
    sources, targets, links = [], [], [] if corpus.links is not None else None
    for start in range(0, len(corpus), k):
        group = range(start, min(start + k, len(corpus)))
        sources.append(" ".join(corpus.sources[i] for i in group))
        targets.append(" ".join(corpus.targets[i] for i in group))
        if links is not None and corpus.links is not None:
            joined: set[Link] = set()
            shift_source = shift_target = 0
            for i in group:
                joined |= {(s + shift_source, t + shift_target) for s, t in corpus.links[i]}
                shift_source += len(corpus.sources[i].split())
                shift_target += len(corpus.targets[i].split())
            links.append(joined)
    return ParallelCorpus(sources, targets, links, corpus.skipped_empty, corpus.origin)


def read_lines(path: Path, *, carriage_returns: bool = False) -> Iterator[tuple[int, str]]:
    """(1-based line number, text without the newline); non-UTF-8 bytes name their line. A
    UTF-8 byte-order mark (Windows editors write one) is dropped, not read as a first word.
    A file of old Mac line endings (``\r`` only) is refused unless ``carriage_returns`` (JSON
    reads a ``\r`` as a space): its lines would be read as one. A stray ``\r`` inside a line
    is whitespace, as the tokenizers read it."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a file", path=path) from None
    except OSError as err:  # PermissionError and the like
        raise DataError(f"cannot read the file: {err.strerror or err}", path=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                packed = " (the file is gzip-compressed: decompress it first)"
                column = len(raw[: err.start].decode("utf-8")) + 1  # characters, as editors count
                raise DataError(
                    f"not UTF-8 (byte {raw[err.start]:#04x} at column {column})"
                    + (packed if number == 1 and raw.startswith(GZIP_MAGIC) else ""),
                    path=path,
                    line=number,
                ) from None
            if number == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if number == 1 and "\r" in text and not raw.endswith(b"\n") and not carriage_returns:
                raise DataError(
                    "the whole file is one line with carriage returns (\\r) in it: old Mac "
                    "line endings; convert them to \\n (for example with tr '\\r' '\\n')",
                    path=path,
                    line=number,
                )
            yield number, text


def read_parallel_tsv(path: Path, alignments: Path | None = None) -> ParallelCorpus:
    """A ``source<TAB>target`` file (no header), with an optional Pharaoh file beside it."""
    pairs = []
    for number, line in read_lines(path):
        if not line.strip():  # a blank line (a trailing one, say) is a pair of empty sides
            pairs.append((number, "", ""))
            continue
        if line.count("\t") != 1:
            found = "no tab" if "\t" not in line else f"{line.count(chr(9))} tabs"
            raise DataError(f"expected source<TAB>target, found {found}", path=path, line=number)
        source, target = line.split("\t")
        pairs.append((number, source, target))
    return _corpus(pairs, alignments, described=str(path))


def read_line_aligned(source: Path, target: Path, alignments: Path | None = None) -> ParallelCorpus:
    """Two files with one sentence per line; line k of one translates line k of the other."""
    sources = [line for _, line in read_lines(source)]
    targets = [line for _, line in read_lines(target)]
    if len(sources) != len(targets):
        raise DataError(
            f"has {len(sources)} lines but its other side {target} has {len(targets)}; "
            "line-aligned files must have the same number of lines",
            path=source,
        )
    pairs = [(k + 1, s, t) for k, (s, t) in enumerate(zip(sources, targets, strict=True))]
    return _corpus(pairs, alignments, described=f"{source} + {target}")


def _corpus(
    pairs: list[tuple[int, str, str]], alignments: Path | None, described: str
) -> ParallelCorpus:
    links: list[set[Link]] | None = None
    possible: list[set[Link]] = []
    if alignments is not None:
        lines = list(read_lines(alignments))
        if len(lines) != len(pairs):
            raise DataError(
                f"has {len(lines)} lines but the corpus {described} has {len(pairs)} pairs",
                path=alignments,
            )
        links = []
        for (number, line), (_, source, target) in zip(lines, pairs, strict=True):
            try:
                pair_links, pair_possible = parse_gold_pharaoh(line)
            except ValueError as err:
                raise DataError(str(err), path=alignments, line=number) from None
            n, m = len(source.split()), len(target.split())
            bad = [(i, j) for i, j in sorted(pair_links | pair_possible) if i >= n or j >= m]
            if bad:
                i, j = bad[0]
                raise DataError(
                    f"link {i}-{j} is outside the sentence pair ({n} source, {m} target words)",
                    path=alignments,
                    line=number,
                )
            links.append(pair_links)
            possible.append(pair_possible)
    corpus = ParallelCorpus(links=[] if links is not None else None, origin=described, rows=[])
    kept = []
    for k, (number, source, target) in enumerate(pairs):
        if not source.strip() or not target.strip():
            corpus.skipped_empty += 1
            continue
        corpus.sources.append(source.strip())
        corpus.targets.append(target.strip())
        corpus.rows.append(number)
        kept.append(k)
        if links is not None and corpus.links is not None:
            corpus.links.append(links[k])
    if links is not None and any(possible):
        corpus.possible = [possible[k] for k in kept]
    return corpus
