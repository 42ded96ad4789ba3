"""Replacing a folder (a checkpoint, a run's predictions): whole or not at all, never a merge."""

from __future__ import annotations

import pytest

from ot_ray.folders import recover_folder, replace_folder


def files(folder) -> dict[str, str]:
    found = (p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_text() for p in found}


def test_the_target_becomes_the_source_and_keeps_nothing_of_its_own(tmp_path):
    source, target = tmp_path / "new", tmp_path / "predictions"
    (source / "xnli").mkdir(parents=True)
    (source / "xnli" / "test-de.tsv").write_text("entailment\n")
    (target / "xquad").mkdir(parents=True)
    (target / "xquad" / "test-de.json").write_text("{}")  # an earlier run's, for another task
    (target / "xnli").mkdir()
    (target / "xnli" / "test-de.tsv").write_text("neutral\n")
    (tmp_path / ".predictions.partial").mkdir()  # left by a copy that crashed
    (tmp_path / ".predictions.partial" / "stale").write_text("x")
    replace_folder(source, target)
    assert files(target) == {"xnli/test-de.tsv": "entailment\n"}
    assert files(source) == {"xnli/test-de.tsv": "entailment\n"}  # a copy: the source stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "predictions"]


def test_a_copy_that_fails_leaves_the_old_folder_whole(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "model.safetensors").write_text("old weights")
    with pytest.raises(FileNotFoundError):
        replace_folder(tmp_path / "missing", target)
    assert files(target) == {"model.safetensors": "old weights"}


def test_a_target_that_does_not_exist_yet_is_created(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_text("1")
    replace_folder(tmp_path / "src", tmp_path / "out" / "checkpoint")
    assert files(tmp_path / "out" / "checkpoint") == {"a": "1"}


def test_a_replacement_that_died_between_its_renames_is_finished_not_lost(tmp_path):
    """The old folder retired, the new one staged whole, no target: the staged copy is put in
    place (before, the next replacement deleted both and a resume found no checkpoint)."""
    target = tmp_path / "checkpoint"
    (tmp_path / ".checkpoint.old").mkdir()
    (tmp_path / ".checkpoint.old" / "state.json").write_text("step 10")
    (tmp_path / ".checkpoint.partial").mkdir()
    (tmp_path / ".checkpoint.partial" / "state.json").write_text("step 20")
    recover_folder(target)
    assert files(target) == {"state.json": "step 20"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    recover_folder(target)  # nothing to finish: a no-op
    assert files(target) == {"state.json": "step 20"}
