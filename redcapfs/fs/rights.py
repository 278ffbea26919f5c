"""What this token may do, as far as the API lets the mount learn it, and what modes show for it.

REDCap tells little up front: ``content=user`` needs the User Rights privilege
(and does not say which user the token belongs to), and no call exports lock
status. So the mount learns from what it does anyway (docs/SEMANTICS.md,
"What the token may do"):

* import rights: the empty-import probe of :class:`~redcapfs.fs.uploader.Uploader`,
  asked at the first write attempt (never by ``stat``: listing the tree costs no
  call). Once it said no, files show 0444 and directories 0555; before, the
  usual modes;
* export rights per instrument: a file field asked for in the records export
  but missing from every row of a non-empty answer is one the token may not
  export. Its files stay listed as last known (so ``rsync --delete`` from the
  mount does not delete a backup's copies after a rights change) and reading
  them is EACCES;
* locks: a write REDCap refused as locked marks that record read-only (files
  0444, directories 0555) until a later write there succeeds or the mount
  ends. The API does not say whether one instrument or the whole record is
  locked, so the whole record is shown read-only; writes are still tried
  (a lock may be lifted), so this only ever shows, never refuses.

All state here is a leaf: one lock of its own, held for set updates only, and
never across a call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from redcapfs.errors import AccessDenied
from redcapfs.shape import ProjectShape, Slot

if TYPE_CHECKING:
    from redcapfs.recordindex import RecordIndex

log = logging.getLogger(__name__)

class TokenRights:
    """Rights learned so far; modes and read checks derived from them."""

    def __init__(self, shape: ProjectShape, import_probe: Callable[[], bool | None]) -> None:
        self.shape = shape
        self._probe = import_probe
        self._lock = threading.Lock()
        self._no_export: set[str] = set()
        self._locked: set[str] = set()

    # ------------------------------------------------------------ import rights
    def can_import(self) -> bool:
        """False only once the probe said so (True while unknown: the usual modes)."""
        return self._probe() is not False

    def file_mode(self, default: int, slot: Slot | None = None) -> int:
        """``default`` (from the mount options) with the write bits removed where no write can succeed."""
        if default & 0o222 and (not self.can_import() or (slot is not None and self.is_locked(slot))):
            return default & ~0o222
        return default

    def dir_mode(self, default: int, record: str | None = None) -> int:
        if default & 0o222 and (not self.can_import() or (record is not None and self.record_locked(record))):
            return default & ~0o222
        return default

    # ------------------------------------------------------------ export rights
    def learn_from_export(self, rows: list[dict], fresh: RecordIndex, old: RecordIndex | None) -> None:
        """Note file fields the export left out, and keep their last known files in ``fresh``.

        Called by the records cache under its own lock, before ``fresh`` is
        published; calls nothing that locks.
        """
        if not rows:
            return  # an empty project tells nothing: keep what was learned
        columns: set[str] = set()
        for row in rows:
            columns.update(row)
        hidden = {name for name in self.shape.file_fields if name not in columns}
        with self._lock:
            newly, regained = hidden - self._no_export, self._no_export - hidden
            self._no_export = hidden
        for name in sorted(newly):
            log.warning("field %s: the records export leaves it out (no export rights for its instrument); "
                        "its files stay listed as last known and reading them is refused", name)
        for name in sorted(regained):
            log.info("field %s: exported again", name)
        if hidden and old is not None:
            for slot, stored in old.slots_with_files():
                if slot.field in hidden and fresh.has_record(slot.record):
                    fresh.with_file(slot, stored)

    def check_readable(self, slot: Slot, path: str) -> None:
        """EACCES for a file whose instrument this token may not export."""
        with self._lock:
            hidden = slot.field in self._no_export
        if hidden:
            form = self.shape.file_fields[slot.field].form
            raise AccessDenied(f"no export rights for instrument {form!r} (field {slot.field})", path)

    def readable(self, slot: Slot) -> bool:
        with self._lock:
            return slot.field not in self._no_export

    # ------------------------------------------------------------ locks
    def note_locked(self, slot: Slot) -> None:
        with self._lock:
            self._locked.add(slot.record)
        log.warning("record %r: locked in REDCap (a write was refused); shown read-only until a write there "
                    "succeeds", slot.record)

    def note_written(self, slot: Slot) -> None:
        with self._lock:
            self._locked.discard(slot.record)

    def is_locked(self, slot: Slot) -> bool:
        return self.record_locked(slot.record)

    def record_locked(self, record: str) -> bool:
        with self._lock:
            return record in self._locked
