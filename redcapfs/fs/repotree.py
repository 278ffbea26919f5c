"""The Tree's operations under ``/.repository``: one entry per FUSE operation, so ``tree.py`` hooks stay one line.

Read handles are ordinary cache handles (``Handle(fd=...)``) in the tree's
handle table; write handles are registered there too (so fh numbers never
clash) and mapped to their :class:`~redcapfs.fs.repowrite.Writer` here.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable

from redcapfs.cache import ContentCache
from redcapfs.client.base import RedcapClient
from redcapfs.errors import NotFound, ReadOnly
from redcapfs.fs.base import WRITE_FLAGS, Stat, TreeOptions
from redcapfs.fs.handles import Handle, Handles
from redcapfs.fs.repository import ROOT_NAME, Repository, is_repo_path
from redcapfs.fs.repowrite import RepoWrites
from redcapfs.manifest import Manifest
from redcapfs.spool import Spool
from redcapfs.trash import Trash

log = logging.getLogger(__name__)

__all__ = ["ROOT_NAME", "RepoTree", "is_repo_path"]


class RepoTree:
    """``.repository`` for the :class:`~redcapfs.tree.Tree` facade."""

    def __init__(self, client: RedcapClient, cache: ContentCache, url: str, options: TreeOptions, epoch_ns: int,
                 spool: Spool, handles: Handles, can_import: Callable[[], bool],
                 known_import: Callable[[], bool | None], project_id: str = "", trash: Trash | None = None,
                 manifest: Manifest | None = None) -> None:
        self.options = options
        self.handles = handles
        self.known_import = known_import
        self.repo = Repository(client, cache, url, options, epoch_ns, manifest)
        self.writes = RepoWrites(self.repo, client, spool, project_id, options.read_only, can_import,
                                 options.temp_names, trash)

    def owns(self, fh: int | None) -> bool:
        return self.writes.of(fh) is not None

    def _writable(self) -> bool:
        """Modes: read-only on ``ro`` mounts and once the import probe said no (asked at a write, not here)."""
        return not self.options.read_only and self.known_import() is not False

    def getattr(self, path: str, fh: int | None = None) -> Stat:
        if not self.repo.available():
            raise NotFound("the File Repository is not available to this token", path)
        writer = self.writes.of(fh) or self.writes.pending(path)
        if writer is not None:
            st = os.fstat(writer.fd)
            return Stat(False, st.st_size, stat.S_IFREG | 0o644, st.st_mtime_ns, self.options.uid, self.options.gid)
        return self.repo.stat(path, self._writable())

    def root_entry(self) -> list[tuple[str, bool]]:
        """``.repository`` in the root's listing (when this token may use the File Repository)."""
        return self.repo.root_entry()

    def readdir(self, path: str) -> list[tuple[str, bool]]:
        listed = self.repo.readdir(path)
        seen = {c for c, _ in listed}
        return listed + [(c, False) for c in self.writes.pending_in(path) if c not in seen]

    def open(self, path: str, flags: int) -> int:
        if flags & WRITE_FLAGS:
            writer = self.writes.open_existing(path, truncate=bool(flags & os.O_TRUNC))
            fh = self.handles.add(Handle(fd=writer.fd, writable=True))
            self.writes.bind(fh, writer)
            return fh
        return self.handles.add(Handle(fd=self.repo.open_read(path)))

    def create(self, path: str) -> int:
        writer = self.writes.create(path)
        fh = self.handles.add(Handle(fd=writer.fd, writable=True))
        self.writes.bind(fh, writer)
        return fh

    def write(self, fh: int, data: bytes, offset: int) -> int:
        writer = self.writes.of(fh)
        assert writer is not None
        return self.writes.write(writer, data, offset)

    def truncate(self, path: str, length: int, fh: int | None) -> None:
        writer = self.writes.of(fh) or self.writes.pending(path)
        if writer is not None:
            self.writes.truncate(writer, length)
            return
        fh = self.open(path, os.O_WRONLY)  # truncate(path) with no open: saved at once
        try:
            self.truncate(path, length, fh)
            self.flush(fh)
        finally:
            self.release(fh)

    def flush(self, fh: int) -> None:
        self.writes.flush(fh)

    def release(self, fh: int) -> None:
        self.handles.pop(fh)
        self.writes.release(fh)

    def unlink(self, path: str) -> None:
        self.writes.delete(path)

    def mkdir(self, path: str) -> None:
        if self.options.read_only:
            raise ReadOnly("read-only mount", path)
        self.repo.mkdir(path)

    def rmdir(self, path: str) -> None:
        self.repo.refuse("delete a folder", path)

    def rename(self, old: str, new: str) -> None:
        """Only a local temporary file may be renamed (that is its upload); REDCap cannot rename documents."""
        writer = self.writes.pending(old)
        if writer is not None and writer.temp and is_repo_path(new) and not writer.gone:
            self.writes.check(new)
            self.writes.commit(writer, new)
            return
        self.repo.refuse("rename or move a file or folder", old)
