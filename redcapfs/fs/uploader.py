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
from redcapfs.errors import BadRequest, BadToken, NoRights, RedcapError
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

    def delete(self, slot: Slot, name: str) -> None:
        """Delete File; the slot is empty afterwards."""
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

    def import_known(self) -> bool | None:
        """The probe's answer if it was asked already (no call), else None."""
        return self._can_import

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
