"""What this token may do, as far as the API lets the mount learn it, and what modes show for it.

REDCap tells little up front, so the mount learns from a few sources
(docs/SEMANTICS.md, "What the token may do"), each a restriction once known:

* the user export (``content=user``), asked once at mount: it needs API Export
  and the User Rights privilege (403 otherwise: then nothing is learned, and
  nothing is said). It lists every user and does not say which is the
  token's, so the token's row is the user name the change feed learned from
  our own uploads (kept in the manifest), or the one row; else a right counts
  as missing only when every user who may call the export lacks it. From the
  row: ``api_import`` (0444/0555), ``record_create`` (the top directory 0555
  and ``mkdir /ID`` EACCES), ``file_repository`` (``.repository`` absent),
  ``forms_export`` per instrument (reading its files EACCES) and ``forms``
  per instrument (read only or no access: its files 0444);
* import rights: the empty-import probe of :class:`~redcapfs.fs.uploader.Uploader`,
  asked at the first write attempt (never by ``stat``: listing the tree costs no
  call). Once it said no, files show 0444 and directories 0555; before, the
  usual modes;
* export rights per instrument: a file field asked for in the records export
  but missing from every row of a non-empty answer is one the token may not
  export. Its files stay listed as last known (so ``rsync --delete`` from the
  mount does not delete a backup's copies after a rights change) and reading
  them is EACCES;
* locks: ``Lock/Unlock Record`` rows in the log (each poll of the change
  feed; the log of the day before the first mount too) lock or unlock a whole
  record or one instrument of it; and a write REDCap refused as locked marks
  the record (or, when REDCap says "the field's instrument is locked", that
  instrument in that event and instance) read-only until a write there
  succeeds or the log unlocks it. Writes are still tried (a lock may be
  lifted), so this only ever shows, never refuses.

All state here is a leaf: one lock of its own, held for set updates only, and
never across a call.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redcapfs.errors import AccessDenied, NotFound, RedcapError
from redcapfs.fs import logrows
from redcapfs.shape import ProjectShape, Slot

if TYPE_CHECKING:
    from redcapfs.recordindex import RecordIndex

log = logging.getLogger(__name__)

#: A user-export right that is no restriction until the export says so (0 or "0" is a no).
RESTRICTING = ("api_import", "record_create", "file_repository")
FormLock = tuple[str, str, "str | None", "int | None"]  # record, instrument, event (None: any), instance


def _flag(value: Any) -> bool | None:
    text = str(value).strip()
    return None if not text.isdigit() else text != "0"


def _editable(level: int) -> bool:
    """A ``forms`` level that lets the user change the instrument's data.

    Legacy codes: 0 no access, 2 read only, 1 view and edit, 3 edit survey
    responses; REDCap 15.6's codes set 128 and add 1 (read), 2 (edit), 8, 16.
    """
    return bool(level & 2) if level >= 128 else level in (1, 3)


def _levels(row: dict[str, Any], key: str) -> dict[str, int]:
    """``forms`` or ``forms_export`` as {instrument: level}: a JSON object or CSV's ``form:1,form2:0``."""
    given = row.get(key)
    if isinstance(given, str) and ":" in given:
        given = dict(part.split(":", 1) for part in given.split(",") if ":" in part)
    if isinstance(given, dict):
        return {str(f).strip(): int(v) for f, v in given.items() if str(v).strip().isdigit()}
    return {}


def _export_levels(row: dict[str, Any], forms: list[str]) -> dict[str, int]:
    """``forms_export`` per instrument, or the old single ``data_export`` right."""
    levels = _levels(row, "forms_export")
    if not levels and _flag(row.get("data_export", "")) is False:
        return {f: 0 for f in forms}
    return levels


