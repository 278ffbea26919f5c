"""Flat record export and import: REDCap's row layout rules in one place.

Export layout (redcap-api.md §5): one ordinary row per record per event, one
row per repeating-instrument instance with only that form's fields filled, and
rows with ``redcap_repeat_instrument=""`` for repeating events. Import (§5b)
maps flat rows back onto the same storage keys (see ``schema``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .responses import ApiError
from .schema import SPECIAL_COLUMNS, Schema
from .store import RowKey, RowWrite, Store

# -------------------------------------------------------------------- export


def _row_sort_key(schema: Schema, rform: str, inst: int) -> tuple[int, int, int]:
    if not rform:
        return (0, 0, inst)
    return (1, schema.forms.index(rform) if rform in schema.forms else 999, inst)


def export_rows(
    store: Store,
    records: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    forms: Sequence[str] | None = None,
    events: Sequence[str] | None = None,
    legacy_document_values: bool = False,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and flat rows for ``content=record&type=flat``."""
    schema = store.schema
    assert schema is not None
    columns = schema.select_columns(list(fields or []), list(forms or []))
    filtered = bool(fields or forms)
    names = store.record_names()
    if records:
        wanted = set(records)
        names = [r for r in names if r in wanted]
    event_order = {ev: i for i, ev in enumerate(schema.events)} if schema.longitudinal else {"": 0}
    header = _header(schema, columns)
    out: list[dict[str, Any]] = []
    for record in names:
        files = store.files_of(record)
        rows = [r for r in store.rows_of(record) if r[0] in event_order]
        if schema.longitudinal and events:
            rows = [r for r in rows if r[0] in set(events)]
        rows.sort(key=lambda r: (event_order[r[0]],) + _row_sort_key(schema, r[1], r[2]))
        for event, rform, inst, data in rows:
            if rform and filtered and not any(f == rform and c != schema.record_id for c, f in columns):
                continue
            out.append(
                _flat_row(schema, record, event, rform, inst, data, files, columns, legacy_document_values)
            )
    return header, out


def _header(schema: Schema, columns: list[tuple[str, str]]) -> list[str]:
    head = [columns[0][0]] if columns else [schema.record_id]
    if schema.longitudinal:
        head.append("redcap_event_name")
    if schema.has_repeating:
        head += ["redcap_repeat_instrument", "redcap_repeat_instance"]
    return head + [c for c, _ in columns[1:]]


def _flat_row(
    schema: Schema,
    record: str,
    event: str,
    rform: str,
    inst: int,
    data: dict[str, str],
    files: dict[tuple[str, str, int, str], str],
    columns: list[tuple[str, str]],
    legacy_document_values: bool,
) -> dict[str, Any]:
    """One export row; columns of forms this row does not cover are ""."""
    row: dict[str, Any] = {schema.record_id: record}
    if schema.longitudinal:
        row["redcap_event_name"] = event
    if schema.has_repeating:
        row["redcap_repeat_instrument"] = rform
        row["redcap_repeat_instance"] = inst if inst else ""
    filled = set(schema.row_forms(event, rform, inst))
    for col, form in columns:
        if col == schema.record_id:
            continue
        row[col] = _cell(schema, col, form, filled, data, files, (event, rform, inst), legacy_document_values)
    return row


def _cell(
    schema: Schema,
    col: str,
    form: str,
    filled: set[str],
    data: dict[str, str],
    files: dict[tuple[str, str, int, str], str],
    where: tuple[str, str, int],
    legacy_document_values: bool,
) -> str:
    if form not in filled:
        return ""
    if schema.is_file_field(col):
        name = files.get(where + (col,))
        if name is None:
            return ""
        return "[document]" if legacy_document_values else name
    if "___" in col and col.split("___", 1)[0] in schema.fields:
        return data.get(col, "0")
    return data.get(col, "")


# -------------------------------------------------------------------- import


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def row_key(schema: Schema, row: dict[str, Any]) -> RowKey:
    """Storage key of one imported flat row; 400 for an invalid event or repeat setup."""
    record = str(row.get(schema.record_id, "")).strip()
    if not record:
        raise _invalid(f"The record ID field ('{schema.record_id}') is missing or blank in the data.")
    event = ""
    if schema.longitudinal:
        event = str(row.get("redcap_event_name") or "")
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


def auto_number(store: Store, schema: Schema, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``forceAutoNumber=true``: give each distinct record in ``rows`` the next free number."""
    mapping: dict[str, str] = {}
    next_num = int(store.next_record_name())
    out = []
    for row in rows:
        old = str(row.get(schema.record_id, ""))
        if old not in mapping:
            mapping[old] = str(next_num)
            next_num += 1
        out.append({**row, schema.record_id: mapping[old]})
    return out, mapping
