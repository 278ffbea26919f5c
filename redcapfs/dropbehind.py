"""One copy in memory: a download's cache-file pages are let go once the kernel holds the bytes.

A cold read of a large file puts every byte in memory twice: in the content cache's file (the
download writes it through the page cache) and in the kernel's pages of the mounted file (what the
reader reads, kept across opens: ``fs/kernelpages.py``). A 2 GB scan read once took 4 GB of page
cache, and on a machine whose free memory is backed lazily (a VM returning free pages to its host)
the cache file's fresh pages cost as much as the reader's own: a cold `cp` of 256 MiB spent 0.5-0.8 s
of the daemon's system time, most of it in that write.

So, while a download runs, the part of its file that readers have been served and that lies well
behind both the download and the farthest read is handed back: ``POSIX_FADV_DONTNEED`` first starts
the writeback of a range (:data:`WRITEBACK_LAG` behind), and a second call, :data:`DROP_LAG` behind,
drops the pages that are clean by then. Nothing is lost: the bytes are on disk, and a later read of
them (a second reader lagging far behind, a retried download comparing its bytes, a reopen after the
kernel let its pages go) reads them from there. Pages still dirty or under writeback at the second
call are left where they are. Files smaller than the lag are never touched, and a download nobody
reads keeps its pages (nothing was served).

Only the download's own thread acts, at each block it writes: once it has ended, the last
:data:`DROP_LAG` (and whatever no reader had reached by then) keeps its second copy.

Locking model: ``_lock`` guards the four offsets and nothing else (a leaf). The download claims its
ranges under it and calls ``posix_fadvise`` (which may start disk writes) with no lock held, on its
own descriptor; readers only raise ``_served`` under it.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

WRITEBACK_LAG = 4 << 20  # writeback starts this far behind the nearer of the download's end and the reads
DROP_LAG = 32 << 20  # and the pages are dropped this far behind it
STEP = 4 << 20  # at least this much at a time: a call per 4 MiB, not per read
Range = tuple[int, int]  # offset, length


class DropBehind:
    """The page-cache state of one download's cache file: how far it was written, served, let go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._written = 0  # bytes of the file the download has written
        self._served = 0  # the farthest byte a reader was served
        self._flushed = 0  # writeback started below this
        self._dropped = 0  # pages dropped (where clean) below this
        self.enabled = hasattr(os, "posix_fadvise")

    def wrote(self, fd: int, end: int) -> None:
        """The download has written the file up to ``end`` through ``fd``: let go what is behind.

        Only the download's thread calls ``posix_fadvise``, so a reader's FUSE request never waits
        for the writeback it starts.
        """
        if not self.enabled:
            return
        with self._lock:
            self._written = max(self._written, end)
            work = self._claim()
        for offset, length in work:
            self._advise(fd, offset, length)

    def served(self, end: int) -> None:
        """A reader was given the file up to ``end`` (noted only: the next :meth:`wrote` acts on it)."""
        with self._lock:
            self._served = max(self._served, end)

    def _claim(self) -> list[Range]:
        """The ranges to hand to ``posix_fadvise`` now (the offsets move past them); under ``_lock``."""
        limit = min(self._written, self._served)
        work = []
        if limit - WRITEBACK_LAG - self._flushed >= STEP:
            work.append((self._flushed, limit - WRITEBACK_LAG - self._flushed))
            self._flushed = limit - WRITEBACK_LAG
        if limit - DROP_LAG - self._dropped >= STEP:
            work.append((self._dropped, limit - DROP_LAG - self._dropped))
            self._dropped = limit - DROP_LAG
        return work

    def _advise(self, fd: int, offset: int, length: int) -> None:
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError as exc:  # a filesystem that will not take the advice: keep the pages, as before
            self.enabled = False
            log.debug("cache pages are kept (posix_fadvise: %s)", exc.strerror)
