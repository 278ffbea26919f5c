"""``content=file``: export, import and delete of one file slot (PyCap: ``files``).

The checks run in the order redcap-api.md gives (§1-§3), because clients tell
errors apart by which message comes first.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from ...redcapnames import cleaned_name, php_basename
from ..config import TokenGrant
from ..responses import ApiError, ApiResponse, json_response
from ..rows import RowKey
from ..schema import normalise_instance
from . import messages as M
from .context import Context, by_action
from .locking import form_locked
from .request import ApiRequest, Upload

EMPTY_OK = "text/html; charset=utf-8"


@dataclass
class Slot:
    """A resolved file slot: the row key and the field."""

    key: RowKey
    field: str
    instance: int

    @property
    def record(self) -> str:
        return self.key[0]


def _resolve_event(ctx: Context, req: ApiRequest) -> str:
    """Check 2: in a longitudinal project the event must be given and valid."""
    if not ctx.schema.longitudinal:
        return ""
    event = req.get("event") or ""
    if not ctx.schema.valid_event(event):
        raise ApiError(400, M.INVALID_EVENT)
    return event


def _resolve_slot(ctx: Context, req: ApiRequest) -> Slot:
    """Checks 2-3: the event, then the instance (forced to 1 where nothing repeats)."""
    event = _resolve_event(ctx, req)
    field_name = req.get("field") or ""
    instance = normalise_instance(req.get("repeat_instance"))
    rform, inst = ctx.schema.slot_key(event, field_name, instance)
    record = req.get("record") or ""
    return Slot((record, event, rform, inst), field_name, inst or 1)


def _check_file_field(ctx: Context, field_name: str) -> None:
    """Check 5: the field must exist and be a file field."""
    if not ctx.schema.is_file_field(field_name):
        raise ApiError(400, M.NOT_FILE_FIELD.format(field=field_name))


def _dag_visible(ctx: Context, grant: TokenGrant, record: str) -> bool:
    """A DAG member reaches only their DAG's records: others answer as if they did not exist."""
    return ctx.caller(grant).sees_record(ctx.team.record_dag(record))


def _form_rights(ctx: Context, grant: TokenGrant, field_name: str, write: bool) -> None:
    """The field's instrument must be exportable (reads) or editable (writes) for this user."""
    caller, form = ctx.caller(grant), ctx.schema.form_of(field_name) or ""
    if write and caller.edit_level(form) in (0, 2):
        raise ApiError(403, M.NO_FORM_EDIT.format(form=form, field=field_name))
    if not write and caller.export_level(form) == 0:
        raise ApiError(403, M.NO_FORM_EXPORT.format(form=form, field=field_name))


def _form_locked(ctx: Context, slot: Slot) -> bool:
    """The field's instrument locked for this record, event and instance (api/locking.py)."""
    return form_locked(ctx, slot.record, slot.key[1], ctx.schema.form_of(slot.field) or "", slot.instance)


def _log_details(slot: Slot, doc_id: int) -> str:
    event = f", event = '{slot.key[1]}'" if slot.key[1] else ""
    return f"{slot.field} = '{doc_id}'{event}, instance = {slot.instance}"


def export_file(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """The bytes as a stream (or, with the fileinfo param, only name and size as JSON)."""
    ctx.export_guard(grant)
    slot = _resolve_slot(ctx, req)
    if not ctx.store.record_in_event(slot.record, slot.key[1]) or not _dag_visible(ctx, grant, slot.record):
        raise ctx.record_missing(slot.record)
    _check_file_field(ctx, slot.field)
    _form_rights(ctx, grant, slot.field, write=False)
    if ctx.config.fileinfo and req.has(ctx.config.fileinfo_param):
        doc = ctx.store.get_file(slot.key, slot.field)
        if doc is None:
            raise ApiError(400, M.NO_FILE_DOWNLOAD)
        return json_response({"size": doc.size, "name": doc.name})
    opened = ctx.store.open_file(slot.key, slot.field)
    if opened is None:
        raise ApiError(400, M.NO_FILE_DOWNLOAD)
    doc, handle = opened
    ctx.store.add_log(grant.username, "Download file (API)", _log_details(slot, doc.doc_id), slot.record, "export")
    content_type = f'{doc.mime}; name="{doc.name}"' + (";charset=UTF-8" if ctx.config.charset_suffix else "")
    return ApiResponse(200, content_type, stream=handle, length=doc.size)


def import_file(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Store the spooled upload in the slot under REDCap's cleaned name (``redcapnames``)."""
    ctx.write_guard(grant, M.CLEANUP)
    slot = _resolve_slot(ctx, req)
    if not ctx.store.record_exists(slot.record) or not _dag_visible(ctx, grant, slot.record):
        raise ApiError(400, M.RECORD_MISSING_UPLOAD.format(record=slot.record))
    _check_file_field(ctx, slot.field)
    _form_rights(ctx, grant, slot.field, write=True)
    if ctx.schema.is_signature(slot.field):
        raise ApiError(400, M.SIGNATURE.format(field=slot.field))
    if ctx.store.is_locked(slot.record):
        raise ApiError(400, M.LOCKED_UPLOAD.format(record=slot.record))
    if _form_locked(ctx, slot):
        raise ApiError(400, M.LOCKED_FORM_UPLOAD.format(record=slot.record))
    upload = req.upload
    if upload is None or not php_basename(upload.filename):  # PHP saw no file name: no file
        raise ApiError(400, M.NO_VALID_FILE)
    if upload.too_large or upload.path is None:
        raise ApiError(400, M.TOO_LARGE.format(mb=ctx.config.max_upload_mb))
    name = cleaned_name(upload.filename)
    doc_id = ctx.store.put_file(slot.key, slot.field, upload.path, name, _mime_for(upload, name))
    upload.path = None  # moved into the store
    ctx.store.add_log(grant.username, f"Update record (API) {slot.record}", _log_details(slot, doc_id),
                      slot.record, "record_edit")
    return ApiResponse(200, EMPTY_OK, b"")


def _mime_for(upload: Upload, name: str) -> str:
    """The part's own type when it says something, else a guess from the name."""
    given = (upload.content_type or "").split(";")[0].strip()
    if given and given != "application/octet-stream":
        return given
    return mimetypes.guess_type(name)[0] or given or "application/octet-stream"


def delete_file(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP)
    slot = _resolve_slot(ctx, req)
    if not ctx.store.record_exists(slot.record) or not _dag_visible(ctx, grant, slot.record):
        raise ctx.record_missing(slot.record)
    _check_file_field(ctx, slot.field)
    _form_rights(ctx, grant, slot.field, write=True)
    if ctx.store.is_locked(slot.record):
        raise ApiError(400, M.LOCKED_DELETE.format(record=slot.record))
    if _form_locked(ctx, slot):
        raise ApiError(400, M.LOCKED_FORM_DELETE.format(record=slot.record))
    old = ctx.store.delete_file(slot.key, slot.field)
    if old is None:
        raise ApiError(400, M.NO_FILE_DELETE)
    ctx.store.add_log(grant.username, "Delete uploaded document (API)", _log_details(slot, old.doc_id),
                      slot.record, "record_edit")
    return ApiResponse(200, EMPTY_OK, b"")


file = by_action({"export": export_file, "import": import_file, "delete": delete_file})
