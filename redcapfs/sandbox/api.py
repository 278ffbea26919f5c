"""The REDCap API's behaviour, independent of HTTP: a parsed request in, an answer out.

Every check, message text and status code follows ``redcap-api.md``; the order
of the file checks is the one the doc gives (§1-§3), because clients tell
errors apart by which message comes first.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SandboxConfig, TokenGrant
from .records import auto_number, export_rows
from .rows import rows_to_writes
from .responses import (
    ApiError,
    ApiResponse,
    json_response,
    rows_response,
    text_response,
)
from .schema import Schema, normalise_instance
from .store import RowKey, Store

log = logging.getLogger(__name__)

# Message texts (redcap-api.md).
BAD_TOKEN = "You do not have permissions to use the API"
NO_IMPORT = "You do not have API Import/Update privileges"
NO_ACCESS = (
    'The API request cannot complete because currently you have "No Access" data export rights. '
    "Higher level data export rights are required for this operation."
)
INVALID_EVENT = "invalid event"
NOT_FILE_FIELD = "The field '{field}' does not exist or is not a 'file' field"
NO_FILE_DOWNLOAD = "There is no file to download for this record"
NO_FILE_DELETE = "There is no file to delete for this record"
RECORD_MISSING = 'The record "{record}" does not exist'
RECORD_MISSING_LEGACY = "The record '{record}' does not exist"
RECORD_MISSING_UPLOAD = "The record '{record}' does not exist. It must exist to upload a file"
NO_VALID_FILE = "No valid file was uploaded"
CLEANUP = "The file cannot be uploaded because the project is in Analysis/Cleanup status."
CLEANUP_RECORDS = "The data cannot be imported because the project is in Analysis/Cleanup status."
LOCKED_UPLOAD = 'The uploaded file could not be saved because record "{record}" is locked.'
LOCKED_DELETE = 'The file could not be deleted because record "{record}" is locked.'
TOO_LARGE = "The uploaded file exceeded the maximum file size limit of {mb} MB for File Upload fields."
SIGNATURE = (
    "The field '{field}' is a signature field, which cannot be imported using the API but can only be "
    "created using the web interface. However, it can be downloaded or deleted using the API."
)
BAD_CONTENT = 'The value of the parameter "content" is not valid'
BAD_ACTION = 'The value of the parameter "action" is not valid'
CLASSIC = {
    "arm": "You cannot export arms for classic projects",
    "event": "You cannot export events for classic projects",
    "formEventMapping": "You cannot export form/event mappings for classic projects",
}

PROJECT_DEFAULTS: dict[str, Any] = {
    "project_id": 1,
    "project_title": "Sandbox project",
    "creation_time": "2024-01-01 00:00:00",
    "production_time": "",
    "in_production": 0,
    "project_language": "English",
    "purpose": 0,
    "purpose_other": "",
    "project_notes": "",
    "custom_record_label": "",
    "secondary_unique_field": "",
    "is_longitudinal": 0,
    "has_repeating_instruments_or_events": 0,
    "surveys_enabled": 0,
    "scheduling_enabled": 0,
    "record_autonumbering_enabled": 0,
    "randomization_enabled": 0,
    "ddp_enabled": 0,
    "project_irb_number": "",
    "project_grant_number": "",
    "project_pi_firstname": "",
    "project_pi_lastname": "",
    "display_today_now_button": 1,
    "missing_data_codes": "",
    "external_modules": "",
    "bypass_branching_erase_field_prompt": 0,
}


@dataclass
class Upload:
    """The multipart ``file`` part, already spooled to disk (or discarded when too large)."""

    filename: str
    content_type: str
    path: Path | None
    size: int
    too_large: bool = False


@dataclass
class ApiRequest:
    """Form parameters (every value as sent) plus the spooled upload, if any."""

    params: dict[str, list[str]] = field(default_factory=dict)
    upload: Upload | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return name in self.params

    def array(self, name: str) -> list[str]:
        """PHP-style arrays: ``name[0]=a&name[1]=b``, ``name[]=a``, or ``name=a,b``."""
        indexed: list[tuple[int, str]] = []
        out: list[str] = []
        pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
        for key, values in self.params.items():
            match = pattern.match(key)
            if match:
                pos = int(match.group(1)) if match.group(1) else 1 << 30
                indexed.extend((pos, v) for v in values)
            elif key == name:
                for value in values:
                    out.extend(v.strip() for v in value.split(",") if v.strip())
        indexed.sort(key=lambda p: p[0])
        return [v for _, v in indexed] + out

    @property
    def return_format(self) -> str:
        """``returnFormat``, else ``format``, else xml (REDCap's documented fallback)."""
        fmt = (self.get("returnFormat") or self.get("format") or "xml").lower()
        return fmt if fmt in ("json", "csv", "xml") else "xml"

    @property
    def format(self) -> str:
        fmt = (self.get("format") or "xml").lower()
        return fmt if fmt in ("json", "csv", "xml") else "xml"


@dataclass
class Slot:
    """A resolved file slot: the row key and the field."""

    key: RowKey
    field: str
    instance: int


def stripslashes(text: str) -> str:
    """PHP's ``stripslashes``: ``\\x`` becomes ``x``, ``\\\\`` becomes ``\\``."""
    return re.sub(r"\\(.?)", r"\1", text, flags=re.DOTALL)


def clean_upload_name(name: str) -> str:
    """REDCap's cleaning of an uploaded file name: backslash escapes, HTML entities, single quotes."""
    return html.unescape(stripslashes(name)).replace("'", "")


class Api:
    """Dispatches one authenticated call to its handler. Thread-safe (the store locks)."""

    def __init__(self, store: Store, config: SandboxConfig) -> None:
        self.store = store
        self.config = config
        self.handlers: dict[str, Callable[[ApiRequest, TokenGrant], ApiResponse]] = {
            "project": self.project,
            "version": self.version,
            "metadata": self.metadata,
            "arm": self.arms,
            "event": self.events,
            "formEventMapping": self.form_event_mapping,
            "repeatingFormsEvents": self.repeating,
            "instrument": self.instruments,
            "record": self.record,
            "generateNextRecordName": self.next_record_name,
            "file": self.file,
            "log": self.log_export,
        }

    @property
    def schema(self) -> Schema:
        assert self.store.schema is not None
        return self.store.schema

    def handle(self, req: ApiRequest) -> ApiResponse:
        """Authenticate, then run the content's handler. Raises :class:`ApiError`."""
        grant = self.config.grant_for(req.get("token"))
        if grant is None:
            raise ApiError(403, BAD_TOKEN)
        handler = self.handlers.get(req.get("content") or "")
        if handler is None:
            raise ApiError(400, BAD_CONTENT)
        return handler(req, grant)

    # -------------------------------------------------------------- structure

    def project(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        info = {**PROJECT_DEFAULTS, **self.schema.structure.info}
        info["is_longitudinal"] = int(self.schema.longitudinal)
        info["has_repeating_instruments_or_events"] = int(self.schema.has_repeating)
        if req.format in ("csv", "xml"):
            return rows_response([info], req.format, root="project")
        return json_response(info)

    def version(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        return text_response(self.config.redcap_version)

    def metadata(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        rows = self.schema.structure.metadata
        fields, forms = req.array("fields"), req.array("forms")
        if fields or forms:
            rows = [r for r in rows if r["field_name"] in fields or r["form_name"] in forms]
        return rows_response(rows, self._data_format(req))

    def _classic_guard(self, content: str) -> None:
        if not self.schema.longitudinal:
            raise ApiError(400, CLASSIC[content])

    def arms(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._classic_guard("arm")
        wanted = req.array("arms")
        rows = [a for a in self.schema.structure.arms if not wanted or str(a["arm_num"]) in wanted]
        return rows_response(rows, self._data_format(req))

    def events(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._classic_guard("event")
        wanted = req.array("arms")
        rows = [e for e in self.schema.structure.events if not wanted or str(e["arm_num"]) in wanted]
        return rows_response(rows, self._data_format(req))

    def form_event_mapping(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._classic_guard("formEventMapping")
        wanted = req.array("arms")
        rows = [m for m in self.schema.structure.form_event_mapping if not wanted or str(m["arm_num"]) in wanted]
        return rows_response(rows, self._data_format(req))

    def repeating(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        return rows_response(self.schema.structure.repeating, self._data_format(req))

    def instruments(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        return rows_response(self.schema.structure.instruments, self._data_format(req))

    @staticmethod
    def _data_format(req: ApiRequest) -> str:
        """Structure exports: json unless csv/xml was asked for explicitly."""
        fmt = (req.get("format") or "xml").lower()
        return fmt if fmt in ("json", "csv", "xml") else "xml"

    # ---------------------------------------------------------------- records

    def record(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        action = req.get("action") or ("import" if req.has("data") else "export")
        if action == "export":
            return self.export_records(req, grant)
        if action == "import":
            return self.import_records(req, grant)
        if action == "delete":
            return self.delete_records(req, grant)
        raise ApiError(400, BAD_ACTION)

    def export_records(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        if not grant.can_export_data:
            raise ApiError(403, NO_ACCESS)
        header, rows = export_rows(
            self.store,
            records=req.array("records"),
            fields=req.array("fields"),
            forms=req.array("forms"),
            events=req.array("events"),
            legacy_document_values=self.config.legacy_document_values,
        )
        return rows_response(rows, self._data_format(req), header=header)

    def _write_guard(self, grant: TokenGrant, cleanup_message: str) -> None:
        if not grant.can_import:
            raise ApiError(403, NO_IMPORT)
        if self.config.analysis_cleanup:
            raise ApiError(403, cleanup_message)

    def import_records(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._write_guard(grant, CLEANUP_RECORDS)
        rows = self._parse_import_data(req)
        mapping: dict[str, str] = {}
        if (req.get("forceAutoNumber") or "").lower() == "true":
            rows, mapping = auto_number(self.store, self.schema, rows)
        writes = rows_to_writes(self.schema, rows)
        for write in writes:
            if self.store.is_locked(write.key[0]):
                raise ApiError(400, f'The record "{write.key[0]}" is locked and cannot be modified.')
        overwrite = (req.get("overwriteBehavior") or "normal").lower() == "overwrite"
        touched = self.store.apply_row_writes(writes, overwrite=overwrite, username=grant.username)
        return self._import_answer(req, touched, mapping)

    def _parse_import_data(self, req: ApiRequest) -> list[dict[str, Any]]:
        data = req.get("data")
        if data is None:
            raise ApiError(400, 'The parameter "data" is missing')
        fmt = (req.get("format") or "xml").lower()
        try:
            if fmt == "csv":
                return list(csv.DictReader(io.StringIO(data)))
            if fmt == "json":
                rows = json.loads(data)
                if isinstance(rows, dict):
                    rows = [rows]
                if isinstance(rows, list):
                    return rows
        except (ValueError, csv.Error):
            pass
        if fmt not in ("csv", "json"):
            raise ApiError(400, "The sandbox imports records in json or csv format only")
        raise ApiError(400, "The data being imported is not formatted correctly")

    def _import_answer(self, req: ApiRequest, touched: list[str], mapping: dict[str, str]) -> ApiResponse:
        kind = (req.get("returnContent") or "count").lower()
        fmt = (req.get("format") or "xml").lower()
        if kind == "ids":
            ids = touched
        elif kind == "auto_ids":
            back = {new: old for old, new in mapping.items()}
            ids = [f"{r},{back.get(r, r)}" for r in touched]
        elif kind == "nothing":
            return ApiResponse(200, "text/html; charset=utf-8", b"")
        else:
            return json_response({"count": len(touched)}) if fmt != "csv" else text_response(str(len(touched)))
        if fmt == "csv":
            return text_response("id\n" + "".join(f"{i}\n" for i in ids))
        return json_response(ids)

    def delete_records(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._write_guard(grant, CLEANUP_RECORDS)
        names = req.array("records")
        missing = [r for r in names if not self.store.record_exists(r)]
        if missing:
            raise ApiError(400, "One or more of the records provided cannot be deleted because they do not "
                           "exist in the project. The following records do not exist: " + ", ".join(missing))
        for name in names:
            self.store.delete_record(name, grant.username)
        return text_response(str(len(names)))

    def next_record_name(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        return text_response(self.store.next_record_name())

    # ------------------------------------------------------------------ files

    def file(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        action = req.get("action") or ""
        if action == "export":
            return self.export_file(req, grant)
        if action == "import":
            return self.import_file(req, grant)
        if action == "delete":
            return self.delete_file(req, grant)
        raise ApiError(400, BAD_ACTION)

    def _resolve_event(self, req: ApiRequest) -> str:
        """Check 2: in a longitudinal project the event must be given and valid."""
        if not self.schema.longitudinal:
            return ""
        event = req.get("event") or ""
        if not self.schema.valid_event(event):
            raise ApiError(400, INVALID_EVENT)
        return event

    def _resolve_slot(self, req: ApiRequest, event: str) -> Slot:
        """Check 3: normalise the instance, forcing 1 where nothing repeats."""
        field_name = req.get("field") or ""
        instance = normalise_instance(req.get("repeat_instance"))
        rform, inst = self.schema.slot_key(event, field_name, instance)
        record = req.get("record") or ""
        return Slot((record, event, rform, inst), field_name, inst or 1)

    def _check_file_field(self, field_name: str) -> None:
        """Check 5: the field must exist and be a file field."""
        if not self.schema.is_file_field(field_name):
            raise ApiError(400, NOT_FILE_FIELD.format(field=field_name))

    def _record_missing(self, record: str) -> ApiError:
        text = RECORD_MISSING_LEGACY if self.config.legacy_messages else RECORD_MISSING
        return ApiError(400, text.format(record=record))

    def export_file(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        if not grant.can_export_data:
            raise ApiError(403, NO_ACCESS)
        event = self._resolve_event(req)
        slot = self._resolve_slot(req, event)
        record = slot.key[0]
        if not self.store.record_in_event(record, event):
            raise self._record_missing(record)
        self._check_file_field(slot.field)
        if self.config.fileinfo and req.has(self.config.fileinfo_param):
            doc = self.store.get_file(slot.key, slot.field)
            if doc is None:
                raise ApiError(400, NO_FILE_DOWNLOAD)
            return json_response({"size": doc.size, "name": doc.name})
        opened = self.store.open_file(slot.key, slot.field)
        if opened is None:
            raise ApiError(400, NO_FILE_DOWNLOAD)
        doc, handle = opened
        self.store.add_log(grant.username, "Download file (API)", self._log_details(slot, doc.doc_id),
                           record, "export")
        content_type = f'{doc.mime}; name="{doc.name}"' + (";charset=UTF-8" if self.config.charset_suffix else "")
        return ApiResponse(200, content_type, stream=handle, length=doc.size)

    def import_file(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._write_guard(grant, CLEANUP)
        event = self._resolve_event(req)
        slot = self._resolve_slot(req, event)
        record = slot.key[0]
        if not self.store.record_exists(record):
            raise ApiError(400, RECORD_MISSING_UPLOAD.format(record=record))
        self._check_file_field(slot.field)
        if self.schema.is_signature(slot.field):
            raise ApiError(400, SIGNATURE.format(field=slot.field))
        if self.store.is_locked(record):
            raise ApiError(400, LOCKED_UPLOAD.format(record=record))
        upload = req.upload
        if upload is None or not upload.filename:
            raise ApiError(400, NO_VALID_FILE)
        if upload.too_large or upload.path is None:
            raise ApiError(400, TOO_LARGE.format(mb=self.config.max_upload_mb))
        name = clean_upload_name(upload.filename)
        mime = self._mime_for(upload, name)
        doc_id = self.store.put_file(slot.key, slot.field, upload.path, name, mime)
        upload.path = None  # moved into the store
        self.store.add_log(grant.username, f"Update record (API) {record}", self._log_details(slot, doc_id),
                           record, "record_edit")
        return ApiResponse(200, "text/html; charset=utf-8", b"")

    @staticmethod
    def _mime_for(upload: Upload, name: str) -> str:
        """The part's own type when it says something, else a guess from the name."""
        given = (upload.content_type or "").split(";")[0].strip()
        if given and given != "application/octet-stream":
            return given
        return mimetypes.guess_type(name)[0] or given or "application/octet-stream"

    def delete_file(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        self._write_guard(grant, CLEANUP)
        event = self._resolve_event(req)
        slot = self._resolve_slot(req, event)
        record = slot.key[0]
        if not self.store.record_exists(record):
            raise self._record_missing(record)
        self._check_file_field(slot.field)
        if self.store.is_locked(record):
            raise ApiError(400, LOCKED_DELETE.format(record=record))
        old = self.store.delete_file(slot.key, slot.field)
        if old is None:
            raise ApiError(400, NO_FILE_DELETE)
        self.store.add_log(grant.username, "Delete uploaded document (API)", self._log_details(slot, old.doc_id),
                           record, "record_edit")
        return ApiResponse(200, "text/html; charset=utf-8", b"")

    @staticmethod
    def _log_details(slot: Slot, doc_id: int) -> str:
        event = f", event = '{slot.key[1]}'" if slot.key[1] else ""
        return f"{slot.field} = '{doc_id}'{event}, instance = {slot.instance}"

    # -------------------------------------------------------------------- log

    def log_export(self, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
        kinds = {
            "export": {"export"},
            "record": {"record_add", "record_edit", "record_delete"},
            "record_add": {"record_add"},
            "record_edit": {"record_edit"},
            "record_delete": {"record_delete"},
        }
        logtype = req.get("logtype") or ""
        want_kinds = kinds.get(logtype)
        user, record = req.get("user") or "", req.get("record") or ""
        begin, end = req.get("beginTime") or "", req.get("endTime") or ""
        rows = []
        for ts, username, action, details, rec, kind in self.store.log_rows():
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
            if logtype and (want_kinds is None or kind not in want_kinds):
                continue
            if (user and username != user) or (record and rec != record):
                continue
            if (begin and stamp < begin[:16]) or (end and stamp > end[:16]):
                continue
            rows.append({"timestamp": stamp, "username": username, "action": action,
                         "details": details, "record": rec})
        return rows_response(rows, self._data_format(req), root="records")
