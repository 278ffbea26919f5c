"""Paths of the mount, parsed against the project's shape.

Longitudinal: ``/RECORD/EVENT/FIELD[/INSTANCE]/FILENAME``; classic:
``/RECORD/FIELD[/INSTANCE]/FILENAME``. The INSTANCE level exists exactly where
the slot repeats. Parsing checks structure only (known event, field designated
for the event, well-formed instance); whether the record, the instance or the
file exists is the :class:`~redcapfs.recordindex.RecordIndex`'s business, because the
answer changes with the data while the structure does not.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Literal

from redcapfs import names
from redcapfs.errors import InvalidArgument, NameTooLong, NotFound
from redcapfs.shape import ProjectShape, Slot

Kind = Literal["root", "record", "event", "field", "instance", "file"]

_INSTANCE_RE = re.compile(r"[1-9][0-9]{0,9}")
_PARSED_KEPT = 4096


@dataclass(frozen=True)
class PathRef:
    """What a path names.

    ``record`` and ``name`` are decoded names. When the component was a
    shortened one (a name over 255 bytes), the decoded text is not the real
    name: resolve ``record_component`` / ``name_component`` (the raw path
    components, kept for that purpose and ignored by ``==``) with a
    :class:`~redcapfs.names.Resolver`. ``repeats`` says whether the slot has an
    instance level, so a ``field`` ref knows whether it is a slot itself.
    """

    kind: Kind
    record: str | None = None
    event: str | None = None
    field: str | None = None
    instance: int | None = None
    name: str | None = None
    repeats: bool = False
    record_component: str | None = dataclass_field(default=None, compare=False)
    name_component: str | None = dataclass_field(default=None, compare=False)

    def slot(self) -> Slot:
        """The slot this ref is in (field of a non-repeating slot, instance, file)."""
        if self.kind not in ("field", "instance", "file") or self.record is None or self.field is None:
            raise InvalidArgument(f"a {self.kind} path is not a slot")
        if self.kind == "field" and self.repeats:
            raise InvalidArgument("a repeating field's directory holds instances, not a slot")
        return Slot(self.record, self.event, self.field, self.instance)


class PathModel:
    """Parse paths into :class:`PathRef` and build paths back, for one project shape."""

    def __init__(self, shape: ProjectShape) -> None:
        self.shape = shape
        self._parsed: dict[str, PathRef] = {}  # parse is pure for one shape, and PathRef is frozen
        self._fields: dict[str | None, tuple[str, ...]] = {}

    # ------------------------------------------------------------------ parse

    def parse(self, path: str) -> PathRef:
        """Parse an absolute path; NotFound for anything the structure does not allow.

        Remembered for the last few thousand paths: a listing parses its path two
        or three times (resolve, rights, prefetch), and ``find`` lists 110,000 of them.
        The model is rebuilt when the design changes, and the memory with it.
        """
        ref = self._parsed.get(path)
        if ref is None:
            ref = self._parse(path)
            if len(self._parsed) >= _PARSED_KEPT:
                self._parsed.clear()
            self._parsed[path] = ref
        return ref

    def field_components(self, event: str | None) -> tuple[str, ...]:
        """The encoded file-field folders of a record (classic) or of one event: what such a folder lists."""
        got = self._fields.get(event)
        if got is None:
            got = self._fields[event] = tuple(names.encode(f) for f in self.shape.fields_in_event(event))
        return got

    def _parse(self, path: str) -> PathRef:
        parts = _split(path)
        if not parts:
            return PathRef("root")
        record = parts.pop(0)
        ref = PathRef("record", record=names.decode_record(record), record_component=record)
        event: str | None = None
        if self.shape.longitudinal and parts:
            event = self._event(parts.pop(0), path)
            ref = PathRef("event", ref.record, event, record_component=record)
        if parts:
            ref = self._below_event(ref, parts, path)
        return ref

    def _event(self, component: str, path: str) -> str:
        event = names.decode(component)
        if not self.shape.has_event(event) or names.encode(event) != component:
            raise NotFound("no such event", path)
        return event

    def _below_event(self, ref: PathRef, parts: list[str], path: str) -> PathRef:
        """FIELD[/INSTANCE][/FILENAME] under a record (classic) or record/event."""
        component = parts.pop(0)
        field_name = names.decode(component)
        if names.encode(field_name) != component or not self.shape.field_in_event(ref.event, field_name):
            raise NotFound("no such file field in this event", path)
        repeats = self.shape.repeats(ref.event, field_name)
        base = PathRef("field", record=ref.record, event=ref.event, field=field_name, repeats=repeats,
                       record_component=ref.record_component)
        if not parts:
            return base
        instance: int | None = None
        if repeats:
            instance = _instance(parts.pop(0), path)
            if not parts:
                return dataclasses.replace(base, kind="instance", instance=instance)
        if len(parts) > 1:
            raise NotFound("path too deep", path)
        return dataclasses.replace(base, kind="file", instance=instance, name=names.decode(parts[0]),
                                   name_component=parts[0])

    # ---------------------------------------------------------------- path_of

    def path_of(self, ref: PathRef) -> str:
        """The canonical path of ``ref``, names encoded; InvalidArgument if inconsistent."""
        if ref.kind == "root":
            return "/"
        parts = [names.encode_record(_need(ref.record, "record"))]
        if self.shape.longitudinal and ref.kind != "record":
            parts.append(names.encode(_need(ref.event, "event")))
        if ref.kind in ("field", "instance", "file"):
            parts.extend(self._slot_parts(ref))
        return "/" + "/".join(parts)

    def _slot_parts(self, ref: PathRef) -> list[str]:
        field_name = _need(ref.field, "field")
        if not self.shape.field_in_event(ref.event, field_name):
            raise InvalidArgument(f"no file field {field_name!r} in event {ref.event!r}")
        parts = [names.encode(field_name)]
        if ref.kind == "field":
            return parts
        repeats = self.shape.repeats(ref.event, field_name)
        if repeats != (ref.instance is not None):
            raise InvalidArgument(f"instance {ref.instance!r} does not fit field {field_name!r}")
        if ref.instance is not None:
            parts.append(str(ref.instance))
        if ref.kind == "file":
            parts.append(names.encode(_need(ref.name, "name")))
        elif ref.kind == "instance" and not repeats:
            raise InvalidArgument(f"field {field_name!r} has no instances")
        return parts


def _split(path: str) -> list[str]:
    """Components of an absolute path; NameTooLong over 255 bytes, NotFound for ``//``, ``.``, ``..``."""
    if not path.startswith("/"):
        raise InvalidArgument("not an absolute path", path)
    parts = path[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # "/" and a trailing slash
    for part in parts:
        if part in ("", ".", ".."):
            raise NotFound("empty or dot component", path)
        if _byte_len(part) > names.NAME_MAX:
            raise NameTooLong("a path component is over 255 bytes", path)
    return parts


def _byte_len(component: str) -> int:
    """Length in bytes as the kernel saw it (undecodable bytes arrive as surrogate escapes)."""
    try:
        return len(component.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return len(component.encode("utf-8", "surrogatepass"))


def _instance(component: str, path: str) -> int:
    """A decimal instance number >= 1 without leading zeros."""
    if not _INSTANCE_RE.fullmatch(component):
        raise NotFound("no such instance", path)
    return int(component)


def _need(value: str | None, what: str) -> str:
    if value is None:
        raise InvalidArgument(f"the ref has no {what}")
    return value
