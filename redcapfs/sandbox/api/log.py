"""``content=log`` (PyCap: ``logging``): the audit trail, newest first, with REDCap's filters."""

from __future__ import annotations

import time

from ..config import TokenGrant
from ..responses import ApiResponse, rows_response
from .context import Context
from .request import ApiRequest

#: ``logtype`` values and the stored kinds each one selects.
LOG_TYPES = {
    "export": {"export"},
    "record": {"record_add", "record_edit", "record_delete"},
    "record_add": {"record_add"},
    "record_edit": {"record_edit"},
    "record_delete": {"record_delete"},
    "manage": {"manage"},
    "user": {"user"},
    "lock_record": {"lock_record"},
    "page_view": {"page_view"},
}


def export_logging(ctx: Context, req: ApiRequest, grant: TokenGrant) -> ApiResponse:
    """Rows ``timestamp`` (server local time, minutes), ``username``, ``action``, ``details``, ``record``."""
    ctx.right_guard(grant, "logging")
    logtype = req.get("logtype") or ""
    want_kinds = LOG_TYPES.get(logtype)
    user, record = req.get("user") or "", req.get("record") or ""
    begin, end = req.get("beginTime") or "", req.get("endTime") or ""
    rows = []
    for ts, username, action, details, rec, kind in ctx.store.log_rows():
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
        if logtype and (want_kinds is None or kind not in want_kinds):
            continue
        if (user and username != user) or (record and rec != record):
            continue
        if (begin and stamp < begin[:16]) or (end and stamp > end[:16]):
            continue
        rows.append({"timestamp": stamp, "username": username, "action": action,
                     "details": details, "record": rec})
    return rows_response(rows, req.format, root="records")
