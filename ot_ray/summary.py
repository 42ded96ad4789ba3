"""A per-language table of a trial's test scores and alignment quality, for the console."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

COLUMNS = (
    ("XNLI acc", "xnli/test/acc/{}"),
    ("XQuAD F1", "xquad/test/f1/{}"),
    ("XQuAD EM", "xquad/test/em/{}"),
    ("retrieval", "align/retrieval_acc/{}"),
    ("AER", "align/aer/{}"),
)
ROWS_AFTER_LANGUAGES = ("avg_seen", "avg_seen_targets", "avg_unseen", "avg_targets", "avg_all")


def summary_table(metrics: Mapping[str, float], languages: list[str]) -> str:
    """Markdown table: one row per language and per average, one column per score."""
    columns = [
        (title, key)
        for title, key in COLUMNS
        if any(key.format(x) in metrics for x in languages + list(ROWS_AFTER_LANGUAGES))
    ]
    lines = [
        "| language | " + " | ".join(title for title, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in languages + list(ROWS_AFTER_LANGUAGES):
        cells = [metrics.get(key.format(row)) for _, key in columns]
        if all(cell is None for cell in cells):
            continue
        text = ["" if cell is None else f"{cell:.1f}" for cell in cells]
        lines.append(f"| {row} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def mean_std(values: list[Any], *, sep: str = "+-") -> str:
    """``mean +- std`` of the finite numbers among ``values`` (the sample std, n - 1: seeds are
    a sample of the runs one could make), one decimal; a single number alone (no spread to
    show), nothing for none (a trial that did not measure it)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if not numbers:
        return ""
    if len(numbers) == 1:
        return f"{numbers[0]:.1f}"
    return f"{statistics.fmean(numbers):.1f} {sep} {statistics.stdev(numbers):.1f}"
