"""XTREME prediction files round-trip."""

from __future__ import annotations

import json

from ot_ray.tasks.predictions import write_xnli_predictions, write_xquad_predictions


def test_xnli_one_label_per_line_in_order(tmp_path):
    path = tmp_path / "predictions/xnli/test-de.tsv"
    write_xnli_predictions(path, [2, 0, 1, 0])
    assert path.read_text().splitlines() == ["contradiction", "entailment", "neutral", "entailment"]


def test_xquad_id_to_answer_json(tmp_path):
    path = tmp_path / "predictions/xquad/test-es.json"
    write_xquad_predictions(path, {"q1": "3 cups", "q2": "Zürich"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"q1": "3 cups", "q2": "Zürich"}
