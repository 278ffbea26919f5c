"""What every filesystem operation means for a REDCap project. Knows nothing of FUSE.

``Tree`` turns paths into REDCap calls and local state, and raises
``redcapfs.errors`` exceptions; the FUSE layer (``fuse_ops``) maps those to
errno values in one place. The promises written in docs/SEMANTICS.md are kept
here:

* Reads come from the content cache, filled by one Export File per file.
* Every writable open gets its own spool file (``spool.py``) on local disk; the
  upload (Import File) happens in ``flush``/``fsync`` of a handle whose data
  changed, and a failure is returned to that ``close()`` with the bytes kept as
  *unsent*. Nothing is reported as written before REDCap answered 200.
* A slot holds one file: a second real name in an occupied slot is refused.
* Temporary names of common tools (``tempnames.py``) stay local; renaming one
  onto a real name is the upload.
* Renaming a slot's file to a temporary name (an editor keeping a backup) hides
  it locally and copies it, without touching the server; the new file uploaded
  into the slot replaces it there. Unlinking that copy while the slot is still
  hidden deletes the server file (what ``mv f f~; rm f~`` means).

This class is a facade: one short method per operation over the pieces in
``redcapfs/fs/``, each owning one kind of state:

=================  ==========================================================  ==================
piece              job                                                         state it owns
=================  ==========================================================  ==================
``namespace``      path -> node, listings (index + a snapshot of local files)  none
``slots``          what each slot holds: name, size, origin, hidden; the one   ``SlotModel``
                   place changed after an upload, a delete, a refresh
``content``        real names behind "[document]", sizes, downloads            per-file size locks
``localfiles``     writers and temporary files, the state machine of a file    the registry
                   being written (NEW, TRUNCATED, CLEAN, DIRTY, UNSENT, TEMP,
                   UNLINKED)
``uploader``       every network write: Import/Delete File, records, rights    the rights answer
``rules``          what may be created, renamed, deleted (pure)                none
``writing``        create, write, truncate, flush, last close, unlink          none
``emptygrace``     a truncation to empty closed unwritten, held for a grace    held copies, timers
``renames``        the four kinds of rename                                    none
``recorddirs``     mkdir/rmdir of records, events, instances                   none
``handles``        fh -> handle, reads                                         the handle table
``recordcache``    the records index, refreshed in the background              the index
``feed``           REDCap's log as change feed (polls; ``logrows`` reads rows)  the cursor (in
                                                                               ``manifest.py``)
``prefetch``       sizes asked ahead once a stat follows a listing             listed directories
``design``         the project's design read again (log or ``metadata_ttl``)   the reload timer
``attributes``     the ``Stat`` of folders and files; folders' kept times      folder times
``listings``       what a folder lists; its slot folders' listings with it     none
=================  ==========================================================  ==================

``SlotModel`` keeps sizes across mounts in the manifest (``manifest.py``), and
uses one only while the change feed vouches for it.

The locks of all these pieces, and the order they nest in, are described in ``redcapfs/fs/__init__.py``.
"""

from __future__ import annotations

import logging
import os
import stat
import time

from redcapfs import names
from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.client.base import RedcapClient
from redcapfs.errors import AlreadyExists, InvalidArgument, IsADirectory, Locked, NotPermitted
from redcapfs.fs import rules
from redcapfs.fs.attributes import Attributes
from redcapfs.fs.base import WRITE_FLAGS, ByteSource, FileNode, Stat, TreeOptions
from redcapfs.fs.content import ServerContent
from redcapfs.fs.design import DesignReload
from redcapfs.fs.feed import ChangeFeed
from redcapfs.fs.handles import Handle, Handles, open_cached, read_size
from redcapfs.fs.handles import read as read_handle
from redcapfs.fs.listings import Listings
from redcapfs.fs.localfiles import LocalFile, LocalFiles
from redcapfs.fs.namespace import Namespace
from redcapfs.fs.prefetch import SizePrefetch, ahead_jobs, sizes_notice
from redcapfs.fs.recentpoll import vouch_for
from redcapfs.fs.recorddirs import RecordDirs
from redcapfs.fs.renames import Renames
from redcapfs.fs.repotree import RepoTree, is_repo_path
from redcapfs.fs.rights import TokenRights
from redcapfs.fs.rules import stored_name
from redcapfs.fs.slots import SlotModel
from redcapfs.fs.uploader import Uploader
from redcapfs.fs.writing import Writing
from redcapfs.manifest import Manifest
from redcapfs.paths import PathModel
from redcapfs.recordcache import RecordCache
from redcapfs.shape import ProjectShape
from redcapfs.spool import Spool
from redcapfs.trash import Trash

