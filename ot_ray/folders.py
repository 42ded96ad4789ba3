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
    staging, retired = _beside(target)
    recover_folder(target)
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, staging)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def recover_folder(target: Path) -> None:
    """Finish a :func:`replace_folder` that died between its two renames: ``target`` is gone,
    the old folder is retired and the new one fully staged (it is retired only after the copy),
    so the staged copy is put in place. Call before reading ``target``."""
    staging, retired = _beside(target)
    if not target.exists() and retired.is_dir() and staging.is_dir():
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)


def _beside(target: Path) -> tuple[Path, Path]:
    """Where :func:`replace_folder` stages the new copy and retires the old folder."""
    return target.with_name(f".{target.name}.partial"), target.with_name(f".{target.name}.old")
