"""The FUSE layer: kernel calls in, ``Tree`` calls out, and the one place errors become errno values.

Nothing here decides what an operation means (that is ``tree.py``); this module
adapts mfusepy's calling conventions. Every operation is wrapped by
:func:`operation`, which turns any exception into ``FuseOSError(errno_for(exc))``
so no error can reach the kernel as success, or as mfusepy's catch-all
``EINVAL`` (mfusepy 3 ignores ``Operations.__call__``, where fusepy let one
method do this for all). Which libfuse is underneath is binding.py's business.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from redcapfs import binding, dirfill
from redcapfs.errors import AlreadyExists, IpBanned, RedcapError, errno_for
from redcapfs.fs.handles import read_into
from redcapfs.fs.kernelpages import KernelPages
from redcapfs.tree import Stat, Tree
from redcapfs.writebuf import WriteSource

_fuse = binding.load()
FuseOSError: Any = _fuse.FuseOSError
Operations: Any = _fuse.Operations
_BLOCK_SIZE = binding.block_size()

log = logging.getLogger(__name__)

# Errors that are part of normal use (a shell probing for a file) log at debug only.
_QUIET = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY}

# renameat2(2) flags as the kernel passes them (linux/fs.h).
RENAME_NOREPLACE = 1

# utimensat(2)'s markers in tv_nsec (linux/stat.h); libfuse passes them with tv_sec 0, so with
# nanosecond times mfusepy hands them to us as these very numbers.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

F = TypeVar("F", bound=Callable[..., Any])

_DOTS = ((".", stat.S_IFDIR, 0), ("..", stat.S_IFDIR, 0))  # first in every listing


# Operations that change nothing a listing shows; every other one counts as a change (fs/changes.py).
_LOOKS_ONLY = frozenset({"getattr", "readdir", "readdir_plus", "access", "statfs", "read", "read_into", "readlink",
                         "init_with_config", "destroy"})


def operation(method: F) -> F:
    """Map every exception of one FUSE operation through the one errno table (errors.py).

    An operation that may change a listing runs as a change of the tree's ``ListingChanges``
    (fs/changes.py), so that no listing made ahead (dirfill.py) before or while it runs is used after it.
    """
    changes = method.__name__ not in _LOOKS_ONLY

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        if changes:
            self.tree.changes.begin()
        try:
            return method(self, *args)
        except FuseOSError:
            raise
        except Exception as exc:
            raise FuseOSError(_report(method.__name__, args, exc)) from None
        finally:
            if changes:
                self.tree.changes.end()

    return wrapper  # type: ignore[return-value]


def _report(op: str, args: tuple[Any, ...], exc: Exception) -> int:
    """Log one failed operation at the level it deserves and return its errno."""
    code = errno_for(exc)
    path = args[0] if args and isinstance(args[0], str) else ""
    name = errno.errorcode.get(code, code)
    if code in _QUIET or getattr(exc, "logged", False) or isinstance(exc, IpBanned):
        # logged: said once where it was decided (fs/refusals.py); a ban is logged once, by the client
        log.debug("%s %r: %s", op, path, exc)
    elif isinstance(exc, (RedcapError, OSError)) or hasattr(exc, "message"):
        log.warning("%s %r: %s (errno %s)", op, path, exc, name)
    else:
        log.exception("%s %r: unexpected error (reported as errno %s)", op, path, name)
    return code


class RequestSizes:
    """How large the kernel's read and write requests really are (logged at unmount, read by tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reads: Counter[int] = Counter()
        self.writes: Counter[int] = Counter()
        self.from_buffer = 0  # writes whose bytes went from libfuse's buffer to the file (writebuf.py)

    def count(self, counter: Counter[int], size: int, from_buffer: bool = False) -> None:
        with self._lock:
            counter[size] += 1
            self.from_buffer += from_buffer

    def summary(self) -> str:
        with self._lock:
            return (f"read sizes {_top(self.reads)}; write sizes {_top(self.writes)}; "
                    f"{self.from_buffer} of {self.writes.total()} writes from libfuse's buffer")


def _top(counter: Counter[int]) -> str:
    if not counter:
        return "none"
    return ", ".join(f"{size}x{n}" for size, n in counter.most_common(4)) + f" (max {max(counter)})"


