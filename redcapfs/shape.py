"""Which file slots can exist in a project, and which exist: the pure model.

:class:`ProjectShape` is built from the project-structure exports (project info,
metadata, arms, events, form/event mapping, repeating setup) and answers which
file fields each event holds and whether a slot repeats
(:class:`~redcapfs.recordindex.RecordIndex` says which exist). No I/O: the
inputs are the API's JSON rows, so it is tested with literal rows.

Server data is treated as untrusted but not fatal: rows that name an unknown
event, form or instance are skipped with a warning, because one odd row must
not make a whole project unmountable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redcapfs.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

DOCUMENT_PLACEHOLDER = "[document]"
"""What older servers export for a filled file field instead of its name."""

_WHOLE_EVENT = ""  # the form key under which a repeating event's instances are kept


@dataclass(frozen=True)
class FileField:
    """A metadata row with ``field_type`` "file"; signatures cannot be uploaded via the API."""

    name: str
    form: str
    signature: bool


@dataclass(frozen=True)
class Slot:
    """One place that holds at most one file.

    ``event`` is None in classic projects; ``instance`` is None where the slot
    does not repeat (the API then gets instance 1).
    """

    record: str
    event: str | None
    field: str
    instance: int | None


def _truthy(value: Any) -> bool:
    """REDCap flags come as 0/1, "0"/"1" or booleans."""
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class ProjectShape:
    """The project's structure, as far as file slots are concerned."""

    def __init__(
        self,
        *,
        longitudinal: bool,
        record_id_field: str,
        file_fields: dict[str, FileField],
        forms: set[str],
        field_names: set[str],
        event_arms: dict[str, int],
        arms: list[int],
        event_forms: dict[str, set[str]],
        repeating_forms: set[tuple[str | None, str]],
        repeating_events: set[str],
    ) -> None:
        self.longitudinal = longitudinal
        self.record_id_field = record_id_field
        self.file_fields = file_fields
        self._forms = forms
        self._field_names = field_names
        self._event_arms = event_arms
        self._arms = arms
        self._event_forms = event_forms
        self._repeating_forms = repeating_forms
        self._repeating_events = repeating_events
        self._fields_by_event = {event: self._designated(event) for event in self._slot_events()}

    # ------------------------------------------------------------ construction

    @classmethod
    def from_api(
        cls,
        project_info: dict,
        metadata: list[dict],
        arms: list[dict],
        events: list[dict],
        form_event_mapping: list[dict],
        repeating: list[dict],
    ) -> ProjectShape:
        """Build the shape from the API's JSON rows (classic projects: pass [] for arms, events, mapping)."""
        if not metadata:
            raise InvalidArgument("the project has no metadata (no record-ID field)")
        longitudinal = _truthy(project_info.get("is_longitudinal", 0))
        event_arms = _event_arms(events) if longitudinal else {}
        return cls(
            longitudinal=longitudinal,
            record_id_field=str(metadata[0]["field_name"]),
            file_fields=_file_fields(metadata),
            forms={str(row.get("form_name", "")) for row in metadata},
            field_names={str(row.get("field_name", "")) for row in metadata},
            event_arms=event_arms,
            arms=_arm_numbers(arms, event_arms),
            event_forms=_event_forms(form_event_mapping, event_arms) if longitudinal else {},
            repeating_forms=_repeating_forms(repeating, longitudinal, event_arms),
            repeating_events=_repeating_events(repeating, event_arms) if longitudinal else set(),
        )

    # ------------------------------------------------------------------ events

    def events(self) -> list[str]:
        """Unique event names in API order ([] in classic projects)."""
        return list(self._event_arms)

    def arms(self) -> list[int]:
        """Arm numbers in API order ([] in classic projects)."""
        return list(self._arms)

    def has_event(self, event: str | None) -> bool:
        """Whether ``event`` is a slot's event here: a unique event name, or None in classic projects."""
        if self.longitudinal:
            return event in self._event_arms
        return event is None

    def arm_of_event(self, event: str) -> int:
        if event not in self._event_arms:
            raise NotFound(f"no event {event!r}")
        return self._event_arms[event]

    def events_of_arm(self, arm: int) -> list[str]:
        if arm not in self._arms:
            raise NotFound(f"no arm {arm!r}")
        return [event for event, a in self._event_arms.items() if a == arm]

    # ------------------------------------------------------------------ fields

    def has_form(self, form: str) -> bool:
        """Whether ``form`` is one of the project's instruments."""
        return form in self._forms

    def has_field(self, field_name: str) -> bool:
        """Whether ``field_name`` is a file field of the project (in any event)."""
        return field_name in self.file_fields

    def field_in_event(self, event: str | None, field_name: str) -> bool:
        """Whether the file field's form is designated for the event (classic: any file field)."""
        return field_name in self._fields_by_event.get(event, ())

    def fields_in_event(self, event: str | None) -> list[str]:
        """File fields whose form is designated for ``event``, in metadata order.

        Classic projects have one implicit event, None, holding every file field.
        """
        self._require_event(event)
        return list(self._fields_by_event[event])

    def repeats(self, event: str | None, field_name: str) -> bool:
        """Whether the slot has instances: its form repeats in the event, or the whole event repeats."""
        form = self._field(field_name).form
        if event is not None and event in self._repeating_events:
            return True
        return (event, form) in self._repeating_forms

    def event_repeats(self, event: str | None) -> bool:
        """Whether the whole event repeats (never in classic projects)."""
        return event is not None and event in self._repeating_events

    def export_fields(self) -> list[str]:
        """The ``fields`` to ask the records export for: record-ID field, then the file fields."""
        names = [self.record_id_field] + list(self.file_fields)
        return list(dict.fromkeys(names))

    def is_known_column(self, column: str) -> bool:
        """Whether an export column is expected (metadata field, checkbox, ``*_complete``, ``redcap_*``)."""
        if column in self._field_names or column.startswith("redcap_"):
            return True
        if column.endswith("_complete") and column[: -len("_complete")] in self._forms:
            return True
        return "___" in column and column.split("___", 1)[0] in self._field_names

    def _field(self, field_name: str) -> FileField:
        try:
            return self.file_fields[field_name]
        except KeyError:
            raise NotFound(f"no file field {field_name!r}") from None

    def _slot_events(self) -> list[str | None]:
        return list(self._event_arms) if self.longitudinal else [None]

    def _designated(self, event: str | None) -> list[str]:
        if not self.longitudinal:
            return list(self.file_fields)
        forms = self._event_forms.get(event, set())  # type: ignore[arg-type]
        return [name for name, f in self.file_fields.items() if f.form in forms]

    def _require_event(self, event: str | None) -> None:
        if not self.has_event(event):
            raise NotFound(f"no event {event!r}")