class TokenRights:
    """Rights learned so far; modes and read checks derived from them."""

    def __init__(self, shape: ProjectShape, import_probe: Callable[[], bool | None],
                 user_name: Callable[[], str | None] = lambda: None,
                 labels: Callable[[], tuple[list[dict], list[dict]]] | None = None) -> None:
        self.shape = shape
        self._probe = import_probe
        self._user_name = user_name  # the feed's learned user name (the manifest's "user"), or None
        self._labels_of = labels  # (instruments, events) rows, asked only when a lock row names a label
        self._labels: dict[str, dict[str, str]] | None = None
        self._lock = threading.Lock()
        self._no_export: set[str] = set()  # file fields the records export left out
        self._locked: set[str] = set()  # whole records
        self._form_locks: set[FormLock] = set()
        self._users: list[dict[str, Any]] | None = None  # the user export's rows (None: not allowed or not asked)
        self._own: dict[str, bool | None] = {}  # what the rows say of this token's user, right -> yes/no/unknown
        self._forms_closed: set[str] = set()  # instruments the user export says this user may not export
        self._forms_frozen: set[str] = set()  # instruments whose data this user may only read (``forms``)

    # ------------------------------------------------------------ the user export
    def learn_from_users(self, export: Callable[[], list[dict[str, Any]]]) -> None:
        """At mount: one ``content=user`` export; a refusal (no User Rights privilege) leaves all unknown."""
        try:
            rows = export()
        except RedcapError as exc:
            log.debug("the user export is not allowed (%s): rights are learned as the mount goes", exc)
            return
        with self._lock:
            self._users = [r for r in rows if isinstance(r, dict)]
        self.refresh_user()

    def refresh_user(self) -> None:
        """Read the token's rights from the stored rows again (the feed may have learned our user name)."""
        with self._lock:
            rows = self._users
        if not rows:
            return
        name = self._user_name()
        mine = [r for r in rows if name is not None and r.get("username") == name]
        if not mine:  # not known which is ours: only what every user who may call the export lacks
            mine = rows if len(rows) == 1 else [r for r in rows if _flag(r.get("api_export", 1)) is not False
                                                 and _flag(r.get("user_rights", 1)) is not False]
        own = {key: self._agree([_flag(r.get(key, "")) for r in mine]) for key in RESTRICTING}
        levels = [_export_levels(r, sorted(self._forms())) for r in mine]
        closed = {f for f in self._forms() if levels and all(lv.get(f, 1) == 0 for lv in levels)}
        edits = [_levels(r, "forms") for r in mine]
        frozen = {f for f in self._forms() if edits and all(f in e and not _editable(e[f]) for e in edits)}
        with self._lock:
            changed = own != self._own or closed != self._forms_closed or frozen != self._forms_frozen
            self._own, self._forms_closed, self._forms_frozen = own, closed, frozen
        if changed:
            said = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in own.items() if v is not None)
            log.info("user rights from the user export (%s): %s%s%s", name or f"{len(mine)} candidate user(s)",
                     said or "nothing certain", f"; no export of {sorted(closed)}" if closed else "",
                     f"; read-only {sorted(frozen)}" if frozen else "")

    @staticmethod
    def _agree(values: list[bool | None]) -> bool | None:
        known = {v for v in values if v is not None}
        return known.pop() if len(known) == 1 and None not in values else None

    def _forms(self) -> set[str]:
        return {f.form for f in self.shape.file_fields.values()}

    def user_right(self, key: str) -> bool | None:
        """``api_import``, ``record_create``, ``file_repository``: what the user export said, None if unknown."""
        with self._lock:
            return self._own.get(key)

    def check_create(self, kind: str, path: str) -> None:
        """``mkdir /ID`` without Create Records: EACCES before any call."""
        if kind == "record" and self.user_right("record_create") is False:
            raise AccessDenied("no Create Records right (the user export says so)", path)

    def check_repository(self, path: str) -> None:
        """``.repository`` is absent when the user export says there is no File Repository right."""
        if self.user_right("file_repository") is False:
            raise NotFound("the File Repository is not available to this user", path)

    # ------------------------------------------------------------ import rights
    def can_import(self) -> bool:
        """False once the probe or the user export said so (True while unknown: the usual modes)."""
        return self._probe() is not False and self.user_right("api_import") is not False

    def file_mode(self, default: int, slot: Slot | None = None) -> int:
        """``default`` (from the mount options) with the write bits removed where no write can succeed."""
        if default & 0o222 and (not self.can_import() or (slot is not None and self.is_locked(slot))):
            return default & ~0o222
        return default

    def dir_mode(self, default: int, record: str | None = None) -> int:
        """The top directory also loses its write bits without Create Records (``mkdir /ID`` is refused)."""
        if not default & 0o222:
            return default
        if not self.can_import() or (record is not None and self.record_locked(record)):
            return default & ~0o222
        if record is None and self.user_right("record_create") is False:
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

    def _closed(self, field: str) -> bool:
        """Under ``_lock``: the field's instrument may not be exported (either source)."""
        spec = self.shape.file_fields.get(field)
        return field in self._no_export or (spec is not None and spec.form in self._forms_closed)

    def check_readable(self, slot: Slot, path: str) -> None:
        """EACCES for a file whose instrument this token may not export."""
        with self._lock:
            hidden = self._closed(slot.field)
        if hidden:
            form = self.shape.file_fields[slot.field].form
            raise AccessDenied(f"no export rights for instrument {form!r} (field {slot.field})", path)

    def check_listable(self, field: str | None, path: str) -> None:
        """EACCES for listing an empty slot of an unexportable field: its files are unknown, not absent.

        So ``rsync --delete`` from a fresh mount after export rights were
        withdrawn stops with an I/O error there instead of deleting a backup's
        copies (rsync skips deletions after an error).
        """
        if field is None:
            return
        with self._lock:
            hidden = self._closed(field)
        if hidden:
            raise AccessDenied(f"no export rights for the instrument of field {field}: its files are unknown", path)

    def readable(self, slot: Slot) -> bool:
        with self._lock:
            return not self._closed(slot.field)

    # ------------------------------------------------------------ locks
    def note_locked(self, slot: Slot, why: str = "") -> None:
        """REDCap refused a write as locked: the instrument when its answer says so, else the whole record."""
        spec = self.shape.file_fields.get(slot.field)
        if "instrument" in why and spec is not None:
            with self._lock:
                self._form_locks.add((slot.record, spec.form, slot.event, slot.instance or 1))
            log.warning("record %r: instrument %s locked in REDCap (a write was refused); shown read-only",
                        slot.record, spec.form)
            return
        with self._lock:
            self._locked.add(slot.record)
        log.warning("record %r: locked in REDCap (a write was refused); shown read-only until a write there "
                    "succeeds", slot.record)

    def note_written(self, slot: Slot) -> None:
        with self._lock:
            self._locked.discard(slot.record)
            self._form_locks = {k for k in self._form_locks if not self._covers(k, slot)}

    def _covers(self, key: FormLock, slot: Slot) -> bool:
        record, form, event, instance = key
        spec = self.shape.file_fields.get(slot.field)
        return (record == slot.record and spec is not None and spec.form == form
                and event in (None, slot.event) and instance in (None, slot.instance or 1))

    def is_locked(self, slot: Slot) -> bool:
        """Locked, or an instrument the user may only read: no write there can succeed."""
        spec = self.shape.file_fields.get(slot.field)
        with self._lock:
            if spec is not None and spec.form in self._forms_frozen:
                return True
            return slot.record in self._locked or any(self._covers(k, slot) for k in self._form_locks)

    def record_locked(self, record: str) -> bool:
        with self._lock:
            return record in self._locked

    def learn_from_log(self, rows: list[dict]) -> None:
        """The change feed's new rows: apply each ``Lock/Unlock Record`` row, oldest first."""
        changes = logrows.locks(rows)
        for change in changes:
            self._apply_lock(change)
        self.refresh_user()  # a poll may have taught the feed our user name

    def _apply_lock(self, change: logrows.LockChange) -> None:
        what = "locked" if change.locked else "unlocked"
        if change.entire:
            with self._lock:
                (self._locked.add if change.locked else self._locked.discard)(change.record)
            log.info("record %r: %s in REDCap (log)", change.record, what)
            return
        form = self._resolve(change.form or "", "forms")
        if form is None:
            log.warning("record %r: instrument %r %s (log), but no instrument has that name", change.record,
                        change.form, what)
            return
        event = self._resolve(change.event, "events") if change.event else None
        key = (change.record, form, event, change.instance)
        with self._lock:
            if change.locked:
                self._form_locks.add(key)
            else:
                self._form_locks = {k for k in self._form_locks if not (k[:2] == key[:2] and (
                    event is None or k[2] in (None, event)) and (change.instance is None or k[3] in (
                        None, change.instance)))}
        log.info("record %r: instrument %s%s %s in REDCap (log)", change.record, form,
                 f" in {event}" if event else "", what)

    def _resolve(self, text: str, kind: str) -> str | None:
        """An instrument or event as the log names it (a label, or a unique name) -> its unique name.

        REDCap writes an event's label with its arm where the project has
        several (``Baseline (Arm 1: Drug A)``); a label that stays ambiguous
        resolves to None (then the lock is shown in every event).
        """
        names = self._forms() if kind == "forms" else set(self.shape.events())
        if text in names:
            return text
        if self._labels is None and self._labels_of is not None:
            try:
                forms, events = self._labels_of()
                self._labels = {"forms": {str(r.get("instrument_label")): str(r.get("instrument_name"))
                                          for r in forms}}
                for row in events:
                    key = f"{row.get('event_name')}\0{row.get('arm_num', '')}"
                    self._labels.setdefault("events", {})[key] = str(row.get("unique_event_name"))
            except RedcapError as exc:
                log.warning("reading instrument and event labels failed: %s", exc)
        labels = (self._labels or {}).get(kind, {})
        if kind == "forms":
            return labels.get(text)
        arm = re.search(r"\s*\(Arm (\d+):.*\)\s*$", text)
        bare = text[:arm.start()] if arm else text
        hits = [u for k, u in labels.items() if k.split("\0")[0] == bare
                and (arm is None or k.split("\0")[1] == arm.group(1))]
        return hits[0] if len(hits) == 1 else None
