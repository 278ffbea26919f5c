"""``MemoryClient``: a REDCap project held in Python lists, for unit tests of the path model.

It answers like the API doc says (same rows, same typed errors, same check
order for file calls) without HTTP, and counts its calls so tests can assert
"no download happened". It does not try to be a second sandbox: anything that
crosses HTTP is tested against the real sandbox server.

Call counting: ``calls[(content, action)]``, where action is ``export``,
``import`` or ``delete`` (``("file", "info")`` for :meth:`file_info`, so tests
can tell a metadata probe from a download).
"""

from __future__ import annotations

import collections
import copy
import html
import mimetypes
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from redcapfs import errors as E

from .base import FileInfo
from .responses import CallContext

SlotKey = tuple[str, str, str, int]  # (record, event or "", field, instance)

NO_IMPORT = "You do not have API Import/Update privileges"
NO_ACCESS = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)


class MemoryClient:
    """An in-memory ``RedcapClient``. Thread-safe (one lock); data is copied in and out.

    ``files`` maps ``(record, event, field, instance)`` to ``(name, bytes)``;
    ``event`` is ``None`` or ``""`` in a classic project. ``rights`` is
    ``full``, ``export`` or ``none`` (what the token may do).
    """

    def __init__(
        self,
        *,
        metadata: Sequence[dict[str, Any]],
        project: dict[str, Any] | None = None,
        arms: Sequence[dict[str, Any]] = (),
        events: Sequence[dict[str, Any]] = (),
        mapping: Sequence[dict[str, Any]] = (),
        repeating: Sequence[dict[str, Any]] = (),
        instruments: Sequence[dict[str, Any]] | None = None,
        records: Sequence[dict[str, Any]] = (),
        files: dict[tuple[str, str | None, str, int], tuple[str, bytes]] | None = None,
        rights: str = "full",
        locked: Iterable[str] = (),
        max_upload_mb: float = 32,
        fileinfo: bool = True,
        legacy_document_values: bool = False,
        redcap_version: str = "14.5.2",
        username: str = "memory_user",
    ) -> None:
        if not metadata:
            raise ValueError("metadata must hold at least the record-ID field")
        self._metadata = copy.deepcopy(list(metadata))
        self._arms, self._events = copy.deepcopy(list(arms)), copy.deepcopy(list(events))
        self._mapping, self._repeating = copy.deepcopy(list(mapping)), copy.deepcopy(list(repeating))
        self._instruments = copy.deepcopy(list(instruments)) if instruments is not None else self._derive_instruments()
        self._rows = copy.deepcopy(list(records))
        self._files: dict[SlotKey, tuple[str, bytes]] = {
            (str(r), ev or "", f, int(i)): (n, bytes(b)) for (r, ev, f, i), (n, b) in (files or {}).items()
        }
        self.longitudinal = bool(project.get("is_longitudinal")) if project else bool(self._events)
        self._project = self._project_info(project)
        self.rights = rights
        self.locked = set(locked)
        self.max_upload_mb = max_upload_mb
        self.fileinfo = fileinfo
        self.legacy_document_values = legacy_document_values
        self.redcap_version = redcap_version
        self.username = username
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.log_rows: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    # ------------------------------------------------------------- schema

    @property
    def id_field(self) -> str:
        return self._metadata[0]["field_name"]

    def _derive_instruments(self) -> list[dict[str, Any]]:
        forms = dict.fromkeys(m["form_name"] for m in self._metadata)
        return [{"instrument_name": f, "instrument_label": f.replace("_", " ").title()} for f in forms]

    def _project_info(self, project: dict[str, Any] | None) -> dict[str, Any]:
        info = {"project_id": 1, "project_title": "Memory project", "record_autonumbering_enabled": 0,
                "in_production": 0, **(project or {})}
        info["is_longitudinal"] = int(self.longitudinal)
        info.setdefault("has_repeating_instruments_or_events", int(bool(self._repeating)))
        return info

    def _field(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self._metadata if m["field_name"] == name), None)

    def _is_file_field(self, name: str) -> bool:
        meta = self._field(name)
        return bool(meta) and meta["field_type"] == "file"  # type: ignore[index]

    def _is_signature(self, name: str) -> bool:
        meta = self._field(name) or {}
        return meta.get("text_validation_type_or_show_slider_number") == "signature"

    def _repeats(self, event: str, form: str) -> bool:
        """Does ``form`` repeat in ``event`` (or the whole event repeat)?"""
        for row in self._repeating:
            if (row.get("event_name") or "") == event and row.get("form_name") in (form, ""):
                return True
        return False

    def _form_repeats(self, event: str, form: str) -> bool:
        return any((r.get("event_name") or "") == event and r.get("form_name") == form for r in self._repeating)

    # ------------------------------------------------------------ structure

    def _count(self, content: str, action: str = "export") -> None:
        self.calls[(content, action)] += 1

    def _read_guard(self, ctx: CallContext) -> None:
        if self.rights == "none":
            raise E.NoRights(NO_ACCESS, **ctx.kwargs(403))

    def _write_guard(self, ctx: CallContext) -> None:
        if self.rights != "full":
            raise E.NoRights(NO_IMPORT, **ctx.kwargs(403))

    def project_info(self) -> dict[str, Any]:
        self._count("project")
        return dict(self._project)

    def version(self) -> str:
        self._count("version")
        return self.redcap_version

    def metadata(self) -> list[dict[str, Any]]:
        self._count("metadata")
        return copy.deepcopy(self._metadata)

    def _longitudinal_only(self, content: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Classic projects: ``[]``, as ``HttpClient`` turns REDCap's 400 into."""
        self._count(content)
        return copy.deepcopy(rows) if self.longitudinal else []

    def arms(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("arm", self._arms)

    def events(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("event", self._events)

    def form_event_mapping(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("formEventMapping", self._mapping)

    def repeating_forms_events(self) -> list[dict[str, Any]]:
        self._count("repeatingFormsEvents")
        return copy.deepcopy(self._repeating)

    def instruments(self) -> list[dict[str, Any]]:
        self._count("instrument")
        return copy.deepcopy(self._instruments)

    # -------------------------------------------------------------- records

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows as stored, file fields showing the stored name (or ``[document]``), filtered."""
        self._count("record")
        self._read_guard(CallContext("record", "export"))
        if records is not None and not records:
            return []
        with self._lock:
            rows = [self._export_row(r) for r in self._rows if self._row_wanted(r, records, events)]
        return [self._only_fields(r, fields) for r in rows] if fields else rows

    def _row_wanted(self, row: dict[str, Any], records: Sequence[str] | None,
                    events: Sequence[str] | None) -> bool:
        if records is not None and str(row[self.id_field]) not in records:
            return False
        return not events or row.get("redcap_event_name") in events

    def _export_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        record, event = str(row[self.id_field]), row.get("redcap_event_name") or ""
        instance = int(row.get("redcap_repeat_instance") or 1)
        for meta in self._metadata:
            if meta["field_type"] == "file" and self._row_holds(row, event, meta["form_name"]):
                stored = self._files.get((record, event, meta["field_name"], instance))
                out[meta["field_name"]] = (
                    "" if stored is None else "[document]" if self.legacy_document_values else stored[0]
                )
        return out

    def _row_holds(self, row: dict[str, Any], event: str, form: str) -> bool:
        """Does this row carry ``form``'s fields (base row vs repeating-instrument row)?"""
        rform = row.get("redcap_repeat_instrument") or ""
        if rform:
            return rform == form
        return not self._form_repeats(event, form)

    def _only_fields(self, row: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
        keep = set(fields) | {self.id_field}
        return {k: v for k, v in row.items() if k.startswith("redcap_") or re.sub(r"___.*$", "", k) in keep}

    def import_records(
        self,
        rows: Sequence[dict[str, Any]],
        overwrite: bool = False,
        return_content: str = "count",
    ) -> Any:
        """Merge flat rows into the project (blank values keep old ones unless ``overwrite``)."""
        self._count("record", "import")
        ctx = CallContext("record", "import")
        self._write_guard(ctx)
        with self._lock:
            for row in rows:
                if str(row.get(self.id_field, "")) in self.locked:
                    raise E.Locked(f'The record "{row[self.id_field]}" is locked and cannot be modified.',
                                   **ctx.kwargs(400))
            touched = list(dict.fromkeys(self._merge_row(dict(r), overwrite) for r in rows))
        if return_content == "ids":
            return touched
        if return_content == "nothing":
            return None
        return {"count": len(touched)}

    def _merge_row(self, row: dict[str, Any], overwrite: bool) -> str:
        record = str(row[self.id_field])
        existing = self._find_row(record, row.get("redcap_event_name") or "",
                                  row.get("redcap_repeat_instrument") or "", int(row.get("redcap_repeat_instance") or 1))
        if existing is None:
            self._rows.append(row)
            self._log("record_add", f"Create record (API) {record}", record)
        else:
            existing.update({k: v for k, v in row.items() if overwrite or v not in ("", None)})
            self._log("record_edit", f"Update record (API) {record}", record)
        return record

    def _find_row(self, record: str, event: str, rform: str, instance: int) -> dict[str, Any] | None:
        for row in self._rows:
            if (str(row[self.id_field]) == record and (row.get("redcap_event_name") or "") == event
                    and (row.get("redcap_repeat_instrument") or "") == rform
                    and int(row.get("redcap_repeat_instance") or 1) == instance):
                return row
        return None

    def generate_next_record_name(self) -> str:
        self._count("generateNextRecordName")
        with self._lock:
            numbers = [int(r[self.id_field]) for r in self._rows if str(r[self.id_field]).isdigit()]
        return str(max(numbers, default=0) + 1)

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]:
        """The writes made through this client, newest last; ``record``/``user``/``logtype`` filter."""
        self._count("log")
        kinds = {"record": ("record_add", "record_edit", "record_delete")}
        rows = []
        for row in self.log_rows:
            logtype = filters.get("logtype")
            if logtype and row["_kind"] not in kinds.get(logtype, (logtype,)):
                continue
            if filters.get("record") and row["record"] != filters["record"]:
                continue
            if filters.get("user") and row["username"] != filters["user"]:
                continue
            rows.append({k: v for k, v in row.items() if not k.startswith("_")})
        return rows

    def _log(self, kind: str, action: str, record: str, details: str = "") -> None:
        self.log_rows.append({"timestamp": time.strftime("%Y-%m-%d %H:%M"), "username": self.username,
                              "action": action, "details": details, "record": record, "_kind": kind})

    # ----------------------------------------------------------------- files

    def _slot(self, ctx: CallContext) -> SlotKey:
        """Checks 2-3 of the doc: valid event (longitudinal), instance forced to 1 where nothing repeats."""
        event = ctx.event or ""
        if self.longitudinal and event not in {e["unique_event_name"] for e in self._events}:
            raise E.InvalidEvent("invalid event", **ctx.kwargs(400))
        if not self.longitudinal:
            event = ""
        instance = ctx.instance if isinstance(ctx.instance, int) and ctx.instance > 0 else 1
        meta = self._field(ctx.field or "")
        if meta is None or not self._repeats(event, meta["form_name"]):
            instance = 1
        return (ctx.record or "", event, ctx.field or "", instance)

    def _record_in_event(self, record: str, event: str) -> bool:
        return any(str(r[self.id_field]) == record and (not self.longitudinal or r.get("redcap_event_name") == event)
                   for r in self._rows)

    def _record_exists(self, record: str) -> bool:
        return any(str(r[self.id_field]) == record for r in self._rows)

    def _check_file_field(self, ctx: CallContext) -> None:
        if not self._is_file_field(ctx.field or ""):
            raise E.NotAFileField(f"The field '{ctx.field}' does not exist or is not a 'file' field",
                                  **ctx.kwargs(400))

    def _stored(self, ctx: CallContext) -> tuple[str, bytes]:
        """The export checks in the doc's order; returns the stored (name, bytes)."""
        self._read_guard(ctx)
        key = self._slot(ctx)
        if not self._record_in_event(key[0], key[1]):
            raise E.NoSuchRecord(f'The record "{key[0]}" does not exist', **ctx.kwargs(400))
        self._check_file_field(ctx)
        stored = self._files.get(key)
        if stored is None:
            raise E.EmptySlot("There is no file to download for this record", **ctx.kwargs(400))
        return stored

    def export_file(
        self,
        record: str,
        field: str,
        out: BinaryIO,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo:
        self._count("file", "export")
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        with self._lock:
            name, data = self._stored(ctx)
            self._log("export", "Download file (API)", record, field)
        out.write(data)
        return FileInfo(name, len(data), mimetypes.guess_type(name)[0] or "application/octet-stream")

    def file_info(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo | None:
        self._count("file", "info")
        if not self.fileinfo:
            return None
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        with self._lock:
            name, data = self._stored(ctx)
        return FileInfo(name, len(data), None)

    def import_file(
        self,
        record: str,
        field: str,
        path: str,
        filename: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        self._count("file", "import")
        ctx = CallContext("file", "import", record, field, event, repeat_instance)
        self._write_guard(ctx)
        with self._lock:
            key = self._slot(ctx)
            self._check_import(ctx, key, path, filename)
            with open(path, "rb") as fh:
                data = fh.read()
            self._files[key] = (_clean_upload_name(filename), data)
            self._ensure_row(key)
            self._log("record_edit", f"Update record (API) {record}", record, f"{field} = '{filename}'")

    def _check_import(self, ctx: CallContext, key: SlotKey, path: str, filename: str) -> None:
        if not self._record_exists(key[0]):
            raise E.NoSuchRecord(f"The record '{key[0]}' does not exist. It must exist to upload a file",
                                 **ctx.kwargs(400))
        self._check_file_field(ctx)
        if self._is_signature(key[2]):
            raise E.SignatureField(
                f"The field '{key[2]}' is a signature field, which cannot be imported using the API but can "
                "only be created using the web interface. However, it can be downloaded or deleted using the API.",
                **ctx.kwargs(400))
        if key[0] in self.locked:
            raise E.Locked(f'The uploaded file could not be saved because record "{key[0]}" is locked.',
                           **ctx.kwargs(400))
        if not filename or not os.path.isfile(path):
            raise E.InvalidUpload("No valid file was uploaded", **ctx.kwargs(400))
        if os.path.getsize(path) > self.max_upload_mb * 1024 * 1024:
            raise E.TooLarge(f"The uploaded file exceeded the maximum file size limit of {self.max_upload_mb:g} MB "
                             "for File Upload fields.", **ctx.kwargs(400))

    def _ensure_row(self, key: SlotKey) -> None:
        """Uploading into an instance that does not exist yet creates it (as REDCap does)."""
        record, event, field, instance = key
        form = (self._field(field) or {}).get("form_name", "")
        rform = form if self._form_repeats(event, form) else ""
        repeats = self._repeats(event, form)
        if self._find_row(record, event, rform, instance if repeats else 1) is not None:
            return
        row: dict[str, Any] = {self.id_field: record}
        if self.longitudinal:
            row["redcap_event_name"] = event
        if repeats:
            row.update({"redcap_repeat_instrument": rform, "redcap_repeat_instance": instance})
        self._rows.append(row)

    def delete_file(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        self._count("file", "delete")
        ctx = CallContext("file", "delete", record, field, event, repeat_instance)
        self._write_guard(ctx)
        with self._lock:
            key = self._slot(ctx)
            if not self._record_exists(key[0]):
                raise E.NoSuchRecord(f'The record "{key[0]}" does not exist', **ctx.kwargs(400))
            self._check_file_field(ctx)
            if key[0] in self.locked:
                raise E.Locked(f'The file could not be deleted because record "{key[0]}" is locked.',
                               **ctx.kwargs(400))
            if self._files.pop(key, None) is None:
                raise E.EmptySlot("There is no file to delete for this record", **ctx.kwargs(400))
            self._log("record_edit", "Delete uploaded document (API)", record, field)

    def file_bytes(self, record: str, field: str, event: str | None = None, instance: int = 1) -> bytes | None:
        """Test helper: the stored bytes of a slot (no call counted)."""
        stored = self._files.get((record, event or "", field, instance))
        return stored[1] if stored else None

    def close(self) -> None:
        """Nothing to release."""


def _clean_upload_name(name: str) -> str:
    """REDCap's cleaning of uploaded names: backslash escapes, HTML entities, single quotes."""
    return html.unescape(re.sub(r"\\(.?)", r"\1", name, flags=re.DOTALL)).replace("'", "")
