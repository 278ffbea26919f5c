"""Imported flat rows onto storage keys: the row helpers the store and the record API share.

A flat row (``record_id``, ``redcap_event_name``, ``redcap_repeat_instrument``,
``redcap_repeat_instance``, values…) maps onto one storage key
``(record, event, rform, inst)`` (see ``schema``). The store uses this to load a
project and the record import uses it for ``content=record``; it lives apart
from both so that neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .responses import ApiError
from .schema import SPECIAL_COLUMNS, Schema

RowKey = tuple[str, str, str, int]  # record, event, rform, inst


@dataclass
class RowWrite:
    """Imported values for one row; ``defaults`` apply only where the row has no value yet."""

    key: RowKey
    values: dict[str, str]
    defaults: dict[str, str] = field(default_factory=dict)


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def row_key(schema: Schema, row: dict[str, Any]) -> RowKey:
    """Storage key of one imported flat row; 400 for an invalid event or repeat setup."""
    record = str(row.get(schema.record_id, "")).strip()
    if not record:
        raise _invalid(f"The record ID field ('{schema.record_id}') is missing or blank in the data.")
    event = ""
    if schema.longitudinal:
        event = str(row.get("redcap_event_name") or "") or default_event(schema)
        if not schema.valid_event(event):
            raise _invalid(
                f"The value of redcap_event_name ('{event}') is not a valid unique event name "
                f"for record '{record}'."
            )
    rform = str(row.get("redcap_repeat_instrument") or "")
    raw_inst = str(row.get("redcap_repeat_instance") or "").strip()
    if rform:
        if not schema.form_repeats(event, rform):
            raise _invalid(
                f"The instrument '{rform}' is not a repeating instrument"
                + (f" in event '{event}'" if event else "")
                + f" (record '{record}')."
            )
        return (record, event, rform, int(raw_inst) if raw_inst.isdigit() and int(raw_inst) > 0 else 1)
    if event in schema.repeating_events:
        return (record, event, "", int(raw_inst) if raw_inst.isdigit() and int(raw_inst) > 0 else 1)
    return (record, event, "", 0)


def default_event(schema: Schema) -> str:
    """Where a row without ``redcap_event_name`` goes: the first event, when the project has one arm.

    REDCap puts such a row in the first event (PyCap issue #142: a row without it was checked
    against the first event's forms; PyCap's doctest imports one). With several arms the sandbox
    refuses it: which arm's first event REDCap would pick is not shown by any public source.
    """
    arms = {schema.event_arm[e] for e in schema.events}
    return schema.events[0] if len(arms) == 1 and schema.events else ""


def rows_to_writes(schema: Schema, rows: Sequence[dict[str, Any]]) -> list[RowWrite]:
    """Validate imported rows and turn them into ``(key, values)`` writes.

    File-field values are ignored: files only enter through ``content=file``.
    """
    known = schema.column_form()
    unknown: list[str] = []
    writes: list[RowWrite] = []
    for row in rows:
        if not isinstance(row, dict):
            raise _invalid("The data being imported is not formatted correctly")
        key = row_key(schema, row)
        values: dict[str, str] = {}
        for col, value in row.items():
            if col == schema.record_id or col in SPECIAL_COLUMNS:
                continue
            if col not in known:
                if col not in unknown:
                    unknown.append(col)
                continue
            if schema.is_file_field(col):
                continue
            values[col] = "" if value is None else str(value)
        writes.append(RowWrite(key, values, _default_complete(schema, values)))
    if unknown:
        raise _invalid(
            "The following fields were not found in the project as real data fields: " + ", ".join(unknown)
        )
    return writes


def _default_complete(schema: Schema, values: dict[str, str]) -> dict[str, str]:
    """REDCap sets a form's ``<form>_complete`` to 0 when data first enters the form."""
    column_form = schema.column_form()
    defaults: dict[str, str] = {}
    for col, value in values.items():
        form = column_form.get(col)
        if form and value != "" and col != f"{form}_complete" and col != schema.record_id:
            defaults[f"{form}_complete"] = "0"
    return defaults
