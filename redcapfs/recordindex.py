"""Which records, events, instances and file names exist: the index built from a flat records export.

:class:`RecordIndex` reads the API's JSON rows against a
:class:`~redcapfs.shape.ProjectShape` (which slots *can* exist) and answers
which exist. No I/O. Server data is untrusted but not fatal: rows that name
an unknown event, form or instance are skipped with one warning per problem,
because one odd row must not make a whole project unmountable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redcapfs.errors import InvalidArgument, NotFound
from redcapfs.shape import _WHOLE_EVENT, DOCUMENT_PLACEHOLDER, ProjectShape, Slot, _int_or_none

log = logging.getLogger(__name__)

__all__ = ["DOCUMENT_PLACEHOLDER", "RecordIndex"]


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
        skip, event = self._row_event(row)
        if skip:
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

    def _row_event(self, row: dict) -> tuple[bool, str | None]:
        """(skip the row?, its event): the event is None in classic projects; rows of unknown events are skipped."""
        if not self.shape.longitudinal:
            return False, None
        event = row.get("redcap_event_name")
        if not self.shape.has_event(event):
            self._warn(f"rows of unknown event {event!r} ignored")
            return True, None
        return False, str(event)

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
