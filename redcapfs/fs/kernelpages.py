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

Lock: ``_lock`` guards the tables; a leaf (nothing is called while it is held).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from redcapfs.cache import Entry, Flight

KEPT_PATHS = 4096


def _resolved(version: Any) -> Any:
    """The entry a version stands for: a flight is its entry once complete, itself while running."""
    if isinstance(version, Flight):
        if version.done.is_set():
            return version.entry  # None if it failed: equal to no version
        return version
    return version


class KernelPages:
    """Per path: the version all of the kernel's cached pages are of, and the handles that may add pages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clean: OrderedDict[str, Any] = OrderedDict()  # path -> the version all its cached pages are of
        self._open: dict[int, tuple[str, Any]] = {}  # fh -> (path, version; None: not a server version)
        self._keep: set[int] = set()  # handles opened with keep, until the binding asks

    def opened(self, fh: int, path: str, version: Entry | Flight | None) -> None:
        """An open of ``path`` reading ``version`` (``None``: a writer, a local copy, anything else)."""
        with self._lock:
            current = _resolved(version)
            others = [v for p, v in self._open.values() if p == path]
            self._open[fh] = (path, version)
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

    def keeps(self, fh: int) -> bool:
        """Whether the open of ``fh`` may keep the kernel's pages (asked once, by binding.py's open)."""
        with self._lock:
            if fh in self._keep:
                self._keep.discard(fh)
                return True
            return False

    def closed(self, fh: int) -> None:
        with self._lock:
            self._open.pop(fh, None)
            self._keep.discard(fh)

    def changed(self, path: str) -> None:
        """``path``'s bytes change without an open (a truncate): its pages are of no version."""
        with self._lock:
            self._clean.pop(path, None)

    def moved(self, old: str, new: str | None) -> None:
        """A rename (``new``) or an unlink (``None``): the inode and its open handles move with the name."""
        with self._lock:
            self._clean.pop(old, None)
            if new is not None:
                self._clean.pop(new, None)
            for fh, (path, version) in list(self._open.items()):
                if path == old:  # an unlinked inode's handles no longer touch any path's pages
                    self._open[fh] = (new if new is not None else "", version)
                elif path == new:  # the inode renamed over is gone (hard_remove)
                    self._open[fh] = ("", version)
