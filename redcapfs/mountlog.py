"""The log of a background mount: one file per mount, private, rotatable.

``STATE/logs/<key>.log``, ``key`` the hash of the mountpoint that also names
its status and pid files, so two mounts never interleave their lines and
``redcapfs status`` can say which file is whose. Lines name records and files,
so the file is opened 0600 without following a symlink planted at its name.
It is a WatchedFileHandler: after logrotate (or ``mv``) renames it, the next
line goes to a new file at the same name, with the same care.
"""

from __future__ import annotations

import io
import logging.handlers
import os
from pathlib import Path

from redcapfs import statefiles
from redcapfs.locations import private_dir, state_root_path

LOG_DIR = "logs"


def mount_log_path(mountpoint: Path) -> Path:
    """Where the background mount at ``mountpoint`` logs (nothing is created here)."""
    from redcapfs.status import mount_key

    return state_root_path() / LOG_DIR / f"{mount_key(mountpoint)}.log"


def open_private(path: Path) -> int:
    """An append descriptor of ``path``: created 0600, never through a symlink, ours (redcapfs/statefiles.py)."""
    return statefiles.open_private(path, os.O_WRONLY | os.O_APPEND)


class PrivateLogHandler(logging.handlers.WatchedFileHandler):
    """WatchedFileHandler whose every (re)open is :func:`open_private`."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        if path.parent.name == LOG_DIR and path.parent.parent == state_root_path():
            private_dir(path.parent)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path), mode="a", encoding="utf-8", delay=False)

    def _open(self) -> io.TextIOWrapper:
        # A name that is not UTF-8 must never break a log line: such bytes are written as \xNN.
        return os.fdopen(open_private(Path(self.baseFilename)), "a", encoding="utf-8", errors="backslashreplace",
                         buffering=1)
