"""One copy in memory: a download's cache-file pages are let go once a reader has had the bytes.

A cold read of a large file puts every byte in memory twice: in the content cache's file (the
download writes it through the page cache) and in the kernel's pages of the mounted file (what the
reader reads). A 2 GB scan read once took 4 GB of page cache, and on a machine whose free memory is
backed lazily (a VM returning free pages to its host) the cache file's fresh pages cost as much as the
reader's own: a cold `cp` of 256 MiB spent 0.5-0.8 s of the daemon's system time, most of it in that
write.

So, while a download runs, the part of its file that readers have had from its start on (reads in
order; a jump ahead does not count) and that the download has written is handed back in two steps:
``POSIX_FADV_DONTNEED`` :data:`WRITEBACK_LAG` behind starts the writeback of a range (and drops
whatever of it is already clean), and a second call :data:`DROP_LAG` behind drops the pages that are
clean by then. When the download ends, one last call over everything behind the lag drops the pages
that were still dirty at their turn. Nothing is lost: the bytes are on disk, and a later read of a
dropped part (a second reader, an open that made the kernel drop its own pages, a retried download
comparing its bytes) reads it from there. Nothing is done for files under 8 MiB
(``WRITEBACK_LAG + STEP``), and a download nobody reads keeps its pages.

While the download runs only its own thread acts, at each block it writes, with its own descriptor
(open for the whole download); a FUSE read only notes how far it got, so it never waits for a
writeback the download could start. Once the download has ended, a reader still behind it (slower
than the network) lets go of what it passes, every 4 MiB, with its own descriptor. The cost: a
writeback started every 4 MiB, which on a disk slower than the network paces the download (or, after
it, that reader).

Locking model: ``_lock`` guards the four offsets and nothing else (a leaf, taken with no other lock
held). Whoever acts claims its ranges under it and calls ``posix_fadvise`` (which may start disk
writes) with no lock held, on a descriptor it holds open for the call.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

WRITEBACK_LAG = 4 << 20  # writeback starts this far behind the nearer of the download's end and the reads
DROP_LAG = 32 << 20  # and the pages are dropped this far behind it
STEP = 4 << 20  # at least this much at a time: a call per 4 MiB, not per read
PAGE = mmap.PAGESIZE
REFUSALS = (errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP)  # a file that takes no advice
Advise = Callable[[int, int, int, int], None]  # os.posix_fadvise's shape
Claim = tuple[str, int, int]  # "writeback" or "drop", offset, length


class DropBehind:
    """The page-cache state of one download's cache file: how far it was written, read, let go."""

    def __init__(self, advise: Advise | None = None) -> None:
        self._lock = threading.Lock()
        self._written = 0  # bytes of the file the download has written
        self._served = 0  # readers have had every byte below this (reads in order from the start)
        self._flushed = 0  # writeback started below this
        self._dropped = 0  # pages dropped (where clean) below this
        self._ended = False  # the download is over: readers act for themselves
        fadvise = getattr(os, "posix_fadvise", None)
        self._advise_fn: Advise | None = advise or fadvise
        self.enabled = self._advise_fn is not None

    def wrote(self, fd: int, end: int) -> None:
        """The download has written the file up to ``end`` through ``fd``: let go what is behind."""
        if not self.enabled:
            return
        with self._lock:
            self._written = max(self._written, end)
            work = self._claim()
        self._run(fd, work)

    def served(self, fd: int, offset: int, end: int) -> None:
        """A reader was given ``[offset, end)`` through ``fd``; it counts if it starts within a step of
        what was had.

        The slack lets the kernel's readahead (several requests in flight, answered out of order) count,
        while a reader that jumps far ahead does not make the part it skipped look read. Once the
        download has ended, a reader still behind it lets go of what it passes itself: nobody else will.
        """
        with self._lock:
            if offset <= self._served + STEP and end > self._served:
                self._served = end
            work = self._claim() if self._ended and self.enabled else []
        self._run(fd, work)

    def finish(self, fd: int) -> None:
        """The download has ended (``fd`` still open): drop what is clean behind the lag, once more."""
        if not self.enabled:
            return
        with self._lock:
            self._ended = True
            limit = self._limit()
            end = max(0, limit - DROP_LAG)
        if end >= STEP:
            self._run(fd, [("drop", 0, end)])

    def _limit(self) -> int:
        return min(self._written, self._served) // PAGE * PAGE  # whole pages: no page is left at an edge

    def _claim(self) -> list[Claim]:
        """The ranges to advise now (the offsets move past them); under ``_lock``."""
        limit = self._limit()
        work: list[Claim] = []
        if limit - WRITEBACK_LAG - self._flushed >= STEP:
            work.append(("writeback", self._flushed, limit - WRITEBACK_LAG - self._flushed))
            self._flushed = limit - WRITEBACK_LAG
        if limit - DROP_LAG - self._dropped >= STEP:
            work.append(("drop", self._dropped, limit - DROP_LAG - self._dropped))
            self._dropped = limit - DROP_LAG
        return work

    def _run(self, fd: int, work: list[Claim]) -> None:
        for kind, offset, length in work:
            if not self.enabled:
                return
            self._advise(fd, kind, offset, length)

    def _advise(self, fd: int, kind: str, offset: int, length: int) -> None:
        """One ``POSIX_FADV_DONTNEED`` (``kind`` says which step it is, for tests and the log)."""
        assert self._advise_fn is not None
        try:
            self._advise_fn(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError as exc:  # keep the pages, as before: a read must never fail for want of this
            self.enabled = False
            if exc.errno in REFUSALS:  # a filesystem that will not take the advice
                log.debug("cache pages are kept (%s refused: %s)", kind, exc.strerror)
            else:
                log.warning("cache pages are kept: posix_fadvise failed (%s: %s)", kind, exc.strerror)
