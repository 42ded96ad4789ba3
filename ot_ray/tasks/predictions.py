"""Prediction files in the XTREME submission formats."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from ot_ray.data.tasks import NLI_LABELS


def write_xnli_predictions(path: Path, label_ids: Sequence[int]) -> None:
    """``test-<lang>.tsv``: one label name per line, in the order of the input file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(NLI_LABELS[i] + "\n" for i in label_ids), encoding="utf-8")


def write_xquad_predictions(path: Path, answers: Mapping[str, str]) -> None:
    """``test-<lang>.json``: ``{question id: answer text}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(dict(answers), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
