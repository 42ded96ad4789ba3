"""The metric names a trial reports, so a misspelt objective is caught before a sweep."""

from __future__ import annotations

import difflib

#: The splits every task is evaluated on (``dev`` for the search, ``test`` reported).
EVAL_SPLITS = ("dev", "test")
#: Language averages reported next to the per-language scores
#: (see :func:`ot_ray.metrics.language_averages`).
LANGUAGE_AVERAGES = ("avg_seen", "avg_seen_targets", "avg_unseen", "avg_targets", "avg_all")
#: Per-language metric families ``<family>/<language or average>`` a trial reports.
METRIC_FAMILIES = (
    "xnli/dev/acc",
    "xnli/test/acc",
    "xquad/dev/f1",
    "xquad/dev/em",
    "xquad/test/f1",
    "xquad/test/em",
    "align/retrieval_acc",
    "align/aer",
)
#: Single metrics of the stages: the alignment stage's means over the steps of a report, the
#: task stages' last training loss, steps, and (with ``select_every``) the step tested.
ALIGNMENT_METRICS = (
    "align/loss",
    "align/ot/sweeps",
    "align/ot/marginal_error",
    "align/steps",
    "xnli/train_loss",
    "xquad/train_loss",
    "xnli/steps",
    "xquad/steps",
    "xnli/select/step",
    "xquad/select/step",
    "xnli/select/scored",
    "xquad/select/scored",
)


def unknown_metric(name: str, languages: list[str]) -> str | None:
    """Why ``name`` is not a metric a trial reports (None when it is one)."""
    if name == "objective" or name in ALIGNMENT_METRICS:
        return None
    if name.startswith(("xnli/joint/", "xquad/joint/")):  # the joint variant's last-step terms
        return None
    family, _, suffix = name.rpartition("/")
    if family not in METRIC_FAMILIES:
        known = ["objective", *ALIGNMENT_METRICS, *(f"{f}/<language>" for f in METRIC_FAMILIES)]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    if suffix in LANGUAGE_AVERAGES or suffix in languages:
        return None
    return f"{suffix!r} is neither an evaluated language ({', '.join(languages)}) nor one of " + (
        ", ".join(LANGUAGE_AVERAGES)
    )
