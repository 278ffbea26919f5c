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

Lock: ``_lock`` guards the entry table, the flights, the byte total and the
download count (in memory, plus unlinking an evicted file); downloads run in
their own threads with no lock held, and readers wait on a ``Flight``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from redcapfs.dropbehind import DropBehind
from redcapfs.errors import LocalIOError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A complete cached file."""

    path: str
    size: int
    fetched_at: float


class Flight:
    """One download in progress: readers wait for the bytes they need, or for its end.

    ``written`` counts the bytes at the start of ``part`` that are on disk; it
    never goes back (a retried attempt is checked against them, see
    :class:`_Published`). Readers of a flight get bytes as they arrive, and the
    download's error (never a short file) if it fails.
    """

    def __init__(self, part: Path) -> None:
        self.part = part
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.written = 0
        self._cond = threading.Condition()
        self.pages = DropBehind()  # the file's pages let go once served (dropbehind.py)

    def advance(self, position: int, fd: int) -> None:
        """The download wrote the file up to ``position`` through ``fd``: wake the readers waiting for it,
        then let go of the pages readers have had (dropbehind.py; no lock held)."""
        with self._cond:
            self.written = position
            self._cond.notify_all()
        self.pages.wrote(fd, position)

    def served(self, fd: int, offset: int, end: int) -> None:
        """A reader was given ``[offset, end)`` through ``fd`` (for dropbehind.py)."""
        self.pages.served(fd, offset, end)

    def finish(self) -> None:
        with self._cond:
            self.done.set()
            self._cond.notify_all()

    def wait_for(self, end: int) -> None:
        """Block until the first ``end`` bytes are on disk or the download ended; raise its error."""
        with self._cond:
            while self.written < end and not self.done.is_set():
                self._cond.wait(1.0)
        if self.error is not None and self.written < end:
            raise self.error


AnswerCheck = Callable[[str | None, int | None], None]


class _Published:
    """The file object a download writes into, telling its :class:`Flight` how far it got.

    A client that retries a broken download rewinds (seek, truncate) and sends
    the body again. Readers may already hold the first attempt's bytes, so they
    are never cut: a restarted attempt must announce the same name and length
    (``begin_body``) and its bytes are compared with those already on disk up to
    where the first attempt got; only past that are new bytes added. Any
    difference (a colleague replaced the file between the attempts) raises
    :class:`LocalIOError` (EIO for every reader), never a splice of two versions.
    """

    def __init__(self, raw: BinaryIO, flight: Flight, check: AnswerCheck | None = None) -> None:
        self._raw = raw
        self._flight = flight
        self._check = check
        self._answer: tuple[str | None, int | None] | None = None
        self.high = 0  # bytes on disk: readers may have read any of them

    def begin_body(self, name: str | None, length: int | None) -> None:
        """An attempt's answer starts (called by the client before its first byte)."""
        if self._answer is None:
            if self._check is not None:
                self._check(name, length)
            self._answer = (name, length)
            return
        if (name, length) != self._answer:
            log.warning("a restarted download answers another version (%s bytes, %s before): refused",
                        length, self._answer[1])
            raise LocalIOError(f"the file changed on the server during its download (now {name!r}, {length} "
                               f"bytes; it began as {self._answer[0]!r}, {self._answer[1]} bytes); open it again")

    def write(self, data: bytes) -> int:
        position = self._raw.tell()
        overlap = max(0, min(len(data), self.high - position))
        if overlap and os.pread(self._raw.fileno(), overlap, position) != data[:overlap]:
            log.warning("a restarted download sent other bytes than its first attempt at offset %d: refused",
                        position)
            raise LocalIOError("the file changed on the server while its download was restarted; open it again")
        self._raw.seek(position + overlap)
        if overlap < len(data):
            self._raw.write(data[overlap:])
        end = self._raw.tell()
        if end > self.high:
            self.high = end
            self._flight.advance(end, self._raw.fileno())
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        # A retry's rewind: the bytes stay (readers may have them); the next attempt is compared with them.
        return self._raw.tell() if size is None else size

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        self._raw.flush()

    def finished(self) -> int:
        """The complete size; a restarted attempt that ended before the bytes already there is another version."""
        end = self._raw.tell()
        if end < self.high:
            raise LocalIOError(f"the file changed on the server while its download was restarted ({end} bytes, "
                               f"{self.high} before); open it again")
        self._flight.pages.finish(self._raw.fileno())
        return end


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
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._flights: dict[str, Flight] = {}
        self._total = 0
        self.downloads = 0  # how many fetches ran (for logs and tests)
        self._part_ids = itertools.count(1)
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
    def lookup(self, key: str) -> Entry | None:
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

    def fetch(self, key: str, download: Callable[[BinaryIO], object], check: AnswerCheck | None = None) -> Entry:
        """Return the entry for ``key``, running ``download(fileobj)`` at most once at a time.

        ``download`` writes the body into the file object and raises on any
        failure; it must not return before the body is complete.
        """
        started = self.start(key, download, check)
        if isinstance(started, Entry):
            return started
        started.done.wait()
        if started.error is not None:
            raise started.error
        assert started.entry is not None
        return started.entry

    def start(self, key: str, download: Callable[[BinaryIO], object],
              check: AnswerCheck | None = None) -> Entry | Flight:
        """The complete entry, or the download in progress (started in the background if needed).

        ``check(name, length)`` vets the first attempt's answer before any byte reaches a reader
        (with clients that announce it: ``begin_body``).

        A reader can serve bytes of a :class:`Flight` as they arrive (``part``
        exists from the start; open it before the download ends and the
        descriptor stays valid when it becomes the entry).
        """
        entry = self.lookup(key)
        if entry is not None:
            return entry
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight
            part = self.root / f"{key}.part-{next(self._part_ids)}"
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            flight = self._flights[key] = Flight(part)
        thread = threading.Thread(target=self._run, args=(key, flight, fd, download, check), daemon=True,
                                  name="cache-download")
        thread.start()
        return flight

    def _run(self, key: str, flight: Flight, fd: int, download: Callable[[BinaryIO], object],
             check: AnswerCheck | None) -> None:
        try:
            with os.fdopen(fd, "w+b", buffering=0) as raw:
                out = _Published(raw, flight, check)
                download(out)  # type: ignore[arg-type]
                size = out.finished()
            flight.entry = self._publish(key, flight.part, size)
        except BaseException as exc:
            flight.error = exc
            _unlink_quietly(flight.part)
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.finish()

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
            with self._lock:
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
        """Fill ``key`` in this thread (copies of local files)."""
        part = self.root / f"{key}.part-{next(self._part_ids)}"
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w+b") as out:
                download(out)
                out.flush()
                size = out.tell()
        except BaseException:
            _unlink_quietly(part)
            raise
        return self._publish(key, part, size)

    def _publish(self, key: str, part: Path, size: int) -> Entry:
        """A complete download becomes the entry (rename: readers holding ``part`` open keep reading)."""
        final = self.root / key
        os.replace(part, final)
        entry = Entry(str(final), size, time.monotonic())
        with self._lock:
            self.downloads += 1
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
