"""A minimal FUSE passthrough over a local folder: the bench's ceiling for the binding redcapfs uses.

Every read and write goes through the kernel, the binding and one Python call, as in redcapfs, but lands
on a local file instead of an HTTP request: whatever redcapfs is slower than this is redcapfs's (or the
network's), not the binding's. It mounts through redcapfs/binding.py with the options, request sizes and
readahead redcapfs's mount uses (libfuse3 unless ``REDCAPFS_FUSE=2``; one-second attribute and entry timeouts,
no kernel page cache across opens).

Usage: python scripts/passthrough.py SOURCE MOUNTPOINT   (foreground; ``fusermount3 -u MOUNTPOINT`` ends it)
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import Any

# The binding redcapfs's mount uses, chosen by the same module: the figures compare the two on one binding.
from redcapfs import binding as chooser

binding = chooser.load()
BINDING = f"{binding.__name__} on libfuse{chooser.major()}"
FUSE, FuseOSError = chooser.fuse_class(), binding.FuseOSError

BLOCK_SIZE = chooser.block_size()  # as redcapfs reports: cp sizes its buffers by it
STAT_KEYS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
STATVFS_KEYS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
                "f_flag", "f_namemax")


class Passthrough(binding.Operations):
    """Each operation is the matching ``os`` call on ``root/path``; ``OSError`` becomes the errno."""

    use_ns = False  # times as float seconds, as os.utime takes them

    def __init__(self, root: str, mountpoint: str) -> None:
        self.root = os.path.realpath(root)
        self.mountpoint = mountpoint

    def init_with_config(self, conn: Any, config: Any) -> None:
        """The same request sizes and readahead as redcapfs (binding.py)."""
        chooser.negotiate(conn)
        threading.Thread(target=chooser.after_init, args=(self.mountpoint,), daemon=True).start()

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def access(self, path: str, mode: int) -> None:
        if not os.access(self._full(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._full(path))
        return {**{key: getattr(st, key) for key in STAT_KEYS}, "st_blksize": BLOCK_SIZE}

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._full(path))
        return {key: getattr(sv, key) for key in STATVFS_KEYS}

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._full(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._full(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._full(path))

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        if flags:
            raise FuseOSError(errno.EINVAL)
        os.rename(self._full(old), self._full(new))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._full(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._full(path), uid, gid)

    def utimens(self, path: str, times: tuple[float, float] | None = None) -> None:
        os.utime(self._full(path), times)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._full(path), length)

    def open(self, path: str, flags: int) -> int:
        return os.open(self._full(path), flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return os.open(self._full(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def flush(self, path: str, fh: int) -> None:
        return None

    def fsync(self, path: str, datasync: int, fh: int) -> None:
        (os.fdatasync if datasync else os.fsync)(fh)

    def release(self, path: str, fh: int) -> None:
        os.close(fh)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, mountpoint = argv
    options = chooser.mount_options(read_only=False, allow_other=False, attr_timeout=1.0, entry_timeout=1.0)
    options.update(fsname="passthrough", subtype="passthrough")
    FUSE(Passthrough(source, os.path.realpath(mountpoint)), mountpoint, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
