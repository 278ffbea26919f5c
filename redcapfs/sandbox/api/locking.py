"""Record locking: lock and unlock whole records or one instrument of a record, and the log rows it leaves.

REDCap's API has no locking method: people lock records in the web page
(the record's "Lock entire record" action, or the lock box at the bottom of an
instrument). Tests need to do what they do, so the sandbox answers the calls
of the public *Locking API* external module (``POST /api/?NOAUTH&type=module&
prefix=locking_api&page=lock|unlock|status`` with ``token``, ``record``,
``event``, ``instrument``, ``instance``, ``lock_record_level=true``), which
real servers with that module installed answer too. Nothing in redcapfs calls
it; docs/sandbox.md, "Locking".

What a lock does here, as in REDCap: a locked record refuses every write; a
locked instrument refuses file uploads and deletes in its fields for that
record, event and instance. Each lock and unlock writes one log row (kind
``lock_record``) in REDCap's wording: action ``Lock/Unlock Record R``,
details ``Lock record`` / ``Unlock record`` then ``Record: R``, ``Form:
LABEL``, ``Event: LABEL`` lines, or ``Lock entire record`` / ``Unlock entire
record`` then ``Record: R``.
"""

from __future__ import annotations

from typing import Any

from ..config import TokenGrant
from ..responses import ApiError, ApiResponse, rows_response
from ..schema import normalise_instance
from . import messages as M
from .common import count_response
from .context import Context
from .request import ApiRequest

KV_KEY = "form_locks"  # [[record, event, form, instance], ...]
ACTION = "Lock/Unlock Record {record}"


def _locks(ctx: Context) -> list[list[Any]]:
    return [list(x) for x in ctx.store.get_kv(KV_KEY) or []]


def form_locked(ctx: Context, record: str, event: str, form: str, instance: int) -> bool:
    """Whether the instrument ``form`` of ``record`` is locked in ``event`` at ``instance``."""
    return [record, event, form, instance] in _locks(ctx)


def _label(rows: list[dict[str, Any]], key: str, value: str, label_key: str) -> str:
    return next((str(r.get(label_key) or value) for r in rows if r.get(key) == value), value)


def _event_label(ctx: Context, event: str) -> str:
    """The event's label, with its arm when the project has several (``Baseline (Arm 1: Drug A)``)."""
    structure = ctx.schema.structure
    label = _label(structure.events, "unique_event_name", event, "event_name")
    if len(structure.arms) < 2:
        return label
    arm = ctx.schema.event_arm.get(event, 1)
    name = next((str(r.get("name") or "") for r in structure.arms if int(r.get("arm_num") or 0) == arm), "")
    return f"{label} (Arm {arm}: {name})"


def _target(ctx: Context, req: ApiRequest) -> tuple[str, str, str, int]:
    record = req.get("record") or ""
    if not record or not ctx.store.record_exists(record):
        raise ApiError(400, M.RECORD_MISSING.format(record=record))
    event = req.get("event") or ""
    if ctx.schema.longitudinal and (req.get("instrument") or "") and not ctx.schema.valid_event(event):
        raise ApiError(400, M.INVALID_EVENT)
    form = req.get("instrument") or ""
    if form and form not in ctx.schema.forms:
        raise ApiError(400, f"The instrument '{form}' does not exist")
    return record, event, form, normalise_instance(req.get("instance")) or 1


def _details(ctx: Context, lock: bool, record: str, event: str, form: str, instance: int) -> str:
    verb = "Lock" if lock else "Unlock"
    if not form:
        return f"{verb} entire record\nRecord: {record}"
    structure = ctx.schema.structure
    lines = [f"{verb} record", f"Record: {record}",
             f"Form: {_label(structure.instruments, 'instrument_name', form, 'instrument_label')}"]
    if event:
        lines.append(f"Event: {_event_label(ctx, event)}")
    if instance > 1:
        lines.append(f"Instance: {instance}")
    return "\n".join(lines)


def _set(ctx: Context, req: ApiRequest, grant: TokenGrant, lock: bool) -> ApiResponse:
    record, event, form, instance = _target(ctx, req)
    entire = (req.get("lock_record_level") or "").lower() == "true" or not form
    ctx.right_guard(grant, "lock_records_all_forms" if entire else "lock_records")
    if entire:
        ctx.store.set_locked(record, lock)
        form = ""
    else:
        with ctx.store.lock:
            locks = [x for x in _locks(ctx) if x != [record, event, form, instance]]
            ctx.store.set_kv(KV_KEY, locks + ([[record, event, form, instance]] if lock else []))
    ctx.log(grant, ACTION.format(record=record), _details(ctx, lock, record, event, form, instance), record,
            "lock_record")
    return count_response(1)


def _status(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    record, event, form, instance = _target(ctx, req)
    locked = ctx.store.is_locked(record) or bool(form and form_locked(ctx, record, event, form, instance))
    row = {"record": record, "event": event, "instrument": form, "instance": instance, "locked": int(locked)}
    return rows_response([row], req.format)


def locking_module(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """``page=lock``, ``unlock`` or ``status`` of the Locking API module."""
    page = req.get("page") or ""
    if page == "status":
        return _status(ctx, req, grant)
    if page in ("lock", "unlock"):
        return _set(ctx, req, grant, page == "lock")
    raise ApiError(400, f"The page '{page}' of the locking_api module does not exist")


#: ``prefix`` -> handler of the external modules the sandbox answers (``type=module``).
MODULES = {"locking_api": locking_module}
