"""Flat record export (and record auto-numbering): REDCap's export row layout in one place.

Export layout (redcap-api.md §5): one ordinary row per record per event, one
row per repeating-instrument instance with only that form's fields filled, and
rows with ``redcap_repeat_instrument=""`` for repeating events. Import (§5b)
maps flat rows back onto the same storage keys: that half lives in ``rows``,
which the store needs too (``rows`` imports neither the store nor this module).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .schema import Schema
from .store import Store

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


def auto_number(
    store: Store, schema: Schema, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
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
