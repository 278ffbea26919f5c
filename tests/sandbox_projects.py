"""Small, fully known projects for the sandbox tests, built as ``ProjectDef`` objects.

The tests seed a data directory with one of these (``seed``) before starting the
sandbox process on it: a data dir that already holds state is reused and the
PROJECT argument ignored, so the tests do not depend on the loaders or the demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redcapfs.sandbox.project import ProjectDef, StoredFile
from redcapfs.sandbox.store import Store


def field(name: str, form: str, ftype: str = "text", validation: str = "", choices: str = "") -> dict[str, Any]:
    """A metadata row with every key REDCap exports."""
    return {
        "field_name": name, "form_name": form, "section_header": "", "field_type": ftype,
        "field_label": name.replace("_", " ").title(), "select_choices_or_calculations": choices,
        "field_note": "", "text_validation_type_or_show_slider_number": validation,
        "text_validation_min": "", "text_validation_max": "", "identifier": "", "branching_logic": "",
        "required_field": "", "custom_alignment": "", "question_number": "", "matrix_group_name": "",
        "matrix_ranking": "", "field_annotation": "",
    }


def _write(tmp: Path, name: str, data: bytes) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def longitudinal_project(tmp: Path) -> ProjectDef:
    """Two arms; a repeating form (adverse_events) and a repeating event (followup_arm_1)."""
    metadata = [
        field("record_id", "demographics"),
        field("name", "demographics"),
        field("consent_file", "demographics", "file"),
        field("signature", "demographics", "file", "signature"),
        field("intro", "demographics", "descriptive"),
        field("visit_date", "visit", validation="date_ymd"),
        field("symptoms", "visit", "checkbox", choices="1, Fever | 2, Cough"),
        field("visit_scan", "visit", "file"),
        field("ae_term", "adverse_events"),
        field("ae_doc", "adverse_events", "file"),
    ]
    instruments = [
        {"instrument_name": "demographics", "instrument_label": "Demographics"},
        {"instrument_name": "visit", "instrument_label": "Visit"},
        {"instrument_name": "adverse_events", "instrument_label": "Adverse Events"},
    ]
    arms = [{"arm_num": 1, "name": "Arm 1"}, {"arm_num": 2, "name": "Arm 2"}]
    events = [
        {"event_name": "Baseline", "arm_num": 1, "unique_event_name": "baseline_arm_1",
         "custom_event_label": "", "event_id": 41},
        {"event_name": "Followup", "arm_num": 1, "unique_event_name": "followup_arm_1",
         "custom_event_label": "", "event_id": 42},
        {"event_name": "Baseline", "arm_num": 2, "unique_event_name": "baseline_arm_2",
         "custom_event_label": "", "event_id": 43},
    ]
    fem = [
        {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "demographics"},
        {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "adverse_events"},
        {"arm_num": 1, "unique_event_name": "followup_arm_1", "form": "visit"},
        {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "demographics"},
    ]
    repeating = [
        {"event_name": "baseline_arm_1", "form_name": "adverse_events", "custom_form_label": ""},
        {"event_name": "followup_arm_1", "form_name": "", "custom_form_label": ""},
    ]
    records = [
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "name": "Alice", "demographics_complete": "2"},
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "adverse_events",
         "redcap_repeat_instance": 1, "ae_term": "Headache"},
        {"record_id": "1", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "adverse_events",
         "redcap_repeat_instance": 2, "ae_term": "Rash"},
        {"record_id": "1", "redcap_event_name": "followup_arm_1", "redcap_repeat_instance": 1,
         "visit_date": "2024-02-01", "symptoms___2": "1"},
        {"record_id": "2", "redcap_event_name": "baseline_arm_1", "name": "Bob"},
        {"record_id": "3", "redcap_event_name": "baseline_arm_2", "name": "Carol"},
        {"record_id": "9", "redcap_event_name": "baseline_arm_1", "name": "Locked Larry"},
    ]
    files = [
        StoredFile("1", "consent_file", "consent.pdf", _write(tmp, "consent.pdf", b"%PDF-1.4 consent"),
                   "baseline_arm_1", 1, "application/pdf"),
        StoredFile("1", "signature", "signature.png", _write(tmp, "sig.png", b"\x89PNG sig"),
                   "baseline_arm_1", 1, "image/png"),
        StoredFile("1", "ae_doc", "ae2.txt", _write(tmp, "ae2.txt", b"second adverse event\n"),
                   "baseline_arm_1", 2, "text/plain"),
        StoredFile("1", "visit_scan", "scan.png", _write(tmp, "scan.png", b"scan bytes"),
                   "followup_arm_1", 1, "image/png"),
        StoredFile("9", "consent_file", "locked.pdf", _write(tmp, "locked.pdf", b"locked"),
                   "baseline_arm_1", 1, "application/pdf"),
    ]
    info = {"project_id": 77, "project_title": "Sandbox longitudinal", "is_longitudinal": 1,
            "has_repeating_instruments_or_events": 1, "record_autonumbering_enabled": 0, "in_production": 0}
    return ProjectDef(info, metadata, instruments, arms, events, fem, repeating, records, files, {"9"})


def classic_project(tmp: Path) -> ProjectDef:
    """Classic (no events) with one repeating form."""
    metadata = [
        field("record_id", "main"),
        field("notes", "main"),
        field("doc", "main", "file"),
        field("att", "attachments", "file"),
    ]
    instruments = [
        {"instrument_name": "main", "instrument_label": "Main"},
        {"instrument_name": "attachments", "instrument_label": "Attachments"},
    ]
    repeating = [{"form_name": "attachments", "custom_form_label": ""}]
    records = [{"record_id": "1", "notes": "first"}, {"record_id": "2", "notes": "second"}]
    files = [StoredFile("1", "doc", "doc.txt", _write(tmp, "doc.txt", b"classic doc\n"), None, 1, "text/plain")]
    info = {"project_id": 78, "project_title": "Sandbox classic", "is_longitudinal": 0,
            "has_repeating_instruments_or_events": 1}
    return ProjectDef(info, metadata, instruments, [], [], [], repeating, records, files)


def one_file_project(tmp: Path, body: bytes, title: str = "one file") -> ProjectDef:
    """A classic project with one record, R1, holding ``body`` as ``scan.bin`` in its file field ``scan``."""
    metadata = [field("record_id", "main"), field("scan", "main", "file")]
    info = {"project_id": 78, "project_title": title, "is_longitudinal": 0,
            "has_repeating_instruments_or_events": 0}
    files = [StoredFile("R1", "scan", "scan.bin", _write(tmp, "scan.bin", body), None, 1, "application/octet-stream")]
    return ProjectDef(info, metadata, [{"instrument_name": "main", "instrument_label": "Main"}], [], [], [], [],
                      [{"record_id": "R1"}], files)


def seed(data_dir: Path, project: ProjectDef) -> Path:
    """Initialise ``data_dir`` with ``project`` (the sandbox process then reuses it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(data_dir)
    try:
        store.initialise(project)
    finally:
        store.close()
    return data_dir
