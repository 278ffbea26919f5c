"""The shapes of ``content=metadata`` rows, shared by every project loader.

Kept apart from ``loaders`` so that the format readers (``jsondir``, ``odm``) and
the loader that picks between them can all import these helpers at module
level without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: The keys of one ``content=metadata`` row, in REDCap's order.
METADATA_KEYS: tuple[str, ...] = (
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "select_choices_or_calculations",
    "field_note",
    "text_validation_type_or_show_slider_number",
    "text_validation_min",
    "text_validation_max",
    "identifier",
    "branching_logic",
    "required_field",
    "custom_alignment",
    "question_number",
    "matrix_group_name",
    "matrix_ranking",
    "field_annotation",
)

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FIELD_TYPES = frozenset(
    {"text", "notes", "textarea", "calc", "dropdown", "select", "radio", "checkbox", "yesno", "truefalse",
     "file", "slider", "descriptive", "sql"}
)
#: Field types that have no export column.
NO_COLUMN_TYPES = frozenset({"descriptive"})


def metadata_row(**values: Any) -> dict[str, str]:
    """A metadata row with all 18 keys ("" where ``values`` says nothing)."""
    unknown = set(values) - set(METADATA_KEYS)
    if unknown:
        raise ValueError(f"unknown metadata keys: {', '.join(sorted(unknown))}")
    return {key: "" if values.get(key) is None else str(values.get(key, "")) for key in METADATA_KEYS}


def unique_event_name(event_name: str, arm_num: int) -> str:
    """REDCap's generated unique event name: lower case, non-alphanumerics as ``_``, ``_arm_N``."""
    base = re.sub(r"[^a-z0-9]+", "_", event_name.lower()).strip("_") or "event"
    return f"{base}_arm_{arm_num}"


def checkbox_columns(row: dict[str, Any]) -> list[str]:
    """Export columns of a checkbox field: ``name___code`` per choice (code lower-cased, cleaned)."""
    cols = []
    for part in str(row.get("select_choices_or_calculations") or "").split("|"):
        code = part.split(",", 1)[0].strip()
        if code:
            cols.append(f"{row['field_name']}___{re.sub(r'[^a-z0-9_]', '_', code.lower())}")
    return cols


def data_columns(metadata: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Every export column a record row may carry, mapped to its form (incl. ``<form>_complete``)."""
    columns: dict[str, str] = {}
    for row in metadata:
        form = row["form_name"]
        if row["field_type"] == "checkbox":
            for col in checkbox_columns(row):
                columns[col] = form
        elif row["field_type"] not in NO_COLUMN_TYPES:
            columns[row["field_name"]] = form
        columns.setdefault(f"{form}_complete", form)
    return columns
