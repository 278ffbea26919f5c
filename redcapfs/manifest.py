"""What each slot held when this machine last looked, kept across mounts, and the change feed's cursor.

REDCap's records export gives a file's name, never its size, so without this
every ``stat`` of a file not seen in this mount costs a file-info call, and a
nightly ``rsync -a`` of a big project spends its time relearning sizes. The
manifest keeps, per file version (slot and name), the size and what it was
learned from (``fileinfo``, ``download``, ``upload``) and when.

A size from here is only as good as the knowledge that the file has not
changed since: REDCap can replace a file under the same name and size. So an
entry is *trusted* only when it was learned after ``trusted_since``, the time
from which the change feed (REDCap's log) has covered every change without a
gap; the feed drops the entries of every file it sees changed. Anything else
is a *hint*, which the caller checks again before use (a wrong size silently
truncates rsync and tar). Without the log nothing is trusted.

Private like the attribute store (attrs.py): one SQLite file, mode 0600, keys
are SHA-256 hashes of slot and name, so no record or file name is on disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from redcapfs.shape import Slot
from redcapfs.statefiles import connect_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    size INTEGER NOT NULL,
    source TEXT NOT NULL,
    learned REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_slot ON files (slot);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    """One remembered file version."""

    size: int
    source: str  # fileinfo | download | upload
    learned: float  # wall-clock seconds
    trusted: bool


def slot_key(slot: Slot) -> str:
    raw = repr((slot.record, slot.event, slot.field, slot.instance))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def file_key(slot: Slot, name: str) -> str:
    raw = repr((slot.record, slot.event, slot.field, slot.instance, name))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


_REPO_SLOT = hashlib.sha256(b"File Repository").hexdigest()


def _repo_key(url: str, doc_id: int) -> str:
    return hashlib.sha256(repr(("repository", url, doc_id)).encode()).hexdigest()


class Manifest:
    """Sizes of file versions by hashed slot and name, and the feed's cursor; ``path=None`` keeps it in memory.

    Lock: ``_lock`` guards the one SQLite connection; a leaf (nothing is called
    while holding it). Writes do not fsync (``synchronous=NORMAL``): a lost
    entry costs one file-info call, never a wrong answer.
    """

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        # A file in the state folder: 0600, never opened through a symlink (statefiles.py).
        self._db = connect_private(path) if path else sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.trusted_since: float | None = None  # None: nothing is trusted (no change feed)

    # ------------------------------------------------------------ file versions
    def get(self, slot: Slot, name: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT size, source, learned FROM files WHERE key=?",
                                   (file_key(slot, name),)).fetchone()
        if row is None:
            return None
        since = self.trusted_since
        return Entry(int(row[0]), row[1], float(row[2]), since is not None and float(row[2]) >= since)

    def put(self, slot: Slot, name: str, size: int, source: str) -> None:
        """What a file-info call, a download or our upload just told."""
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                             (file_key(slot, name), slot_key(slot), size, source, time.time()))

    def forget(self, slot: Slot, name: str | None = None) -> None:
        """The slot's file changed on the server: drop one version (or every version of the slot)."""
        with self._lock, self._db:
            if name is None:
                self._db.execute("DELETE FROM files WHERE slot=?", (slot_key(slot),))
            else:
                self._db.execute("DELETE FROM files WHERE key=?", (file_key(slot, name),))

    # ------------------------------------------------------------ File Repository documents
    # A document never changes under its id (every import is a new document), so its size is always trusted.
    def repo_size(self, url: str, doc_id: int) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT size FROM files WHERE key=?", (_repo_key(url, doc_id),)).fetchone()
        return None if row is None else int(row[0])

    def put_repo_size(self, url: str, doc_id: int, size: int, source: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                             (_repo_key(url, doc_id), _REPO_SLOT, size, source, time.time()))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0])

    # ------------------------------------------------------------ the feed's state
    def meta(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()
