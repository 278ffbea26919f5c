"""Writing: create, open for writing, write, truncate, flush, the last close, and unlink.

Every writable open gets its own local file (``localfiles.py``); its state
decides what a flush and the last close send (the upload is ``uploader.py``).
The slot-empty check of a create (and of a rename onto a real name) does its
I/O first, with no lock held: wait for a records index no older than the TTL,
and learn the real name behind "[document]". Then, under the registry's lock,
it re-checks from memory that the server side is still what it saw and that no
local file took the slot, and lists the new file in the same step; if the
server side changed meanwhile it starts again.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
from collections.abc import Callable

from redcapfs.errors import AccessDenied, AlreadyExists, FsError, InvalidArgument, NotPermitted
from redcapfs.fs import rules
from redcapfs.fs.base import ByteSource, FileNode, TreeOptions
from redcapfs.fs.changes import ListingChanges
from redcapfs.fs.content import ServerContent
from redcapfs.fs.emptygrace import EmptyGrace
from redcapfs.fs.handles import Handle, Handles
from redcapfs.fs.localfiles import KEEP_AT_CLOSE, SEND_AT_CLOSE, SEND_AT_FLUSH, FileState, LocalFile, LocalFiles
from redcapfs.fs.namespace import Namespace, ServerName
from redcapfs.fs.streaming import StreamedUploads
from redcapfs.fs.uploader import Uploader
from redcapfs.shape import ProjectShape, Slot

log = logging.getLogger(__name__)

LAZY_COPY_MIN = 1 << 20  # from this size a writer's starting copy waits for its first use (docs/SEMANTICS.md)
LOCK_PREFIX = ".#"  # emacs's lock links; the only symbolic links made here
CHECK_TRIES = 5  # the server side of a slot changing under every check this often is not a normal day


class Writing:
    """The write path over the namespace, the local files, the handles and the uploader."""

    def __init__(self, options: TreeOptions, shape: ProjectShape, ns: Namespace, local: LocalFiles,
                 handles: Handles, content: ServerContent, uploader: Uploader) -> None:
        self.options = options
        self.shape = shape
        self.ns = ns
        self.local = local
        self.handles = handles
        self.content = content
        self.uploader = uploader
        self.grace = EmptyGrace(options.empty_grace, self._grace_over)  # fs/emptygrace.py
        self.changes = ListingChanges()  # the FUSE operations and the grace's timer count their changes here
        self.streams = StreamedUploads(uploader.client, uploader.slots, options.stream_upload)  # fs/streaming.py

    # ------------------------------------------------------------ rules with I/O
    def require_writable(self, slot: Slot | None, path: str, probe: bool = True) -> None:
        """Refuse before any data is accepted: ro mounts, signatures, tokens without import rights."""
        rules.check_writable(self.options, self.shape, slot, path)
        if probe and not self.uploader.import_allowed():
            raise AccessDenied("this API token has no import rights", path)

    def check_slot(self, slot: Slot, name: str, path: str, moving_from: FileNode | None = None,
                   add: LocalFile | None = None, renaming: bool = False) -> None:
        """Refuse a second real name in ``slot``; with ``add``, list that writer in the same locked step."""
        for _ in range(CHECK_TRIES):
            server = self.ns.server_name(slot, fresh=True)  # the I/O, with no lock held
            check = self._recheck(slot, server, name, path, moving_from, renaming)
            if self.local.add_writer(add, check) if add is not None else self.local.check(slot, check):
                return
        raise FsError(f"the slot of {rules.describe(slot, name)} kept changing while it was checked; try again")

    def _recheck(self, slot: Slot, server: ServerName | None, name: str, path: str,
                 moving_from: FileNode | None,
                 renaming: bool = False) -> Callable[[dict[str, LocalFile], dict[str, LocalFile]], bool]:
        """The in-memory half of the check, run under the registry's lock: no I/O in it."""

        def check(writers: dict[str, LocalFile], temps: dict[str, LocalFile]) -> bool:
            if self.ns.known_server_name(slot) != server:
                return False  # changed while we asked: ask again
            rules.require_empty_for(self.ns.nodes_of(slot, server, writers, temps), slot, name, path, moving_from,
                                    renaming)
            return True

        return check

    # ------------------------------------------------------------ opening
    def create(self, slot: Slot, name: str, mode: int, path: str) -> int:
        """A new file: a temporary name stays local; a real name needs an empty slot."""
        self.require_writable(slot, path)
        if self.options.temp_names.is_temp(name):
            if name in self.local.snapshot(slot)[1]:
                raise AlreadyExists("exists", path)
            local = self.local.new(slot, name, FileState.TEMP)
            local.mode = stat.S_IMODE(mode)
            if self.local.add_temp(local, replace=False) is not None:
                self.local.drop(local)
                raise AlreadyExists("exists", path)
            return self.handles.add(Handle(local=local, writable=True))
        rules.check_upload_name(slot, name, path)
        self.check_slot(slot, name, path)  # refuse before making a spool entry (cheap for tools that retry)
        local = self.local.new(slot, name, FileState.NEW)  # even an empty new file is uploaded at close
        local.mode = stat.S_IMODE(mode)
        self.streams.watch(local)
        try:
            self.check_slot(slot, name, path, add=local)
        except BaseException:
            self.local.drop(local)
            raise
        return self.handles.add(Handle(local=local, writable=True))

    def symlink(self, slot: Slot, name: str, target: str, path: str) -> None:
        """An editor's lock (emacs's ``.#NAME`` -> ``user@host.pid:boot``): a local link, never uploaded.

        Only ``.#`` names: a link is nothing REDCap can hold, and a lock is all
        an editor needs one for. It lives with the temporary files (listed,
        ``readlink`` answers, ``unlink`` removes it, gone at unmount); a lock
        that is already there is EEXIST, which is how emacs learns the file is
        locked.
        """
        if not name.startswith(LOCK_PREFIX):
            raise NotPermitted("only editors' lock links (.#NAME) can be made here; REDCap holds files only",
                               path)
        rules.check_writable(self.options, self.shape, None, path)
        local = self.local.new(slot, name, FileState.TEMP)
        os.pwrite(local.fd, os.fsencode(target), 0)  # the spool keeps what the link says, like any temp file
        local.link_target = target
        local.mode = 0o777
        if self.local.add_temp(local, replace=False) is not None:
            self.local.drop(local)
            raise AlreadyExists("exists", path)

    def open_for_write(self, node: FileNode, path: str, truncate: bool) -> int:
        if node.local is not None and node.local.temp:
            if truncate:
                with node.local.lock:
                    node.local.entry.writing()
                    os.ftruncate(node.local.fd, 0)
            return self.handles.add(Handle(local=node.local, writable=True))
        self.require_writable(node.slot, path)
        if node.local is not None:
            self.streams.broken(node.local, "a second writer opened it")
        held = node.local if node.local is not None and self.grace.take(node.local) else None
        # Taking over a held empty truncation: this copy starts empty too, and differs from the server.
        local = self.local.new(node.slot, node.name,
                               FileState.TRUNCATED if truncate or held is not None else FileState.CLEAN)
        try:
            if held is not None:
                local.opened_version = min(local.opened_version, held.opened_version)  # the conflict check
            elif not truncate:
                self._copy_start(node, local)
        except BaseException:
            self.local.drop(local)
            raise
        if local.state is FileState.TRUNCATED:
            self.streams.watch(local)
        self.local.add_writer(local)
        if held is not None:
            self._unlist(held)  # never sent: the new writer is the file now
        return self.handles.add(Handle(local=local, writable=True))

    def _copy_start(self, node: FileNode, local: LocalFile) -> None:
        """Opening without O_TRUNC starts from the current content (another writer's, or the server's).

        A file of ``LAZY_COPY_MIN`` bytes or more that is not in the content cache is copied in only
        when its bytes are first needed (``LocalFile.ensure_filled``): `touch` and an open that writes
        nothing download nothing. Smaller or cached files are copied now (the version at open). The
        copy reports that version's time until it is written.
        """
        other = node.local
        if other is not None:
            with other.lock:
                local.base_mtime_ns = other.mtime_ns or other.base_mtime_ns
                if other.fill is not None:  # not copied in yet: neither is this one
                    local.fill, local.fill_size = other.fill, other.fill_size
                    return
                size = other.size()
                if size:
                    os.copy_file_range(other.fd, local.fd, size, 0, 0)
            return
        if node.raw is None:
            return
        known = self.content.slots.size(node.slot, node.name)
        cached = self.content.cache.lookup(self.content.key(node)) is not None
        if known is None or known < LAZY_COPY_MIN or cached:
            self.content.copy_into(node, local.fd)  # cheap: taken now, the version at open
        else:
            local.fill, local.fill_size = functools.partial(self.content.copy_into, node), known
            local.entry.retarget(local.entry.target, temp=True)  # an empty copy is never kept after a crash
        local.base_mtime_ns = self.content.slots.attr(node.slot, node.name, local.size()).mtime_ns

    # ------------------------------------------------------------ changing bytes
    def write(self, fh: int, data: bytes, offset: int) -> int:
        return self._write(fh, offset, lambda fd: os.pwrite(fd, data, offset))

    def write_from(self, fh: int, source: ByteSource, offset: int) -> int:
        """``write`` whose bytes copy themselves into the writer's file (the FUSE layer's ``write_buf``)."""
        return self._write(fh, offset, lambda fd: source.into_fd(fd, offset))

    def _write(self, fh: int, offset: int, put: Callable[[int], int]) -> int:
        handle = self.handles.get(fh)
        if not handle.writable or handle.local is None:
            raise InvalidArgument("file not open for writing")
        local = handle.local
        with local.lock:
            local.ensure_filled()
            self._detach_from_cache(local)
            local.entry.writing()  # before the bytes change: a crash now leaves it incomplete, not final
            self.streams.before_write(local, offset)  # a stream that cannot take these bytes stops first
            written = put(local.fd)
            local.written()
            self.streams.after_write(local, written)
        return written

    def truncate_local(self, local: LocalFile, length: int) -> None:
        with local.lock:
            local.ensure_filled(needed=length > 0)
            self._detach_from_cache(local)
            local.entry.writing()
            self.streams.broken(local, "ftruncate")
            os.ftruncate(local.fd, length)
            local.written()

    def truncate_path(self, node: FileNode, path: str, length: int) -> None:
        """``truncate(path)``: no close follows, so the change is uploaded at once."""
        if node.local is not None and node.local.temp:
            with node.local.lock:
                node.local.entry.writing()
                os.ftruncate(node.local.fd, length)
            return
        fh = self.open_for_write(node, path, truncate=length == 0)
        try:
            local = self.handles.get(fh).local
            assert local is not None
            self.truncate_local(local, length)
            self.flush(fh)
        finally:
            self.release(fh)

    def _detach_from_cache(self, local: LocalFile) -> None:
        """The cache may share this file's inode (see ContentCache.put): move to a copy before the bytes change.

        Readers of the uploaded version hold the shared inode open; they must
        keep reading exactly that version, and the cache keeps serving it (it
        is what the server holds until the next upload). So the writer moves:
        its bytes are copied to a new inode that replaces the spool file, and
        ``dup2`` puts it under the descriptor every handle of this file uses.
        One local copy, only when a file is written again after an upload
        while still open. Caller holds ``local.lock``.
        """
        if local.cached_as is None:
            return
        data_path = local.entry.data_path
        fresh = data_path.with_name(data_path.name + ".cow")
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            size = local.size()
            copied = 0
            while copied < size:
                step = os.copy_file_range(local.fd, fd, size - copied, copied, copied)
                if step == 0:
                    break
                copied += step
            os.replace(fresh, data_path)
            os.dup2(fd, local.fd)
        finally:
            os.close(fd)
        local.cached_as = None

    # ------------------------------------------------------------ sending
    def flush(self, fh: int) -> None:
        """Every ``close()``: send a DIRTY or UNSENT copy. Only a 200 is success (see localfiles.py)."""
        handle = self.handles.get(fh)
        local = handle.local
        if local is None or not handle.writable or local.temp:
            return
        with local.lock:
            if local.state in SEND_AT_FLUSH:
                self._send(local)

    def _send(self, local: LocalFile) -> None:
        """Upload a writer's copy (caller holds its lock) and move its state by the answer."""
        finish = self.streams.take(local)  # an upload begun while it was written ends here (fs/streaming.py)
        try:
            self.uploader.upload(local, local.slot, local.name, send=finish)
        except BaseException:
            local.to(FileState.UNSENT, unless_unlinked=True)
            raise
        finally:
            if finish is not None:
                finish.close()
        local.to(FileState.CLEAN, unless_unlinked=True)

    def release(self, fh: int) -> None:
        """Last close of a handle: NEW/TRUNCATED copies are sent, clean ones dropped, failed ones kept."""
        handle = self.handles.pop(fh)
        if handle is None:
            return
        if handle.local is None:
            os.close(handle.fd)
            return
        local = handle.local
        if not self.local.release(local):
            return  # other handles still have it, or a temporary file that stays listed
        if self.grace.held(local):
            return  # a reader of a held empty truncation: the grace still decides (fs/emptygrace.py)
        if not local.temp and local.state is FileState.TRUNCATED and self.grace.grace > 0:
            self.grace.hold(local)  # sent when the grace passes, unless a writer takes over
            return
        self._close_last(local)

    def settle_held(self, path: str) -> None:
        """Send a held empty truncation in ``path``'s slot now: a rename or delete is about to change it."""
        if not self.grace.any():
            return
        try:
            ref = self.ns.resolve(path)
        except FsError:
            return  # the operation itself will say what is wrong with the path
        if ref.kind == "file":
            self.grace.settle(ref.slot())

    def _grace_over(self, local: LocalFile) -> None:
        """The grace of a held empty truncation ended: send it; a reader still holding it drops it later."""
        with self.changes.changing():  # on the timer's thread, outside any FUSE operation
            if local.refs > 0:
                self._send_at_release(local)  # that reader's last close unlists and drops the copy
                return
            self._close_last(local)

    def _close_last(self, local: LocalFile) -> None:
        """What the last close does: NEW/TRUNCATED copies are sent, clean ones dropped, failed ones kept."""
        if not local.temp and local.state in SEND_AT_CLOSE:
            self._send_at_release(local)
        if not local.temp:
            self.local.unlist_writer(local)
            self._keep_times(local)
        self.streams.broken(local, "closed without a flush")
        local.close()
        if local.temp or local.state not in KEEP_AT_CLOSE:
            local.entry.remove()
            return
        if local.entry.state not in ("unsent", "conflict"):
            local.entry.mark_unsent("closed without a successful upload")
        log.error("%s: kept as unsent (%s); see `redcapfs unsent`", rules.describe(local.slot, local.name),
                  local.entry.error or "never uploaded")

    def _keep_times(self, local: LocalFile) -> None:
        """A time or mode set through a writer that sent nothing (``touch FILE``, ``touch -d``) must stick.

        A clean copy is the server's version: what was set on it belongs to
        that version, so it goes to the attribute store before the copy goes.
        """
        if local.state is not FileState.CLEAN or (local.mtime_ns is None and local.mode is None):
            return
        self.content.slots.set_attr(local.slot, local.name, local.size(), mtime_ns=local.mtime_ns,
                                    mode=local.mode)

    def _send_at_release(self, local: LocalFile) -> None:
        """An empty new file or a bare truncation: sent at the last close; a failure is kept as unsent."""
        with local.lock:
            if local.state not in SEND_AT_CLOSE:
                return
            try:
                self._send(local)
            except Exception as exc:  # release cannot report errors; the upload logged it and kept the bytes
                log.debug("upload at release failed: %s", exc)

    # ------------------------------------------------------------ deleting
    def unlink(self, node: FileNode, path: str) -> None:
        slot = node.slot
        rules.check_writable(self.options, self.shape, slot, path)
        local = node.local
        if local is not None and local.temp:
            self._unlink_temp(local)
            return
        if local is not None and node.raw is None:  # a new file not yet uploaded: nothing on the server
            self._unlist(local)
            return
        self.require_writable(slot, path)
        self.uploader.delete(slot, node.name)
        if local is not None:  # as on any filesystem, writes to an unlinked file go nowhere
            self._unlist(local)

    def _unlink_temp(self, local: LocalFile) -> None:
        hidden = self.ns.slots.hidden(local.slot)
        if hidden is not None and local.shadow_of == (local.slot, hidden):
            self.uploader.delete(local.slot, hidden)  # `mv f f~; rm f~`: the user deleted f
        self._unlist(local)

    def _unlist(self, local: LocalFile) -> None:
        """Out of the namespace; its bytes go now if no handle has it open, else at the last close."""
        self.streams.broken(local, "unlinked")
        if self.local.unlist(local):
            local.close()
            local.entry.remove()
