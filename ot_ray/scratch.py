"""Scratch folders of a worker (its trial's files, checkpoints on their way to storage, a
checkpoint fetched to resume from), named after the host and process that made them.

A worker Ray kills (a failed worker group being restarted, a stopped trial) never runs its
``finally``, so its scratch folders, a few model sizes each, stay in the temporary folder; with
``train.max_failures`` every restart left more. Each new trial removes those whose process no
longer runs on this host.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

_NAME = re.compile(r"ot-ray-(?:ckpt|restore|trial)-(?P<host>.+)-(?P<pid>\d+)-\w+")


def scratch_folder(kind: str) -> Path:
    """A new folder for ``kind`` (``ckpt``, ``restore`` or ``trial``) in the temporary folder."""
    return Path(tempfile.mkdtemp(prefix=f"ot-ray-{kind}-{socket.gethostname()}-{os.getpid()}-"))


def remove_leftovers() -> list[Path]:
    """Remove the scratch folders of this host's processes that no longer run; those of
    another host (a shared temporary folder) and of a running process are kept."""
    removed = []
    host = socket.gethostname()
    for path in Path(tempfile.gettempdir()).glob("ot-ray-*"):
        match = _NAME.fullmatch(path.name)
        if match and match["host"] == host and not _running(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
