"""Writes into the File Repository: a spool entry per open file, uploaded as a new document on close.

The bytes live in an ordinary spool entry (``spool.py``) whose target is the
document (folder and name, ``Target.folder``), so a failed upload is kept and
listed by ``redcapfs unsent`` and sent by ``redcapfs retry`` as a record
file's is, and a crash while writing leaves an *incomplete* entry, never a
lost file. Nothing is reported as written before REDCap answered: a failed
upload fails that ``close()``.

REDCap's ``import`` always adds a document (never replaces one), so saving
over an existing file is an import and then a delete of the old document,
which is kept in the local trash first (``repokeep.py``); if that keep or
delete fails both stay listed and the log says so. A delete (``rm``) keeps the
document in the trash first too.

Temporary names (rsync's ``.NAME.XXXXXX``, editors' swap files: the mount's
``temp_names`` rule) stay local, as in record folders: renaming one onto a
real name is its upload (rsync's and editors' way of saving). Renaming
anything else is refused (repotree.py).

Each writer has its own lock, held over its bytes and its own upload only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from redcapfs import names
from redcapfs.client.base import RedcapClient
from redcapfs.errors import AccessDenied, AlreadyExists, IsADirectory, LocalIOError, ReadOnly, RedcapError
from redcapfs.fs import rules
from redcapfs.fs.repokeep import downloader, keep, keep_and_delete, repo_target
from redcapfs.fs.repository import Item, Repository, components
from redcapfs.spool import Spool, SpoolEntry, Target
from redcapfs.tempnames import TempNames
from redcapfs.trash import Left, Source, Trash, sha256_file

log = logging.getLogger(__name__)


@dataclass
class Writer:
    """One open-for-write (or local temporary) file in the File Repository."""

    path: str
    folder_id: int | None
    name: str
    entry: SpoolEntry
    fd: int
    replaces: int | None = None
    temp: bool = False
    dirty: bool = False
    handles: int = 1
    gone: bool = False  # unlinked before its upload: never sent
    lock: threading.Lock = field(default_factory=threading.Lock)


def folder_of(path: str) -> str:
    """The folder's path below ``.repository`` ("" for the top level), as the mount shows it."""
    return "/".join(components(path)[:-1])


