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
"""

from __future__ import annotations

import dataclasses
import errno
import html
import itertools
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cachetools import TTLCache

from redcapfs import names
from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache, Entry, Flight, cache_key
from redcapfs.client.base import RedcapClient
from redcapfs.errors import (
    AccessDenied,
    AlreadyExists,
    BadRequest,
    BadToken,
    DirectoryNotEmpty,
    FsError,
    InvalidArgument,
    IsADirectory,
    LocalIOError,
    NoRights,
    NotADirectory,
    NotFound,
    NotPermitted,
    ReadOnly,
    RedcapError,
)
from redcapfs.paths import PathModel, PathRef
from redcapfs.recordcache import RecordCache
from redcapfs.shape import DOCUMENT_PLACEHOLDER, ProjectShape, Slot
from redcapfs.spool import Spool, SpoolEntry, Target
from redcapfs.tempnames import TempNames

log = logging.getLogger(__name__)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR


@dataclass
class TreeOptions:
    """Mount options that change what the tree does."""

    read_only: bool = False
    records_ttl: float = 15.0
    content_ttl: float = 300.0
    batch: int = 0
    arm: int | None = None
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    temp_names: TempNames = field(default_factory=TempNames)


@dataclass(frozen=True)
class Stat:
    """The attributes the FUSE layer reports."""

    is_dir: bool
    size: int
    mode: int
    mtime_ns: int
    uid: int
    gid: int


class LocalFile:
    """Bytes kept on local disk: a writer's private copy, or a temporary file.

    The spool entry makes them survive a crash; ``fd`` stays open while any
    handle uses the file.
    """

    def __init__(self, entry: SpoolEntry, slot: Slot, name: str, temp: bool) -> None:
        self.entry = entry
        self.slot = slot
        self.name = name
        self.temp = temp
        self.fd = os.open(entry.data_path, os.O_RDWR)
        self.lock = threading.Lock()
        self.dirty = False  # differs from what REDCap has
        self.wrote = False  # data came through write/ftruncate (not only O_CREAT/O_TRUNC at open)
        self.refs = 0
        self.unlinked = False
        self.mtime_ns: int | None = None
        self.mode: int | None = None
        self.shadow_of: str | None = None  # the server name this temp copy stands in for
        self.cached_as: str | None = None  # cache key sharing this file's inode after an upload

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Handle:
    """An open file: a cache file for reading, or a LocalFile."""

    fd: int = -1
    local: LocalFile | None = None
    writable: bool = False
    flight: Flight | None = None  # the download still filling ``fd``, if any


@dataclass(frozen=True)
class FileNode:
    """A file found in a slot directory."""

    slot: Slot
    name: str
    raw: str | None = None  # the index's value for a server file ("[document]" on old servers)
    local: LocalFile | None = None


def stored_name(name: str) -> str:
    """The name REDCap will store for an upload named ``name`` (see redcap-api.md §2)."""
    cleaned = html.unescape(name.replace("'", ""))
    return cleaned.replace("\\", "") if "\\" in cleaned else cleaned


class Tree:
    """The filesystem's semantics over a REDCap client, its caches and the spool."""

    def __init__(
        self,
        client: RedcapClient,
        shape: ProjectShape,
        *,
        cache: ContentCache,
        attrs: AttrStore,
        spool: Spool,
        url: str,
        project_id: str,
        options: TreeOptions | None = None,
    ) -> None:
        self.client = client
        self.shape = shape
        self.model = PathModel(shape)
        self.cache = cache
        self.attrs = attrs
        self.spool = spool
        self.url = url
        self.project_id = project_id
        self.options = options or TreeOptions()
        self.records = RecordCache(client, shape, self.options.records_ttl, self.options.batch)
        self._lock = threading.RLock()
        self._handles: dict[int, Handle] = {}
        self._next_fh = itertools.count(1)
        self._writers: dict[Slot, dict[str, list[LocalFile]]] = {}
        self._temps: dict[Slot, dict[str, LocalFile]] = {}
        self._shadowed: dict[Slot, str] = {}
        self._sizes: TTLCache = TTLCache(maxsize=500_000, ttl=self.options.content_ttl)
        self._placeholder_names: TTLCache = TTLCache(maxsize=100_000, ttl=self.options.content_ttl)
        self._dir_mtimes: dict[str, int] = {}
        self._size_locks: dict[tuple[Slot, str], threading.Lock] = {}
        self._can_import: bool | None = None

    # ================================================================ lookups
    def getattr(self, path: str, fh: int | None = None) -> Stat:
        """Attributes; a file's size is exact (asked of the server or downloaded if unknown)."""
        if fh is not None and fh in self._handles and self._handles[fh].local is not None:
            return self._local_stat(self._handles[fh].local)  # type: ignore[arg-type]
        ref = self._resolve(path)
        if ref.kind != "file":
            return self._dir_stat(path)
        node = self._file(ref, path)
        if node.local is not None:
            return self._local_stat(node.local)
        size = self._server_size(node)
        attr = self.attrs.get(node.slot, node.name, size)
        mode = attr.mode if attr.mode is not None else self._file_mode()
        return Stat(False, size, stat.S_IFREG | mode, attr.mtime_ns, self.options.uid, self.options.gid)

    def readdir(self, path: str) -> list[tuple[str, bool]]:
        """(component, is_dir) pairs; never needs a file's size, so listing downloads nothing."""
        ref = self._resolve(path)
        if ref.kind == "file":
            raise NotADirectory("not a directory", path)
        if ref.kind == "root":
            with self.records.view() as index:
                return [(names.encode(r), True) for r in index.records()]
        if ref.kind == "record" and self.shape.longitudinal:
            record = self._record(ref)
            with self.records.view() as index:
                events = index.events_of(record)
            return [(names.encode(e), True) for e in events]
        if ref.kind in ("record", "event"):
            return [(names.encode(f), True) for f in self.shape.fields_in_event(ref.event)]
        if ref.kind == "field" and ref.repeats:
            record = self._record(ref)
            with self.records.view() as index:
                instances = index.instances(record, ref.event, ref.field)  # type: ignore[arg-type]
            return [(str(i), True) for i in instances]
        return [(names.encode(n), False) for n in self._slot_names(ref.slot())]

    def statfs(self) -> dict[str, int]:
        """Room as seen by ``df``/``cp``: the spool's disk, since writes land there first."""
        vfs = os.statvfs(self.spool.root)
        return dict(f_bsize=vfs.f_bsize, f_frsize=vfs.f_frsize, f_blocks=vfs.f_blocks, f_bfree=vfs.f_bfree,
                    f_bavail=vfs.f_bavail, f_files=vfs.f_files, f_ffree=vfs.f_ffree, f_favail=vfs.f_favail,
                    f_namemax=names.NAME_MAX)

    # ================================================================ reading
    def open(self, path: str, flags: int) -> int:
        """Open for reading (served from the cache) or writing (a private spool copy)."""
        ref = self._resolve(path)
        if ref.kind != "file":
            raise IsADirectory("is a directory", path)
        node = self._file(ref, path)
        if flags & WRITE_FLAGS:
            return self._open_for_write(node, path, truncate=bool(flags & os.O_TRUNC))
        if node.local is not None:
            return self._new_handle(Handle(local=node.local))
        started = self.cache.start(self._content_key(node), self._downloader(node))
        if isinstance(started, Flight):
            try:  # reads are served as the bytes arrive
                return self._new_handle(Handle(fd=os.open(started.part, os.O_RDONLY), flight=started))
            except FileNotFoundError:  # it ended meanwhile
                started.done.wait()
                if started.entry is None:
                    raise started.error or LocalIOError("download failed") from None
                started = started.entry
        return self._new_handle(Handle(fd=os.open(started.path, os.O_RDONLY)))

    def read(self, fh: int, size: int, offset: int) -> bytes:
        """Bytes from the cache file; during a download, once they have arrived (its error otherwise)."""
        handle = self._handle(fh)
        if handle.local is not None:
            return os.pread(handle.local.fd, size, offset)
        flight = handle.flight
        if flight is None:
            return os.pread(handle.fd, size, offset)
        while True:
            flight.wait_for(offset + size)
            data = os.pread(handle.fd, size, offset)
            if len(data) == size or (flight.done.is_set() and flight.error is None):
                return data  # whole, or the true end of a complete file
            if flight.done.is_set():
                raise flight.error  # type: ignore[misc]
            time.sleep(0.01)  # a retry rewound the file after we looked: wait for the bytes again

    # ================================================================ writing
    def create(self, path: str, mode: int) -> int:
        """A new file in a slot: a temporary name stays local; a real name needs an empty slot."""
        ref = self._resolve(path)
        if ref.kind != "file":
            raise AlreadyExists("exists", path)
        slot = ref.slot()
        name = self._new_name(ref, path)
        self._require_writable(slot, path)
        if self.options.temp_names.is_temp(name):
            with self._lock:
                if name in self._temps.get(slot, {}):
                    raise AlreadyExists("exists", path)
                local = self._new_local(slot, name, temp=True)
                local.mode = stat.S_IMODE(mode)
                self._temps.setdefault(slot, {})[name] = local
            return self._new_handle(Handle(local=local, writable=True))
        self._check_upload_name(slot, name, path)
        with self._lock:
            self._require_empty_for(slot, name, path)
            local = self._new_local(slot, name, temp=False)
            local.dirty = True  # even an empty new file is uploaded at close
            local.mode = stat.S_IMODE(mode)
            self._writers.setdefault(slot, {}).setdefault(name, []).append(local)
        return self._new_handle(Handle(local=local, writable=True))

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self._handle(fh)
        if not handle.writable or handle.local is None:
            raise InvalidArgument("file not open for writing")
        local = handle.local
        with local.lock:
            self._detach_from_cache(local)
            local.entry.writing()  # before the bytes change: a crash now leaves it incomplete, not final
            written = os.pwrite(local.fd, data, offset)
            local.dirty = local.wrote = True
        return written

    def truncate(self, path: str, length: int, fh: int | None = None) -> None:
        """``ftruncate`` changes the handle's copy; ``truncate(path)`` uploads at once (no close follows)."""
        if fh is not None and fh in self._handles and self._handles[fh].local is not None:
            local = self._handles[fh].local
            assert local is not None
            with local.lock:
                self._detach_from_cache(local)
                local.entry.writing()
                os.ftruncate(local.fd, length)
                local.dirty = local.wrote = True
            return
        ref = self._resolve(path)
        if ref.kind != "file":
            raise IsADirectory("is a directory", path)
        node = self._file(ref, path)
        if node.local is not None and node.local.temp:
            node.local.entry.writing()
            os.ftruncate(node.local.fd, length)
            return
        handle = self._open_for_write(node, path, truncate=length == 0)
        try:
            local = self._handles[handle].local
            assert local is not None
            with local.lock:
                os.ftruncate(local.fd, length)
                local.dirty = local.wrote = True
            self.flush(handle)
        finally:
            self.release(handle)

    def flush(self, fh: int) -> None:
        """Every ``close()``: upload if data was written and not yet sent. Only a 200 is success.

        A copy changed only by ``O_CREAT``/``O_TRUNC`` is not sent here: a shell's
        ``> file`` closes a duplicate descriptor before writing anything, and
        uploading then would put an empty file in place of the real one. Such a
        copy (``touch new``, ``: > file``) is sent at the last close instead.
        """
        handle = self._handle(fh)
        local = handle.local
        if local is None or not handle.writable or local.temp or local.unlinked:
            return
        with local.lock:
            if local.dirty and local.wrote:
                self._upload(local, local.slot, local.name)
                local.dirty = False

    def fsync(self, fh: int) -> None:
        handle = self._handle(fh)
        if handle.local is not None:
            os.fsync(handle.local.fd)
        self.flush(fh)

    def release(self, fh: int) -> None:
        """Last close of a handle: clean copies are dropped, failed ones stay as unsent."""
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.local is None:
            os.close(handle.fd)
            return
        local = handle.local
        with self._lock:
            local.refs -= 1
            if local.refs > 0 or (local.temp and not local.unlinked):
                return
        if not local.temp and not local.unlinked and local.dirty and not local.wrote:
            self._upload_at_release(local)
        with self._lock:
            if not local.temp:
                self._forget_writer(local)
        local.close()
        if local.temp or not local.dirty or local.unlinked:
            local.entry.remove()
        else:
            if local.entry.state != "unsent":
                local.entry.mark_unsent("closed without a successful upload")
            log.error("%s: kept as unsent (%s); see `redcapfs unsent`", self._describe(local.slot, local.name),
                      local.entry.error or "never uploaded")

    def _upload_at_release(self, local: LocalFile) -> None:
        """An empty new file or a bare truncation: sent at the last close; a failure is kept as unsent."""
        with local.lock:
            try:
                self._upload(local, local.slot, local.name)
                local.dirty = False
            except Exception as exc:  # release cannot report errors; _upload logged it and kept the bytes
                log.debug("upload at release failed: %s", exc)

    # ================================================================ deleting
    def unlink(self, path: str) -> None:
        ref = self._resolve(path)
        if ref.kind != "file":
            raise IsADirectory("is a directory", path)
        node = self._file(ref, path)
        slot = node.slot
        self._require_writable(slot, path, probe=False)
        local = node.local
        if local is not None and local.temp:
            self._unlink_temp(local)
            return
        if local is not None and node.raw is None:
            with self._lock:  # a new file not yet uploaded: nothing on the server
                local.unlinked = True
                self._forget_writer(local)
            return
        self._require_writable(slot, path)
        self._delete_on_server(slot, node.name)
        if local is not None:
            with self._lock:  # as on any filesystem, writes to an unlinked file go nowhere
                local.unlinked = True
                self._forget_writer(local)

    def _unlink_temp(self, local: LocalFile) -> None:
        slot = local.slot
        with self._lock:
            hidden = self._shadowed.get(slot)
        if local.shadow_of is not None and hidden == local.shadow_of:
            self._delete_on_server(slot, hidden)  # `mv f f~; rm f~`: the user deleted f
        with self._lock:
            self._temps.get(slot, {}).pop(local.name, None)
            local.unlinked = True
            if local.refs == 0:
                local.close()
                local.entry.remove()

    def _delete_on_server(self, slot: Slot, name: str) -> None:
        try:
            self.client.delete_file(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        except RedcapError as exc:
            log.error("delete of %s failed: %s", self._describe(slot, name), exc)
            raise
        log.info("deleted %s", self._describe(slot, name))
        self.records.note_file(slot, None)
        with self._lock:
            self._shadowed.pop(slot, None)
        self._forget_content(slot, name)

    # ================================================================ renaming
    def rename(self, old: str, new: str) -> None:
        """Files only; see the module docstring for what each kind of rename means."""
        src_ref = self._resolve(old)
        if src_ref.kind != "file":
            raise NotPermitted("directories cannot be renamed", old)
        src = self._file(src_ref, old)
        dst_ref = self._resolve(new)
        if dst_ref.kind != "file":
            raise NotPermitted("a file can only be renamed into a slot directory", new)
        dst_slot = dst_ref.slot()
        dst_name = self._existing_or_new_name(dst_ref, new)
        if dst_slot == src.slot and dst_name == src.name:
            return
        self._require_writable(dst_slot, new)
        dst_temp = self.options.temp_names.is_temp(dst_name)
        if src.local is not None and src.local.temp:
            self._rename_temp(src.local, dst_slot, dst_name, dst_temp, new)
        elif dst_temp:
            self._rename_to_temp(src, dst_slot, dst_name, new)
        else:
            self._rename_real(src, dst_slot, dst_name, new)

    def _rename_temp(self, local: LocalFile, slot: Slot, name: str, to_temp: bool, path: str) -> None:
        """A temporary file moved: locally if the target is temporary too, else it is the upload."""
        if to_temp:
            with self._lock:
                temps = self._temps.setdefault(slot, {})
                replaced = temps.pop(name, None)
                self._temps.get(local.slot, {}).pop(local.name, None)
                local.slot, local.name = slot, name
                temps[name] = local
            if replaced is not None and replaced is not local:
                self._drop_local(replaced)
            return
        self._check_upload_name(slot, name, path)
        with self._lock:
            self._require_empty_for(slot, name, path)
        with local.lock:
            self._upload(local, slot, name)
        with self._lock:
            self._temps.get(local.slot, {}).pop(local.name, None)
            local.unlinked = True
            if local.refs == 0:
                local.close()
                local.entry.remove()

    def _rename_to_temp(self, src: FileNode, slot: Slot, name: str, path: str) -> None:
        """A real file renamed to a temporary name: a local copy; the server is untouched."""
        if slot != src.slot:
            raise OSError(errno.EXDEV, "a real file moves to a temporary name only within its slot")
        if src.local is not None:
            raise NotPermitted("the file is being written; close it first", path)
        with self._lock:
            local = self._new_local(slot, name, temp=True)
        try:
            self._copy_server_content(src, local)
        except BaseException:
            self._drop_local(local)
            raise
        size = local.size()
        attr = self.attrs.get(src.slot, src.name, size)
        local.mtime_ns, local.mode = attr.mtime_ns, attr.mode
        local.shadow_of = src.name
        with self._lock:
            replaced = self._temps.setdefault(slot, {}).pop(name, None)
            self._temps[slot][name] = local
            self._shadowed[slot] = src.name
        if replaced is not None:
            self._drop_local(replaced)

    def _rename_real(self, src: FileNode, slot: Slot, name: str, path: str) -> None:
        """Real to real: upload under the new name (same slot: that replaces it), then delete the source."""
        if src.local is not None:
            raise NotPermitted("the file is being written; close it first", path)
        self._check_upload_name(slot, name, path)
        with self._lock:
            self._require_empty_for(slot, name, path, moving_from=src if slot == src.slot else None)
            local = self._new_local(slot, name, temp=False)
        try:
            self._copy_server_content(src, local)
            attr = self.attrs.get(src.slot, src.name, local.size())
            local.mtime_ns, local.mode = attr.mtime_ns, attr.mode
            with local.lock:
                self._upload(local, slot, name)
            local.close()
            local.entry.remove()
        except BaseException:
            local.close()
            raise
        if slot == src.slot:
            self._forget_content(src.slot, src.name)
            return
        try:
            self._delete_on_server(src.slot, src.name)
        except RedcapError as exc:
            raise type(exc)(f"copied to the new place, but the original could not be deleted: {exc.message}",
                            status=exc.status, record=exc.record, field=exc.field) from exc

    # ================================================================ directories
    def mkdir(self, path: str, mode: int) -> None:
        """A new record (root), a record's event in another arm, or a local instance; nothing else."""
        ref = self.model.parse(path)
        if ref.kind == "root":
            raise AlreadyExists("exists", path)
        if self._exists(path):
            raise AlreadyExists("exists", path)
        if ref.kind == "record":
            self._mkdir_record(ref, path)
        elif ref.kind == "event":
            self._mkdir_event(ref, path)
        elif ref.kind == "instance":
            self._mkdir_instance(ref, path)
        else:
            raise NotPermitted("only records, events and instances can be created", path)

    def _mkdir_record(self, ref: PathRef, path: str) -> None:
        component = ref.record_component or ""
        if not names.is_canonical(component):
            raise InvalidArgument("not a valid record name (see docs/names.md)", path)
        self._require_writable(None, path)
        record = names.decode(component)
        event = self._first_event()
        self._import_record(record, event, path)

    def _mkdir_event(self, ref: PathRef, path: str) -> None:
        record = self._record(ref)
        self._require_writable(None, path)
        self._import_record(record, ref.event, path)

    def _import_record(self, record: str, event: str | None, path: str) -> None:
        row = {self.shape.record_id_field: record}
        if event is not None:
            row["redcap_event_name"] = event
        try:
            self.client.import_records([row])
        except RedcapError as exc:
            log.error("creating record %r failed: %s", record, exc)
            raise
        log.info("created record %r%s", record, f" in event {event}" if event else "")
        self.records.note_record(record, event)

    def _mkdir_instance(self, ref: PathRef, path: str) -> None:
        record = self._record(ref)
        self._require_writable(None, path, probe=False)
        with self.records.view() as index:
            if self.shape.longitudinal and ref.event not in index.events_of(record):
                raise NotFound("no such event for this record", path)
        assert ref.field is not None and ref.instance is not None
        self.records.add_local_instance(record, ref.event, ref.field, ref.instance)

    def rmdir(self, path: str) -> None:
        """Only an empty instance directory that exists locally only."""
        ref = self._resolve(path)
        if ref.kind == "file":
            raise NotADirectory("not a directory", path)
        if ref.kind != "instance":
            raise NotPermitted("only local, empty instance directories can be removed", path)
        record = self._record(ref)
        assert ref.field is not None and ref.instance is not None
        if not self.records.is_local_instance(record, ref.event, ref.field, ref.instance):
            raise NotPermitted("this instance exists in REDCap; it cannot be removed here", path)
        if self._slot_names(ref.slot()):
            raise DirectoryNotEmpty("directory not empty", path)
        self.records.remove_local_instance(record, ref.event, ref.field, ref.instance)

    # ================================================================ metadata
    def chmod(self, path: str, mode: int) -> None:
        """Kept locally (REDCap has no modes)."""
        ref = self._resolve(path)
        if ref.kind != "file":
            return  # directories keep their mode; accepted so rsync -a and cp -a do not fail
        node = self._file(ref, path)
        if node.local is not None:
            node.local.mode = stat.S_IMODE(mode)
            return
        self.attrs.set(node.slot, node.name, self._server_size(node), mode=stat.S_IMODE(mode))

    def utimens(self, path: str, mtime_ns: int | None) -> None:
        """Kept locally, so rsync -a and cp -p find their times again."""
        ref = self._resolve(path)
        when = mtime_ns if mtime_ns is not None else time.time_ns()
        if ref.kind != "file":
            self._dir_mtimes[path.rstrip("/") or "/"] = when
            return
        node = self._file(ref, path)
        if node.local is not None:
            node.local.mtime_ns = when
            return
        self.attrs.set(node.slot, node.name, self._server_size(node), mtime_ns=when)

    def check_exists(self, path: str) -> None:
        """Raise NotFound unless ``path`` exists (for chown and access)."""
        ref = self._resolve(path)
        if ref.kind == "file":
            self._file(ref, path)

    # ================================================================ shutdown
    def shutdown(self) -> None:
        """At unmount: close what is open; temporary files go, unsent data stays."""
        with self._lock:
            handles = list(self._handles)
        for fh in handles:
            try:
                self.release(fh)
            except Exception as exc:  # never let one handle stop the cleanup
                log.warning("closing a handle at unmount: %s", exc)
        with self._lock:
            temps = [t for group in self._temps.values() for t in group.values()]
            self._temps.clear()
        for local in temps:
            if local.entry.state == "unsent":  # renamed onto a real name, refused: the newest save
                local.close()
                log.warning("%s: kept as unsent at unmount", self._describe(local.slot, local.entry.target.name))
            else:
                self._drop_local(local)

    # ================================================================ internals: resolving
    def _resolve(self, path: str) -> PathRef:
        """Parse and check that every directory on the way exists; the file itself is checked later."""
        ref = self.model.parse(path)
        if ref.kind == "root":
            return ref
        record = self._record(ref, path)
        if record != ref.record:  # a shortened component: carry the real name on
            ref = dataclasses.replace(ref, record=record)
        if ref.kind == "record":
            return ref
        with self.records.view() as index:
            if self.shape.longitudinal and ref.event not in index.events_of(record):
                raise NotFound("no such event for this record", path)
            if ref.instance is not None and ref.instance not in index.instances(record, ref.event, ref.field):  # type: ignore[arg-type]
                raise NotFound("no such instance", path)
        return ref

    def _record(self, ref: PathRef, path: str = "") -> str:
        """The real record name of ``ref`` (shortened components resolved), or NotFound."""
        component = ref.record_component or ""
        with self.records.view() as index:
            if names.is_shortened(component):
                record = names.Resolver(index.records()).resolve(component)
            else:
                record = names.decode(component)
                if names.encode(record) != component:
                    record = None
            if record is None or not index.has_record(record):
                raise NotFound("no such record", path or None)
        return record

    def _exists(self, path: str) -> bool:
        try:
            ref = self._resolve(path)
            if ref.kind == "file":
                self._file(ref, path)
            return True
        except NotFound:
            return False

    def _file(self, ref: PathRef, path: str) -> FileNode:
        """The file ``ref`` names in its slot, or NotFound."""
        slot = ref.slot()
        component = ref.name_component or ""
        for node in self._slot_nodes(slot):
            if names.encode(node.name) == component:
                return node
        raise NotFound("no such file", path)

    def _slot_nodes(self, slot: Slot) -> Iterator[FileNode]:
        """The real file (server or a writer's) first, then temporary files."""
        with self._lock:
            writers = {n: list(ls) for n, ls in self._writers.get(slot, {}).items() if ls}
            temps = dict(self._temps.get(slot, {}))
            hidden = self._shadowed.get(slot)
        raw = self._index_name(slot)
        server_name = self._display_name(slot, raw) if raw is not None else None
        if server_name is not None and server_name != hidden:
            local = writers.pop(server_name, [None])[-1]
            yield FileNode(slot, server_name, raw, local)
        for name, locals_ in writers.items():
            yield FileNode(slot, name, None, locals_[-1])
        for name, local in temps.items():
            yield FileNode(slot, name, None, local)

    def _slot_names(self, slot: Slot) -> list[str]:
        return [node.name for node in self._slot_nodes(slot)]

    def _index_name(self, slot: Slot) -> str | None:
        with self.records.view() as index:
            return index.file_name(slot)

    def _display_name(self, slot: Slot, raw: str) -> str:
        """The real name; older servers only say "[document]", so ask once (fileinfo or download)."""
        if raw != DOCUMENT_PLACEHOLDER:
            return raw
        known = self._placeholder_names.get(slot)
        if known is not None:
            return known
        info = self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        if info is None or not info.name:
            node = FileNode(slot, raw, raw)
            self._fetch(node)
            known = self._placeholder_names.get(slot, raw)
        else:
            known = info.name
            if info.size is not None:
                self._sizes[(slot, known)] = info.size
        self._placeholder_names[slot] = known
        return known

    def _new_name(self, ref: PathRef, path: str) -> str:
        component = ref.name_component or ""
        if not names.is_canonical(component):
            raise InvalidArgument("this name cannot be stored as typed (see docs/names.md)", path)
        return names.decode(component)

    def _existing_or_new_name(self, ref: PathRef, path: str) -> str:
        try:
            return self._file(ref, path).name
        except NotFound:
            return self._new_name(ref, path)

    # ================================================================ internals: sizes and content
    def _server_size(self, node: FileNode) -> int:
        """The exact size; concurrent lookups of one file share one question to the server."""
        key = (node.slot, node.name)
        size = self._sizes.get(key)
        if size is not None:
            return size
        with self._lock:
            lock = self._size_locks.setdefault(key, threading.Lock())
        with lock:
            try:
                return self._discover_size(node, key)
            finally:
                with self._lock:
                    self._size_locks.pop(key, None)

    def _discover_size(self, node: FileNode, key: tuple[Slot, str]) -> int:
        size = self._sizes.get(key)
        if size is not None:
            return size  # found by the thread we waited for
        entry = self.cache.lookup(self._content_key(node))
        if entry is None:
            slot = node.slot
            info = self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
            if info is not None and info.size is not None:
                self._sizes[key] = info.size
                return info.size
            entry = self._fetch(node)
        self._sizes[key] = entry.size
        return entry.size

    def _content_key(self, node: FileNode) -> str:
        slot = node.slot
        return cache_key(self.url, slot.record, slot.event, slot.field, slot.instance, node.raw or node.name)

    def _fetch(self, node: FileNode) -> Entry:
        """The complete cached file, downloaded once however many readers ask."""
        entry = self.cache.fetch(self._content_key(node), self._downloader(node))
        self._sizes[(node.slot, node.name)] = entry.size
        return entry

    def _downloader(self, node: FileNode) -> Callable[[BinaryIO], None]:
        """One Export File into the cache's file object; logs a failure once, however many readers wait."""
        slot = node.slot

        def download(out: BinaryIO) -> None:
            try:
                info = self.client.export_file(slot.record, slot.field, out, event=slot.event,
                                               repeat_instance=slot.instance)
            except RedcapError as exc:
                log.error("download of %s failed: %s", self._describe(slot, node.name), exc)
                raise
            if node.raw == DOCUMENT_PLACEHOLDER and info.name:
                self._placeholder_names[slot] = info.name
            self._sizes[(slot, node.name)] = out.tell()

        return download

    def _copy_server_content(self, node: FileNode, local: LocalFile) -> None:
        entry = self._fetch(node)
        with open(entry.path, "rb") as src, os.fdopen(os.dup(local.fd), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def _forget_content(self, slot: Slot, name: str) -> None:
        self._sizes.pop((slot, name), None)
        self.cache.invalidate(cache_key(self.url, slot.record, slot.event, slot.field, slot.instance, name))

    # ================================================================ internals: writing
    def _open_for_write(self, node: FileNode, path: str, truncate: bool) -> int:
        if node.local is not None and node.local.temp:
            if truncate:
                node.local.entry.writing()
                os.ftruncate(node.local.fd, 0)
            return self._new_handle(Handle(local=node.local, writable=True))
        slot = node.slot
        self._require_writable(slot, path)
        with self._lock:
            local = self._new_local(slot, node.name, temp=False)
        try:
            if not truncate:
                self._copy_start(node, local)
        except BaseException:
            self._drop_local(local)
            raise
        local.dirty = truncate
        with self._lock:
            self._writers.setdefault(slot, {}).setdefault(node.name, []).append(local)
        return self._new_handle(Handle(local=local, writable=True))

    def _copy_start(self, node: FileNode, local: LocalFile) -> None:
        """Opening without O_TRUNC starts from the current content (another writer's, or the server's)."""
        if node.local is not None:
            with node.local.lock:
                size = node.local.size()
                os.copy_file_range(node.local.fd, local.fd, size, 0, 0) if size else None
            return
        if node.raw is not None:
            self._copy_server_content(node, local)

    def _upload(self, local: LocalFile, slot: Slot, name: str) -> None:
        """Import File from the spool; on failure the entry becomes unsent and the error propagates."""
        size = local.size()
        target = Target(self.url, self.project_id, slot.record, slot.event, slot.field, slot.instance, name)
        if local.entry.target != target:  # a rename: `redcapfs retry` must send it where it was going
            local.entry.retarget(target, temp=local.temp)
        local.entry.mark_sending()  # from here a crash leaves "may be on the server", checked by retry
        try:
            self.client.import_file(slot.record, slot.field, str(local.entry.data_path), name,
                                    event=slot.event, repeat_instance=slot.instance)
        except RedcapError as exc:
            local.entry.mark_unsent(str(exc))
            log.error("upload of %s (%d bytes) failed: %s; the bytes are kept (see `redcapfs unsent`)",
                      self._describe(slot, name), size, exc)
            raise
        local.entry.mark_sent()
        log.info("uploaded %s (%d bytes)", self._describe(slot, name), size)
        self.records.note_file(slot, name)
        self.attrs.set(slot, name, size, mtime_ns=local.mtime_ns or time.time_ns(), mode=local.mode)
        with self._lock:
            if self._shadowed.get(slot) is not None:
                self._shadowed.pop(slot, None)
        self._placeholder_names.pop(slot, None)
        self._forget_content(slot, name)
        self._sizes[(slot, name)] = size
        key = cache_key(self.url, slot.record, slot.event, slot.field, slot.instance, name)
        try:
            self.cache.put(key, str(local.entry.data_path))
            local.cached_as = key
        except OSError as exc:  # only a lost optimisation: the next read downloads
            log.debug("could not keep the uploaded copy in the cache: %s", exc)

    def _detach_from_cache(self, local: LocalFile) -> None:
        """The cache may share this file's inode (see ContentCache.put): drop it before the bytes change."""
        if local.cached_as is not None:
            self.cache.invalidate(local.cached_as)
            local.cached_as = None

    def _new_local(self, slot: Slot, name: str, temp: bool) -> LocalFile:
        target = Target(self.url, self.project_id, slot.record, slot.event, slot.field, slot.instance, name)
        try:
            entry = self.spool.create(target, temp=temp)
            return LocalFile(entry, slot, name, temp)
        except OSError as exc:
            raise LocalIOError(f"cannot create a spool file: {exc}") from exc

    def _drop_local(self, local: LocalFile) -> None:
        local.unlinked = True
        if local.refs == 0:
            local.close()
            local.entry.remove()

    def _forget_writer(self, local: LocalFile) -> None:
        """Take a writer out of its slot's listing (caller holds the lock)."""
        group = self._writers.get(local.slot, {})
        writers = group.get(local.name, [])
        if local in writers:
            writers.remove(local)
        if not writers:
            group.pop(local.name, None)
        if not group:
            self._writers.pop(local.slot, None)

    def _require_empty_for(self, slot: Slot, name: str, path: str, moving_from: FileNode | None = None) -> None:
        """A slot holds one file: a different real name is refused (caller holds the lock)."""
        for node in self._slot_nodes(slot):
            if node.local is not None and node.local.temp:
                continue
            if moving_from is not None and node.name == moving_from.name:
                continue
            if node.name != name:
                log.warning("%s: refused, the slot already holds %r (a slot holds one file; "
                            "delete it first to replace it)", self._describe(slot, name), node.name)
                raise AlreadyExists(f"the slot already holds {node.name!r}", path)

    def _check_upload_name(self, slot: Slot, name: str, path: str) -> None:
        if stored_name(name) != name:
            log.warning("%s: refused, REDCap would store this name as %r", self._describe(slot, name),
                        stored_name(name))
            raise InvalidArgument("REDCap would change this name (quotes, backslashes, HTML entities)", path)

    def _require_writable(self, slot: Slot | None, path: str, probe: bool = True) -> None:
        """Refuse up front, before any data is accepted: ro mounts, tokens without import rights, signatures."""
        if self.options.read_only:
            raise ReadOnly("read-only mount", path)
        if slot is not None and self.shape.file_fields[slot.field].signature:
            raise NotPermitted("signature fields cannot be uploaded through the API", path)
        if probe and not self._import_allowed():
            raise AccessDenied("this API token has no import rights", path)

    def _import_allowed(self) -> bool:
        """Whether the token may import: asked once with an empty import (403 means no)."""
        if self._can_import is None:
            try:
                self.client.import_records([])
                self._can_import = True
            except (NoRights, BadToken):
                self._can_import = False
            except BadRequest:
                self._can_import = True  # rights were checked first, then the empty data refused
        return self._can_import

    def _first_event(self) -> str | None:
        """Where ``mkdir /NEWID`` puts a record: the first event of ``-o arm=N`` (default the first arm)."""
        if not self.shape.longitudinal:
            return None
        arm = self.options.arm if self.options.arm is not None else self.shape.arms()[0]
        events = self.shape.events_of_arm(arm)
        if not events:
            raise NotPermitted(f"arm {arm} has no events")
        return events[0]

    # ================================================================ internals: handles and stats
    def _new_handle(self, handle: Handle) -> int:
        with self._lock:
            fh = next(self._next_fh)
            self._handles[fh] = handle
            if handle.local is not None:
                handle.local.refs += 1
        return fh

    def _handle(self, fh: int) -> Handle:
        handle = self._handles.get(fh)
        if handle is None:
            raise FsError("bad file handle")
        return handle

    def _file_mode(self) -> int:
        return 0o444 if self.options.read_only else 0o644

    def _dir_stat(self, path: str) -> Stat:
        mode = 0o555 if self.options.read_only else 0o755
        mtime = self._dir_mtimes.get(path.rstrip("/") or "/", self.attrs.epoch_ns)
        return Stat(True, 0, stat.S_IFDIR | mode, mtime, self.options.uid, self.options.gid)

    def _local_stat(self, local: LocalFile) -> Stat:
        st = os.fstat(local.fd) if local.fd >= 0 else None
        size = st.st_size if st else 0
        mtime = local.mtime_ns or (st.st_mtime_ns if st else time.time_ns())
        mode = local.mode if local.mode is not None else self._file_mode()
        return Stat(False, size, stat.S_IFREG | mode, mtime, self.options.uid, self.options.gid)

    def _describe(self, slot: Slot, name: str) -> str:
        """Which file, in REDCap's terms, for log lines and errors."""
        parts = [f"record {slot.record!r}"]
        if slot.event:
            parts.append(f"event {slot.event}")
        parts.append(f"field {slot.field}")
        if slot.instance is not None:
            parts.append(f"instance {slot.instance}")
        return f"{name!r} ({', '.join(parts)})"
