"""Read a REDCap project XML file (CDISC ODM 1.3.1 with REDCap's ``redcap:`` extensions).

This is the file REDCap writes for "Download metadata only (XML)" and for the
whole project with data (``content=project_xml``). Its interpretation follows
REDCap's own importer (``ODM::parseOdm``), so a file REDCap accepts loads here
the same way:

* ``Study`` (small) is read into a tree; ``MetaDataVersion`` gives the forms
  (``FormDef``), the field order (``ItemGroupRef`` → ``ItemRef``), the fields
  (``ItemDef`` with ``redcap:FieldType`` etc.), choices (``CodeList``) and, only
  in longitudinal projects, ``Protocol`` + ``StudyEventDef`` (arms, events,
  form/event mapping). One event only means a classic project, as in REDCap.
  ``<form>_complete`` and reserved fields (DAG, survey identifier/timestamps)
  are not metadata rows. Checkbox ``name___code`` ItemDefs fold into one row.
* ``ClinicalData`` (possibly huge) is streamed: ``SubjectData`` →
  [``StudyEventData``] → ``FormData`` → ``ItemGroupData`` → ``ItemData``;
  ``ItemDataBase64Binary`` (``redcap:DocName``, ``redcap:MimeType``) is decoded
  chunk by chunk straight into ``workdir``, never held whole in memory.

Safety: DTDs and entity declarations are refused (the files never need them),
which closes the XML-bomb and external-entity doors without ``defusedxml``.
Literal newlines/tabs inside attribute values (REDCap writes notes that way) are
escaped before parsing, as REDCap's importer does, because XML would otherwise
turn them into spaces.

This module is the reader (the streaming pass and ``ClinicalData``);
``odm_study`` turns the ``Study`` part into API rows and ``odm_input`` holds the
byte filter, the element tree and the base64 sink.
"""

from __future__ import annotations

import binascii
import mimetypes
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .odm_input import AttributeNewlineEscaper, Base64Sink, Node, OdmError, local_name
from .odm_study import RESERVED_COLUMNS, Structure, build_structure
from .project import ProjectDef, StoredFile

__all__ = ["AttributeNewlineEscaper", "OdmError", "OdmReader", "load_project_xml"]

CHUNK = 64 * 1024


# ---------------------------------------------------------------- the reader


@dataclass
class _Cursor:
    """Where the data pass is: record, event and the row key of the current FormData."""

    record: str = ""
    event: str = ""
    event_key: int = 1
    row: dict[str, Any] | None = None
    instance: int = 1


