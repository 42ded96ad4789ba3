"""Replace a folder by a copy of another, never leaving a half-copied one in its place."""

from __future__ import annotations

import shutil
from pathlib import Path


def replace_folder(source: Path, target: Path) -> None:
    """``target`` becomes a copy of ``source``; nothing of what it held before is kept.

    The copy is staged next to ``target`` and renamed into place, so a crash mid-copy leaves
    the old folder whole (a checkpoint, a run's predictions) rather than a mix of old and new
    files; a merge would keep an earlier run's files that this one does not write.
    """
    staging = target.with_name(f".{target.name}.partial")
    retired = target.with_name(f".{target.name}.old")
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
