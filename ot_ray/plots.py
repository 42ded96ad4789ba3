"""Figures logged to MLflow: transport plans, per-language scores against the baseline, a task
stage's dev curve, and the search's history and parameter importances. Matplotlib with the Agg
backend (no display)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def transport_heatmap(
    plan: np.ndarray,
    source_words: Sequence[str],
    pivot_words: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """The plan between the words of one sentence pair, each row scaled to sum to one, so the
    picture reads as "where each source word sends its mass"."""
    rows = plan / np.clip(plan.sum(axis=1, keepdims=True), 1e-12, None)
    figure, axis = plt.subplots(figsize=(1 + 0.45 * len(pivot_words), 1 + 0.4 * len(source_words)))
    image = axis.imshow(rows, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(len(pivot_words)), pivot_words, rotation=60, ha="right")
    axis.set_yticks(range(len(source_words)), source_words)
    axis.set_xlabel("pivot words")
    axis.set_ylabel("source words")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.04, label="share of the row's mass")
    return _save(figure, path)


def scores_against_baseline(
    scores: dict[str, dict[str, float]],
    baseline: dict[str, dict[str, float]] | None,
    path: Path,
    title: str,
) -> Path:
    """One panel per metric (e.g. "XNLI dev acc"), bars per language: trial next to baseline."""
    figure, axes = plt.subplots(1, len(scores), figsize=(5 * len(scores), 3.5), squeeze=False)
    for axis, (metric, values) in zip(axes[0], scores.items(), strict=True):
        languages = list(values)
        x = np.arange(len(languages))
        width = 0.4 if baseline else 0.8
        axis.bar(x, [values[k] for k in languages], width, label="this trial")
        if baseline and metric in baseline:
            base = baseline[metric]
            axis.bar(x + width, [base.get(k, np.nan) for k in languages], width, label="baseline")
            axis.legend(loc="lower right")
        axis.set_xticks(x + (width / 2 if baseline else 0), languages)
        axis.set_title(metric)
        axis.set_ylim(0, 100)
    figure.suptitle(title)
    return _save(figure, path)


def dev_curve(
    steps: Sequence[int], scores: Sequence[float], chosen: int | None, path: Path, title: str
) -> Path:
    """A task stage's dev score against the optimizer step, the model chosen for test marked."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, scores, marker="o", markersize=3)
    if chosen is not None:
        axis.axvline(chosen, color="tab:red", linestyle="--", label=f"chosen: step {chosen}")
        axis.legend(loc="lower right")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("dev score (%)")
    axis.set_title(title)
    return _save(figure, path)


def optuna_figures(study, directory: Path) -> list[Path]:
    """Optuna's optimisation history and (with two or more finished trials) importances."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    with warnings.catch_warnings():  # Optuna's notes, for these plots only (not process-wide)
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Some regimes for parameter")
        with _closing_new_figures():
            axis = optuna_plots.plot_optimization_history(study)
            written.append(_save(axis.figure, directory / "optimization_history.png"))
        finished = [t for t in study.trials if t.state.name == "COMPLETE"]
        if len(finished) >= 2 and len({t.value for t in finished}) > 1:
            with _closing_new_figures():
                try:
                    axis = optuna_plots.plot_param_importances(study)
                except (RuntimeError, ValueError):  # e.g. no parameter common to the trials
                    return written
                written.append(_save(axis.figure, directory / "param_importances.png"))
    return written


@contextlib.contextmanager
def _closing_new_figures():
    """Close every figure made inside, also when plotting or saving fails (a long sweep
    driver would keep them in memory)."""
    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _save(figure, path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    return path
