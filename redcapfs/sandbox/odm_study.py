"""The ``Study`` part of a project XML file as API rows: project info, metadata, arms, events, repeating.

Follows REDCap's own importer (``ODM::parseOdm``); see ``odm`` for the whole
file's layout. Input is the small element tree ``odm_input.Node``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .metarows import data_columns, metadata_row
from .odm_input import Node, OdmError

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

