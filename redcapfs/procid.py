"""Who owns a spool entry: a process told apart from a later one with the same pid, and this boot.

A spool entry (``spool.py``) names the mount process that writes it; a crash
leaves the entry behind, and whoever reads it later must tell a dead owner from
a live one (also when the pid was reused) and this boot's page cache from an
earlier boot's (bytes never flushed may be lost in a power cut).
"""

from __future__ import annotations

import functools
from pathlib import Path

import psutil


def process_start(pid: int) -> str | None:
    """When ``pid`` started (psutil's create time, as text), to tell a reused pid from its first owner.

    psutil works the same on Linux, macOS and the BSDs; on Linux it reads the
    start time from /proc, as this module did before it.
    """
    try:
        return f"{psutil.Process(pid).create_time():.3f}"
    except (psutil.Error, OSError):
        return None


def _legacy_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot): what entries of earlier versions recorded."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return None


@functools.lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This boot's id (the kernel's random ``boot_id``): page-cache bytes of another boot may be lost."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether the owning process still runs: not gone, not a zombie, not a reused pid."""
    if pid <= 0:
        return False  # pid 0 is no process of ours (and os.kill(0, …) would signal our own group)
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):  # killed, not yet reaped: dead to us
            return False
        now = f"{proc.create_time():.3f}"
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return True  # it exists; another user's process cannot own our spool, but it is not ours to judge dead
    if start is None:
        return True
    if start.isdigit():  # written by an earlier version: clock ticks from /proc
        legacy = _legacy_start(pid)
        return legacy is None or legacy == start
    return now == start
