"""Times and modes that REDCap does not keep, kept locally so they stay stable.

REDCap's records export gives a file's name, nothing else: no modification time,
no mode. ``rsync -a`` decides what to copy by size and mtime, so a file's mtime
must not change between listings or remounts while the file is unchanged, and
``cp -p``/``rsync -a`` into the mount expect the times they set to stick.

This store remembers, per (slot, name, size), the mtime first seen or last set
and the mode set by ``chmod``. Keys are SHA-256 hashes of the slot and name, so
no record or file name is written to disk. A different name or size is a
different key: a file replaced on the server under a new name or with a new size
gets a new time. A replacement with the same name *and* size keeps the old time;
that limit is written down in docs/SEMANTICS.md.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from redcapfs.shape import Slot

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attrs (
    key TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER,
    seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Attr:
    """What is known locally about one file version."""

    mtime_ns: int
    mode: int | None


def attr_key(slot: Slot, name: str, size: int) -> str:
    """The hashed key of one file version (no names on disk)."""
    raw = repr((slot.record, slot.event, slot.field, slot.instance, name, size))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class AttrStore:
    """A small SQLite table of mtimes and modes; ``path=None`` keeps it in memory."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        if path is not None:
            path.chmod(0o600)
        # Times are worth keeping but not an fsync per file seen: `ls -l` of a big
        # project records thousands of first sightings.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # getattr is hot: answer repeats from memory. Written under _lock; read without it, which is
        # safe for a plain dict (one get is atomic) and keeps a memo hit from waiting on a SQLite write.
        self._memo: dict[str, Attr] = {}
        self.epoch_ns = self._epoch()

    def _epoch(self) -> int:
        """When this mount's state was first created: the directories' stable mtime."""
        with self._lock, self._db:
            row = self._db.execute("SELECT value FROM meta WHERE name='epoch_ns'").fetchone()
            if row:
                return int(row[0])
            now = time.time_ns()
            self._db.execute("INSERT INTO meta VALUES ('epoch_ns', ?)", (str(now),))
            return now

    def get(self, slot: Slot, name: str, size: int) -> Attr:
        """The stored attributes, recording "now" as the mtime of a version never seen before."""
        key = attr_key(slot, name, size)
        known = self._memo.get(key)
        if known is not None:
            return known
        with self._lock, self._db:
            row = self._db.execute("SELECT mtime_ns, mode FROM attrs WHERE key=?", (key,)).fetchone()
            if row:
                attr = Attr(int(row[0]), row[1])
            else:
                attr = Attr(time.time_ns(), None)
                self._db.execute("INSERT INTO attrs VALUES (?, ?, NULL, ?)", (key, attr.mtime_ns, time.time()))
            self._memo[key] = attr
            return attr

    def set(self, slot: Slot, name: str, size: int, *, mtime_ns: int | None = None,
            mode: int | None = None) -> None:
        """Set the mtime (default now) and, when given, the mode of a version."""
        key = attr_key(slot, name, size)
        with self._lock, self._db:
            old = self._db.execute("SELECT mtime_ns, mode FROM attrs WHERE key=?", (key,)).fetchone()
            new_mtime = mtime_ns if mtime_ns is not None else (old[0] if old else time.time_ns())
            new_mode = mode if mode is not None else (old[1] if old else None)
            self._db.execute("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?)",
                             (key, new_mtime, new_mode, time.time()))
            self._memo[key] = Attr(new_mtime, new_mode)

    def close(self) -> None:
        with self._lock:
            self._db.close()
