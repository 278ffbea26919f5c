"""``content=record&action=export`` options beyond the flat layout: rights, DAGs, filterLogic, labels, EAV.

The flat rows come from ``sandbox.records.export_rows``; this module applies,
in REDCap's order: the caller's DAG (only its records), ``filterLogic`` (per
row), the caller's export rights per instrument (no access: the form's
columns are left out; de-identified: identifiers, free text, notes and dates
left out; remove identifiers: identifier fields left out), then the
presentation: ``exportDataAccessGroups``, ``rawOrLabel``,
``rawOrLabelHeaders``, ``exportCheckboxLabel`` and ``type=eav``.
"""

from __future__ import annotations

from typing import Any

from ..logic import LogicError, evaluate
from ..records import export_rows
from ..responses import ApiError
from ..schema import Schema
from . import messages as M
from .context import Context
from .request import ApiRequest
from .rights import DEIDENTIFIED, NO_ACCESS, REMOVE_IDENTIFIERS, Caller

STATUS_LABELS = {"0": "Incomplete", "1": "Unverified", "2": "Complete"}
FIXED_CHOICES = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}
DATE_TYPES = ("date", "datetime", "time")
SPECIAL_LABELS = {"redcap_event_name": "Event Name", "redcap_repeat_instrument": "Repeat Instrument",
                  "redcap_repeat_instance": "Repeat Instance", "redcap_data_access_group": "Data Access Group"}
EAV_KEYS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")


def flat_export(ctx: Context, req: ApiRequest, caller: Caller) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and rows of a flat export as this caller may see them (raw values)."""
    schema = ctx.schema
    options: dict[str, Any] = {"records": req.array("records"), "events": req.array("events"),
                               "legacy_document_values": ctx.config.legacy_document_values}
    header, rows = export_rows(ctx.store, fields=req.array("fields"), forms=req.array("forms"), **options)
    if caller.dag:
        dags = ctx.team.load()["record_dags"]
        rows = [r for r in rows if dags.get(str(r[schema.record_id]), "") == caller.dag]
    logic = (req.get("filterLogic") or "").strip()
    if logic:
        rows = _filtered(ctx, options, rows, logic)
    hidden = hidden_columns(schema, caller)
    header = [h for h in header if h not in hidden]
    rows = [{k: v for k, v in r.items() if k not in hidden} for r in rows]
    if (req.get("exportDataAccessGroups") or "").lower() == "true" and not caller.dag:
        header, rows = _with_dags(ctx, header, rows)
    return header, rows


def _row_id(schema: Schema, row: dict[str, Any]) -> tuple[Any, ...]:
    return (row[schema.record_id], row.get("redcap_event_name"), row.get("redcap_repeat_instrument"),
            row.get("redcap_repeat_instance"))


def _filtered(ctx: Context, options: dict[str, Any], rows: list[dict[str, Any]], logic: str) -> list[dict[str, Any]]:
    """Rows for which the logic holds, evaluated on all of the row's columns (and its record's events)."""
    schema = ctx.schema
    _, full = export_rows(ctx.store, **options)
    by_id = {_row_id(schema, r): r for r in full}
    base = {(r[schema.record_id], r.get("redcap_event_name")): r for r in full if not r.get("redcap_repeat_instrument")}
    keep: set[tuple[Any, ...]] = set()
    for row in full:
        def lookup(event: str, column: str, row: dict[str, Any] = row) -> str:
            source = base.get((row[schema.record_id], event), {}) if event else row
            return str(source.get(column, ""))
        try:
            if evaluate(logic, lookup):
                keep.add(_row_id(schema, row))
        except LogicError as exc:
            raise ApiError(400, M.BAD_LOGIC.format(logic=logic, near=exc)) from None
    return [r for r in rows if _row_id(schema, r) in keep and _row_id(schema, r) in by_id]


def hidden_columns(schema: Schema, caller: Caller) -> set[str]:
    """Export columns this caller's ``forms_export`` rights leave out (never the record ID)."""
    hidden: set[str] = set()
    for column, form in schema.all_columns():
        level = caller.export_level(form)
        name = column.split("___", 1)[0] if column.split("___", 1)[0] in schema.fields else column
        row = schema.fields.get(name, {})
        identifier = str(row.get("identifier") or "").lower() == "y"
        if column == schema.record_id:
            continue
        removed = level in (DEIDENTIFIED, REMOVE_IDENTIFIERS) and identifier
        if level == NO_ACCESS or removed or (level == DEIDENTIFIED and _free_or_date(row)):
            hidden.add(column)
    return hidden


