"""``content=record&action=delete``: whole records, or one arm, event, instrument or instance of them.

REDCap's parameters (PyCap ``delete_records``): ``records[]`` and optionally
``arm`` (only that arm's data), ``event``, ``instrument`` and ``repeat_instance``
(only that slice). All named records must exist (and be visible to the
caller's DAG), else nothing is deleted. A record left without any data is
gone. The answer is the number of records named.
"""

from __future__ import annotations

import json

from ..config import TokenGrant
from ..responses import ApiError, ApiResponse, text_response
from ..rows import RowKey
from . import messages as M
from .context import Context
from .request import ApiRequest


def delete_records(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    ctx.write_guard(grant, M.CLEANUP_RECORDS)
    caller = ctx.caller(grant)
    if not caller.right("record_delete"):
        raise ApiError(403, M.NO_DELETE)
    names = req.array("records")
    dags = ctx.team.load()["record_dags"]
    missing = [r for r in names if not ctx.store.record_exists(r) or not caller.sees_record(dags.get(r, ""))]
    if missing or not names:
        raise ApiError(400, M.DELETE_MISSING + ", ".join(missing))
    for name in names:
        if ctx.store.is_locked(name):
            raise ApiError(400, M.LOCKED_RECORD.format(record=name))
    arm, event = req.get("arm") or "", req.get("event") or ""
    instrument, instance = req.get("instrument") or "", req.get("repeat_instance") or ""
    if event and not ctx.schema.valid_event(event):
        raise ApiError(400, M.INVALID_EVENT)
    if instrument and instrument not in ctx.schema.forms:
        raise ApiError(400, M.BAD_FORM.format(form=instrument))
    partial = bool(arm or event or instrument or instance)
    for name in names:
        if partial:
            _delete_part(ctx, name, arm, event, instrument, instance)
            detail = ", ".join(f"{k} = '{v}'" for k, v in (("arm", arm), ("event", event),
                               ("instrument", instrument), ("instance", instance)) if v)
            ctx.log(grant, f"Delete record data (API) {name}", detail, name, "record_delete")
        else:
            ctx.store.delete_record(name, grant.username)
        if not ctx.store.record_exists(name):
            ctx.team.set_record_dag(name, "")
    return text_response(str(len(names)))


def _delete_part(ctx: Context, record: str, arm: str, event: str, instrument: str, instance: str) -> None:
    """Remove the slice's values and files; drop rows left empty and the record if nothing is left."""
    schema = ctx.schema
    columns = {c for c, f in schema.all_columns() if not instrument or f == instrument} - {schema.record_id}
    with ctx.store.transaction() as db:
        for ev, rform, inst, data in ctx.store.rows_of(record):
            if event and ev != event:
                continue
            if arm and schema.event_arm.get(ev) != int(arm):
                continue
            if instrument and rform and rform != instrument:
                continue
            if instance and (inst or 1) != int(instance):
                continue
            key: RowKey = (record, ev, rform, inst)
            for field_name in schema.file_fields():
                if field_name in columns:
                    ctx.store.delete_file(key, field_name)
            left = {k: v for k, v in data.items() if k not in columns}
            if left or (instrument and not rform and any(
                    ctx.store.get_file(key, f) for f in schema.file_fields())):
                db.execute("UPDATE rows SET data=? WHERE record=? AND event=? AND rform=? AND inst=?",
                           (json.dumps(left),) + key)
            else:
                db.execute("DELETE FROM rows WHERE record=? AND event=? AND rform=? AND inst=?", key)
        if not db.execute("SELECT 1 FROM rows WHERE record=? LIMIT 1", (record,)).fetchone():
            db.execute("DELETE FROM records WHERE record=?", (record,))
