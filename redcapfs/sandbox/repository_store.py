"""The File Repository's folders and documents, in the store's SQLite database and ``files/`` folder.

Documents share the ``docs`` table (and the ``files/<doc_id>`` bytes) with file
fields, as REDCap keeps both in ``redcap_edocs_metadata``; a repository document
is a ``docs`` row plus a ``repo_docs`` row naming its folder. Names need not be
unique: REDCap stores each import as a new document, so a folder can hold two
files of one name.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # the store imports this module (through ``extras``) to load a project
    from .store import Store

SQL = """
CREATE TABLE IF NOT EXISTS repo_folders (
    folder_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, parent_id INTEGER NOT NULL,
    dag TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS repo_docs (doc_id INTEGER PRIMARY KEY, folder_id INTEGER NOT NULL);
"""
ROOT = 0


@dataclass(frozen=True)
class RepoDoc:
    """A repository document as stored (the same shape as the store's ``StoredDoc``)."""

    doc_id: int
    name: str
    mime: str
    size: int


@dataclass(frozen=True)
class Folder:
    """One folder; ``dag`` / ``role`` name the group or role it is restricted to ("" = none)."""

    folder_id: int
    name: str
    parent_id: int
    dag: str
    role: str


class Repository:
    """Folder and document operations (thread-safe: the store lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        with store.lock:  # not executescript: that would commit the caller's open transaction
            for statement in SQL.split(";"):
                if statement.strip():
                    store.db.execute(statement)

    def folder(self, folder_id: int) -> Folder | None:
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT folder_id, name, parent_id, dag, role FROM repo_folders WHERE folder_id=?", (folder_id,)
            ).fetchone()
        return Folder(*row) if row else None

    def folders_in(self, parent_id: int) -> list[Folder]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT folder_id, name, parent_id, dag, role FROM repo_folders WHERE parent_id=?", (parent_id,)
            ).fetchall()
        return sorted((Folder(*r) for r in rows), key=lambda f: (f.name.lower(), f.folder_id))

    def docs_in(self, folder_id: int) -> list[RepoDoc]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT d.doc_id, d.name, d.mime, d.size FROM repo_docs r JOIN docs d ON r.doc_id=d.doc_id "
                "WHERE r.folder_id=? AND d.deleted=0", (folder_id,)
            ).fetchall()
        return sorted((RepoDoc(*r) for r in rows), key=lambda d: (d.name.lower(), d.doc_id))

    def doc_folder(self, doc_id: int) -> int | None:
        """The folder of a live repository document (None when there is no such document)."""
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT r.folder_id FROM repo_docs r JOIN docs d ON r.doc_id=d.doc_id "
                "WHERE r.doc_id=? AND d.deleted=0", (doc_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def create_folder(self, name: str, parent_id: int, dag: str = "", role: str = "") -> int:
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO repo_folders (name, parent_id, dag, role) VALUES (?, ?, ?, ?)",
                             (name, parent_id, dag, role))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def add_doc(self, folder_id: int, spooled: Path, name: str, mime: str) -> int:
        """Move a spooled upload in as a new document (never replacing one of the same name)."""
        size = os.path.getsize(spooled)
        with self.store.transaction() as db:
            cur = db.execute("INSERT INTO docs (name, mime, size, created) VALUES (?, ?, ?, ?)",
                             (name, mime, size, time.time()))
            assert cur.lastrowid is not None
            doc_id = cur.lastrowid
            os.replace(spooled, self.store.doc_path(doc_id))
            db.execute("INSERT INTO repo_docs VALUES (?, ?)", (doc_id, folder_id))
        return doc_id

    def copy_in(self, folder_id: int, source: str, name: str, mime: str) -> int:
        tmp = self.store.new_tmp_path()
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return self.add_doc(folder_id, tmp, name, mime)

    def open_doc(self, doc_id: int) -> tuple[RepoDoc, BinaryIO] | None:
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT d.doc_id, d.name, d.mime, d.size FROM repo_docs r JOIN docs d ON r.doc_id=d.doc_id "
                "WHERE r.doc_id=? AND d.deleted=0", (doc_id,)
            ).fetchone()
            if row is None:
                return None
            doc = RepoDoc(*row)
            return doc, open(self.store.doc_path(doc.doc_id), "rb")

    def delete_doc(self, doc_id: int) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE docs SET deleted=1 WHERE doc_id=?", (doc_id,))
            db.execute("DELETE FROM repo_docs WHERE doc_id=?", (doc_id,))
            try:
                self.store.doc_path(doc_id).unlink()
            except FileNotFoundError:
                pass

    def folder_path(self, path: str) -> int:
        """The id of a ``/``-separated folder path, creating missing folders (project loading)."""
        parent = ROOT
        for part in [p for p in path.split("/") if p]:
            found = next((f for f in self.folders_in(parent) if f.name == part), None)
            parent = found.folder_id if found else self.create_folder(part, parent)
        return parent
