"""Every write to REDCap: Import File from the spool, Delete File, new records, and the rights probe.

No shared lock is held here. An upload runs under the uploading file's own
lock (its bytes must not change while they are sent), which blocks only
handles of that one file. Each success is told to the
:class:`~redcapfs.fs.slots.SlotModel` in one call; each failure is logged
with what REDCap said, and an upload's bytes are kept as *unsent*.

Before every replace and delete the version taken out of REDCap is kept in
the local trash (``trash.py``): from the content cache when it is there, else
downloaded first (one Export File). A version the trash cannot hold
(``TrashFull``, ENOSPC) refuses the change; an upload so refused stays unsent.

What the slot holds before a change: by default (``-o slot_check=recent``) a
slot the records index shows **empty** is taken as empty while a log poll that
began at most 2 s ago vouches for the index (one is made now when none did, so
one poll serves every upload into an empty slot of those seconds; a
colleague's upload made after that poll began is the window), and a slot the
index shows holding a file is asked of the server (one file-info call), so the
trash keeps the bytes REDCap holds, not the ones this mount last saw.
``slot_check=feed`` also trusts the index for filled slots, and the last
regular poll (a window of one poll interval); ``slot_check=always``, and any
mount without the log, asks before every change (docs/SEMANTICS.md). Issue 11
sets the conflict window at the poll interval with no call per close; issue 10
wants every replaced version kept; issue 12 counts both in its figures.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from redcapfs.client.base import FileInfo, RedcapClient
from redcapfs.errors import BadRequest, BadToken, EmptySlot, FileChanged, NoRights, NotFound, RedcapError
from redcapfs.fs.localfiles import LocalFile
from redcapfs.fs.rules import describe
from redcapfs.fs.slots import SlotModel
from redcapfs.recordcache import RecordCache
from redcapfs.shape import Slot
from redcapfs.spool import Target
from redcapfs.trash import Left, Source, Trash

log = logging.getLogger(__name__)

EMPTY = FileInfo(None, 0)  # what ask() says of an empty slot
UNASKED = FileInfo(None, -1)  # keep_old(): ask the server first


class Uploader:
    """The network writes of the tree."""

    def __init__(self, client: RedcapClient, slots: SlotModel, records: RecordCache, url: str,
                 project_id: str, trash: Trash | None = None,
                 on_write: Callable[[Slot], None] | None = None,
                 fresh: Callable[[], bool] | None = None, trust_files: bool = False) -> None:
        self.client = client
        self.fresh = fresh  # whether the change feed vouches for the index now (no probe needed)
        self.trust_files = trust_files  # slot_check=feed: also a file the index shows needs no probe
        self.trash = trash
        self.on_write = on_write  # told before each upload or delete (the change feed: not a colleague's)
        self.slots = slots
        self.records = records
        self.url = url
        self.project_id = project_id
        self._can_import: bool | None = None
        self._probe_lock = threading.Lock()  # one probe per mount, however many writers race it

    def upload(self, local: LocalFile, slot: Slot, name: str,
               send: Callable[[Callable[[], None], int], None] | None = None) -> None:
        """Import File from the spool (caller holds ``local.lock``); on failure the entry becomes unsent.

        ``send`` replaces the Import File itself (after every check, with the
        ordinary send and the size as its arguments): a stream begun while the
        file was written ends there (fs/streaming.py).
        """
        size = local.size()
        target = Target(self.url, self.project_id, slot.record, slot.event, slot.field, slot.instance, name)
        if local.entry.target != target:  # a rename: `redcapfs retry` must send it where it was going
            local.entry.retarget(target, temp=local.temp)
        if self.fresh is not None:  # slot_check=recent polls now if no poll began lately: the conflict check
            self.fresh()  # below and keep_old's look at the index then both see a colleague's upload
        self._check_conflict(local, slot, name)  # a colleague's newer version: no call needed to know
        try:
            self.keep_old(slot, "replaced", Left(name, size), UNASKED)
        except OSError as exc:  # TrashFull, or the local disk: refused before anything was sent
            local.entry.mark_unsent(str(exc))
            log.error("upload of %s refused: %s; the bytes are kept (see `redcapfs unsent`)", describe(slot, name), exc)
            raise
        local.entry.mark_sending(flush=send is None)  # from here a crash leaves "may be on the server" (retry checks)
        if self.on_write is not None:
            self.on_write(slot)

        def ordinary() -> None:
            self.client.import_file(slot.record, slot.field, str(local.entry.data_path), name,
                                    event=slot.event, repeat_instance=slot.instance)

        try:
            if send is None:
                ordinary()
            else:
                send(ordinary, size)
        except RedcapError as exc:
            local.entry.mark_unsent(str(exc))
            log.error("upload of %s (%d bytes) failed: %s; the bytes are kept (see `redcapfs unsent`)",
                      describe(slot, name), size, exc)
            raise
        local.entry.mark_sent()
        log.info("uploaded %s (%d bytes)", describe(slot, name), size)
        # The writer's own last write is the version's time: the very time its open handle reported, so a
        # stat after the close (vim's check before its next save) sees no change.
        when = local.mtime_ns or local.base_mtime_ns or os.fstat(local.fd).st_mtime_ns
        local.cached_as = self.slots.uploaded(slot, name, size, when, local.mode, str(local.entry.data_path))

    def _check_conflict(self, local: LocalFile, slot: Slot, name: str) -> None:
        """Refuse to replace a version someone else uploaded after this copy was opened (the last poll shows it).

        Best effort: REDCap has no conditional import, so the window is the poll
        interval. The bytes stay as ``conflict`` (``redcapfs retry --force ID``).
        """
        if self.slots.version(slot) <= local.opened_version:
            return
        why = ("someone else changed this file on the server after it was opened here; "
               "your version is kept (`redcapfs unsent`, send it anyway with `redcapfs retry --force ID`)")
        local.entry.mark_conflict(why)
        log.error("not uploading %s: %s", describe(slot, name), why)
        raise FileChanged(why, describe(slot, name))

    def ask(self, slot: Slot) -> FileInfo | None:
        """What the slot holds now (one file-info call, or the index the feed vouches for): EMPTY, or None."""
        known = self._vouched(slot)
        if known is not None:
            return known
        try:
            return self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        except EmptySlot:
            return EMPTY
        except RedcapError as exc:  # cannot say (a locked record, a hiccup): the caller falls back to the index
            log.debug("%s: file-info before a change failed: %s", describe(slot, "the slot's file"), exc)
            return None

    def _vouched(self, slot: Slot) -> FileInfo | None:
        """What the index says the slot holds, if the change feed's last poll is recent enough to trust it."""
        if self.fresh is None or not self.fresh():
            return None
        known = self.slots.server_file(slot, current=True)
        if known is None:
            return EMPTY
        if known.name is None or not self.trust_files:  # the name unresolved, or (recent) a replace or delete:
            return None  # asked, so the trash keeps the bytes the slot holds, not the ones this mount last saw
        return FileInfo(known.name, known.size)

    def verify(self, slot: Slot, name: str) -> FileInfo | None:
        """Make sure the slot holds ``name`` right now, asked of the server; returns what it said.

        Delete File takes no name, and an upload replaces whatever the slot
        holds: acting on a listing a colleague has made stale would delete or
        overwrite their file. A different name raises FileChanged (ESTALE), an
        empty slot NotFound (ENOENT); the listing shows the change at the next
        records refresh (within the records TTL). A server without the
        file-info call cannot be asked this cheaply: the check is skipped there
        (docs/SEMANTICS.md).
        """
        info = self.ask(slot)
        if info is EMPTY:
            log.warning("%s: refused, the file is no longer on the server", describe(slot, name))
            raise NotFound("the file was deleted on the server meanwhile")
        if info is None or not info.name or info.name == name:
            return info
        log.warning("%s: refused, the slot now holds %r (changed on the server)", describe(slot, name), info.name)
        raise FileChanged(f"the slot now holds {info.name!r}, put there by someone else; list it again")

    def delete(self, slot: Slot, name: str, keep: bool = True) -> None:
        """Delete File of ``name``, checked first to still be what the slot holds; the slot is empty afterwards.

        ``keep``: the version goes to the trash first (not for a move's source, whose bytes live on).
        """
        info = self.verify(slot, name)
        if keep:
            self.keep_old(slot, "deleted", Left(None), info if info is not None else UNASKED)
        if self.on_write is not None:
            self.on_write(slot)
        try:
            self.client.delete_file(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        except RedcapError as exc:
            log.error("delete of %s failed: %s", describe(slot, name), exc)
            raise
        log.info("deleted %s", describe(slot, name))
        self.slots.deleted(slot, name)

    def keep_old(self, slot: Slot, why: str, left: Left, info: FileInfo | None = UNASKED) -> None:
        """Keep the slot's server file in the trash before it is replaced or deleted (nothing there: nothing).

        What the slot holds is asked of the server (``info``, unless the
        caller just asked): the records index may not show a colleague's
        upload yet, and that is exactly the version an upload would destroy.
        A server without file-info falls back to the index.
        """
        if self.trash is None or not self.trash.settings.enabled:
            return
        if info is UNASKED:
            info = self.ask(slot)
        if info is EMPTY:
            return
        known = self.slots.server_file(slot, current=True)
        if info is None or not info.name:
            if known is None:
                return
            old_name = known.name or known.raw
        else:
            old_name = info.name
        target = Target(self.url, self.project_id, slot.record, slot.event, slot.field, slot.instance, old_name)
        raw = known.raw if known is not None and known.name in (None, old_name) else old_name
        cached = self.slots.cache.lookup(self.slots.content_key(slot, raw))
        if cached is not None and (info is None or info.size is None or info.size == cached.size):
            source: Source = cached.path
        else:
            source = self._downloader(slot)
        try:
            self.trash.keep(target, source, why, left)
        except EmptySlot:
            log.info("%s: already gone from the server, nothing to keep", describe(slot, old_name))
        except RedcapError as exc:
            raise OSError(errno.EIO, f"could not keep the old version of {describe(slot, old_name)} in the "
                                     f"trash before it is {why}: {exc}") from exc

    def _downloader(self, slot: Slot) -> Callable[[BinaryIO], object]:
        def download(out: BinaryIO) -> object:
            return self.client.export_file(slot.record, slot.field, out, event=slot.event,
                                           repeat_instance=slot.instance)

        return download

    def import_record(self, record: str, event: str | None, record_id_field: str) -> None:
        """A new record (``mkdir /ID``), in ``event`` for longitudinal projects."""
        row = {record_id_field: record}
        if event is not None:
            row["redcap_event_name"] = event
        try:
            self.client.import_records([row])
        except RedcapError as exc:
            log.error("creating record %r failed: %s", record, exc)
            raise
        log.info("created record %r%s", record, f" in event {event}" if event else "")
        self.records.note_record(record, event)

    def learned_import(self, allowed: bool) -> None:
        """The user export's answer (fs/rights.py): a no spares the probe's call; a yes is still asked."""
        if not allowed and self._can_import is None:
            self._can_import = False

    def import_known(self) -> bool | None:
        """The probe's answer if it was asked already (no call), else None."""
        return self._can_import

    def import_allowed(self) -> bool:
        """Whether the token may import: asked once with an empty import (403 means no).

        Single-flight: writers that arrive while the probe is out wait for its
        answer instead of sending their own (8 parallel ``cp`` cost one probe).
        Only writers ever wait here; a probe that fails (no answer) is asked
        again by the next writer.
        """
        if self._can_import is not None:
            return self._can_import
        with self._probe_lock:
            if self._can_import is None:
                self._can_import = self._probe()
        return self._can_import

    def _probe(self) -> bool:
        try:
            self.client.import_records([])
            return True
        except (NoRights, BadToken):
            return False
        except BadRequest:
            return True  # rights were checked first, then the empty data refused
