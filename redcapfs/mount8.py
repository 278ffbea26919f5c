"""The ``-o`` options of mount(8), fstab and other FUSE filesystems (sshfs, rclone), beside redcapfs's own.

mount(8) and mount.fuse3 pass their generic options on to the filesystem
(``rw,nosuid,nodev,_netdev,...``), so an fstab line fails unless every one of
them is accepted. Those the kernel understands (``nosuid``, ``noexec``, ...)
are handed to libfuse; those that only mean something to mount(8) or systemd
(``_netdev``, ``noauto``, ``x-systemd.*``) have done their job before we run
and are ignored. Ownership and modes (``uid``, ``gid``, ``umask``) and the
name ``df`` shows (``fsname``) are the options users of other FUSE
filesystems look for first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redcapfs.options import MountOptions

# Passed to the kernel mount as they are (libfuse knows them).
KERNEL_FLAGS = frozenset({"nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime", "sync", "dirsync",
                          "suid", "dev", "exec", "async"})
# Meaningful to mount(8), fstab or systemd only; they have done their job when we run.
IGNORED = frozenset({"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev",
                     "nofail", "atime", "relatime", "strictatime"})
IGNORED_PREFIXES = ("x-systemd.", "x-", "comment=")

MOUNT8_HELP = ("uid=N, gid=N (owner shown for every file; default: the mounting user), umask=OCTAL (e.g. 077; "
               "default 022, or 077 with allow_other), fsname=NAME (shown by df and mount; default "
               "redcapfs:HOST/PROJECT_ID), token_file=PATH (for fstab), debug; and mount(8)'s nosuid, nodev, "
               "noexec, noatime (applied), defaults, auto, noauto, user, users, _netdev, nofail, x-systemd.* "
               "(accepted and ignored)")


def _octal(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise ValueError("must be an octal mode from 000 to 777, e.g. 077")
    return value


def _id(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32 - 1:
        raise ValueError("must be a numeric id from 0 to 4294967294")
    return value


def _name(text: str) -> str:
    if any(ch in text for ch in ", \t\n") or not text.isprintable():
        raise ValueError("must be printable, without spaces or commas")
    return text


_VALUES: dict[str, Callable[[str], object]] = {
    "uid": _id, "gid": _id, "umask": _octal, "fsname": _name, "token_file": str}


def apply(opts: MountOptions, key: str, arg: str) -> bool:
    """Apply one ``-o`` item if it is one of these; False if it is not (the caller refuses it).

    A bad value raises ValueError, which the caller words as a refusal naming the option.
    """
    item = f"{key}={arg}" if arg else key
    if (not arg and key in IGNORED) or item.startswith(IGNORED_PREFIXES):
        return True
    if not arg and key in KERNEL_FLAGS:
        if key not in opts.kernel_flags:
            opts.kernel_flags.append(key)
        return True
    if key == "debug" and not arg:
        opts.debug = True
        return True
    if key in _VALUES and arg:
        setattr(opts, key, _VALUES[key](arg))
        return True
    return False


def default_fsname(url: str, project_id: object) -> str:
    """``redcapfs:HOST/PROJECT_ID``: which project a mount is, with no user, password or token in it."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or "redcap"
    port = urlsplit(url).port
    where = f"{host}:{port}" if port else host
    return _name(f"redcapfs:{where}/{project_id}")
