"""Files the mount writes in its state folder (log, pid file, SQLite stores): private, never via a symlink.

The state folder is checked to be ours and 0700 (``locations.private_dir``),
but a symlink planted at a file's own name (by an earlier run as another user,
a restore from a backup, a careless ``ln -s``) would make the mount write its
log or pid into whatever the link names, or hand a database to another user.
So every such file is opened with ``O_NOFOLLOW``, must be a regular file we
own, and is set to 0600 whatever the umask or an older version left.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

from redcapfs.locations import UnsafeDirectoryError

PRIVATE_FILE = 0o600

# SQLite opens these beside its database by name; a symlink there would be followed.
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a state file: created 0600, never through a symlink; an unsafe file raises.

    ``flags`` are the access flags (``O_WRONLY | O_APPEND`` …); ``O_CREAT``,
    ``O_NOFOLLOW`` and ``O_CLOEXEC`` are always added.
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, PRIVATE_FILE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeDirectoryError(path, "it is a symbolic link") from None
        raise
    try:
        _check_ours(fd, path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_ours(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeDirectoryError(path, "it is not a regular file")
    if st.st_uid != os.getuid():
        raise UnsafeDirectoryError(path, f"it is owned by uid {st.st_uid}, not by us (uid {os.getuid()})")
    if stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
        os.fchmod(fd, PRIVATE_FILE)


def write_pid(path: Path, pid: int) -> None:
    """Write the pid file (0600, never through a symlink)."""
    fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as out:
        out.write(str(pid))


def connect_private(path: Path) -> sqlite3.Connection:
    """A SQLite connection to a state database: the file and its side files are 0600 and no symlinks.

    The database is created (or checked) here first, so SQLite opens a file
    that is already ours and private; SQLite gives its journal and WAL files
    the database's mode.
    """
    os.close(open_private(path, os.O_RDWR))
    for suffix in _SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        try:
            st = os.lstat(side)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeDirectoryError(side, "it is a symbolic link")
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
            os.chmod(side, PRIVATE_FILE)
    return sqlite3.connect(str(path), check_same_thread=False)