# ------------------------------------------------------------ from_api parts


def _file_fields(metadata: list[dict]) -> dict[str, FileField]:
    fields: dict[str, FileField] = {}
    for row in metadata:
        if row.get("field_type") != "file":
            continue
        validation = row.get("text_validation_type_or_show_slider_number") or ""
        name = str(row["field_name"])
        fields[name] = FileField(name, str(row.get("form_name", "")), validation == "signature")
    return fields


def _event_arms(events: list[dict]) -> dict[str, int]:
    arms: dict[str, int] = {}
    for row in events:
        name = row.get("unique_event_name")
        arm = _int_or_none(row.get("arm_num"))
        if not name or arm is None:
            log.warning("ignoring event row without unique_event_name/arm_num: %r", row)
            continue
        arms[str(name)] = arm
    return arms


def _arm_numbers(arms: list[dict], event_arms: dict[str, int]) -> list[int]:
    """Arms in API order, plus any arm an event names but the arm export lacked."""
    numbers = [n for n in (_int_or_none(row.get("arm_num")) for row in arms) if n is not None]
    return list(dict.fromkeys(numbers + list(event_arms.values())))


def _event_forms(mapping: list[dict], event_arms: dict[str, int]) -> dict[str, set[str]]:
    forms: dict[str, set[str]] = {event: set() for event in event_arms}
    for row in mapping:
        event = row.get("unique_event_name")
        if event not in forms:
            log.warning("ignoring form/event mapping for unknown event %r", event)
            continue
        forms[event].add(str(row.get("form", "")))
    return forms


def _repeating_forms(
    rows: list[dict], longitudinal: bool, event_arms: dict[str, int]
) -> set[tuple[str | None, str]]:
    """(event, form) pairs whose form repeats; event None in classic projects."""
    pairs: set[tuple[str | None, str]] = set()
    for row in rows:
        form = row.get("form_name") or ""
        if not form:
            continue
        event = row.get("event_name") if longitudinal else None
        if longitudinal and event not in event_arms:
            log.warning("ignoring repeating form %r in unknown event %r", form, event)
            continue
        pairs.add((event, str(form)))
    return pairs


def _repeating_events(rows: list[dict], event_arms: dict[str, int]) -> set[str]:
    events: set[str] = set()
    for row in rows:
        if row.get("form_name"):
            continue
        event = row.get("event_name")
        if event not in event_arms:
            log.warning("ignoring repeating setup for unknown event %r", event)
            continue
        events.add(str(event))
    return events


# --------------------------------------------------------------- the index
