"""The mountpoint: checks before mounting, and clearing a dead redcapfs mount left by a killed daemon.

After ``kill -9`` (or a crash) of the mount process, the kernel keeps the mount
but every access fails with ENOTCONN ("Transport endpoint is not connected",
or ECONNABORTED when requests were in flight):
``ls``, ``stat``, even Python's ``os.path.ismount`` (which then says False).
Only our own dead mounts are cleared (file system type ``fuse.redcapfs``), so
another file system's stale mount is never touched behind its owner's back.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

from redcapfs.options import MountError

log = logging.getLogger(__name__)

FSTYPE = "fuse.redcapfs"


def _unescape(field: str) -> str:
    """/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mount_entry(path: Path) -> tuple[str, str] | None:
    """``(device "major:minor", file system type)`` of the mount exactly at ``path`` (the last one), or None.

    ``path`` must be absolute and resolved already: resolving it here would stat
    the mount, which from inside the mount's own ``init`` never returns.
    """
    target = str(path)
    found = None
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and _unescape(fields[4]) == target and right:
            found = (fields[2], right.split()[0])
    return found


def mount_type(path: Path) -> str | None:
    """The file system type mounted exactly at ``path``, or None."""
    entry = mount_entry(Path(os.path.realpath(path)))
    return entry[1] if entry else None


# What the kernel answers on a FUSE mount whose daemon is gone: ENOTCONN, or
# ECONNABORTED on newer kernels when requests were in flight as it died.
DEAD_ERRNOS = (errno.ENOTCONN, errno.ECONNABORTED)


def is_dead(path: Path) -> bool:
    """A FUSE mount whose daemon is gone.

    statfs always reaches the daemon (a stat may be answered from the kernel's
    attribute cache for a while after the daemon died), and redcapfs answers it
    without any network call, so a live mount answers at once.
    """
    kind = mount_type(path)
    if kind is None or not kind.startswith("fuse"):
        return False
    try:
        os.statvfs(path)
    except OSError as exc:
        return exc.errno in DEAD_ERRNOS
    return False


def clear_dead(path: Path) -> str:
    """Unmount a dead redcapfs mount at ``path``; the one line saying so, or :class:`MountError`."""
    kind = mount_type(path)
    if kind != FSTYPE:
        raise MountError(f"{path}: transport endpoint is not connected, and it is a {kind or 'unknown'} "
                         "mount, not a redcapfs one; unmount it yourself (fusermount3 -u or umount -l)")
    error = None
    for cmd in _unmount_commands(path, lazy=False) + _unmount_commands(path, lazy=True):
        error = _run(cmd)
        if error is None and not is_dead(path) and mount_type(path) != FSTYPE:
            log.info("cleared a dead redcapfs mount at %s (%s)", path, " ".join(cmd[:-1]))
            return f"cleared a stale mount at {path} (its mount process had died)"
    raise MountError(f"{path} holds a dead redcapfs mount that could not be cleared: {error}")


def unmount(path: Path, lazy: bool) -> str | None:
    """Unmount with fusermount3 (or fusermount, or umount); the error text, or None."""
    return _run(_unmount_commands(path, lazy)[0])


def _unmount_commands(path: Path, lazy: bool) -> list[list[str]]:
    commands = [[tool, "-u"] + (["-z"] if lazy else []) + [str(path)]
                for tool in ("fusermount3", "fusermount") if shutil.which(tool)]
    commands.append(["umount"] + (["-l"] if lazy else []) + [str(path)])
    return commands


def _run(cmd: list[str]) -> str | None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]}: {exc}"
    if result.returncode != 0:
        return result.stderr.strip() or f"{cmd[0]} failed"
    return None


def recover(path: str) -> str:
    """Clear a dead redcapfs mount at ``path``: the line saying so, or "" when there was none."""
    mp = Path(path).expanduser()
    return clear_dead(Path(os.path.realpath(mp))) if is_dead(mp) else ""


def check_mountpoint(path: str) -> Path:
    """An existing, empty directory that is not already a mount."""
    mp = Path(path).expanduser()
    try:
        mp.stat()
    except PermissionError:
        raise MountError(f"mountpoint {path} cannot be reached: Permission denied on a folder above it") from None
    except OSError as exc:
        if exc.errno in DEAD_ERRNOS:  # not cleared by recover(): not ours
            raise MountError(f"mountpoint {path} is a dead mount (its process ended): "
                             f"run `redcapfs unmount {path}` first") from None
        if not isinstance(exc, FileNotFoundError):
            raise MountError(f"mountpoint {path}: {exc.strerror}") from None
    if not mp.exists():
        raise MountError(f"mountpoint {path} does not exist")
    if not mp.is_dir():
        raise MountError(f"mountpoint {path} is not a directory")
    if os.path.ismount(mp):
        raise MountError(f"mountpoint {path} is busy: something is already mounted there")
    try:
        if any(mp.iterdir()):
            raise MountError(f"mountpoint {path} is not empty")
    except PermissionError:
        raise MountError(f"mountpoint {path} cannot be read") from None
    return mp.resolve()
