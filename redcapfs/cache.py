"""The on-disk content cache: downloaded files, bounded in size, one download per file.

Reads are served from here, never straight from the network: the kernel asks for
a file in 128 KiB pieces at arbitrary offsets, and REDCap can only send the whole
file. Rules the rest of redcapfs relies on:

* An entry exists only once its download finished and the byte count matched
  ``Content-Length``: a partial download is deleted, never served.
* Concurrent requests for the same key share one download (single flight); if it
  fails, every waiter gets the error and the next request starts a new one.
* Least recently used entries are deleted past ``max_bytes``. Readers hold an
  open descriptor, so deleting a file being read is safe on Linux.
* Files are named by a hash of the key: no name from the server ever becomes a
  path here. The folder is 0700 and its files 0600; these are clinical files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A complete cached file."""

    path: str
    size: int
    fetched_at: float


class _Flight:
    """One download in progress that other threads can wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: Optional[Entry] = None
        self.error: Optional[BaseException] = None


def cache_key(*parts: object) -> str:
    """A stable file-system-safe key for a slot and file name."""
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]


class ContentCache:
    """Downloaded file bodies on local disk, LRU-bounded by total bytes."""

    def __init__(self, root: os.PathLike | str, max_bytes: int, ttl: float) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._total = 0
        self.downloads = 0  # how many fetches ran (for logs and tests)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self._adopt()

    def _adopt(self) -> None:
        """Take over complete files left by an earlier mount (``-o keep_cache``); drop partial ones.

        Their age counts from their file time, so the TTL still bounds how stale they can be.
        """
        now_wall, now_mono = time.time(), time.monotonic()
        found = []
        for path in self.root.iterdir():
            if ".part-" in path.name or not path.is_file():
                _unlink_quietly(path)
                continue
            st = path.stat()
            found.append((st.st_mtime, path.name, st.st_size))
        for mtime, key, size in sorted(found):
            self._entries[key] = Entry(str(self.root / key), size, now_mono - max(0.0, now_wall - mtime))
            self._total += size
        if found:
            self._evict_locked(keep="")

    # ------------------------------------------------------------ lookups
    def lookup(self, key: str) -> Optional[Entry]:
        """A fresh complete entry for ``key``, or None. Marks it recently used."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self.ttl >= 0 and time.monotonic() - entry.fetched_at > self.ttl:
                self._drop_locked(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def fetch(self, key: str, download: Callable[[BinaryIO], object]) -> Entry:
        """Return the entry for ``key``, running ``download(fileobj)`` at most once at a time.

        ``download`` writes the body into the file object and raises on any
        failure; it must not return before the body is complete.
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            assert flight.entry is not None
            return flight.entry
        try:
            flight.entry = self._download(key, download)
            return flight.entry
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()

    def put(self, key: str, source: str) -> Entry:
        """Keep a local file as ``key`` (our own upload: the next read needs no download).

        A hard link when ``source`` is on the same filesystem (no copy of a
        large upload); the caller must :meth:`invalidate` before changing
        ``source`` again. Otherwise a copy.
        """
        self.invalidate(key)
        final = self.root / key
        try:
            os.link(source, final)
        except OSError:
            def copy(out: BinaryIO) -> None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)

            entry = self._download(key, copy)
            self.downloads -= 1  # a copy, not a download
            return entry
        entry = Entry(str(final), final.stat().st_size, time.monotonic())
        with self._lock:
            self._drop_locked(key, unlink=False)
            self._entries[key] = entry
            self._total += entry.size
            self._evict_locked(keep=key)
        return entry

    # ------------------------------------------------------------ changes
    def invalidate(self, key: str) -> None:
        """Forget ``key`` (the file changed or was deleted)."""
        with self._lock:
            self._drop_locked(key)

    def wipe(self) -> None:
        """Delete every cached file (at unmount)."""
        with self._lock:
            self._entries.clear()
            self._total = 0
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def total_bytes(self) -> int:
        return self._total

    # ------------------------------------------------------------ internals
    def _download(self, key: str, download: Callable[[BinaryIO], object]) -> Entry:
        final = self.root / key
        part = self.root / f"{key}.part-{threading.get_ident()}"
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w+b") as out:
                download(out)
                out.flush()
                size = out.tell()
            os.replace(part, final)
        except BaseException:
            _unlink_quietly(part)
            raise
        self.downloads += 1
        entry = Entry(str(final), size, time.monotonic())
        with self._lock:
            self._drop_locked(key, unlink=False)
            self._entries[key] = entry
            self._total += size
            self._evict_locked(keep=key)
        return entry

    def _drop_locked(self, key: str, unlink: bool = True) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= entry.size
            if unlink:
                _unlink_quietly(Path(entry.path))

    def _evict_locked(self, keep: str) -> None:
        while self._total > self.max_bytes and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            if oldest == keep:
                self._entries.move_to_end(oldest)
                oldest = next(iter(self._entries))
                if oldest == keep:
                    break
            log.debug("cache: evicting an entry of %d bytes", self._entries[oldest].size)
            self._drop_locked(oldest)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
