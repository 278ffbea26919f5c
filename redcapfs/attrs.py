"""Times and modes that REDCap does not keep, kept locally so they stay stable.

REDCap's records export gives a file's name, nothing else: no modification time,
no mode. ``rsync -a`` decides what to copy by size and mtime, so a file's mtime
must not change between listings or remounts while the file is unchanged, and
``cp -p``/``rsync -a`` into the mount expect the times they set to stick.

This store remembers, per (slot, name, size), the mtime first seen or last set
and the mode set by ``chmod``. Keys are SHA-256 hashes of the slot and name, so
no record or file name is written to disk. A different name or size is a
different key: a file replaced on the server under a new name or with a new size
gets a new time. A replacement with the same name *and* size keeps the old time
unless the change feed (fs/feed.py, REDCap's log) sees it: then :meth:`AttrStore.forget`
drops every version of that file, and the new one takes the log's time.

Each time carries the rule that set it, in the order of docs/SEMANTICS.md:
``SET`` (utimens) > ``WRITE`` (our own last write) > ``LOGGED`` (the log's time of
an upload made elsewhere) > ``FIRST_SEEN``; a stored time is never replaced by
a lower rule.
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
from redcapfs.statefiles import connect_private

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attrs (
    key TEXT PRIMARY KEY,
    mtime_ns INTEGER NOT NULL,
    mode INTEGER,
    seen REAL NOT NULL,
    file TEXT,
    rank INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attrs_file ON attrs (file);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


FIRST_SEEN, LOGGED, WRITE, SET = 0, 1, 2, 3  # who set a time, lowest first


@dataclass(frozen=True)
class Attr:
    """What is known locally about one file version."""

    mtime_ns: int
    mode: int | None


def attr_key(slot: Slot, name: str, size: int) -> str:
    """The hashed key of one file version (no names on disk)."""
    raw = repr((slot.record, slot.event, slot.field, slot.instance, name, size))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def file_key(slot: Slot, name: str) -> str:
    """The hashed key of every version of one file name in one slot."""
    raw = repr((slot.record, slot.event, slot.field, slot.instance, name))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class AttrStore:
    """A small SQLite table of mtimes and modes; ``path=None`` keeps it in memory."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        # A file in the state folder: 0600, never opened through a symlink (statefiles.py).
        self._db = connect_private(path) if path else sqlite3.connect(":memory:", check_same_thread=False)
        # Times are worth keeping but not an fsync per file seen: `ls -l` of a big
        # project records thousands of first sightings.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._db.executescript(_SCHEMA)
        # getattr is hot: answer repeats from memory. Written under _lock; read without it, which is
        # safe for a plain dict (one get is atomic) and keeps a memo hit from waiting on a SQLite write.
        self._memo: dict[str, Attr] = {}
        self.epoch_ns = self._epoch()

    def _migrate(self) -> None:
        """Stores written before times carried their rule get the two columns (old rows: first seen)."""
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(attrs)")}
        if cols and "file" not in cols:
            self._db.execute("ALTER TABLE attrs ADD COLUMN file TEXT")
        if cols and "rank" not in cols:
            self._db.execute("ALTER TABLE attrs ADD COLUMN rank INTEGER NOT NULL DEFAULT 0")

    def _epoch(self) -> int:
        """When this mount's state was first created: the directories' stable mtime."""
        with self._lock, self._db:
            row = self._db.execute("SELECT value FROM meta WHERE name='epoch_ns'").fetchone()
            if row:
                return int(row[0])
            now = time.time_ns()
            self._db.execute("INSERT INTO meta VALUES ('epoch_ns', ?)", (str(now),))
            return now

    def get(self, slot: Slot, name: str, size: int, logged_ns: int | None = None) -> Attr:
        """The stored attributes; a version never seen before gets the log's time if known, else "now"."""
        key = attr_key(slot, name, size)
        known = self._memo.get(key)
        if known is not None:
            return known
        with self._lock, self._db:
            row = self._db.execute("SELECT mtime_ns, mode FROM attrs WHERE key=?", (key,)).fetchone()
            if row:
                attr = Attr(int(row[0]), row[1])
            else:
                attr = Attr(logged_ns if logged_ns is not None else time.time_ns(), None)
                self._db.execute("INSERT INTO attrs VALUES (?, ?, NULL, ?, ?, ?)",
                                 (key, attr.mtime_ns, time.time(), file_key(slot, name),
                                  LOGGED if logged_ns is not None else FIRST_SEEN))
            self._memo[key] = attr
            return attr

    def peek(self, slot: Slot, name: str, size: int) -> Attr | None:
        """The stored attributes, or None; records nothing."""
        key = attr_key(slot, name, size)
        known = self._memo.get(key)
        if known is not None:
            return known
        with self._lock:
            row = self._db.execute("SELECT mtime_ns, mode FROM attrs WHERE key=?", (key,)).fetchone()
        return Attr(int(row[0]), row[1]) if row else None

    def set(self, slot: Slot, name: str, size: int, *, mtime_ns: int | None = None,
            mode: int | None = None, rank: int = SET) -> None:
        """Set the mtime (default now) by rule ``rank`` and, when given, the mode of a version.

        A time stored by a higher rule stays (a mode is always taken).
        """
        key = attr_key(slot, name, size)
        with self._lock, self._db:
            old = self._db.execute("SELECT mtime_ns, mode, rank FROM attrs WHERE key=?", (key,)).fetchone()
            new_rank = rank if mtime_ns is not None else (int(old[2]) if old else FIRST_SEEN)
            new_mtime = mtime_ns if mtime_ns is not None else (old[0] if old else time.time_ns())
            if old and mtime_ns is not None and int(old[2]) > rank:
                new_mtime, new_rank = int(old[0]), int(old[2])  # a lower rule never replaces a time
            new_mode = mode if mode is not None else (old[1] if old else None)
            self._db.execute("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?, ?, ?)",
                             (key, new_mtime, new_mode, time.time(), file_key(slot, name), new_rank))
            self._memo[key] = Attr(new_mtime, new_mode)

    def forget(self, slot: Slot, name: str) -> None:
        """Every version of ``name`` in ``slot`` was replaced elsewhere: its times go with it."""
        fkey = file_key(slot, name)
        with self._lock, self._db:
            keys = [row[0] for row in self._db.execute("SELECT key FROM attrs WHERE file=?", (fkey,))]
            self._db.execute("DELETE FROM attrs WHERE file=?", (fkey,))
            for key in keys:
                self._memo.pop(key, None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
