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
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import xml.parsers.expat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .metarows import data_columns, metadata_row
from .project import ProjectDef, StoredFile

CHUNK = 64 * 1024
REDCAP_NS_MARK = "projectredcap.org"
#: GlobalVariables tags → ``content=project`` keys.
GLOBAL_KEYS = {
    "redcap:RecordAutonumberingEnabled": "record_autonumbering_enabled",
    "redcap:CustomRecordLabel": "custom_record_label",
    "redcap:SecondaryUniqueField": "secondary_unique_field",
    "redcap:SchedulingEnabled": "scheduling_enabled",
    "redcap:SurveysEnabled": "surveys_enabled",
    "redcap:RandomizationEnabled": "randomization_enabled",
    "redcap:DisplayTodayNowButton": "display_today_now_button",
    "redcap:Purpose": "purpose",
    "redcap:PurposeOther": "purpose_other",
    "redcap:ProjectNotes": "project_notes",
    "redcap:MissingDataCodes": "missing_data_codes",
}
INT_KEYS = {"record_autonumbering_enabled", "scheduling_enabled", "surveys_enabled", "randomization_enabled",
            "display_today_now_button", "purpose"}
#: Export columns REDCap adds that are not fields (dropped from records here).
RESERVED_COLUMNS = {"redcap_data_access_group", "redcap_survey_identifier"}
FIRST_EVENT_ID = 41


class OdmError(ValueError):
    """Malformed project XML; the message names the file and, where known, the line."""


# ------------------------------------------------------------------ the input


