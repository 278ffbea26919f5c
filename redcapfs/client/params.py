"""The form fields each REDCap call sends, in one place.

``HttpClient`` posts these; the sandbox's in-process client hands the very same
fields to the sandbox's API without HTTP, so both clients ask the same
questions and a test through one says something about the other.
"""

from __future__ import annotations

import datetime as _dt
import json
import mimetypes
from collections.abc import Sequence
from typing import Any

from .responses import CallContext


def form_value(value: Any) -> str:
    """A parameter as REDCap reads it: booleans as ``true``/``false``, datetimes to the minute."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def api_form(token: str, content: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """The POST fields: token and content first, then json formats and the call's parameters."""
    fields = [("token", token), ("content", content), ("format", "json"), ("returnFormat", "json")]
    fields += [(k, form_value(v)) for k, v in params.items() if v is not None]
    return fields


def slot_params(ctx: CallContext) -> dict[str, Any]:
    """A file call's slot: action, record, field; event and repeat_instance only when given."""
    params: dict[str, Any] = {"action": ctx.action, "record": ctx.record, "field": ctx.field}
    if ctx.event:
        params["event"] = ctx.event
    if ctx.instance is not None:
        params["repeat_instance"] = ctx.instance
    return params


def export_records_params(
    records: Sequence[str] | None, fields: Sequence[str] | None, events: Sequence[str] | None
) -> dict[str, Any]:
    """Flat export; the filters as indexed PHP arrays (``records[0]=…``)."""
    params: dict[str, Any] = {"type": "flat"}
    for name, values in (("records", records), ("fields", fields), ("events", events)):
        for i, value in enumerate(values or ()):
            params[f"{name}[{i}]"] = value
    return params


def import_records_params(
    rows: Sequence[dict[str, Any]], overwrite: bool, return_content: str, force_auto_number: bool
) -> dict[str, Any]:
    return {
        "type": "flat",
        "data": json.dumps(list(rows)),
        "overwriteBehavior": "overwrite" if overwrite else "normal",
        "forceAutoNumber": force_auto_number,
        "returnContent": return_content,
    }


def upload_mime(filename: str) -> str:
    """The Content-Type of the ``file`` part: a guess from the name."""
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
