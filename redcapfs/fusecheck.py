"""Why a FUSE mount cannot work on this machine, in words a user can act on.

libfuse reports a failed mount to its caller only as a number (mfusepy raises
``RuntimeError(1)``) and prints the real cause on a stderr that a background
mount has already closed. So the mount command asks these questions itself,
before it starts the daemon, and the tests skip real mounts with the same
answer. Each answer names the cause and what to do about it.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
from pathlib import Path

DEVICE = "/dev/fuse"
FUSE_CONF = "/etc/fuse.conf"


def fuse_problem(device: str = DEVICE, allow_other: bool = False) -> str | None:
    """The first reason this process cannot mount FUSE, or None when nothing is in the way."""
    for check in (_device_problem, _helper_problem, _library_problem):
        reason = check(device)
        if reason:
            return reason
    if allow_other and os.geteuid() != 0 and not _user_allow_other():
        return (f"allow_other needs the line user_allow_other in {FUSE_CONF} "
                "(an administrator adds it; see `redcapfs docs troubleshooting`)")
    return None


def _device_problem(device: str) -> str | None:
    try:
        st = os.stat(device)
    except FileNotFoundError:
        return (f"{device} does not exist: load the fuse kernel module (modprobe fuse), "
                "or in a container start it with --device /dev/fuse")
    except OSError as exc:
        return f"cannot look at {device}: {exc.strerror}"
    if not stat.S_ISCHR(st.st_mode):
        return f"{device} is not a character device"
    try:
        fd = os.open(device, os.O_RDWR)
    except PermissionError:
        return f"cannot open {device}: Permission denied ({_device_hint(st)})"
    except OSError as exc:
        return f"cannot open {device}: {exc.strerror}"
    os.close(fd)
    return None


def _device_hint(st: os.stat_result) -> str:
    """What would give this user access: usually membership of the device's group."""
    mode = stat.S_IMODE(st.st_mode)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    if mode & 0o060 == 0o060 and st.st_gid != 0:
        if st.st_gid not in os.getgroups():
            return f"you are not in the {group!r} group: sudo adduser $USER {group}, then log in again"
        return f"the {group!r} group has access, but this session does not have it yet: log in again"
    return f"it is mode {mode:04o} owned by uid {st.st_uid}; an administrator can run: chmod 0666 {DEVICE}"


def _helper_problem(device: str) -> str | None:
    """A normal user mounts through the setuid helper fusermount3 (or libfuse2's fusermount)."""
    del device
    if os.geteuid() == 0:
        return None
    helper = shutil.which("fusermount3") or shutil.which("fusermount")
    if helper is None:
        return "fusermount3 is missing: install the fuse3 package (Debian/Ubuntu: sudo apt-get install fuse3)"
    st = os.stat(helper)
    if not st.st_mode & stat.S_ISUID or st.st_uid != 0:
        return f"{helper} is not setuid root, so a normal user cannot mount with it"
    return None


def _library_problem(device: str) -> str | None:
    """The libfuse binding.py would load (libfuse3, else libfuse2, or what REDCAPFS_FUSE asks for)."""
    del device
    from redcapfs.binding import BindingError, find

    try:
        find()
    except BindingError as exc:
        return (f"{exc}; on Ubuntu 24.04 and later libfuse2 is libfuse2t64, on Fedora fuse3-libs or "
                "fuse-libs, on Arch fuse3 or fuse2")
    return None


def _user_allow_other() -> bool:
    try:
        text = Path(FUSE_CONF).read_text()
    except OSError:
        return False
    return any(line.split("#", 1)[0].strip() == "user_allow_other" for line in text.splitlines())
