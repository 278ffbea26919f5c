"""``content=record`` (export, import, delete) and ``generateNextRecordName`` (PyCap: ``records``).

The row layout rules live in ``sandbox.records`` (export) and ``sandbox.rows``
(import); this module parses the parameters and shapes REDCap's answers.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ..config import TokenGrant
from ..records import auto_number, export_rows
from ..responses import ApiError, ApiResponse, json_response, rows_response, text_response
from ..rows import rows_to_writes
from . import messages as M
from .context import Context
from .request import ApiRequest


def record(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Dispatch by ``action``; without one, a ``data`` param means import (as REDCap reads it)."""
    action = req.get("action") or ("import" if req.has("data") else "export")
    if action == "export":
        return export_records(ctx, req, grant)
    if action == "import":
        return import_records(ctx, req, grant)
    if action == "delete":
        return delete_records(ctx, req, grant)
    raise ApiError(400, M.BAD_ACTION)


def export_records(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.export_guard(grant)
    header, rows = export_rows(
        ctx.store,
        records=req.array("records"),
        fields=req.array("fields"),
        forms=req.array("forms"),
        events=req.array("events"),
        legacy_document_values=ctx.config.legacy_document_values,
    )
    return rows_response(rows, req.format, header=header)


def import_records(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    rows = _parse_import_data(req)
    mapping: dict[str, str] = {}
    if (req.get("forceAutoNumber") or "").lower() == "true":
        rows, mapping = auto_number(ctx.store, ctx.schema, rows)
    writes = rows_to_writes(ctx.schema, rows)
    for write in writes:
        if ctx.store.is_locked(write.key[0]):
            raise ApiError(400, M.LOCKED_RECORD.format(record=write.key[0]))
    overwrite = (req.get("overwriteBehavior") or "normal").lower() == "overwrite"
    touched = ctx.store.apply_row_writes(writes, overwrite=overwrite, username=grant.username)
    return _import_answer(req, touched, mapping)


def _parse_import_data(req: ApiRequest) -> list[dict[str, Any]]:
    data = req.get("data")
    if data is None:
        raise ApiError(400, M.NO_DATA)
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
        raise ApiError(400, M.IMPORT_FORMATS)
    raise ApiError(400, M.BAD_DATA)


def _import_answer(req: ApiRequest, touched: list[str], mapping: dict[str, str]) -> ApiResponse:
    """``returnContent``: count (default), ids, auto_ids (``new,old``) or nothing."""
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


def delete_records(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """All named records must exist, else nothing is deleted; answers the count."""
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    names = req.array("records")
    missing = [r for r in names if not ctx.store.record_exists(r)]
    if missing:
        raise ApiError(400, M.DELETE_MISSING + ", ".join(missing))
    for name in names:
        ctx.store.delete_record(name, grant.username)
    return text_response(str(len(names)))


def generate_next_record_name(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    return text_response(ctx.store.next_record_name())