class AttributeNewlineEscaper:
    """Byte filter: inside quoted attribute values, turn CR/LF/TAB into character references.

    XML normalises those characters in attribute values to spaces, which would
    lose the line breaks of REDCap's ``Value="line 1\\nline 2"``. The filter tracks
    just enough syntax (tags, quotes, CDATA, comments) to touch nothing else, and
    works on bytes so multi-byte UTF-8 is never split.
    """

    REPLACE: ClassVar[dict[bytes, bytes]] = {b"\n": b"&#10;", b"\r": b"&#13;", b"\t": b"&#9;"}

    def __init__(self) -> None:
        self.state = "text"
        self.quote = b""
        self.held = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        data = self.held + data
        self.held = b""
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            step = getattr(self, "_" + self.state)(data, pos, out, final)
            if step is None:  # needs more input
                self.held = data[pos:]
                break
            pos = step
        return b"".join(out)

    def _text(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        lt = data.find(b"<", pos)
        if lt < 0:
            out.append(data[pos:])
            return len(data)
        out.append(data[pos:lt])
        head = data[lt:lt + 9]
        if len(head) < 9 and not final and (b"<![CDATA["[: len(head)] == head or b"<!--"[: len(head)] == head):
            return None if lt == pos else lt
        if head.startswith(b"<![CDATA["):
            self.state = "cdata"
            out.append(head)
            return lt + 9
        if head.startswith(b"<!--"):
            self.state = "comment"
            out.append(b"<!--")
            return lt + 4
        self.state = "tag"
        out.append(b"<")
        return lt + 1

    def _tag(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        ends = [i for i in (data.find(b">", pos), data.find(b'"', pos), data.find(b"'", pos)) if i >= 0]
        if not ends:
            out.append(data[pos:])
            return len(data)
        stop = min(ends)
        out.append(data[pos:stop + 1])
        char = data[stop:stop + 1]
        if char == b">":
            self.state = "text"
        else:
            self.state, self.quote = "quoted", char
        return stop + 1

    def _quoted(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        stop = data.find(self.quote, pos)
        chunk = data[pos:] if stop < 0 else data[pos:stop]
        if stop < 0 and chunk.endswith(b"\r") and not final:
            chunk = chunk[:-1]  # keep a CR to pair it with a following LF
            out.append(self._escape(chunk))
            return None if not chunk else pos + len(chunk)
        out.append(self._escape(chunk))
        if stop < 0:
            return len(data)
        out.append(self.quote)
        self.state = "tag"
        return stop + 1

    def _escape(self, chunk: bytes) -> bytes:
        chunk = chunk.replace(b"\r\n", b"\n")
        for raw, ref in self.REPLACE.items():
            chunk = chunk.replace(raw, ref)
        return chunk

    def _skip_until(self, marker: bytes, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        stop = data.find(marker, pos)
        if stop < 0:
            keep = 0 if final else len(marker) - 1
            cut = max(pos, len(data) - keep)
            out.append(data[pos:cut])
            return None if cut == pos and not final else (cut if cut < len(data) else len(data))
        out.append(data[pos:stop + len(marker)])
        self.state = "text"
        return stop + len(marker)

    def _cdata(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        return self._skip_until(b"]]>", data, pos, out, final)

    def _comment(self, data: bytes, pos: int, out: list[bytes], final: bool) -> int | None:
        return self._skip_until(b"-->", data, pos, out, final)


# ------------------------------------------------------------ the Study tree


@dataclass
class Node:
    """An element of the (small) ``Study`` part: tag, attributes, children, text."""

    tag: str
    attrib: dict[str, str]
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def find(self, tag: str) -> Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def iter(self, tag: str) -> Iterator[Node]:
        for child in self.children:
            if child.tag == tag:
                yield child
            yield from child.iter(tag)

    def get(self, key: str, default: str = "") -> str:
        return self.attrib.get(key, default)


def _local(name: str) -> str:
    """``"URI local"`` (expat namespace form) → ``redcap:local`` for REDCap's namespace, else ``local``."""
    uri, _, local = name.rpartition(" ")
    if uri and REDCAP_NS_MARK in uri:
        return "redcap:" + local
    return local


# ------------------------------------------------------------ base64 to disk


class Base64Sink:
    """Decodes base64 text arriving in pieces into a file, 4 characters at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115  (closed by close() or abort(), across many writes)
        self.pending = ""
        self.padded = False

    def write(self, text: str) -> None:
        text = self.pending + "".join(text.split())
        cut = len(text) - len(text) % 4
        if cut:
            if self.padded:
                raise ValueError("data after base64 padding")
            block = text[:cut]
            self.padded = "=" in block
            self.fh.write(base64.b64decode(block, validate=True))
        self.pending = text[cut:]

    def close(self) -> None:
        self.fh.close()
        if self.pending:
            raise ValueError("base64 data is truncated (length not a multiple of 4)")

    def abort(self) -> None:
        self.fh.close()


# ----------------------------------------------------------------- structure


@dataclass
class Structure:
    """What the ``Study`` part says, in API row shapes, plus indexes the data pass needs."""

    info: dict[str, Any]
    metadata: list[dict[str, str]]
    instruments: list[dict[str, str]]
    arms: list[dict[str, Any]]
    events: list[dict[str, Any]]
    form_event_mapping: list[dict[str, Any]]
    repeating: list[dict[str, str]]
    columns: dict[str, str] = field(default_factory=dict)
    file_fields: set[str] = field(default_factory=set)

    @property
    def longitudinal(self) -> bool:
        return bool(self.events)

    @property
    def record_id(self) -> str:
        return self.metadata[0]["field_name"]

    def repeating_event(self, event: str) -> bool:
        return any(r.get("event_name", "") == event and not r["form_name"] for r in self.repeating)

    def repeating_form(self, event: str, form: str) -> bool:
        return any(r.get("event_name", "") == event and r["form_name"] == form for r in self.repeating)


def _study_info(study: Node) -> dict[str, Any]:
    gv = study.find("GlobalVariables")
    gv = gv if gv is not None else Node("GlobalVariables", {})
    info: dict[str, Any] = {"project_id": 1}
    name = gv.find("StudyName")
    info["project_title"] = (name.text if name is not None else "") or study.get("OID", "REDCap project")
    for child in gv.children:
        key = GLOBAL_KEYS.get(child.tag)
        if key:
            text = child.text.strip()
            info[key] = int(text) if key in INT_KEYS and text.isdigit() else text
    return info


def _repeating(study: Node, longitudinal: bool) -> list[dict[str, str]]:
    """``content=repeatingFormsEvents`` rows from ``redcap:RepeatingInstrumentsAndEvents``."""
    rows: list[dict[str, str]] = []
    for setup in study.iter("redcap:RepeatingInstrumentsAndEvents"):
        for node in setup.iter("redcap:RepeatingInstrument"):
            row = {"event_name": node.get("redcap:UniqueEventName"), "form_name": node.get("redcap:RepeatInstrument"),
                   "custom_form_label": node.get("redcap:CustomLabel")}
            rows.append(row)
        for node in setup.iter("redcap:RepeatingEvent"):
            rows.append({"event_name": node.get("redcap:UniqueEventName"), "form_name": "", "custom_form_label": ""})
    if not longitudinal:  # classic exports name the hidden event "event_1_arm_1"; the API omits it
        rows = [{k: v for k, v in r.items() if k != "event_name"} for r in rows if r["form_name"]]
    return rows


def _form_name(node: Node, prefix: str, attr: str = "redcap:FormName") -> str:
    oid = node.get("FormOID") or node.get("OID")
    return node.get(attr) or (oid[len(prefix):] if oid.startswith(prefix) else oid)


def _events(mdv: Node) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Arms, events and the form/event mapping; all empty for a classic project."""
    protocol = mdv.find("Protocol")
    defs = {d.get("OID"): d for d in mdv.findall("StudyEventDef")}
    refs = [r.get("StudyEventOID") for r in protocol.findall("StudyEventRef")] if protocol is not None else []
    refs = [r for r in refs if r in defs] or ([] if protocol is None else list(defs))
    if len(refs) <= 1:  # REDCap: a single event means a classic project
        return [], [], []
    arms: dict[int, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    mapping: list[dict[str, Any]] = []
    for i, oid in enumerate(refs):
        d = defs[oid]
        arm = int(d.get("redcap:ArmNum") or 1)
        arms.setdefault(arm, {"arm_num": arm, "name": d.get("redcap:ArmName") or f"Arm {arm}"})
        unique = d.get("redcap:UniqueEventName") or (oid[6:] if oid.startswith("Event.") else oid)
        events.append({"event_name": d.get("redcap:EventName") or d.get("Name"), "arm_num": arm,
                       "unique_event_name": unique, "custom_event_label": d.get("redcap:CustomEventLabel"),
                       "event_id": FIRST_EVENT_ID + i})
        for ref in d.findall("FormRef"):
            mapping.append({"arm_num": arm, "unique_event_name": unique, "form": _form_name(ref, "Form.")})
    return [arms[k] for k in sorted(arms)], events, mapping


def _choices(item: Node, codelists: dict[str, Node]) -> str:
    """``"1, Yes | 2, No"`` from the item's CodeList (checkboxes: ``redcap:CheckboxChoices``)."""
    ref = item.find("CodeListRef")
    codelist = codelists.get(ref.get("CodeListOID")) if ref is not None else None
    if codelist is None:
        return ""
    if codelist.get("redcap:CheckboxChoices"):
        parts = [p.strip() for p in codelist.get("redcap:CheckboxChoices").split("|")]
        return " | ".join(p for p in parts if p)
    out = []
    for entry in codelist.findall("CodeListItem"):
        decode = entry.find("Decode")
        label = _translated(decode) if decode is not None else ""
        out.append(f"{entry.get('CodedValue')}, {label}")
    return " | ".join(out)


def _translated(parent: Node) -> str:
    """The HTML-formatted text where REDCap gives one (its importer prefers it), else the plain text."""
    formatted = parent.find("redcap:FormattedTranslatedText")
    chosen = formatted if formatted is not None else parent.find("TranslatedText")
    return chosen.text if chosen is not None else ""


def _label(item: Node) -> str:
    question = item.find("Question")
    return _translated(question) if question is not None else ""


def _range(item: Node) -> tuple[str, str]:
    low = high = ""
    for check in item.findall("RangeCheck"):
        value = check.find("CheckValue")
        text = value.text if value is not None else ""
        if check.get("Comparator") in ("GE", "GT"):
            low = text
        elif check.get("Comparator") in ("LE", "LT"):
            high = text
    return low, high


def _field_row(variable: str, form: str, item: Node, mandatory: bool, codelists: dict[str, Node]) -> dict[str, str]:
    """One ``content=metadata`` row from an ItemDef (REDCap's importer's attribute mapping)."""
    ftype = item.get("redcap:FieldType") or _type_from_datatype(item.get("DataType"))
    choices = ""
    if ftype == "calc":
        choices = item.get("redcap:Calculation")
    elif item.get("redcap:OntologySearch"):
        choices = item.get("redcap:OntologySearch")
    elif ftype not in ("yesno", "truefalse"):
        choices = _choices(item, codelists)
    low, high = _range(item)
    required = item.get("redcap:RequiredField") or ("y" if mandatory else "")
    return metadata_row(
        field_name=variable, form_name=form, section_header=item.get("redcap:SectionHeader"), field_type=ftype,
        field_label=_label(item), select_choices_or_calculations=choices, field_note=item.get("redcap:FieldNote"),
        text_validation_type_or_show_slider_number=item.get("redcap:TextValidationType"),
        text_validation_min=low, text_validation_max=high, identifier=item.get("redcap:Identifier"),
        branching_logic=item.get("redcap:BranchingLogic"), required_field=required,
        custom_alignment=item.get("redcap:CustomAlignment"), question_number=item.get("redcap:QuestionNumber"),
        matrix_group_name=item.get("redcap:MatrixGroupName"), matrix_ranking=item.get("redcap:MatrixRanking"),
        field_annotation=item.get("redcap:FieldAnnotation"),
    )


def _type_from_datatype(datatype: str) -> str:
    """REDCap's fallback when an ItemDef has no ``redcap:FieldType`` (plain ODM from other systems)."""
    return {"boolean": "yesno"}.get(datatype, "text")


def _is_reserved(variable: str, forms: set[str]) -> bool:
    """DAG / survey columns REDCap puts into the XML but never into the metadata."""
    if variable in RESERVED_COLUMNS:
        return True
    return variable.endswith("_timestamp") and variable[: -len("_timestamp")] in forms


def _metadata(mdv: Node, where: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Metadata rows (ItemRef order within FormDef order) and instrument rows."""
    groups = {g.get("OID"): g for g in mdv.findall("ItemGroupDef")}
    items = {i.get("OID"): i for i in mdv.findall("ItemDef")}
    codelists = {c.get("OID"): c for c in mdv.findall("CodeList")}
    formdefs = mdv.findall("FormDef")
    forms = {_form_name(f, "Form.") for f in formdefs}
    rows: dict[str, dict[str, str]] = {}
    instruments = []
    for formdef in formdefs:
        form = _form_name(formdef, "Form.")
        instruments.append({"instrument_name": form, "instrument_label": formdef.get("Name") or form})
        for gref in formdef.findall("ItemGroupRef"):
            group = groups.get(gref.get("ItemGroupOID"))
            if group is None:
                raise OdmError(f"{where}: FormDef {form!r} refers to unknown ItemGroupDef {gref.get('ItemGroupOID')!r}")
            for iref in group.findall("ItemRef"):
                oid = iref.get("ItemOID")
                variable = iref.get("redcap:Variable") or oid
                if variable in rows or variable == f"{form}_complete" or _is_reserved(variable, forms):
                    continue
                item = items.get(oid)
                if item is None:
                    raise OdmError(f"{where}: ItemGroupDef {group.get('OID')!r} refers to unknown ItemDef {oid!r}")
                rows[variable] = _field_row(variable, form, item, iref.get("Mandatory") == "Yes", codelists)
    return list(rows.values()), instruments


def build_structure(study: Node, where: str) -> Structure:
    """Everything the ``Study`` element defines, as API rows."""
    mdv = study.find("MetaDataVersion")
    if mdv is None:
        raise OdmError(f"{where}: no MetaDataVersion in Study (is this a REDCap project XML file?)")
    metadata, instruments = _metadata(mdv, where)
    if not metadata:
        raise OdmError(f"{where}: MetaDataVersion defines no fields")
    record_id = mdv.get("redcap:RecordIdField") or metadata[0]["field_name"]
    first = next((r for r in metadata if r["field_name"] == record_id), None)
    if first is None:
        raise OdmError(f"{where}: redcap:RecordIdField {record_id!r} is not a field of the project")
    metadata = [first] + [r for r in metadata if r is not first]
    arms, events, mapping = _events(mdv)
    info = _study_info(study)
    repeating = _repeating(study, bool(events))
    info["is_longitudinal"] = int(bool(events))
    info["has_repeating_instruments_or_events"] = int(bool(repeating))
    structure = Structure(info, metadata, instruments, arms, events, mapping, repeating)
    structure.columns = data_columns(metadata)
    structure.file_fields = {r["field_name"] for r in metadata if r["field_type"] == "file"}
    return structure


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
        tag = _local(name)
        attrib = {_local(k): v for k, v in attrs.items()}
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
        tag = _local(name)
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

