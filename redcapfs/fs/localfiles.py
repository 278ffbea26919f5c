"""Local files: the bytes this mount keeps on disk for files being written, and temporary files.

A file being written is a small state machine (:class:`FileState`); the state
says what the next ``flush`` and the last ``close`` do with its bytes::

    create (real name) ──> NEW ─────────┐
    open, O_TRUNC ───────> TRUNCATED ───┤  write/ftruncate
    open, no O_TRUNC ────> CLEAN ───────┴──────────────> DIRTY
                             ^                             │ flush/fsync: Import File
                             └──────── 200 ────────────────┤
                                                           └─ refused/failed ──> UNSENT (write/flush again: retried)
    create (temporary name) ──> TEMP                     (never sent; a rename onto a real name is its upload)
    any state ── unlink, or the slot's file deleted ──> UNLINKED   (writes go nowhere; dropped at the last close)

* NEW: a real name created here, nothing on the server yet. Sent at the last
  close even if empty (``touch new``); not at a flush before any write.
* TRUNCATED: an existing file opened with O_TRUNC, nothing written yet. Sent at
  the last close, not at a flush: a shell's ``> file`` closes a duplicate
  descriptor before it writes, and an upload then would put an empty file in
  place of the real one.
* CLEAN: same bytes as the server (opened to modify and not yet written, or
  just uploaded). Nothing to send; dropped at the last close.
* DIRTY: written since the last upload. Sent at the next flush or fsync.
* UNSENT: the last upload failed; the spool entry is marked unsent with
  REDCap's answer. The next flush retries; at the last close the bytes stay in
  the spool for ``redcapfs unsent``/``retry``.
* TEMP: a temporary name (``tempnames.py``), local only until renamed.
* UNLINKED: gone from the namespace; closed and removed at the last close.

:class:`LocalFiles` is the registry of these files per slot. Lock order and
rules: a file's own ``lock`` (its bytes and state; held across its pwrite,
ftruncate, copy and its own upload, which reads those bytes) may be taken
before the registry's ``_lock``, never after it. The registry's ``_lock``
guards the tables and each file's ``refs`` and is held for dict updates only:
never across a spool write (it fsyncs), a network call or a file's own lock.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from redcapfs.errors import LocalIOError
from redcapfs.shape import Slot
from redcapfs.spool import Spool, SpoolEntry, Target

if TYPE_CHECKING:
    from redcapfs.fs.streaming import Watch

log = logging.getLogger(__name__)


class FileState(enum.Enum):
    """Where a local file stands with REDCap (see the module docstring)."""

    NEW = "new"
    TRUNCATED = "truncated"
    CLEAN = "clean"
    DIRTY = "dirty"
    UNSENT = "unsent"
    TEMP = "temp"
    UNLINKED = "unlinked"


S = FileState
_ALLOWED: dict[FileState, set[FileState]] = {
    S.NEW: {S.DIRTY, S.CLEAN, S.UNSENT, S.UNLINKED},
    S.TRUNCATED: {S.DIRTY, S.CLEAN, S.UNSENT, S.UNLINKED},
    S.CLEAN: {S.DIRTY, S.UNLINKED},
    S.DIRTY: {S.DIRTY, S.CLEAN, S.UNSENT, S.UNLINKED},
    S.UNSENT: {S.DIRTY, S.UNSENT, S.CLEAN, S.UNLINKED},
    S.TEMP: {S.UNLINKED, S.CLEAN},  # CLEAN: renamed onto a real name while open (it is that file now)
    S.UNLINKED: {S.UNLINKED},
}
# What the next flush sends, and what the last close sends.
SEND_AT_FLUSH = {S.DIRTY, S.UNSENT}
SEND_AT_CLOSE = {S.NEW, S.TRUNCATED}
KEEP_AT_CLOSE = {S.DIRTY, S.UNSENT}  # still not on the server: kept as unsent


class LocalFile:
    """Bytes kept on local disk: a writer's private copy, or a temporary file.

    The spool entry makes them survive a crash; ``fd`` stays open while any
    handle uses the file.
    """

    def __init__(self, entry: SpoolEntry, slot: Slot, name: str, state: FileState) -> None:
        self.entry = entry
        self.slot = slot
        self.name = name
        self.fd = os.open(entry.data_path, os.O_RDWR)
        self.lock = threading.Lock()
        self._state_lock = threading.Lock()  # a leaf: makes each move of the state atomic
        self.temp = state is S.TEMP  # its kind, for life: a temporary file is never sent by a flush or close
        self.state = state
        self.refs = 0  # open handles (changed under the registry's lock)
        self.mtime_ns: int | None = None
        self.mode: int | None = None
        # The (slot, server name) this temporary copy stands in for: moved to another slot, it stands in for
        # nothing there (unlinking it must not delete that slot's file).
        self.shadow_of: tuple[Slot, str] | None = None
        self.cached_as: str | None = None  # content-cache key sharing this file's inode after an upload
        self.opened_version = 0  # the slot's count of changes made elsewhere when this copy was opened
        # A copy opened without O_TRUNC starts as the server's version, copied in only when its bytes are first
        # needed (a read, a write, a truncation to a non-zero length): `touch` of a 50 MB file downloads nothing.
        self.fill: Callable[[int], None] | None = None
        self.fill_size = 0  # that version's size, reported until the bytes are there
        # The time of the version it started from, reported until its bytes change (editors compare it).
        self.base_mtime_ns: int | None = None
        self.link_target: str | None = None  # a symbolic link (an editor's lock, fs/writing.py), never a file
        self.stream: Watch | None = None  # its in-order writes and its upload while written (fs/streaming.py)

    def to(self, state: FileState, unless_unlinked: bool = False) -> bool:
        """Move to ``state``; a move the machine does not have is a bug, so it raises.

        ``unless_unlinked``: an upload that ended after an unlink leaves the
        file UNLINKED (returns False) instead of bringing it back.
        """
        with self._state_lock:
            if unless_unlinked and self.state is S.UNLINKED:
                return False
            if state not in _ALLOWED[self.state]:
                raise AssertionError(f"local file {self.state.name} -> {state.name} is not a transition")
            self.state = state
            return True

    def written(self) -> None:
        """Bytes changed through write/ftruncate: a writer's copy must be sent at the next flush."""
        self.base_mtime_ns = None
        if self.state in (S.NEW, S.TRUNCATED, S.CLEAN, S.DIRTY, S.UNSENT):
            self.to(S.DIRTY, unless_unlinked=True)

    def ensure_filled(self, needed: bool = True, reading: bool = False) -> None:
        """Copy the starting version in before its bytes are used (caller holds ``lock``).

        ``needed=False`` (a truncation to empty): the bytes would be cut anyway, so none are fetched.
        An unlinked copy is not filled for a write (its writes go nowhere), but is for a read: a reader
        of it would otherwise read an empty file as if it were whole (a failed fill fails the read instead).
        """
        fill = self.fill
        if fill is None:
            return
        if needed and (reading or not self.unlinked):
            try:
                fill(self.fd)
            except BaseException:
                os.ftruncate(self.fd, 0)
                os.lseek(self.fd, 0, os.SEEK_SET)
                raise
        self.fill = None
        self.entry.retarget(self.entry.target, temp=False)  # its bytes are here now: a crash keeps them

    @property
    def unlinked(self) -> bool:
        return self.state is S.UNLINKED

    def size(self) -> int:
        """Its size: the starting version's while that is not copied in yet."""
        if self.fill is not None:
            return self.fill_size
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LocalFiles:
    """Every local file, per slot: writers of real names and temporary files."""

    def __init__(self, spool: Spool, url: str, project_id: str) -> None:
        self.spool = spool
        self.url = url
        self.project_id = project_id
        self._lock = threading.Lock()
        self._writers: dict[Slot, dict[str, list[LocalFile]]] = {}
        self._temps: dict[Slot, dict[str, LocalFile]] = {}
        self.seq: Callable[[], int] = lambda: 0  # the slot model's count of changes seen elsewhere (Tree sets it)

    # ------------------------------------------------------------ making and dropping (outside the lock)
    def new(self, slot: Slot, name: str, state: FileState) -> LocalFile:
        """A spool entry and its open file; not yet listed anywhere."""
        target = Target(self.url, self.project_id, slot.record, slot.event, slot.field, slot.instance, name)
        try:
            entry = self.spool.create(target, temp=state is S.TEMP)
            local = LocalFile(entry, slot, name, state)
            local.opened_version = self.seq()
            return local
        except OSError as exc:
            raise LocalIOError(f"cannot create a spool file: {exc}") from exc

    def drop(self, local: LocalFile) -> None:
        """Unlinked: its bytes go now if no handle has it open, else at the last close."""
        with self._lock:
            local.to(S.UNLINKED)
            last = local.refs == 0
        if last:
            local.close()
            local.entry.remove()

    # ------------------------------------------------------------ reading
    def snapshot(self, slot: Slot) -> tuple[dict[str, LocalFile], dict[str, LocalFile]]:
        """(newest writer per real name, temporary files) of ``slot``, copied under the lock."""
        with self._lock:
            return self._snapshot_locked(slot)

    def _snapshot_locked(self, slot: Slot) -> tuple[dict[str, LocalFile], dict[str, LocalFile]]:
        writers = {n: group[-1] for n, group in self._writers.get(slot, {}).items() if group}
        return writers, dict(self._temps.get(slot, {}))

    def temps(self) -> list[LocalFile]:
        with self._lock:
            return [t for group in self._temps.values() for t in group.values()]

    # ------------------------------------------------------------ check-and-update (in memory only)
    def add_writer(self, local: LocalFile,
                   check: Callable[[dict[str, LocalFile], dict[str, LocalFile]], bool] | None = None) -> bool:
        """List a writer; with ``check`` only if ``check(writers, temps)`` (run under the lock) is true."""
        with self._lock:
            if check is not None and not check(*self._snapshot_locked(local.slot)):
                return False
            self._writers.setdefault(local.slot, {}).setdefault(local.name, []).append(local)
            return True

    def check(self, slot: Slot,
              check: Callable[[dict[str, LocalFile], dict[str, LocalFile]], bool]) -> bool:
        """``check(writers, temps)`` of ``slot``, run under the lock (a re-check with nothing to add)."""
        with self._lock:
            return check(*self._snapshot_locked(slot))

    def add_temp(self, local: LocalFile, replace: bool) -> LocalFile | None:
        """List a temporary file; returns the one it replaced (or, with ``replace=False``, refuses by
        returning the one already there and listing nothing)."""
        with self._lock:
            temps = self._temps.setdefault(local.slot, {})
            there = temps.get(local.name)
            if there is not None and not replace:
                return there
            temps[local.name] = local
            return there

    def move_temp(self, local: LocalFile, slot: Slot, name: str) -> LocalFile | None:
        """Rename a temporary file to another temporary name; returns the one it replaced."""
        with self._lock:
            self._temps.get(local.slot, {}).pop(local.name, None)
            temps = self._temps.setdefault(slot, {})
            replaced = temps.pop(name, None)
            local.slot, local.name = slot, name
            temps[name] = local
        return replaced if replaced is not local else None

    def renamed_onto(self, local: LocalFile, slot: Slot, name: str) -> bool:
        """A temporary file was uploaded as ``name`` (caller holds ``local.lock``): out of the temporary files.

        With no handle open its bytes are done with (returns True). An open
        handle follows the file onto its new name, as on a local disk: the file
        becomes a clean copy of that real name, never listed (the listing shows
        the server file, which has these bytes), whose later writes are sent at
        the next flush.
        """
        with self._lock:
            self._unlist_locked(local)
            local.slot, local.name = slot, name
            if local.refs == 0:
                local.to(S.UNLINKED)
                return True
            local.temp = False
            local.to(S.CLEAN)
            return False

    def unlist(self, local: LocalFile) -> bool:
        """Take ``local`` out of the namespace and mark it UNLINKED; True if no handle has it open."""
        with self._lock:
            self._unlist_locked(local)
            local.to(S.UNLINKED)
            return local.refs == 0

    def unlist_writer(self, local: LocalFile) -> None:
        """A writer's last close: out of the listing, state unchanged."""
        with self._lock:
            self._unlist_locked(local)

    def clear_temps(self) -> list[LocalFile]:
        with self._lock:
            temps = [t for group in self._temps.values() for t in group.values()]
            self._temps.clear()
        return temps

    def _unlist_locked(self, local: LocalFile) -> None:
        if local.temp:
            if self._temps.get(local.slot, {}).get(local.name) is local:
                self._temps[local.slot].pop(local.name)
            return
        group = self._writers.get(local.slot, {})
        writers = group.get(local.name, [])
        if local in writers:
            writers.remove(local)
        if not writers:
            group.pop(local.name, None)
        if not group:
            self._writers.pop(local.slot, None)

    # ------------------------------------------------------------ handles
    def acquire(self, local: LocalFile) -> None:
        with self._lock:
            local.refs += 1

    def release(self, local: LocalFile) -> bool:
        """One handle fewer; True when it was the last one and the file is not a listed temporary file."""
        with self._lock:
            local.refs -= 1
            return local.refs <= 0 and local.state is not S.TEMP