class OdmReader:
    """Streams one project XML file: builds the Study tree, then walks ClinicalData."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = path
        self.workdir = workdir
        self.parser = xml.parsers.expat.ParserCreate(encoding=None, namespace_separator=" ")
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._chars
        self.parser.StartDoctypeDeclHandler = self._refuse_dtd
        self.parser.EntityDeclHandler = self._refuse_dtd
        self.stack: list[Node] = []  # open Study elements
        self.study: Node | None = None
        self.structure: Structure | None = None
        self.depth = 0
        self.root_seen = False
        self.in_clinical = False
        self.cursor = _Cursor()
        self.rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        self.files: list[StoredFile] = []
        self.item: tuple[str, dict[str, str]] | None = None  # typed ItemData* being read
        self.item_text: list[str] = []
        self.sink: Base64Sink | None = None

    # -- driving

    def read(self) -> ProjectDef:
        escaper = AttributeNewlineEscaper()
        try:
            with open(self.path, "rb") as fh:
                while True:
                    chunk = fh.read(CHUNK)
                    self.parser.Parse(escaper.feed(chunk, final=not chunk), not chunk)
                    if not chunk:
                        break
        except xml.parsers.expat.ExpatError as exc:
            raise OdmError(f"{self.path}: not well-formed XML: {exc}") from None
        finally:
            if self.sink is not None:
                self.sink.abort()
        return self._project()

    def _fail(self, message: str) -> OdmError:
        return OdmError(f"{self.path}: line {self.parser.CurrentLineNumber}: {message}")

    def _refuse_dtd(self, *args: Any) -> None:
        raise self._fail("DTDs and entity declarations are not allowed in project XML")

    # -- expat callbacks

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        tag = local_name(name)
        attrib = {local_name(k): v for k, v in attrs.items()}
        self.depth += 1
        if self.depth == 1:
            if tag != "ODM":
                raise self._fail(f"the root element is <{tag}>, expected <ODM>")
            self.root_seen = True
        elif self.stack or (tag == "Study" and self.depth == 2):
            self._start_study(tag, attrib)
        elif tag == "ClinicalData" and self.depth == 2:
            self._require_structure()
            self.in_clinical = True
        elif self.in_clinical:
            self._start_data(tag, attrib)

    def _end(self, name: str) -> None:
        tag = local_name(name)
        self.depth -= 1
        if self.stack:
            node = self.stack.pop()
            if not self.stack:
                self.study = node
                self.structure = build_structure(node, str(self.path))
        elif self.in_clinical:
            self._end_data(tag)
            if tag == "ClinicalData":
                self.in_clinical = False

    def _chars(self, text: str) -> None:
        if self.stack:
            if self.stack[-1].tag != "redcap:Attachment":  # descriptive-field images: not needed
                self.stack[-1].parts.append(text)
        elif self.sink is not None:
            try:
                self.sink.write(text)
            except (ValueError, binascii.Error) as exc:
                raise self._fail(f"invalid base64 file data: {exc}") from None
        elif self.item is not None:
            self.item_text.append(text)

    # -- Study

    def _start_study(self, tag: str, attrib: dict[str, str]) -> None:
        if self.structure is not None:
            raise self._fail("more than one Study element")
        node = Node(tag, attrib)
        if self.stack:
            self.stack[-1].children.append(node)
        self.stack.append(node)

    def _require_structure(self) -> None:
        if self.structure is None:
            raise self._fail("ClinicalData before Study: the file has no project metadata "
                             "(export with metadata, not data only)")

    # -- ClinicalData

    def _start_data(self, tag: str, attrib: dict[str, str]) -> None:
        handler: Callable[[dict[str, str]], None] | None = {
            "SubjectData": self._subject,
            "StudyEventData": self._event,
            "FormData": self._form,
            "ItemData": self._item_value,
        }.get(tag)
        if handler is not None:
            handler(attrib)
        elif tag == "ItemDataBase64Binary":
            self._file_start(attrib)
        elif tag.startswith("ItemData"):
            self.item, self.item_text = (attrib.get("ItemOID", ""), attrib), []

    def _end_data(self, tag: str) -> None:
        if tag == "ItemDataBase64Binary":
            self._file_end()
        elif tag.startswith("ItemData") and tag != "ItemData" and self.item is not None:
            oid, attrib = self.item
            self.item = None
            self._set_value(oid, attrib.get("Value", "".join(self.item_text)))
        elif tag == "FormData":
            self.cursor.row = None
        elif tag == "StudyEventData":
            self.cursor.event, self.cursor.event_key = "", 1

    def _subject(self, attrib: dict[str, str]) -> None:
        record = attrib.get("SubjectKey", "")
        if not record:
            raise self._fail("SubjectData without a SubjectKey")
        self.cursor = _Cursor(record=record)

    def _event(self, attrib: dict[str, str]) -> None:
        assert self.structure is not None
        oid = attrib.get("StudyEventOID", "")
        event = attrib.get("redcap:UniqueEventName") or (oid[6:] if oid.startswith("Event.") else oid)
        if self.structure.longitudinal and event not in {e["unique_event_name"] for e in self.structure.events}:
            raise self._fail(f"record {self.cursor.record!r}: unknown event {event!r}")
        self.cursor.event = event if self.structure.longitudinal else ""
        self.cursor.event_key = _repeat_key(attrib.get("StudyEventRepeatKey"), self._fail)

    def _form(self, attrib: dict[str, str]) -> None:
        """Pick the flat row this FormData fills (REDCap's record-event-instrument-instance key)."""
        s = self.structure
        assert s is not None
        if not self.cursor.record:
            raise self._fail("FormData outside SubjectData")
        if s.longitudinal and not self.cursor.event:
            raise self._fail(f"record {self.cursor.record!r}: "
                             "FormData outside StudyEventData in a longitudinal project")
        oid = attrib.get("FormOID", "")
        form = oid[5:] if oid.startswith("Form.") else oid
        event = self.cursor.event
        form_key = _repeat_key(attrib.get("FormRepeatKey"), self._fail)
        if s.repeating_event(event) and s.longitudinal:
            key = (self.cursor.record, event, "", self.cursor.event_key)
        elif s.repeating_form(event, form):
            key = (self.cursor.record, event, form, form_key)
        else:
            key = (self.cursor.record, event, "", 0)
        self.cursor.row = self.rows.get(key) or self._new_row(key)
        self.cursor.instance = key[3] or 1

    def _new_row(self, key: tuple[str, str, str, int]) -> dict[str, Any]:
        s = self.structure
        assert s is not None
        record, event, form, instance = key
        row: dict[str, Any] = {s.record_id: record}
        if s.longitudinal:
            row["redcap_event_name"] = event
        if s.repeating:
            row["redcap_repeat_instrument"] = form
            row["redcap_repeat_instance"] = instance or ""
        self.rows[key] = row
        return row

    def _item_value(self, attrib: dict[str, str]) -> None:
        if "Value" in attrib:
            self._set_value(attrib.get("ItemOID", ""), attrib["Value"])

    def _set_value(self, oid: str, value: str) -> None:
        s = self.structure
        assert s is not None
        if self.cursor.row is None:
            raise self._fail(f"ItemData {oid!r} outside FormData")
        if oid == s.record_id or oid in RESERVED_COLUMNS:
            return
        if oid not in s.columns:
            if oid.endswith("_timestamp"):
                return  # survey timestamp column
            raise self._fail(f"record {self.cursor.record!r}: ItemData for unknown field {oid!r}")
        self.cursor.row[oid] = value

    def _file_start(self, attrib: dict[str, str]) -> None:
        s = self.structure
        assert s is not None
        oid = attrib.get("ItemOID", "")
        if self.cursor.row is None:
            raise self._fail(f"ItemDataBase64Binary {oid!r} outside FormData")
        if oid not in s.file_fields:
            raise self._fail(f"record {self.cursor.record!r}: "
                             f"ItemDataBase64Binary for {oid!r}, which is not a file field")
        name = attrib.get("redcap:DocName") or f"{oid}.bin"
        mime = attrib.get("redcap:MimeType") or mimetypes.guess_type(name)[0] or "application/octet-stream"
        target = self.workdir / f"odm-{len(self.files) + 1:06d}.bin"
        self.sink = Base64Sink(target)
        self.files.append(StoredFile(record=self.cursor.record, field=oid, name=name, source=str(target),
                                     event=self.cursor.event or None, repeat_instance=self.cursor.instance,
                                     mime=mime))
        self.cursor.row[oid] = name

    def _file_end(self) -> None:
        if self.sink is None:
            return
        sink, self.sink = self.sink, None
        try:
            sink.close()
        except ValueError as exc:
            raise self._fail(f"invalid base64 file data for {self.files[-1].field!r}: {exc}") from None

    # -- result

    def _project(self) -> ProjectDef:
        if not self.root_seen:
            raise OdmError(f"{self.path}: empty document")
        if self.structure is None:
            raise OdmError(f"{self.path}: no Study element (is this a REDCap project XML file?)")
        s = self.structure
        return ProjectDef(info=s.info, metadata=s.metadata, instruments=s.instruments, arms=s.arms,
                          events=s.events, form_event_mapping=s.form_event_mapping, repeating=s.repeating,
                          records=list(self.rows.values()), files=self.files)


def _repeat_key(raw: str | None, fail: Callable[[str], OdmError]) -> int:
    if raw is None or raw == "":
        return 1
    if not raw.strip().isdigit() or int(raw) < 1:
        raise fail(f"repeat key {raw!r} is not a positive number")
    return int(raw)


def load_project_xml(path: Path, workdir: Path) -> ProjectDef:
    """Read REDCap project XML at ``path``; inline files are decoded into ``workdir``."""
    return OdmReader(path, workdir).read()