def _free_or_date(row: dict[str, Any]) -> bool:
    kind = row.get("field_type")
    validation = str(row.get("text_validation_type_or_show_slider_number") or "")
    if kind == "notes":
        return True
    return kind == "text" and (not validation or validation.startswith(DATE_TYPES))


def _with_dags(ctx: Context, header: list[str], rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """``redcap_data_access_group`` after the repeat columns (after the record ID in a plain project)."""
    schema = ctx.schema
    dags = ctx.team.load()["record_dags"]
    specials = [h for h in header if h.startswith("redcap_")]
    at = header.index(specials[-1]) + 1 if specials else 1
    header = header[:at] + ["redcap_data_access_group"] + header[at:]
    out = []
    for row in rows:
        values = {**row, "redcap_data_access_group": dags.get(str(row[schema.record_id]), "")}
        out.append({h: values.get(h, "") for h in header})
    return header, out


def labelled(ctx: Context, req: ApiRequest, header: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rawOrLabel=label``: choice labels, event and instrument labels, checkboxes Checked/Unchecked.

    An event is labelled ``Event (Arm N: Name)`` only when more than one arm has events (PyCap's
    doctest shows a bare ``Event 1`` in a project with a second, empty arm).
    """
    schema = ctx.schema
    checkbox_label = (req.get("exportCheckboxLabel") or "").lower() == "true"
    events = {e["unique_event_name"]: e for e in schema.structure.events}
    used = {int(e["arm_num"]) for e in schema.structure.events}  # arms that have events
    arms = {int(a["arm_num"]): a.get("name", "") for a in schema.structure.arms if int(a["arm_num"]) in used}
    forms = {i["instrument_name"]: i["instrument_label"] for i in schema.structure.instruments}
    out = []
    for row in rows:
        new = dict(row)
        for column in header:
            value = str(row.get(column, ""))
            if column == "redcap_event_name" and value in events:
                event = events[value]
                label, arm = str(event.get("event_name", value)), int(event["arm_num"])
                new[column] = label if len(arms) < 2 else f"{label} (Arm {arm}: {arms.get(arm, '')})"
            elif column == "redcap_repeat_instrument" and value:
                new[column] = forms.get(value, value)
            else:
                new[column] = _value_label(schema, column, value, checkbox_label)
        out.append(new)
    return out


def _value_label(schema: Schema, column: str, value: str, checkbox_label: bool) -> str:
    if value == "":
        return value
    base, _, code = column.partition("___")
    row = schema.fields.get(base)
    if row is None:
        return STATUS_LABELS.get(value, value) if column.endswith("_complete") else value
    kind = row.get("field_type")
    if kind == "checkbox" and code:
        if checkbox_label:
            return choice_labels(row).get(code, code) if value == "1" else ""
        return "Checked" if value == "1" else "Unchecked"
    if kind in FIXED_CHOICES:
        return FIXED_CHOICES[kind].get(value, value)
    if kind in ("radio", "dropdown"):
        return choice_labels(row).get(value, value)
    return value


def choice_labels(row: dict[str, Any]) -> dict[str, str]:
    out = {}
    for part in str(row.get("select_choices_or_calculations") or "").split("|"):
        code, _, label = part.partition(",")
        if code.strip():
            out[code.strip().lower()] = label.strip()
    return out


def header_labels(schema: Schema, header: list[str]) -> list[str]:
    """``rawOrLabelHeaders=label`` (csv): field labels, checkbox columns as ``Label (choice=Option)``."""
    out = []
    for column in header:
        base, _, code = column.partition("___")
        row = schema.fields.get(base)
        if row is None:
            out.append(SPECIAL_LABELS.get(column, column))
        elif code:
            out.append(f"{row.get('field_label', base)} (choice={choice_labels(row).get(code, code)})")
        else:
            out.append(str(row.get("field_label", base)))
    return out


def eav_rows(schema: Schema, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``type=eav``: one row per filled value; a checked checkbox option gives its code as the value."""
    out = []
    for row in rows:
        keys: dict[str, Any] = {k: row[k] for k in EAV_KEYS if k in row}
        for column, value in row.items():
            if column.startswith("redcap_") or value in ("", None):
                continue
            base, _, code = column.partition("___")
            if code and base in schema.fields:
                if str(value) != "1":
                    continue
                column, value = base, code
            out.append({"record": row[schema.record_id], **keys, "field_name": column, "value": value})
    return out
