"""The FUSE layer: kernel calls in, ``Tree`` calls out, and the one place errors become errno values.

Nothing here decides what an operation means (that is ``tree.py``); this module
adapts fusepy's calling conventions and turns every exception into
``FuseOSError(errno_for(exc))`` so no error can ever reach the kernel as
success, or as fusepy's catch-all ``EINVAL``.
"""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Callable
from typing import Any

from fuse import FuseOSError, Operations

from redcapfs.errors import RedcapError, errno_for
from redcapfs.tree import Stat, Tree

log = logging.getLogger(__name__)

# Errors that are part of normal use (a shell probing for a file) log at debug only.
_QUIET = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY}


class RedcapOperations(Operations):
    """fusepy operations over a :class:`Tree`."""

    use_ns = True  # times in nanoseconds: rsync compares them exactly

    def __init__(self, tree: Tree, on_init: Callable[[], None] | None = None) -> None:
        self.tree = tree
        self.on_init = on_init

    def __call__(self, op: str, *args: Any) -> Any:
        method = getattr(self, op, None)
        if method is None:
            raise FuseOSError(errno.ENOSYS)
        try:
            return method(*args)
        except FuseOSError:
            raise
        except Exception as exc:
            code = errno_for(exc)
            path = args[0] if args and isinstance(args[0], str) else ""
            if code in _QUIET:
                log.debug("%s %r: %s", op, path, exc)
            elif isinstance(exc, (RedcapError, OSError)) or hasattr(exc, "message"):
                log.warning("%s %r: %s (errno %s)", op, path, exc, errno.errorcode.get(code, code))
            else:
                log.exception("%s %r: unexpected error (reported as errno %s)", op, path,
                              errno.errorcode.get(code, code))
            raise FuseOSError(code) from None

    # ------------------------------------------------------------ lifecycle
    def init(self, path: str) -> None:
        """The kernel connection is up: the mount is ready for use."""
        if self.on_init is not None:
            self.on_init()

    def destroy(self, path: str) -> None:
        self.tree.shutdown()

    # ------------------------------------------------------------ lookups
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return _stat_dict(self.tree.getattr(path, fh))

    def readdir(self, path: str, fh: int) -> list[Any]:
        entries: list[Any] = [".", ".."]
        for name, is_dir in self.tree.readdir(path):
            # Only the type: the kernel gets d_type without a size, so `ls`/`find` download nothing.
            entries.append((name, {"st_mode": stat.S_IFDIR if is_dir else stat.S_IFREG}, 0))
        return entries

    def access(self, path: str, amode: int) -> int:
        self.tree.check_exists(path)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return self.tree.statfs()

    # ------------------------------------------------------------ files
    def open(self, path: str, flags: int) -> int:
        return self.tree.open(path, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self.tree.create(path, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.tree.read(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return self.tree.write(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        self.tree.truncate(path, length, fh)

    def flush(self, path: str, fh: int) -> None:
        self.tree.flush(fh)

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        self.tree.fsync(fh)

    def release(self, path: str, fh: int) -> None:
        self.tree.release(fh)

    def unlink(self, path: str) -> None:
        self.tree.unlink(path)

    def rename(self, old: str, new: str) -> None:
        self.tree.rename(old, new)

    # ------------------------------------------------------------ directories
    def mkdir(self, path: str, mode: int) -> None:
        self.tree.mkdir(path, mode)

    def rmdir(self, path: str) -> None:
        self.tree.rmdir(path)

    # ------------------------------------------------------------ attributes
    def chmod(self, path: str, mode: int) -> None:
        self.tree.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.tree.check_exists(path)  # accepted so cp -a/rsync -a work; owner is always the mounting user

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        self.tree.utimens(path, times[1] if times else None)

    # Refused explicitly, so the errno is a clear one rather than ENOSYS.
    def symlink(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    def link(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    def mknod(self, path: str, mode: int, dev: int) -> None:
        raise FuseOSError(errno.EPERM)

    def readlink(self, path: str) -> str:
        raise FuseOSError(errno.EINVAL)


def _stat_dict(st: Stat) -> dict[str, Any]:
    return {
        "st_mode": st.mode,
        "st_nlink": 1,  # for directories: "not counted", so find never guesses subdirectories from it
        "st_size": st.size,
        "st_uid": st.uid,
        "st_gid": st.gid,
        "st_mtime": st.mtime_ns,
        "st_ctime": st.mtime_ns,
        "st_atime": st.mtime_ns,
        "st_blocks": (st.size + 511) // 512,
        "st_blksize": 128 * 1024,
    }
