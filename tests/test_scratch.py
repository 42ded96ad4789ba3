"""Scratch folders a killed worker left behind are removed by the next trial on the host."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

from ot_ray.scratch import remove_leftovers, scratch_folder


def _ended_pid() -> int:
    """The pid of a process that has ended (as a worker Ray killed has)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def test_only_the_folders_of_ended_processes_on_this_host_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host = socket.gethostname()
    ended = _ended_pid()
    left = tmp_path / f"ot-ray-ckpt-{host}-{ended}-abc_12"
    (left / "model").mkdir(parents=True)
    running = scratch_folder("restore")  # this process's own
    elsewhere = tmp_path / f"ot-ray-trial-other-node-{ended}-xyz"  # a shared /tmp's other host
    elsewhere.mkdir()
    unrelated = tmp_path / f"ot-ray-report-{host}-{ended}-q"  # not a worker's scratch
    unrelated.mkdir()

    assert running.name.startswith(f"ot-ray-restore-{host}-{os.getpid()}-")
    assert remove_leftovers() == [left]
    assert not left.exists()
    assert running.is_dir() and elsewhere.is_dir() and unrelated.is_dir()
