"""The project's structure, indexed for the questions the API handlers ask.

REDCap's answers depend on structure in ways that are easy to get subtly wrong
(which form a field is on, whether that form repeats *in this event*, which
export columns a checkbox expands to). Keeping every such rule here, computed
once from the stored structure tables, means the record export, record import
and file handlers cannot disagree with each other.

Storage keys used throughout the sandbox: a data row is identified by
``(record, event, rform, inst)`` where ``event`` is ``""`` in classic projects,
and ``(rform, inst)`` is

* ``("", 0)`` for the ordinary (non-repeating) row of an event,
* ``("", N)`` for instance N of a repeating *event*,
* ``(form, N)`` for instance N of a repeating *instrument*.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BASE = ("", 0)

SPECIAL_COLUMNS = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
)


def checkbox_codes(choices: str) -> list[str]:
    """Codes of a checkbox field's ``"1, Yes | 2, No"`` choice string, as export suffixes."""
    codes = []
    for part in (choices or "").split("|"):
        code = part.split(",", 1)[0].strip()
        if code:
            codes.append(re.sub(r"[^a-z0-9_]", "_", code.lower()))
    return codes


def normalise_instance(raw: str | None) -> int:
    """REDCap's rule: a ``repeat_instance`` that is not a positive whole number becomes 1."""
    text = (raw or "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return 1


@dataclass
class Structure:
    """The structure tables exactly as the API exports them (see ``ProjectDef``)."""

    info: dict[str, Any]
    metadata: list[dict[str, Any]]
    instruments: list[dict[str, Any]]
    arms: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    form_event_mapping: list[dict[str, Any]] = field(default_factory=list)
    repeating: list[dict[str, Any]] = field(default_factory=list)


class Schema:
    """Read-only index over a :class:`Structure`."""

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        self.record_id: str = structure.metadata[0]["field_name"]
        self.fields: dict[str, dict[str, Any]] = {r["field_name"]: r for r in structure.metadata}
        self.forms: list[str] = [r["instrument_name"] for r in structure.instruments]
        for row in structure.metadata:  # forms used by fields but missing from instruments
            if row["form_name"] not in self.forms:
                self.forms.append(row["form_name"])
        self.longitudinal: bool = bool(int(structure.info.get("is_longitudinal", 0) or 0)) or bool(
            structure.events
        )
        self.events: list[str] = [e["unique_event_name"] for e in structure.events]
        self.event_arm: dict[str, int] = {
            e["unique_event_name"]: int(e.get("arm_num", 1) or 1) for e in structure.events
        }
        self.event_forms: dict[str, list[str]] = {ev: [] for ev in self.events}
        for row in structure.form_event_mapping:
            self.event_forms.setdefault(row["unique_event_name"], []).append(row["form"])
        self.repeating_events: set[str] = set()
        self.repeating_forms: set[tuple[str, str]] = set()
        self._index_repeating(structure.repeating)

    # ------------------------------------------------------------------ setup

    def _index_repeating(self, rows: Iterable[dict[str, Any]]) -> None:
        """Map ``repeatingFormsEvents`` rows (event *names* or unique names) to keys."""
        by_label = {e.get("event_name"): e["unique_event_name"] for e in self.structure.events}
        for row in rows:
            event = self._event_key(row.get("event_name") or "", by_label)
            form = row.get("form_name") or ""
            if form:
                self.repeating_forms.add((event, form))
            else:
                self.repeating_events.add(event)

    def _event_key(self, event: str, by_label: dict[Any, str]) -> str:
        """A unique event name for a name or a label; "" in classic projects."""
        if not self.longitudinal:
            return ""
        return event if event in self.event_arm else by_label.get(event, event)

    # ---------------------------------------------------------------- queries

    @property
    def has_repeating(self) -> bool:
        return bool(self.repeating_forms or self.repeating_events)

    def form_of(self, field_name: str) -> str | None:
        row = self.fields.get(field_name)
        return row["form_name"] if row else None

    def is_file_field(self, field_name: str) -> bool:
        row = self.fields.get(field_name)
        return row is not None and row.get("field_type") == "file"

    def is_signature(self, field_name: str) -> bool:
        row = self.fields.get(field_name) or {}
        return row.get("text_validation_type_or_show_slider_number") == "signature"

    def file_fields(self) -> list[str]:
        return [f for f in self.fields if self.is_file_field(f)]

    def valid_event(self, event: str | None) -> bool:
        return bool(event) and event in self.event_arm

    def forms_in_event(self, event: str) -> list[str]:
        """Forms designated for ``event`` (all forms in a classic project), in form order."""
        if not self.longitudinal:
            return list(self.forms)
        designated = set(self.event_forms.get(event, []))
        return [f for f in self.forms if f in designated]

    def form_repeats(self, event: str, form: str) -> bool:
        return (event, form) in self.repeating_forms

    def slot_key(self, event: str, field_name: str, instance: int) -> tuple[str, int]:
        """Where a field's value lives: ``(rform, inst)``.

        The instance is silently forced to 1 (the ordinary row) when neither the
        event nor the field's form repeats, as REDCap does.
        """
        if event in self.repeating_events:
            return ("", instance)
        form = self.form_of(field_name)
        if form and self.form_repeats(event, form):
            return (form, instance)
        return BASE

    def effective_instance(self, event: str, field_name: str, instance: int) -> int:
        rform, inst = self.slot_key(event, field_name, instance)
        return inst if (rform or inst) else 1

    # ---------------------------------------------------------------- columns

    def field_columns(self, field_name: str) -> list[str]:
        """Export columns of one field (checkboxes expand, descriptive fields have none)."""
        row = self.fields[field_name]
        kind = row.get("field_type")
        if kind == "descriptive":
            return []
        if kind == "checkbox":
            codes = checkbox_codes(row.get("select_choices_or_calculations", ""))
            return [f"{field_name}___{c}" for c in codes]
        return [field_name]

    def all_columns(self) -> list[tuple[str, str]]:
        """Every data column as ``(column, form)``: fields in order, ``<form>_complete`` after each form."""
        out: list[tuple[str, str]] = []
        for form in self.forms:
            for name, row in self.fields.items():
                if row["form_name"] == form:
                    out.extend((col, form) for col in self.field_columns(name))
            out.append((f"{form}_complete", form))
        # the record-ID field always comes first
        rid = [c for c in out if c[0] == self.record_id]
        return rid + [c for c in out if c[0] != self.record_id]

    def column_form(self) -> dict[str, str]:
        return dict(self.all_columns())

    def select_columns(
        self, fields: list[str] | None, forms: list[str] | None
    ) -> list[tuple[str, str]]:
        """Columns for an export filtered by ``fields[]``/``forms[]``; the record ID always stays."""
        columns = self.all_columns()
        if not fields and not forms:
            return columns
        wanted: set[str] = {self.record_id}
        for name in fields or []:
            if name in self.fields:
                wanted.update(self.field_columns(name))
            else:
                wanted.add(name)  # e.g. form_1_complete, or an unknown name (ignored)
        for form in forms or []:
            wanted.update(col for col, f in columns if f == form)
        return [c for c in columns if c[0] in wanted]

    def row_forms(self, event: str, rform: str, inst: int) -> list[str]:
        """Forms whose columns a row of this kind fills (others export as "")."""
        if rform:
            return [rform]
        forms = self.forms_in_event(event)
        if inst:  # repeating event: every form of the event
            return forms
        return [f for f in forms if not self.form_repeats(event, f)]
