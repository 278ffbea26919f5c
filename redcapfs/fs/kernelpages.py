"""Which version of a file the kernel's page cache may hold: lets a reopen keep those pages (FOPEN_KEEP_CACHE).

Without FOPEN_KEEP_CACHE the kernel drops a file's cached pages at every open, so a second ``cp`` of a
file the daemon already holds complete goes through FUSE again, request by request. Keeping them is
safe only while every page the kernel holds for a path came from the very version the new open reads:
the pages of a path come from reads through the handles opened on it. So a path is *clean* for a
version V when its last open that dropped the pages (an open without keep) read V with no handle of
another version still open, and every handle opened on it since read V too. Anything else makes the
path dirty until such an open: a handle on another version (a colleague's replace, seen by the change
feed or the cache TTL, makes a new cache entry, so a new version), a writer or a local copy (its bytes
are not a server version), a truncate, an unlink or a rename that touches the path.

A version is the cache's :class:`~redcapfs.cache.Entry` object (one set of bytes on disk), or the
:class:`~redcapfs.cache.Flight` filling it: a finished flight is the entry it became, a failed one
nothing. Only an open on a complete entry ever keeps pages.

Only the most recently opened ``KEPT_PATHS`` paths are remembered (a path forgotten is opened without
keep: the cost of forgetting is one more pass through FUSE, never a stale page).

Direct handles (FOPEN_DIRECT_IO): a write-only open of a path with no handle open on it bypasses the page
cache, so ``cp``'s bytes go from its buffer into the request with no copy into pages the kernel keeps (a
write-only descriptor cannot be mapped). Before Linux 6.6 a direct write does not clear the range from the
page cache, so a cached handle beside a direct writer could read stale bytes, or a shared mapping's dirty
pages could be written back over the direct writes. So, per path (per kernel inode: libfuse's high-level
API keeps one node per name, and renames move it): while a direct handle that may write is open, every
handle opened on the path is direct too, and a write-only open beside handles already open is cached as
they are. A direct reader left open after the writers have closed writes nothing, so opens beside it are
cached again (without FOPEN_KEEP_CACHE: its private mappings may have brought in pages of no version). The
writer's own open drops any pages left from earlier handles (no FOPEN_KEEP_CACHE), so no direct write ever
lands beside a cached page. A direct handle's ``mmap(MAP_SHARED)`` fails with ENODEV (the kernel's rule);
``MAP_PRIVATE`` works. ``-o direct_writes=off`` turns direct handles off.

Lock: ``_lock`` guards the tables; a leaf (nothing is called while it is held). ``_released`` is a
condition on it: an open may wait there, bounded, for a RELEASE (:meth:`_await_releases`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from typing import Any

from redcapfs.cache import Entry, Flight

KEPT_PATHS = 4096
RELEASE_WAIT = 0.05  # seconds an open waits for a closed direct handle's RELEASE (_await_releases)


def _resolved(version: Any) -> Any:
    """The entry a version stands for: a flight is its entry once complete, itself while running."""
    if isinstance(version, Flight):
        if version.done.is_set():
            return version.entry  # None if it failed: equal to no version
        return version
    return version


class KernelPages:
    """Per path: the version all of the kernel's cached pages are of, and the handles that may add pages."""

    def __init__(self, direct_writes: bool = True, stats: Any = None) -> None:
        self._lock = threading.Lock()
        self._stats = stats  # the client's CallStats: ``direct_writes`` in ``redcapfs status --json``
        self._clean: OrderedDict[str, Any] = OrderedDict()  # path -> the version all its cached pages are of
        self._open: dict[int, tuple[str, Any]] = {}  # fh -> (path, version; None: not a server version)
        self._keep: set[int] = set()  # handles opened with keep, until the binding asks
        self.direct_writes = direct_writes  # -o direct_writes (on unless turned off)
        self._direct: set[int] = set()  # open handles that bypass the page cache (FOPEN_DIRECT_IO)
        self._writers: set[int] = set()  # those of them that may write: every open beside one is direct
        self._flushed: set[int] = set()  # open handles closed at least once (their RELEASE may be on its way)
        self._waited: set[int] = set()  # flushed handles an open already waited for in vain
        self._released = threading.Condition(self._lock)
        self.direct_opens = 0  # handles opened direct since the mount (logged at unmount)

    def opened(self, fh: int, path: str, version: Entry | Flight | None, access: int = os.O_RDONLY) -> None:
        """An open of ``path`` reading ``version`` (``None``: a writer, a local copy, anything else).

        ``access``: the open's ``flags & O_ACCMODE``. A write-only open may bypass the page cache if
        nothing else has ``path`` open; any open does while a direct handle that writes has it open.
        """
        if self._opened(fh, path, version, access):
            self.note()

    def note(self) -> None:
        """``direct_writes`` for ``redcapfs status --json`` (called without the lock: it wakes the writer)."""
        with self._lock:
            state = {"on": self.direct_writes, "opens": self.direct_opens}
        if self._stats is not None:
            self._stats.note("direct_writes", state)

    def _opened(self, fh: int, path: str, version: Entry | Flight | None, access: int) -> bool:
        """:meth:`opened`'s work under the lock; True if the open is direct."""
        with self._lock:
            self._await_releases(path)
            current = _resolved(version)
            on_path = [h for h, (p, _) in self._open.items() if p == path]
            others = [self._open[h][1] for h in on_path]
            self._open[fh] = (path, version)
            direct_beside = any(h in self._direct for h in on_path)
            if self.direct_writes and ((access == os.O_WRONLY and not on_path)
                                       or any(h in self._writers for h in on_path)):
                self._direct.add(fh)
                if access != os.O_RDONLY:
                    self._writers.add(fh)
                self.direct_opens += 1
                self._clean.pop(path, None)  # its pages, if any appear (a private mapping), are of no version
                return True
            if direct_beside:  # a direct reader's private mapping may have pages of no version: drop them
                self._clean.pop(path, None)
                return False
            same = current is not None and all(_resolved(v) is current for v in others)
            if isinstance(version, Entry) and same and _resolved(self._clean.get(path)) is current:
                self._keep.add(fh)
                self._clean.move_to_end(path)
            elif same:
                self._clean[path] = version  # this open drops the pages: the ones read from now on are of it
                self._clean.move_to_end(path)
                while len(self._clean) > KEPT_PATHS:
                    self._clean.popitem(last=False)
            else:
                self._clean.pop(path, None)
            return False

    def _await_releases(self, path: str) -> None:
        """Wait (``RELEASE_WAIT`` at most) while every direct writer on ``path`` is closed but not yet released.

        The kernel sends a close's RELEASE after its FLUSH, without waiting, so the daemon may see the next
        open first: ``cp`` into the mount then ``mmap`` of the copy would find the writer still there and
        open direct, and a shared mapping of a direct handle is ENODEV. A handle closed once but still
        open (a descriptor duplicated or inherited, a mapping) is waited for only once. Called with
        ``_lock`` held; the wait lets go of it.
        """
        deadline = time.monotonic() + RELEASE_WAIT
        while True:
            writers = [h for h, (p, _) in self._open.items() if p == path and h in self._writers]
            if not writers or any(h not in self._flushed or h in self._waited for h in writers):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self._waited.update(writers)
                return
            self._released.wait(left)

    def flushed(self, fh: int) -> None:
        """A ``close()`` of one of ``fh``'s descriptors: its RELEASE follows unless another descriptor holds it."""
        with self._lock:
            if fh in self._open:
                self._flushed.add(fh)

    def keeps(self, fh: int) -> bool:
        """Whether the open of ``fh`` may keep the kernel's pages (asked once, by binding.py's open)."""
        with self._lock:
            if fh in self._keep:
                self._keep.discard(fh)
                return True
            return False

    def direct(self, fh: int) -> bool:
        """Whether the open of ``fh`` bypasses the page cache (asked by binding.py's open and create)."""
        with self._lock:
            return fh in self._direct

    def closed(self, fh: int) -> None:
        with self._lock:
            self._open.pop(fh, None)
            for table in (self._keep, self._direct, self._writers, self._flushed, self._waited):
                table.discard(fh)
            self._released.notify_all()

    def changed(self, path: str) -> None:
        """``path``'s bytes change without an open (a truncate): its pages are of no version."""
        with self._lock:
            self._clean.pop(path, None)

    def moved(self, old: str, new: str | None) -> None:
        """A rename (``new``) or an unlink (``None``) done: the inode and its open handles move with the name.

        Called once the operation succeeded (libfuse holds both paths locked until its callback returns, so
        no open of either runs in between); before it, :meth:`changed` on each path.
        """
        with self._lock:
            self._clean.pop(old, None)
            if new is not None:
                self._clean.pop(new, None)
            for fh, (path, version) in list(self._open.items()):
                if path == old:  # an unlinked inode's handles no longer touch any path's pages
                    self._open[fh] = (new if new is not None else "", version)
                elif path == new:  # the inode renamed over is gone (hard_remove)
                    self._open[fh] = ("", version)