class RedcapOperations(Operations):
    """mfusepy operations over a :class:`Tree`."""

    use_ns = True  # times in nanoseconds: rsync compares them exactly
    # libfuse2 drops a setattr that sets only one of the two times (`touch -m -d`, `tar -x`) unless the
    # filesystem says it understands UTIME_OMIT; libfuse3 always passes the markers (utimens below).
    flag_utime_omit_ok = True
    # libfuse2 with hard_remove has no path for a file unlinked (or renamed over) while open, and without
    # this answers its readers' next read ENOENT itself; the operations work by handle (libfuse3 passes the
    # requests on as it is).
    flag_nullpath_ok = True

    def __init__(self, tree: Tree, on_init: Callable[[], None] | None = None, direct_writes: bool = True) -> None:
        self.tree = tree
        self.on_init = on_init
        self.sizes = RequestSizes()
        if not binding.copies_buffers():
            self.write_buf = None  # type: ignore[method-assign,assignment]  # libfuse < 2.9: mfusepy registers ``write``
        # Which reopen may keep the kernel's cached pages, and which handle bypasses them (fs/kernelpages.py).
        self.pages = KernelPages(direct_writes, getattr(tree.client, "stats", None))
        self.pages.note()

    # ------------------------------------------------------------ lifecycle
    @operation
    def init_with_config(self, conn: Any, config: Any) -> None:
        """The kernel connection is up: agree on request sizes, then the mount is ready for use."""
        agreed = binding.negotiate(conn)
        log.info("libfuse%d: %s", binding.major(), ", ".join(f"{k}={v}" for k, v in agreed.items()))
        if self.on_init is not None:
            self.on_init()

    @operation
    def destroy(self, path: str) -> None:
        log.info("%s; %d opens bypassed the page cache; %s", self.sizes.summary(), self.pages.direct_opens,
                 dirfill.summary())
        self.tree.shutdown()

    # ------------------------------------------------------------ lookups
    @operation
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        return _stat_dict(self.tree.getattr(path, fh))

    @operation
    def readdir(self, path: str | None, fh: int) -> list[Any]:
        entries: list[Any] = [*_DOTS]
        if path is None:  # a folder removed while open (libfuse passes no path): empty
            return entries
        for name, is_dir in self.tree.readdir(path):
            # Only the type: the kernel gets d_type without a size, so `ls`/`find` download nothing.
            entries.append((name, stat.S_IFDIR if is_dir else stat.S_IFREG, 0))
        return entries

    @operation
    def readdir_plus(self, path: str | None, fh: int) -> list[Any]:
        """readdir with each directory's attributes (binding.py, READDIRPLUS); files keep only their type."""
        entries: list[Any] = [*_DOTS]
        if path is None:  # a folder removed while open (libfuse passes no path): empty
            return entries
        for name, is_dir, st in self.tree.readdir_stats(path):
            kind = stat.S_IFDIR if is_dir else stat.S_IFREG
            entries.append((name, _shared_stat_dict(st) if st is not None else kind, 0))
        return entries

    def listing_state(self) -> tuple[int, int]:
        """(generation, changes running) of what listings show, for dirfill.py's listings made ahead."""
        return self.tree.changes.state()

    def readdir_plus_below(self, path: str | None) -> dict[str, list[Any]]:
        """The listings of the slot folders in ``path`` as :meth:`readdir_plus` would make them, from memory,
        for dirfill.py to answer their READDIRPLUS with; empty on any failure (the parent's listing stands)."""
        if path is None:
            return {}
        try:
            below = self.tree.listings_below(path)
        except Exception as exc:  # the folder's own listing was made; its slot folders are listed when asked
            log.debug("listings below %r not made ahead: %s", path, exc)
            return {}
        return {component: [*_DOTS, *((name, stat.S_IFREG, 0) for name, _, _ in entries)]
                for component, entries in below.items()}

    def listing_used(self, path: str) -> None:
        """dirfill.py answered ``path`` with a listing made ahead that shows a file."""
        try:
            self.tree.listing_used(path)
        except Exception as exc:  # bookkeeping for the sizes asked ahead: never fails a listing
            log.debug("listing of %r made ahead: %s", path, exc)

    @operation
    def access(self, path: str, amode: int) -> int:
        self.tree.check_exists(path)
        return 0

    @operation
    def statfs(self, path: str) -> dict[str, int]:
        return self.tree.statfs()

    # ------------------------------------------------------------ files
    @operation
    def open(self, path: str, flags: int) -> int:
        fh = self.tree.open(path, flags)
        handle = self.tree.handles.find(fh)
        self.pages.opened(fh, path, handle.version if handle is not None and not handle.writable else None,
                          flags & os.O_ACCMODE)
        return fh

    def keeps_pages(self, fh: int) -> bool:
        """Asked by binding.py right after ``open``: may the kernel keep its cached pages of this file?"""
        return self.pages.keeps(fh)

    def direct_io(self, fh: int) -> bool:
        """Asked by binding.py after ``open`` and ``create``: does this handle bypass the page cache?"""
        return self.pages.direct(fh)

    @operation
    def create(self, path: str, mode: int, flags: int | None = None) -> int:
        fh = self.tree.create(path, mode)
        self.pages.opened(fh, path, None, os.O_RDWR if flags is None else flags & os.O_ACCMODE)
        return fh

    @operation
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self.sizes.count(self.sizes.reads, size)
        return self.tree.read(fh, size, offset)

    @operation
    def read_into(self, path: str | None, view: memoryview, offset: int, fh: int) -> int:
        """``read`` into libfuse's request buffer (binding.py calls it instead of ``read``)."""
        self.sizes.count(self.sizes.reads, len(view))
        return read_into(self.tree.handles.get(fh), view, offset)

    @operation
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self.sizes.count(self.sizes.writes, len(data))
        return self.tree.write(fh, data, offset)

    @operation
    def write_buf(self, path: str | None, source: WriteSource, offset: int, fh: int) -> int:
        """``write`` with the bytes left in libfuse's buffer until the spool file takes them (writebuf.py)."""
        self.sizes.count(self.sizes.writes, source.size, from_buffer=True)
        return self.tree.write_from(fh, source, offset)

    @operation
    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        self.pages.changed(path)
        self.tree.truncate(path, length, fh)

    @operation
    def flush(self, path: str, fh: int) -> None:
        try:
            self.tree.flush(fh)
        finally:
            self.pages.flushed(fh)

    @operation
    def fsync(self, path: str, datasync: int, fh: int) -> None:
        self.tree.fsync(fh)

    @operation
    def release(self, path: str, fh: int) -> None:
        # The kernel has let go of the handle: no page can come from it any more, whatever the tree's
        # release still does (an upload at the last close), and an open waiting for it goes on at once.
        self.pages.closed(fh)
        self.tree.release(fh)

    @operation
    def unlink(self, path: str) -> None:
        self.pages.changed(path)
        self.tree.unlink(path)
        self.pages.moved(path, None)  # only once done: a refused unlink leaves the handles where they are

    @operation
    def rename(self, old: str, new: str, flags: int = 0) -> None:
        """``flags`` come only with libfuse3 (binding.py); libfuse2 makes the kernel answer EINVAL itself.

        RENAME_NOREPLACE is checked here because Tree.rename takes no flags: EEXIST
        when ``new`` exists. A free name in a slot that holds another file is a
        different refusal, and tools read EEXIST under NOREPLACE as "the name
        exists" (mv then reports nonsense), so that one is EINVAL: renameat2's
        callers (gnulib, emacs) then fall back to a plain rename, which gives the
        slot's own EEXIST. Exchange and whiteout are not supported.
        """
        if flags & ~RENAME_NOREPLACE:
            raise FuseOSError(errno.EINVAL)
        self.pages.changed(old)
        self.pages.changed(new)
        if flags & RENAME_NOREPLACE and self._exists(new):
            raise FuseOSError(errno.EEXIST)
        try:
            self.tree.rename(old, new)
        except AlreadyExists:
            if not flags & RENAME_NOREPLACE:
                raise
            log.debug("rename %r -> %r with RENAME_NOREPLACE: the slot is taken; EINVAL for a plain retry", old, new)
            raise FuseOSError(errno.EINVAL) from None
        self.pages.moved(old, new)  # only once done: a refused rename leaves the handles where they are

    def _exists(self, path: str) -> bool:
        try:
            self.tree.getattr(path, None)
        except Exception as exc:
            if errno_for(exc) == errno.ENOENT:
                return False
            raise
        return True

    # ------------------------------------------------------------ directories
    @operation
    def mkdir(self, path: str, mode: int) -> None:
        self.tree.mkdir(path, mode)

    @operation
    def rmdir(self, path: str) -> None:
        self.tree.rmdir(path)

    # ------------------------------------------------------------ attributes
    @operation
    def chmod(self, path: str, mode: int) -> None:
        self.tree.chmod(path, mode)

    @operation
    def chown(self, path: str, uid: int, gid: int) -> None:
        self.tree.check_exists(path)  # accepted so cp -a/rsync -a work; owner is always the mounting user

    @operation
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        """Only the modification time is kept; UTIME_OMIT leaves it alone, UTIME_NOW (or no times) is now."""
        mtime = times[1] if times else UTIME_NOW
        if mtime == UTIME_OMIT:  # the access time alone (`touch -a`): nothing we keep changes
            self.tree.check_exists(path)
            return
        self.tree.utimens(path, None if mtime == UTIME_NOW else mtime)

    @operation
    def symlink(self, target: str, source: str) -> None:
        """``ln -s SOURCE TARGET`` (mfusepy's names): only editors' lock links, kept local (EPERM otherwise)."""
        self.tree.symlink(target, source)

    # Refused explicitly, so the errno is a clear one rather than ENOSYS.

    @operation
    def link(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    @operation
    def mknod(self, path: str, mode: int, dev: int) -> None:
        raise FuseOSError(errno.EPERM)

    @operation
    def readlink(self, path: str) -> str:
        return self.tree.readlink(path)


_SHARED_KEPT = 256
_shared: dict[Stat, dict[str, Any]] = {}


def _shared_stat_dict(st: Stat) -> dict[str, Any]:
    """One dict for all equal ``Stat`` of a listing's folders (read only: dirfill.py builds its struct once)."""
    got = _shared.get(st)
    if got is None:
        if len(_shared) >= _SHARED_KEPT:
            _shared.clear()
        got = _shared[st] = _stat_dict(st)
    return got


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
        "st_blksize": _BLOCK_SIZE,
    }
