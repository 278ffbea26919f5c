"""Writes into the File Repository: a private spool copy per open, uploaded as a new document on close.

REDCap's ``fileRepository`` ``import`` always adds a document (never replaces
one), so saving over an existing file is an import of the new bytes and then a
delete of the old document; if that delete fails both stay listed (the newer as
``NAME [doc ID].EXT``) and the log says so. Nothing is reported as written
before REDCap answered: a failed upload fails that ``close()`` and the bytes are
kept under the spool's ``repository-unsent/`` directory (logged with its path).
Not yet part of ``redcapfs unsent``/``retry``, which know record slots only.

Each writer has its own lock, held over its bytes and its own upload only.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from redcapfs import names
from redcapfs.client.base import RedcapClient
from redcapfs.errors import AccessDenied, AlreadyExists, ReadOnly, RedcapError
from redcapfs.fs.repository import Repository, components

log = logging.getLogger(__name__)


@dataclass
class Writer:
    """One open-for-write file in the File Repository."""

    path: str
    folder_id: int | None
    name: str
    spool: Path
    fd: int
    replaces: int | None = None
    dirty: bool = False
    handles: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


class RepoWrites:
    """Writers by path and by fh; uploads and the delete of a replaced document."""

    def __init__(self, repo: Repository, client: RedcapClient, spool_root: Path, read_only: bool,
                 can_import: Callable[[], bool]) -> None:
        self.repo = repo
        self.client = client
        self.root = Path(spool_root) / "repository"
        self.read_only = read_only
        self.can_import = can_import
        self._lock = threading.Lock()
        self._by_path: dict[str, Writer] = {}
        self._by_fh: dict[int, Writer] = {}

    # ------------------------------------------------------------ lookups
    def pending(self, path: str) -> Writer | None:
        with self._lock:
            return self._by_path.get(path)

    def pending_in(self, folder_path: str) -> list[str]:
        """Components of files being written directly in ``folder_path`` (listed before their upload)."""
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
    def _check(self, path: str) -> None:
        if self.read_only:
            raise ReadOnly("read-only mount", path)
        if not self.can_import():
            raise AccessDenied("this API token has no import rights", path)

    def _new_writer(self, path: str, folder_id: int | None, name: str, replaces: int | None) -> Writer:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        spool = self.root / f"{time.time_ns()}-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(spool, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        return Writer(path, folder_id, name, spool, fd, replaces)

    def create(self, path: str) -> Writer:
        """A new document (uploaded at close, also when empty)."""
        self._check(path)
        parent, component = self.repo.parent_of(path)
        if component in self.repo.listing(parent.folder_id, fresh=True) or self.pending(path):
            raise AlreadyExists("exists", path)
        writer = self._new_writer(path, parent.folder_id, names.decode(component), None)
        writer.dirty = True
        with self._lock:
            self._by_path[path] = writer
        return writer

    def open_existing(self, path: str, truncate: bool) -> Writer:
        """Saving over a document: its bytes are copied in first unless truncated."""
        self._check(path)
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
        assert item.doc_id is not None
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
            writer.dirty = True
            return os.pwrite(writer.fd, data, offset)

    def truncate(self, writer: Writer, length: int) -> None:
        with writer.lock:
            writer.dirty = True
            os.ftruncate(writer.fd, length)

    # ------------------------------------------------------------ close
    def flush(self, fh: int) -> None:
        writer = self.of(fh)
        if writer is None:
            return
        with writer.lock:
            if writer.dirty:
                self._upload(writer)
                writer.dirty = False

    def release(self, fh: int) -> None:
        """The last close drops the spool copy; one whose upload failed is kept (see the module doc)."""
        with self._lock:
            writer = self._by_fh.pop(fh, None)
            if writer is None:
                return
            writer.handles -= 1
            last = writer.handles <= 0
            if last:
                self._by_path.pop(writer.path, None)
        if not last:
            return
        with writer.lock:
            if writer.dirty:
                try:
                    self._upload(writer)
                except RedcapError:
                    pass  # kept and logged by _upload
            os.close(writer.fd)
            writer.spool.unlink(missing_ok=True)

    def _upload(self, writer: Writer) -> None:
        """Import as a new document, then delete the one it replaces (caller holds ``writer.lock``)."""
        size = os.fstat(writer.fd).st_size
        try:
            self.client.repo_import(str(writer.spool), writer.name, writer.folder_id)
        except RedcapError as exc:
            writer.dirty = False  # kept once; the last close does not send it again
            kept = self._keep(writer)
            log.error("File Repository: upload of %r (%d bytes) failed: %s; the bytes are kept in %s",
                      writer.name, size, exc, kept)
            raise
        log.info("File Repository: uploaded %r (%d bytes)", writer.name, size)
        old, writer.replaces = writer.replaces, None
        if old is not None:
            try:
                self.client.repo_delete(old)
                log.info("File Repository: deleted the replaced document %d of %r", old, writer.name)
            except RedcapError as exc:
                log.error("File Repository: %r was uploaded but deleting its old document %d failed: %s; "
                          "both stay listed", writer.name, old, exc)
        self.repo.forget(writer.folder_id)
        new = [i for i in self.repo.listing(writer.folder_id).values() if i.name == writer.name and i.doc_id]
        if new:
            self.repo.learned_size(max(i.doc_id for i in new if i.doc_id is not None), size)

    def _keep(self, writer: Writer) -> Path:
        kept_dir = self.root.parent / "repository-unsent"
        kept_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        kept = kept_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{names.encode(writer.name)}"
        shutil.copyfile(writer.spool, kept)
        return kept