# Names other modules and branches knew from here before the split.
__all__ = ["WRITE_FLAGS", "FileNode", "Handle", "LocalFile", "Stat", "Tree", "TreeOptions", "stored_name"]

log = logging.getLogger(__name__)


class Tree:
    """The filesystem's semantics over a REDCap client, its caches and the spool."""

    def __init__(self, client: RedcapClient, shape: ProjectShape, *, cache: ContentCache, attrs: AttrStore,
                 spool: Spool, url: str, project_id: str, options: TreeOptions | None = None,
                 trash: Trash | None = None, manifest: Manifest | None = None) -> None:
        self.client = client
        self.shape = shape
        self.cache = cache
        self.attrs = attrs
        self.spool = spool
        self.url = url
        self.project_id = project_id
        self.options = options or TreeOptions()
        self.records = RecordCache(client, shape, self.options.records_ttl, self.options.batch,
                                   wait_limit=self.options.timeout)
        self.manifest = manifest if manifest is not None else Manifest(None)
        self.slots = SlotModel(self.records, attrs, cache, url, self.options.content_ttl, self.manifest)
        self.records.on_refresh = self.slots.refreshed
        self.content = ServerContent(client, cache, self.slots)
        self.local = LocalFiles(spool, url, project_id)
        self.local.seq = self.slots.seq
        self.handles = Handles(self.local)
        self.ns = Namespace(shape, self.records, self.slots, self.content, self.local)
        self.feed = ChangeFeed(client, shape, self.records, self.slots, self.manifest, self.options.poll,
                               self.options.poll_idle)
        self.feed.on_design_change.append(self.reload_design)
        self.uploader = Uploader(client, self.slots, self.records, url, project_id, trash,
                                 on_write=self.feed.note_ours,
                                 fresh=vouch_for(self.feed, self.options.slot_check),
                                 trust_files=self.options.slot_check == "feed")
        self.rights = TokenRights(shape, self.uploader.import_known, lambda: self.manifest.meta("user"),
                                  lambda: (client.instruments(), client.events()))  # docs/SEMANTICS.md: rights
        self.records.on_export = self.rights.learn_from_export
        self.feed.on_rows.append(self.rights.learn_from_log)  # lock rows
        self.writing = Writing(self.options, shape, self.ns, self.local, self.handles, self.content,
                               self.uploader)
        self.ahead = SizePrefetch(lambda path: ahead_jobs(path, self.ahead, self.records, self.slots, self.content),
                                  self.options.sizes_ahead)
        self.renames = Renames(self.options, self.ns, self.writing)
        self.dirs = RecordDirs(self.options, self.ns, self.writing)
        self.stats = Attributes(self.options, attrs.epoch_ns, self.rights, self.slots, self.content)
        self.listings = Listings(self)
        self.changes = self.writing.changes  # fs/changes.py: what listings made ahead are checked against
        self.repo = RepoTree(client, cache, url, self.options, attrs.epoch_ns, spool, self.handles,
                             self.uploader.import_allowed, self.uploader.import_known, project_id, trash,
                             self.manifest)  # fs/repotree.py
        self.design = DesignReload(client, lambda: (self, self.records, self.ns, self.writing, self.dirs,
                                                    self.feed, self.rights),
                                   self._new_model, self.records.invalidate)  # fs/design.py

    # ================================================================ lookups
    def getattr(self, path: str | None, fh: int | None = None) -> Stat:
        """Attributes; a file's size is exact (asked of the server or downloaded if unknown)."""
        self.feed.touch()
        handle = self.handles.find(fh)
        if handle is not None and handle.local is not None:
            return self.stats.local_stat(handle.local)
        if handle is not None and handle.node is not None:  # a reader: the version it reads, not the path's
            return self.stats.server_stat(handle.node, read_size(handle))
        if path is None:  # by handle, of a File Repository file unlinked while open: what it reads
            return self.stats.open_stat(handle.fd if handle is not None else -1)
        if self.repo.owns(fh) or is_repo_path(path):
            self.rights.check_repository(path)
            return self.repo.getattr(path, fh)
        ref = self.ns.resolve(path)
        if ref.kind != "file":
            return self.stats.dir_stat(path)
        node = self.ns.file(ref, path)
        if node.local is not None:
            return self.stats.local_stat(node.local)
        self.ahead.stat(path)
        return self.stats.server_stat(node)

    def readdir(self, path: str) -> list[tuple[str, bool]]:
        """(component, is_dir) pairs; never needs a file's size, so listing downloads nothing."""
        return self.listings.readdir(path)

    def readdir_stats(self, path: str) -> list[tuple[str, bool, Stat | None]]:
        """Like :meth:`readdir`, with each directory's attributes (None for files: their size may cost a call)."""
        return self.listings.readdir_stats(path)

    def listings_below(self, path: str) -> dict[str, list[tuple[str, bool, Stat | None]]]:
        """The listings of the slot folders in ``path``, from memory (fs/listings.py)."""
        return self.listings.below(path)

    def listing_used(self, path: str) -> None:
        """One of those that shows a file answered for its folder (fs/listings.py)."""
        self.listings.used(path)

    def statfs(self) -> dict[str, int]:
        """Room as seen by ``df``/``cp``: the spool's disk, since writes land there first."""
        vfs = os.statvfs(self.spool.root)
        return dict(f_bsize=vfs.f_bsize, f_frsize=vfs.f_frsize, f_blocks=vfs.f_blocks, f_bfree=vfs.f_bfree,
                    f_bavail=vfs.f_bavail, f_files=vfs.f_files, f_ffree=vfs.f_ffree, f_favail=vfs.f_favail,
                    f_namemax=names.NAME_MAX)

    def check_exists(self, path: str) -> None:
        """Raise NotFound unless ``path`` exists (for chown and access)."""
        if is_repo_path(path):
            self.repo.getattr(path)
            return
        ref = self.ns.resolve(path)
        if ref.kind == "file":
            self.ns.file(ref, path)

    # ================================================================ files
    def open(self, path: str, flags: int) -> int:
        """Open for reading (served from the cache) or writing (a private spool copy)."""
        if is_repo_path(path):
            return self.repo.open(path, flags)
        node = self._file_at(path)
        if flags & WRITE_FLAGS:
            return self.writing.open_for_write(node, path, truncate=bool(flags & os.O_TRUNC))
        if node.local is not None:
            return self.handles.add(Handle(local=node.local))
        self.rights.check_readable(node.slot, path)
        return self.handles.add(open_cached(self.content, node))

    def read(self, fh: int, size: int, offset: int) -> bytes:
        return read_handle(self.handles.get(fh), size, offset)

    def create(self, path: str, mode: int) -> int:
        """A new file in a slot: a temporary name stays local; a real name needs an empty slot."""
        if is_repo_path(path):
            return self.repo.create(path)
        ref = self.ns.resolve(path)
        if ref.kind != "file":
            raise AlreadyExists("exists", path)
        return self.writing.create(ref.slot(), rules.new_name(ref, path), mode, path)

    def symlink(self, path: str, target: str) -> None:
        """Only editors' lock links (``.#NAME``), kept local with the temporary files (fs/writing.py)."""
        ref = self.ns.resolve(path) if not is_repo_path(path) else None
        if ref is None or ref.kind != "file":
            raise NotPermitted("symbolic links can only be editors' lock files (.#NAME) in a slot", path)
        if self.ns.exists(path):
            raise AlreadyExists("exists", path)
        self.writing.symlink(ref.slot(), rules.new_name(ref, path), target, path)

    def readlink(self, path: str) -> str:
        node = self._file_at(path) if not is_repo_path(path) else None
        if node is None or node.local is None or node.local.link_target is None:
            raise InvalidArgument("not a symbolic link", path)
        return node.local.link_target

    def write(self, fh: int, data: bytes, offset: int) -> int:
        if self.repo.owns(fh):
            return self.repo.write(fh, data, offset)
        return self.writing.write(fh, data, offset)

    def write_from(self, fh: int, source: ByteSource, offset: int) -> int:
        """``write`` of bytes that copy themselves into the writer's file (no Python object on the way)."""
        if self.repo.owns(fh):
            return self.repo.write(fh, source.take(), offset)
        return self.writing.write_from(fh, source, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        """``ftruncate`` changes the handle's copy; ``truncate(path)`` uploads at once (no close follows)."""
        local = self.handles.local_of(fh)
        if local is not None:
            self.writing.truncate_local(local, length)
            return
        if self.repo.owns(fh) or is_repo_path(path):
            return self.repo.truncate(path, length, fh)
        self.writing.truncate_path(self._file_at(path), path, length)

    def flush(self, fh: int) -> None:
        """Every ``close()``: upload if data was written and not yet sent (see fs/localfiles.py)."""
        if self.repo.owns(fh):
            return self.repo.flush(fh)
        local = self.handles.local_of(fh)
        try:
            self.writing.flush(fh)
        except Locked as exc:
            if local is not None:
                self.rights.note_locked(local.slot, str(exc))  # shown read-only from now on
            raise
        if local is not None:
            self.rights.note_written(local.slot)

    def fsync(self, fh: int) -> None:
        if self.repo.owns(fh):
            return self.repo.flush(fh)  # an fsync uploads, as in record folders
        local = self.handles.get(fh).local
        if local is not None:
            os.fsync(local.fd)  # no lock held: only this file's bytes
        self.writing.flush(fh)

    def release(self, fh: int) -> None:
        """Last close of a handle: clean copies are dropped, failed ones stay as unsent."""
        if self.repo.owns(fh):
            return self.repo.release(fh)
        self.writing.release(fh)

    def unlink(self, path: str) -> None:
        if is_repo_path(path):
            return self.repo.unlink(path)
        self.writing.settle_held(path)  # a held empty truncation goes first (fs/emptygrace.py)
        self.writing.unlink(self._file_at(path), path)

    def rename(self, old: str, new: str) -> None:
        """Files only; see fs/renames.py for what each kind of rename means."""
        if is_repo_path(old) or is_repo_path(new):
            return self.repo.rename(old, new)
        self.writing.settle_held(old)
        self.writing.settle_held(new)
        self.renames.rename(old, new)

    # ================================================================ directories
    def mkdir(self, path: str, mode: int) -> None:
        """A new record (root), a record's event in another arm, or a local instance; nothing else."""
        if is_repo_path(path):
            return self.repo.mkdir(path)
        self.rights.check_create(self.ns.model.parse(path).kind, path)
        self.dirs.mkdir(path)

    def rmdir(self, path: str) -> None:
        """Only an empty instance directory that exists locally only."""
        if is_repo_path(path):
            return self.repo.rmdir(path)
        self.dirs.rmdir(path)

    # ================================================================ metadata
    def chmod(self, path: str, mode: int) -> None:
        """Kept locally (REDCap has no modes)."""
        if is_repo_path(path):
            return  # accepted, not kept: the File Repository has no modes
        ref = self.ns.resolve(path)
        if ref.kind != "file":
            return  # directories keep their mode; accepted so rsync -a and cp -a do not fail
        node = self.ns.file(ref, path)
        if node.local is not None:
            node.local.mode = stat.S_IMODE(mode)
            return
        self.slots.set_attr(node.slot, node.name, self.content.size(node), mode=stat.S_IMODE(mode))

    def utimens(self, path: str, mtime_ns: int | None) -> None:
        """Kept locally, so rsync -a and cp -p find their times again."""
        if is_repo_path(path):
            return  # accepted, not kept: the File Repository has no times
        ref = self.ns.resolve(path)
        when = mtime_ns if mtime_ns is not None else time.time_ns()
        if ref.kind != "file":
            self.stats.set_dir_mtime(path, when)
            return
        node = self.ns.file(ref, path)
        if node.local is not None:
            node.local.mtime_ns = when
            return
        self.slots.set_attr(node.slot, node.name, self.content.size(node), mtime_ns=when)

    # ================================================================ the change feed
    def start_feed(self) -> str:
        """At mount: REDCap's log as change feed when ``poll`` is set; the line to say if it is not usable."""
        self.rights.learn_from_users(self.client.export_users)  # one call; a 403 tells nothing
        if self.rights.user_right("api_import") is False:
            self.uploader.learned_import(False)
        notice = self.feed.start() if self.options.poll > 0 else ""
        sizes = sizes_notice(self.records, self.slots, self.manifest)  # after the log: no call of its own
        notice = " ".join(n for n in (notice, sizes) if n)
        if self.feed.mode == "ttl" and self.options.metadata_ttl > 0:
            self.design.every(self.options.metadata_ttl)
        return notice

    def _new_model(self, model: PathModel) -> None:
        self.ns.model = model

    def reload_design(self) -> None:
        """The design changed (the log says so, or ``metadata_ttl`` passed): fs/design.py reads it again."""
        self.design.reload()

    # ================================================================ shutdown
    def shutdown(self) -> None:
        """At unmount: close what is open; temporary files go, unsent data stays."""
        self.feed.stop()
        self.design.stop()
        self.ahead.close()
        self.writing.grace.settle()  # held empty truncations are sent (or kept as unsent) before unmount
        self.writing.streams.abort_all("unmount")  # a file still being written is kept, never half-sent
        for fh in self.handles.all():
            try:
                self.release(fh)
            except Exception as exc:  # never let one handle stop the cleanup
                log.warning("closing a handle at unmount: %s", exc)
        for local in self.local.clear_temps():
            if local.entry.state in ("unsent", "conflict"):  # renamed onto a real name, refused: the newest save
                local.close()
                log.warning("%s: kept as unsent at unmount", rules.describe(local.slot, local.entry.target.name))
            else:
                self.local.drop(local)

    # ================================================================ internals
    def _file_at(self, path: str) -> FileNode:
        ref = self.ns.resolve(path)
        if ref.kind != "file":
            raise IsADirectory("is a directory", path)
        return self.ns.file(ref, path)
