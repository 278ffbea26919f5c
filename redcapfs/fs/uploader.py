"""Every write to REDCap: Import File from the spool, Delete File, new records, and the rights probe.

No shared lock is held here. An upload runs under the uploading file's own
lock (its bytes must not change while they are sent), which blocks only
handles of that one file. Each success is told to the
:class:`~redcapfs.fs.slots.SlotModel` in one call; each failure is logged
with what REDCap said, and an upload's bytes are kept as *unsent*.
"""

from __future__ import annotations

import logging
import time

from redcapfs.client.base import RedcapClient
from redcapfs.errors import BadRequest, BadToken, EmptySlot, FileChanged, NoRights, NotFound, RedcapError
from redcapfs.fs.localfiles import LocalFile
from redcapfs.fs.rules import describe
from redcapfs.fs.slots import SlotModel
from redcapfs.recordcache import RecordCache
from redcapfs.shape import Slot
from redcapfs.spool import Target

log = logging.getLogger(__name__)


class Uploader:
    """The network writes of the tree."""

    def __init__(self, client: RedcapClient, slots: SlotModel, records: RecordCache, url: str,
                 project_id: str) -> None:
        self.client = client
        self.slots = slots
        self.records = records
        self.url = url
        self.project_id = project_id
        self._can_import: bool | None = None

    def upload(self, local: LocalFile, slot: Slot, name: str) -> None:
        """Import File from the spool (caller holds ``local.lock``); on failure the entry becomes unsent."""
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
                      describe(slot, name), size, exc)
            raise
        local.entry.mark_sent()
        log.info("uploaded %s (%d bytes)", describe(slot, name), size)
        local.cached_as = self.slots.uploaded(slot, name, size, local.mtime_ns or time.time_ns(), local.mode,
                                              str(local.entry.data_path))

    def verify(self, slot: Slot, name: str) -> None:
        """Make sure the slot holds ``name`` right now, asked of the server (one file-info call).

        Delete File takes no name, and an upload replaces whatever the slot
        holds: acting on a listing a colleague has made stale would delete or
        overwrite their file. A different name raises FileChanged (ESTALE), an
        empty slot NotFound (ENOENT); the listing shows the change at the next
        records refresh (within the records TTL). A server without
        the file-info call cannot be asked this cheaply: the check is skipped
        there (docs/SEMANTICS.md).
        """
        try:
            info = self.client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        except EmptySlot:
            log.warning("%s: refused, the file is no longer on the server", describe(slot, name))
            raise NotFound("the file was deleted on the server meanwhile") from None
        if info is None or not info.name or info.name == name:
            return
        log.warning("%s: refused, the slot now holds %r (changed on the server)", describe(slot, name), info.name)
        raise FileChanged(f"the slot now holds {info.name!r}, put there by someone else; list it again")

    def delete(self, slot: Slot, name: str) -> None:
        """Delete File of ``name``, checked first to still be what the slot holds; the slot is empty afterwards."""
        self.verify(slot, name)
        try:
            self.client.delete_file(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
        except RedcapError as exc:
            log.error("delete of %s failed: %s", describe(slot, name), exc)
            raise
        log.info("deleted %s", describe(slot, name))
        self.slots.deleted(slot, name)

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

    def import_allowed(self) -> bool:
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
