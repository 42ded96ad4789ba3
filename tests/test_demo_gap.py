"""The shipped demo world leaves a zero-shot transfer gap for alignment to close (multi-minute)."""

from __future__ import annotations

import os

import pytest

from ot_ray.cli import DEFAULT_CONFIG
from ot_ray.config import load_config
from ot_ray.demo.build import ensure_demo_world
from ot_ray.demo.probe import nli_gap


@pytest.mark.e2e
@pytest.mark.timeout(1800)
def test_pivot_nli_is_learned_but_does_not_transfer(tmp_path_factory):
    """Plain pivot fine-tuning: >= 85% on pivot dev, >= 15 points less on reordered (bg) and
    fertility (es) languages. The world is the demo config's, built from scratch unless
    $OT_RAY_CACHE points at a cache that has it. 10,000 of the 15,000 training pairs for 2
    epochs (suite time): measured, en 89.4 as with all of them for 3 epochs, bg 40.7, es 47.0."""
    demo = load_config(DEFAULT_CONFIG).data.demo
    if "OT_RAY_CACHE" not in os.environ:
        demo = demo.model_copy(update={"cache_dir": str(tmp_path_factory.mktemp("cache"))})
    world = ensure_demo_world(demo)
    scores = nli_gap(world, ["en", "bg", "es"], epochs=2, lr=1e-4, seed=0, max_train=10_000)
    print("dev accuracy after pivot-only fine-tuning:", scores)
    assert scores["en"] >= 0.85
    assert scores["bg"] <= scores["en"] - 0.15
    assert scores["es"] <= scores["en"] - 0.15
