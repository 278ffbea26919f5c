"""The sandbox's persistent state: SQLite (WAL) for rows and metadata, a folder for file bytes.

Why this shape: the sandbox must survive restarts (``--data-dir``) and must
never hold a file's bytes in memory (a 1 GiB upload has to work), so bytes live
in ``files/<doc_id>`` and only their names and sizes go into SQLite.

Concurrency: one connection guarded by one re-entrant lock. Every method that
touches the database takes the lock, so handler threads can call the store
freely. Byte streaming always happens *outside* the lock: uploads are spooled
to ``tmp/`` first and moved into place under the lock; downloads open the file
under the lock and stream from the open handle afterwards (a concurrent replace
unlinks the old file, which stays readable through the open handle).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .extras import initialise_extras
from .project import ProjectDef
from .rows import RowKey, RowWrite, rows_to_writes
from .schema import Schema, Structure

log = logging.getLogger(__name__)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record TEXT PRIMARY KEY, seq INTEGER NOT NULL, locked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS rows (
    record TEXT NOT NULL, event TEXT NOT NULL, rform TEXT NOT NULL, inst INTEGER NOT NULL,
    data TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (record, event, rform, inst));
CREATE TABLE IF NOT EXISTS docs (
    doc_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, mime TEXT NOT NULL,
    size INTEGER NOT NULL, created REAL NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS files (
    record TEXT NOT NULL, event TEXT NOT NULL, rform TEXT NOT NULL, inst INTEGER NOT NULL,
    field TEXT NOT NULL, doc_id INTEGER NOT NULL,
    PRIMARY KEY (record, event, rform, inst, field));
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, username TEXT NOT NULL,
    action TEXT NOT NULL, details TEXT NOT NULL, record TEXT NOT NULL, kind TEXT NOT NULL);
"""

STRUCTURE_KEYS = ("info", "metadata", "instruments", "arms", "events", "form_event_mapping", "repeating")
COPY_CHUNK = 1 << 20

@dataclass(frozen=True)
class StoredDoc:
    """A file as stored: where its bytes are and what the server says about it."""

    doc_id: int
    name: str
    mime: str
    size: int


def natural_key(record: str) -> tuple[int, int, str]:
    """Order records as REDCap lists them: numeric names numerically, then the rest by text."""
    return (0, int(record), "") if record.isdigit() else (1, 0, record)


