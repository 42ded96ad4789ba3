"""What identifies a trial's results: its config without the keys that only say where or how
it runs.

A checkpoint may be resumed only by a trial of the same results-settings (else it would carry
one config's weights and metrics into another's outputs), and a resubmitted trial should find
its checkpoint even when only such a key changed (more restarts allowed, fewer workers: the batch
plan does not depend on the number of workers). The settings do not cover the data's content:
:func:`rows_digest` names what a stage trains on, which a stage resumed mid-way must find again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from ot_ray.config import Config, flatten

#: Keys that change where a trial writes or how it is run, never what it computes.
NEUTRAL_KEYS = frozenset(
    {
        "train.output_dir",
        "train.storage_path",
        "train.run_name",
        "train.max_failures",
        "train.num_workers",
        "train.cpus_per_worker",
        "train.log_level",
        "train.checkpoint_every",
        "data.cache_dir",
        "data.demo.cache_dir",
    }
)
NEUTRAL_SECTIONS = ("tune.", "tracking.")


def result_settings(config: Config) -> dict[str, str]:
    """Every key that can change a trial's results, its value as JSON."""
    flat = flatten(config.model_dump(mode="json"))
    return {
        key: json.dumps(value, sort_keys=True)
        for key, value in flat.items()
        if key not in NEUTRAL_KEYS and not key.startswith(NEUTRAL_SECTIONS)
    }


def settings_digest(config: Config) -> str:
    """Ten hex digits of :func:`result_settings`: a stable name for a trial's Ray Train run."""
    text = json.dumps(result_settings(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def changed_settings(kept: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """``key: old -> new`` for each key whose value differs (at most five, then a count)."""
    changed = [key for key in sorted(kept.keys() | now.keys()) if kept.get(key) != now.get(key)]
    shown = [
        f"{key}: {_short(kept.get(key, '-'))} -> {_short(now.get(key, '-'))}" for key in changed[:5]
    ]
    if len(changed) > 5:
        shown.append(f"and {len(changed) - 5} more")
    return shown


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


def rows_digest(rows: Iterable[object]) -> str:
    """Sixteen hex digits of SHA-256 over ``rows`` as JSON lines (an example's texts, label,
    links): the examples a stage trains on. Its batches are drawn by position from a plan fixed
    by the seed and the data's size, so a stage resumed on edited data (or on data a newer
    ot-ray filters otherwise) would go on with other examples at the same step, unsaid."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
