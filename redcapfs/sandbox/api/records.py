"""``content=record`` (export, import, delete) and ``generateNextRecordName`` (PyCap: ``records``).

The row layout rules live in ``sandbox.records`` (export) and ``sandbox.rows``
(import); this module parses the parameters and shapes REDCap's answers.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from ..config import TokenGrant
from ..records import auto_number
from ..responses import XML_DATA_TYPE, ApiError, ApiResponse, json_response, rows_response, text_response
from ..rows import rows_to_writes
from . import messages as M
from .common import import_rows
from .context import Context
from .record_delete import delete_records
from .record_export import eav_rows, flat_export, header_labels, labelled
from .request import ApiRequest
from .rights import Caller

XML_HEAD = '<?xml version="1.0" encoding="UTF-8" ?>'


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
    caller = ctx.caller(grant)
    if not caller.any_export(ctx.schema.forms):
        raise ApiError(403, M.NO_ACCESS)
    header, rows = flat_export(ctx, req, caller)
    if (req.get("rawOrLabel") or "raw").lower() == "label":
        rows = labelled(ctx, req, header, rows)
    if (req.get("type") or "flat").lower() == "eav":
        return rows_response(eav_rows(ctx.schema, rows), req.format)
    if req.format == "csv" and (req.get("rawOrLabelHeaders") or "raw").lower() == "label":
        labels = header_labels(ctx.schema, header)
        rows = [{labels[i]: row.get(h, "") for i, h in enumerate(header)} for row in rows]
        header = labels
    return rows_response(rows, req.format, header=header)


def import_records(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    caller = ctx.caller(grant)
    rows = import_rows(req)
    mapping: dict[str, str] = {}
    if (req.get("forceAutoNumber") or "").lower() == "true":
        rows, mapping = auto_number(ctx.store, ctx.schema, rows)
    writes = rows_to_writes(ctx.schema, rows)
    dags = ctx.team.load()["record_dags"]
    new_records = []
    for write in writes:
        record = write.key[0]
        if ctx.store.is_locked(record):
            raise ApiError(400, M.LOCKED_RECORD.format(record=record))
        if ctx.store.record_exists(record):
            if not caller.sees_record(dags.get(record, "")):
                raise ApiError(400, M.OTHER_DAG.format(record=record))
        elif record not in new_records:
            if not caller.right("record_create"):
                raise ApiError(403, M.NO_CREATE)
            new_records.append(record)
        _check_edit_rights(ctx, caller, write.values)
    overwrite = (req.get("overwriteBehavior") or "normal").lower() == "overwrite"
    touched = ctx.store.apply_row_writes(writes, overwrite=overwrite, username=grant.username)
    for record in new_records:  # a record created by a DAG member joins the member's DAG
        if caller.dag:
            ctx.team.set_record_dag(record, caller.dag)
    return _import_answer(req, touched, mapping)


def _check_edit_rights(ctx: Context, caller: Caller, values: dict[str, str]) -> None:
    """Values for an instrument the user may not edit ("no access" or read only) are refused."""
    column_form = ctx.schema.column_form()
    for column in values:
        form = column_form.get(column, "")
        if form and caller.edit_level(form) in (0, 2):
            raise ApiError(403, M.NO_FORM_EDIT.format(form=form, field=column))


def _import_answer(req: ApiRequest, touched: list[str], mapping: dict[str, str]) -> ApiResponse:
    """``returnContent``: count (default), ids, auto_ids (``new,old``) or nothing, in ``returnFormat``.

    The answer's format is ``returnFormat`` when given, else ``format`` (json unless csv or xml).
    """
    kind = (req.get("returnContent") or "count").lower()
    fmt = (req.get("returnFormat") or req.get("format") or "json").lower()
    if kind == "ids":
        ids = touched
    elif kind == "auto_ids":
        back = {new: old for old, new in mapping.items()}
        ids = [f"{r},{back.get(r, r)}" for r in touched]
    elif kind == "nothing":
        return ApiResponse(200, "text/html; charset=utf-8", b"")
    else:
        if fmt == "csv":
            return text_response(str(len(touched)))
        if fmt == "xml":
            return _xml(f"<count>{len(touched)}</count>")
        return json_response({"count": len(touched)})
    if fmt == "csv":
        return text_response("id\n" + "".join(f"{i}\n" for i in ids))
    if fmt == "xml":
        return _xml("<ids>" + "".join(f"<id>{escape(i)}</id>" for i in ids) + "</ids>")
    return json_response(ids)


def _xml(body: str) -> ApiResponse:
    return ApiResponse(200, XML_DATA_TYPE, (XML_HEAD + body).encode())


def generate_next_record_name(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Highest number + 1; for a DAG member REDCap prefixes the DAG's id: ``<group_id>-<n>``."""
    caller = ctx.caller(grant)
    if not caller.dag:
        return text_response(ctx.store.next_record_name())
    group = next(d for d in ctx.team.load()["dags"] if d["unique_group_name"] == caller.dag)
    prefix = f"{group['data_access_group_id']}-"
    numbers = [int(r[len(prefix):]) for r in ctx.store.record_names()
               if r.startswith(prefix) and r[len(prefix):].isdigit()]
    return text_response(f"{prefix}{max(numbers, default=0) + 1}")
