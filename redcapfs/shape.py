"""Which file slots can exist in a project, and which exist: the pure model.

:class:`ProjectShape` is built from the project-structure exports (project info,
metadata, arms, events, form/event mapping, repeating setup) and answers which
file fields each event holds and whether a slot repeats. :class:`RecordIndex`
is built from a flat records export and answers which records, events,
instances and file names exist. No I/O: the inputs are the API's JSON rows, so
both classes are tested with literal rows.

Server data is treated as untrusted but not fatal: rows that name an unknown
event, form or instance are skipped with a warning, because one odd row must
not make a whole project unmountable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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

    def index(self, rows: list[dict]) -> RecordIndex:
        """Index a flat records export against this shape."""
        return RecordIndex(self, rows)

    # ----------------------------------------------------------------- helpers

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


@dataclass
class _Record:
    """What the index knows of one record."""

    arms: set[int] = field(default_factory=set)
    # (event, form or _WHOLE_EVENT) -> instance numbers present
    instances: dict[tuple[str | None, str], set[int]] = field(default_factory=dict)
    files: dict[Slot, str] = field(default_factory=dict)


class RecordIndex:
    """Which records, events, instances and files exist, from a flat records export.

    Rows carry the record-ID field, ``redcap_event_name`` (longitudinal),
    ``redcap_repeat_instrument`` and ``redcap_repeat_instance`` (int, str or "")
    and the file field values (the stored name, ``[document]`` or ""). Not
    thread-safe: callers lock around :meth:`with_file` and friends.
    """

    def __init__(self, shape: ProjectShape, rows: Iterable[dict] = ()) -> None:
        self.shape = shape
        self._records: dict[str, _Record] = {}
        self._warned: set[str] = set()
        for row in rows:
            self._add_row(row)

    # ----------------------------------------------------------------- queries

    def records(self) -> list[str]:
        """Record names in export order, each once."""
        return list(self._records)

    def has_record(self, record: str) -> bool:
        return record in self._records

    def events_of(self, record: str) -> list[str]:
        """Every event of each arm the record has data in, in project order ([] in classic projects)."""
        arms = self._record(record).arms
        return [event for event in self.shape.events() if self.shape.arm_of_event(event) in arms]

    def instances(self, record: str, event: str | None, field_name: str) -> list[int]:
        """Instance numbers present for a repeating slot, sorted ([] if none or if it does not repeat)."""
        key = self._instance_key(event, field_name)
        if key is None:
            return []
        return sorted(self._record(record).instances.get(key, ()))

    def file_name(self, slot: Slot) -> str | None:
        """The stored name, None when empty, or DOCUMENT_PLACEHOLDER when only its presence is known."""
        data = self._records.get(slot.record)
        return data.files.get(slot) if data else None

    def slots_with_files(self) -> Iterator[tuple[Slot, str]]:
        """Every filled slot with its stored name, record by record."""
        for data in list(self._records.values()):
            yield from list(data.files.items())

    def files_in(self, record: str) -> dict[Slot, str]:
        """The filled slots of one record with their stored names."""
        data = self._records.get(record)
        return dict(data.files) if data else {}

    # ----------------------------------------------------------------- updates

    def add_record(self, record: str, arm_or_event: int | str | None = None) -> None:
        """Note a record created locally, in an arm (int) or an event's arm (str); None in classic projects."""
        arm = self._arm(arm_or_event)
        data = self._records.setdefault(record, _Record())
        if arm is not None:
            data.arms.add(arm)

    def add_instance(self, record: str, event: str | None, field_name: str, instance: int) -> None:
        """Note an instance created locally (the record is added if needed)."""
        key = self._instance_key(event, field_name)
        if key is None:
            raise InvalidArgument(f"field {field_name!r} does not repeat in event {event!r}")
        if instance < 1:
            raise InvalidArgument(f"instance {instance} is not positive")
        self.add_record(record, event)
        self._records[record].instances.setdefault(key, set()).add(instance)

    def with_file(self, slot: Slot, name: str | None) -> None:
        """Record our own upload (``name``) or delete (None) in ``slot``."""
        self._check_slot(slot)
        if name is None:
            data = self._records.get(slot.record)
            if data:
                data.files.pop(slot, None)
            return
        if slot.instance is not None:
            self.add_instance(slot.record, slot.event, slot.field, slot.instance)
        else:
            self.add_record(slot.record, slot.event)
        self._records[slot.record].files[slot] = name

    # ----------------------------------------------------------------- helpers

    def _arm(self, arm_or_event: int | str | None) -> int | None:
        """The arm a new record goes to; None in classic projects."""
        if isinstance(arm_or_event, str):
            return self.shape.arm_of_event(arm_or_event)
        if arm_or_event is None:
            if self.shape.longitudinal:
                raise InvalidArgument("a record in a longitudinal project needs an arm or event")
            return None
        if arm_or_event not in self.shape.arms():
            raise NotFound(f"no arm {arm_or_event!r}")
        return arm_or_event

    def _record(self, record: str) -> _Record:
        try:
            return self._records[record]
        except KeyError:
            raise NotFound(f"no record {record!r}") from None

    def _instance_key(self, event: str | None, field_name: str) -> tuple[str | None, str] | None:
        if not self.shape.field_in_event(event, field_name):
            return None
        if self.shape.event_repeats(event):
            return (event, _WHOLE_EVENT)
        if self.shape.repeats(event, field_name):
            return (event, self.shape.file_fields[field_name].form)
        return None

    def _check_slot(self, slot: Slot) -> None:
        if not self.shape.field_in_event(slot.event, slot.field):
            raise NotFound(f"no file field {slot.field!r} in event {slot.event!r}")
        if self.shape.repeats(slot.event, slot.field) != (slot.instance is not None):
            raise InvalidArgument(f"instance {slot.instance!r} does not fit {slot.field!r} in {slot.event!r}")

    def _warn(self, message: str) -> None:
        """Warn once per distinct problem, so a bad column does not flood the log."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning("records export: %s", message)

    # ------------------------------------------------------------ row parsing

    def _add_row(self, row: dict) -> None:
        record = row.get(self.shape.record_id_field)
        if record is None or str(record) == "":
            self._warn(f"row without {self.shape.record_id_field!r} ignored")
            return
        event = self._row_event(row)
        if event is False:
            return
        self._check_columns(row)
        instrument = str(row.get("redcap_repeat_instrument") or "")
        instance = self._row_instance(row)
        if instance == -1:
            return
        record = str(record)
        self.add_record(record, event)
        if instrument:
            self._add_instrument_row(record, event, instrument, instance or 1, row)
        elif self.shape.event_repeats(event):
            self._add_fields(record, event, self.shape.fields_in_event(event), instance or 1, row)
        elif instance in (None, 1):
            self._add_base_row(record, event, row)
        else:
            self._warn(f"instance {instance} of non-repeating event {event!r} ignored")

    def _row_event(self, row: dict) -> str | bool | None:
        """The row's event, None in classic projects, or False to skip the row."""
        if not self.shape.longitudinal:
            return None
        event = row.get("redcap_event_name")
        if not self.shape.has_event(event):
            self._warn(f"rows of unknown event {event!r} ignored")
            return False
        return str(event)

    def _row_instance(self, row: dict) -> int | None:
        """The repeat instance, None when blank, or -1 to skip the row."""
        raw = row.get("redcap_repeat_instance")
        if raw is None or str(raw).strip() == "":
            return None
        number = _int_or_none(str(raw).strip())
        if number is None or number < 1:
            self._warn(f"row with repeat instance {raw!r} ignored")
            return -1
        return number

    def _check_columns(self, row: dict) -> None:
        for column in row:
            if not self.shape.is_known_column(column):
                self._warn(f"unknown column {column!r} ignored")

    def _form_fields(self, event: str | None, form: str) -> list[str]:
        return [f for f in self.shape.fields_in_event(event) if self.shape.file_fields[f].form == form]

    def _add_base_row(self, record: str, event: str | None, row: dict) -> None:
        """Non-repeating values; a repeating form's value here is its instance 1 (what the API reads)."""
        for name in self.shape.fields_in_event(event):
            if not self.shape.repeats(event, name):
                self._add_value(record, event, name, None, row)
            elif _value(row.get(name)) is not None:
                self._add_fields(record, event, [name], 1, row)

    def _add_instrument_row(
        self, record: str, event: str | None, form: str, instance: int, row: dict
    ) -> None:
        fields = self._form_fields(event, form)
        if not fields:
            if not self.shape.has_form(form):
                self._warn(f"rows of unknown instrument {form!r} ignored")
            return  # a repeating form without file fields: nothing to index
        if not self.shape.repeats(event, fields[0]):
            self._warn(f"instrument {form!r} does not repeat in event {event!r}; rows ignored")
            return
        self._add_fields(record, event, fields, instance, row)

    def _add_fields(
        self, record: str, event: str | None, fields: list[str], instance: int, row: dict
    ) -> None:
        for name in fields:
            self.add_instance(record, event, name, instance)
            self._add_value(record, event, name, instance, row)

    def _add_value(
        self, record: str, event: str | None, name: str, instance: int | None, row: dict
    ) -> None:
        value = _value(row.get(name))
        if value is not None:
            self._records[record].files[Slot(record, event, name, instance)] = value


def _value(raw: Any) -> str | None:
    """A file field's export value as a stored name, or None when empty."""
    if raw is None:
        return None
    text = str(raw)
    return text if text != "" else None