class Store:
    """All persistent state of one sandbox project.

    Create with :meth:`open`; a fresh directory must then be filled with
    :meth:`initialise` (from a ``ProjectDef``). ``schema`` is the structure index.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.tmp_dir = self.data_dir / "tmp"
        self.lock = threading.RLock()
        self._tx_depth = 0
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._clear_tmp()
        self.db = sqlite3.connect(
            str(self.data_dir / "sandbox.sqlite3"), check_same_thread=False, isolation_level=None
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA_SQL)
        self.schema: Schema | None = None
        if self.initialised:
            self.schema = Schema(self._load_structure())

    @classmethod
    def open(cls, data_dir: Path | str) -> Store:
        return cls(Path(data_dir))

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _clear_tmp(self) -> None:
        """Spooled uploads of a previous run never completed: drop them."""
        for path in self.tmp_dir.iterdir():
            try:
                path.unlink()
            except OSError:
                pass

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: all or nothing, under the store lock. Nested uses join the outer one."""
        with self.lock:
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield self.db
                finally:
                    self._tx_depth -= 1
                return
            self.db.execute("BEGIN IMMEDIATE")
            self._tx_depth = 1
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._tx_depth = 0

    # ------------------------------------------------------------------ kv

    def get_kv(self, key: str) -> Any | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_kv(self, key: str, value: Any) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def initialised(self) -> bool:
        return self.get_kv("initialised") is not None

    def _load_structure(self) -> Structure:
        tables: dict[str, Any] = {k: self.get_kv(k) for k in STRUCTURE_KEYS}
        return Structure(**tables)

    def default_token(self) -> str:
        """A full-rights token kept with the state, so a restarted sandbox keeps its token."""
        token = self.get_kv("default_token")
        if not token:
            token = secrets.token_hex(16).upper()
            self.set_kv("default_token", token)
        return token

    # ---------------------------------------------------------- initialisation

    def initialise(self, project: ProjectDef) -> None:
        """Fill a fresh store from ``project``: structure, records, files, locks."""
        structure = Structure(
            info=dict(project.info),
            metadata=list(project.metadata),
            instruments=list(project.instruments),
            arms=list(project.arms),
            events=list(project.events),
            form_event_mapping=list(project.form_event_mapping),
            repeating=list(project.repeating),
        )
        schema = Schema(structure)
        writes = rows_to_writes(schema, project.records)
        with self.transaction() as db:
            for key in STRUCTURE_KEYS:
                db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, json.dumps(getattr(structure, key))))
            self.schema = schema
            self.apply_row_writes(writes, overwrite=True, username="")
            for stored in project.files:
                self._initial_file(schema, stored)
            for record in project.locked:
                db.execute("UPDATE records SET locked=1 WHERE record=?", (record,))
            initialise_extras(self, project)  # users, DAGs, repository, log history
            db.execute("INSERT OR REPLACE INTO kv VALUES ('initialised', ?)", (json.dumps(time.time()),))
        log.info("store initialised: %d records, %d files", len(self.record_names()), len(project.files))

    def _initial_file(self, schema: Schema, stored: Any) -> None:
        """Copy one ``StoredFile`` into the store (in chunks, never whole in memory)."""
        event = (stored.event or "") if schema.longitudinal else ""
        inst = int(stored.repeat_instance or 1)
        rform, inst = schema.slot_key(event, stored.field, inst)
        self.ensure_row((stored.record, event, rform, inst))
        tmp = self.new_tmp_path()
        with open(stored.source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        self.put_file((stored.record, event, rform, inst), stored.field, tmp, stored.name, stored.mime)

    # ----------------------------------------------------------------- records

    def record_names(self) -> list[str]:
        with self.lock:
            names = [r[0] for r in self.db.execute("SELECT record FROM records")]
        return sorted(names, key=natural_key)

    def record_exists(self, record: str) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM records WHERE record=?", (record,)).fetchone() is not None

    def record_in_event(self, record: str, event: str) -> bool:
        with self.lock:
            row = self.db.execute(
                "SELECT 1 FROM rows WHERE record=? AND event=? LIMIT 1", (record, event)
            ).fetchone()
        return row is not None

    def is_locked(self, record: str) -> bool:
        with self.lock:
            row = self.db.execute("SELECT locked FROM records WHERE record=?", (record,)).fetchone()
        return bool(row and row[0])

    def set_locked(self, record: str, locked: bool = True) -> None:
        with self.lock:
            self.db.execute("UPDATE records SET locked=? WHERE record=?", (int(locked), record))

    def ensure_row(self, key: RowKey) -> bool:
        """Create the record and the row if missing; True when the *record* is new."""
        record = key[0]
        with self.lock:
            new_record = not self.record_exists(record)
            if new_record:
                seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM records").fetchone()[0]
                self.db.execute("INSERT INTO records (record, seq) VALUES (?, ?)", (record, seq))
            self.db.execute("INSERT OR IGNORE INTO rows (record, event, rform, inst) VALUES (?, ?, ?, ?)", key)
        return new_record

    def row_data(self, key: RowKey) -> dict[str, str] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT data FROM rows WHERE record=? AND event=? AND rform=? AND inst=?", key
            ).fetchone()
        return json.loads(row[0]) if row else None

    def apply_row_writes(self, writes: list[RowWrite], overwrite: bool, username: str) -> list[str]:
        """Merge imported values into rows; return the record names touched, in first-seen order.

        With ``overwrite`` a blank value erases; otherwise blanks are skipped (REDCap's
        ``overwriteBehavior=normal``).
        """
        touched: list[str] = []
        with self.transaction():
            for write in writes:
                key, values = write.key, write.values
                created = self.ensure_row(key)
                data = self.row_data(key) or {}
                for col, value in write.defaults.items():
                    data.setdefault(col, value)
                for col, value in values.items():
                    if value == "" and not overwrite:
                        continue
                    if value == "":
                        data.pop(col, None)
                    else:
                        data[col] = value
                self.db.execute(
                    "UPDATE rows SET data=? WHERE record=? AND event=? AND rform=? AND inst=?",
                    (json.dumps(data),) + key,
                )
                if key[0] not in touched:
                    touched.append(key[0])
                    if username:
                        self.add_log(username, *self._record_log_entry(key[0], created, values))
        return touched

    @staticmethod
    def _record_log_entry(record: str, created: bool, values: dict[str, str]) -> tuple[str, str, str, str]:
        verb = "Create" if created else "Update"
        details = ", ".join(f"{k} = '{v}'" for k, v in values.items())
        return (f"{verb} record (API) {record}", details, record, "record_add" if created else "record_edit")

    def rows_of(self, record: str) -> list[tuple[str, str, int, dict[str, str]]]:
        """All rows of one record as ``(event, rform, inst, data)``."""
        with self.lock:
            rows = self.db.execute(
                "SELECT event, rform, inst, data FROM rows WHERE record=?", (record,)
            ).fetchall()
        return [(e, f, i, json.loads(d)) for e, f, i, d in rows]

    def delete_record(self, record: str, username: str) -> None:
        """Remove a record with all its rows and files (``content=record&action=delete``)."""
        with self.transaction() as db:
            docs = db.execute("SELECT doc_id FROM files WHERE record=?", (record,)).fetchall()
            for (doc_id,) in docs:
                self._forget_doc(doc_id)
            for table in ("files", "rows", "records"):
                db.execute(f"DELETE FROM {table} WHERE record=?", (record,))
            self.add_log(username, f"Delete record (API) {record}", "", record, "record_delete")

    def next_record_name(self) -> str:
        numbers = [int(r) for r in self.record_names() if r.isdigit()]
        return str(max(numbers, default=0) + 1)

    # ------------------------------------------------------------------- files

    def new_tmp_path(self) -> Path:
        """A fresh spool path for an incoming upload (same filesystem as ``files/``)."""
        return self.tmp_dir / f"up-{secrets.token_hex(8)}"

    def doc_path(self, doc_id: int) -> Path:
        return self.files_dir / str(doc_id)

    def get_file(self, key: RowKey, field_name: str) -> StoredDoc | None:
        with self.lock:
            row = self.db.execute(
                "SELECT d.doc_id, d.name, d.mime, d.size FROM files f JOIN docs d ON f.doc_id=d.doc_id "
                "WHERE f.record=? AND f.event=? AND f.rform=? AND f.inst=? AND f.field=?",
                key + (field_name,),
            ).fetchone()
        return StoredDoc(*row) if row else None

    def open_file(self, key: RowKey, field_name: str) -> tuple[StoredDoc, BinaryIO] | None:
        """The stored file and an open handle on its bytes, taken atomically."""
        with self.lock:
            doc = self.get_file(key, field_name)
            if doc is None:
                return None
            return doc, open(self.doc_path(doc.doc_id), "rb")

    def files_of(self, record: str) -> dict[tuple[str, str, int, str], str]:
        """``(event, rform, inst, field) -> name`` for one record (record export)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT f.event, f.rform, f.inst, f.field, d.name FROM files f JOIN docs d "
                "ON f.doc_id=d.doc_id WHERE f.record=?",
                (record,),
            ).fetchall()
        return {(e, r, i, f): n for e, r, i, f, n in rows}

    def put_file(self, key: RowKey, field_name: str, spooled: Path, name: str, mime: str) -> int:
        """Move a spooled upload into the slot, replacing what was there; returns the doc id."""
        size = os.path.getsize(spooled)
        with self.transaction() as db:
            self.ensure_row(key)
            cur = db.execute(
                "INSERT INTO docs (name, mime, size, created) VALUES (?, ?, ?, ?)", (name, mime, size, time.time())
            )
            assert cur.lastrowid is not None  # an INSERT always sets it
            doc_id = cur.lastrowid
            os.replace(spooled, self.doc_path(doc_id))
            old = self.get_file(key, field_name)
            db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)", key + (field_name, doc_id)
            )
            if old:
                self._forget_doc(old.doc_id)
        return doc_id

    def delete_file(self, key: RowKey, field_name: str) -> StoredDoc | None:
        with self.transaction() as db:
            old = self.get_file(key, field_name)
            if old:
                db.execute(
                    "DELETE FROM files WHERE record=? AND event=? AND rform=? AND inst=? AND field=?",
                    key + (field_name,),
                )
                self._forget_doc(old.doc_id)
        return old

    def _forget_doc(self, doc_id: int) -> None:
        """Soft-delete in the table (as REDCap does), but free the bytes on disk."""
        self.db.execute("UPDATE docs SET deleted=1 WHERE doc_id=?", (doc_id,))
        try:
            self.doc_path(doc_id).unlink()
        except FileNotFoundError:
            pass

    # --------------------------------------------------------------------- log

    def add_log(self, username: str, action: str, details: str, record: str, kind: str) -> None:
        with self.lock:
            self.db.execute(
                "INSERT INTO log (ts, username, action, details, record, kind) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), username, action, details, record, kind),
            )

    def log_rows(self) -> list[tuple[float, str, str, str, str, str]]:
        with self.lock:
            return self.db.execute(
                "SELECT ts, username, action, details, record, kind FROM log ORDER BY id DESC"
            ).fetchall()