class RepoWrites:
    """Writers by path and by fh; uploads, the delete of a replaced document, deletes kept in the trash."""

    def __init__(self, repo: Repository, client: RedcapClient, spool: Spool, project_id: str, read_only: bool,
                 can_import: Callable[[], bool], temp_names: TempNames, trash: Trash | None) -> None:
        self.repo = repo
        self.client = client
        self.spool = spool
        self.project_id = project_id
        self.read_only = read_only
        self.can_import = can_import
        self.temp_names = temp_names
        self.trash = trash
        self._lock = threading.Lock()
        self._by_path: dict[str, Writer] = {}
        self._by_fh: dict[int, Writer] = {}

    # ------------------------------------------------------------ lookups
    def pending(self, path: str) -> Writer | None:
        with self._lock:
            return self._by_path.get(path)

    def pending_in(self, folder_path: str) -> list[str]:
        """Components of files being written (or kept locally) directly in ``folder_path``."""
        depth = len(components(folder_path)) + 1
        with self._lock:
            paths = list(self._by_path)
        return [components(p)[-1] for p in paths
                if p.startswith(folder_path.rstrip("/") + "/") and len(components(p)) == depth]

    def of(self, fh: int | None) -> Writer | None:
        if fh is None:
            return None
        with self._lock:
            return self._by_fh.get(fh)

    # ------------------------------------------------------------ opening
    def check(self, path: str) -> None:
        if self.read_only:
            raise ReadOnly("read-only mount", path)
        if not self.can_import():
            raise AccessDenied("this API token has no import rights", path)

    def _target(self, path: str, folder_id: int | None, name: str, replaces: int | None = None,
                doc_id: int | None = None) -> Target:
        return repo_target(self.repo.url, self.project_id, folder_of(path), folder_id, name, doc_id, replaces)

    def _new_writer(self, path: str, folder_id: int | None, name: str, replaces: int | None) -> Writer:
        temp = self.temp_names.is_temp(names.encode(name))
        try:
            entry = self.spool.create(self._target(path, folder_id, name, replaces), temp=temp)
            fd = os.open(entry.data_path, os.O_RDWR)
        except OSError as exc:
            raise LocalIOError(f"cannot create a spool file: {exc}", path) from exc
        return Writer(path, folder_id, name, entry, fd, replaces, temp)

    def create(self, path: str) -> Writer:
        """A new document (uploaded at close, also when empty), or a local temporary file."""
        self.check(path)
        parent, component = self.repo.parent_of(path)
        if component in self.repo.listing(parent.folder_id, fresh=True) or self.pending(path):
            raise AlreadyExists("exists", path)
        name = rules.creatable(component, path)  # a name that lists back as typed, or EINVAL (docs/names.md)
        writer = self._new_writer(path, parent.folder_id, name, None)
        writer.dirty = not writer.temp
        with self._lock:
            self._by_path[path] = writer
        return writer

    def open_existing(self, path: str, truncate: bool) -> Writer:
        """Saving over a document: its bytes are copied in first unless truncated."""
        self.check(path)
        with self._lock:
            writer = self._by_path.get(path)
            if writer is not None:
                writer.handles += 1
        if writer is not None:
            if truncate:
                self.truncate(writer, 0)
            return writer
        item = self.repo.resolve(path)
        parent, _ = self.repo.parent_of(path)
        if item.doc_id is None:
            raise IsADirectory("is a directory", path)
        writer = self._new_writer(path, parent.folder_id, item.name, item.doc_id)
        if truncate:
            writer.dirty = True
        else:
            with open(self.repo.fetch(item.doc_id).path, "rb") as src, os.fdopen(os.dup(writer.fd), "wb") as dst:
                shutil.copyfileobj(src, dst)
        with self._lock:
            self._by_path[path] = writer
        return writer

    def bind(self, fh: int, writer: Writer) -> None:
        with self._lock:
            self._by_fh[fh] = writer

    # ------------------------------------------------------------ bytes
    def write(self, writer: Writer, data: bytes, offset: int) -> int:
        with writer.lock:
            writer.entry.writing()
            writer.dirty = not writer.temp
            return os.pwrite(writer.fd, data, offset)

    def truncate(self, writer: Writer, length: int) -> None:
        with writer.lock:
            writer.entry.writing()
            writer.dirty = not writer.temp
            os.ftruncate(writer.fd, length)

    # ------------------------------------------------------------ close
    def flush(self, fh: int) -> None:
        writer = self.of(fh)
        if writer is None:
            return
        with writer.lock:
            if writer.dirty and not writer.gone:
                self._upload(writer)

    def release(self, fh: int) -> None:
        """The last close uploads what is not yet sent; a temporary file stays (local) until renamed or removed."""
        with self._lock:
            writer = self._by_fh.pop(fh, None)
            if writer is None:
                return
            writer.handles -= 1
            last = writer.handles <= 0
            if last and not (writer.temp and not writer.gone):
                self._unlist(writer)
        if not last or (writer.temp and not writer.gone):
            return
        with writer.lock:
            if writer.dirty and not writer.gone:
                try:
                    self._upload(writer)
                except (RedcapError, OSError):
                    pass  # kept as unsent and logged by _upload
            self._finish(writer)

    def _finish(self, writer: Writer) -> None:
        """Close the writer's spool file; drop its entry unless it is kept for ``redcapfs unsent`` (caller locks)."""
        os.close(writer.fd)
        if writer.gone or writer.entry.delivered or writer.entry.status() is None:
            writer.entry.remove()

    def _upload(self, writer: Writer) -> None:
        """Import as a new document, then keep and delete the one it replaces (caller holds ``writer.lock``)."""
        writer.entry.mark_sending()
        size = os.fstat(writer.fd).st_size
        try:
            self.client.repo_import(str(writer.entry.data_path), writer.name, writer.folder_id)
        except RedcapError as exc:
            writer.dirty = False  # kept once; the last close does not send it again
            writer.entry.mark_unsent(str(exc))
            log.error("File Repository: upload of %r (%d bytes) failed: %s; the bytes are kept in %s as unsent "
                      "entry %s (`redcapfs unsent`, `redcapfs retry`)", writer.name, size, exc,
                      writer.entry.data_path, writer.entry.id)
            raise
        writer.entry.mark_sent()
        writer.dirty = False
        log.info("File Repository: uploaded %r (%d bytes)", writer.name, size)
        self.repo.forget(writer.folder_id)
        new = [i.doc_id for i in self.repo.listing(writer.folder_id).values() if i.name == writer.name and i.doc_id]
        new_id = max(new) if new else None
        if new_id is not None:
            self.repo.learned_size(new_id, size, "upload")
        old, writer.replaces = writer.replaces, new_id  # bytes written after an fsync replace this document
        if new_id is not None:
            writer.entry.retarget(dataclasses.replace(writer.entry.target, replaces=new_id), temp=False)
        if old is not None and old != new_id:
            left = Left(writer.name, size, sha256_file(writer.entry.data_path), new_id)
            target = self._target(writer.path, writer.folder_id, writer.name, doc_id=old)
            if keep_and_delete(self.client, self.trash, target, self._source(old), left):
                self.repo.cache.invalidate(self.repo.key(old))
            self.repo.forget(writer.folder_id)

    def _source(self, doc_id: int) -> Source:
        """The document's bytes for the trash: the cached copy, else a download."""
        cached = self.repo.cache.lookup(self.repo.key(doc_id))
        return cached.path if cached is not None else downloader(self.client, doc_id)

    # ------------------------------------------------------------ rename, delete
    def commit(self, writer: Writer, new: str) -> None:
        """A temporary file renamed onto ``new``: another temporary name, or its upload under that name."""
        parent, component = self.repo.parent_of(new)
        name = rules.creatable(component, new)  # before anything changes: EINVAL for a name that cannot list back
        existing: Item | None = self.repo.listing(parent.folder_id, fresh=True).get(component)
        if existing is not None and existing.is_dir:
            raise IsADirectory("is a directory", new)
        with self._lock:
            if self._by_path.get(new) not in (None, writer):
                raise AlreadyExists("being written", new)
            self._by_path.pop(writer.path, None)
            self._by_path[new] = writer
        with writer.lock:
            writer.path, writer.folder_id, writer.name = new, parent.folder_id, name
            writer.temp = self.temp_names.is_temp(component)
            writer.replaces = existing.doc_id if existing is not None else None
            writer.entry.retarget(self._target(new, parent.folder_id, writer.name, writer.replaces),
                                  writer.temp)
            if writer.temp:
                return
            writer.dirty = True
            if writer.handles > 0:
                return  # the last close uploads it
            with self._lock:
                self._unlist(writer)
            try:
                self._upload(writer)
            finally:
                self._finish(writer)

    def delete(self, path: str) -> None:
        """``rm``: a local or not yet uploaded file is dropped; a document is kept in the trash, then deleted."""
        self.check(path)
        writer = self.pending(path)
        if writer is not None:
            self._drop(writer)
            if writer.replaces is None:
                return
        item = self.repo.resolve(path)
        if item.doc_id is None:
            raise IsADirectory("is a directory", path)
        parent, _ = self.repo.parent_of(path)
        keep(self.trash, self._target(path, parent.folder_id, item.name, doc_id=item.doc_id),
             self._source(item.doc_id), "deleted", Left(None))
        self.repo.unlink(path)

    def _unlist(self, writer: Writer) -> None:
        """Forget the path of ``writer`` (only if it is still this writer's; caller holds ``_lock``)."""
        if self._by_path.get(writer.path) is writer:
            del self._by_path[writer.path]

    def _drop(self, writer: Writer) -> None:
        with self._lock:
            self._unlist(writer)
        with writer.lock:
            writer.gone, writer.dirty = True, False
            if writer.handles <= 0:
                self._finish(writer)
