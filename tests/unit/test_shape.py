"""ProjectShape and RecordIndex against literal API rows (docs/redcap-api.md sections 4-6)."""

from __future__ import annotations

import logging

import pytest

from redcapfs.errors import InvalidArgument, NotFound
from redcapfs.recordindex import RecordIndex
from redcapfs.shape import DOCUMENT_PLACEHOLDER, FileField, ProjectShape, Slot

METADATA_KEYS = ["field_name", "form_name", "section_header", "field_type", "field_label", "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number", "text_validation_min", "text_validation_max", "identifier", "branching_logic", "required_field", "custom_alignment", "question_number", "matrix_group_name", "matrix_ranking", "field_annotation"]


def meta(field_name: str, form_name: str, field_type: str, validation: str = "") -> dict:
    """A metadata row as the API exports it: every key present, every value a string."""
    row = {key: "" for key in METADATA_KEYS}
    row.update(field_name=field_name, form_name=form_name, field_type=field_type,
               field_label=field_name.replace("_", " ").title(),
               text_validation_type_or_show_slider_number=validation)
    return row


# ------------------------------------------------------------------ classic

CLASSIC_INFO = {"project_id": 101, "project_title": "Classic files", "is_longitudinal": 0,
                "has_repeating_instruments_or_events": 1, "record_autonumbering_enabled": 0,
                "in_production": 0}
CLASSIC_META = [
    meta("record_id", "demographics", "text"),
    meta("first_name", "demographics", "text"),
    meta("consent_pdf", "demographics", "file"),
    meta("sex", "demographics", "radio"),
    meta("visit_date", "visits", "text", "date_ymd"),
    meta("visit_photo", "visits", "file"),
    meta("participant_sig", "consent", "file", "signature"),
]
CLASSIC_REPEATING = [{"form_name": "visits", "custom_form_label": "[visit_date]"}]


def classic() -> ProjectShape:
    return ProjectShape.from_api(CLASSIC_INFO, CLASSIC_META, [], [], [], CLASSIC_REPEATING)


# ------------------------------------------------------------- longitudinal

LONG_INFO = {"project_id": 202, "project_title": "Two-arm trial", "is_longitudinal": "1",
             "has_repeating_instruments_or_events": "1"}
LONG_META = [
    meta("study_id", "enrollment", "text"),
    meta("consent_pdf", "enrollment", "file"),
    meta("participant_sig", "enrollment", "file", "signature"),
    meta("lab_date", "labs", "text", "date_ymd"),
    meta("lab_report", "labs", "file"),
    meta("scan", "imaging", "file"),
    meta("orphan_file", "unmapped", "file"),
]
LONG_ARMS = [{"arm_num": 1, "name": "Drug"}, {"arm_num": 2, "name": "Placebo"}]
LONG_EVENTS = [
    {"event_name": "Baseline", "arm_num": 1, "unique_event_name": "baseline_arm_1", "custom_event_label": "", "event_id": 41},
    {"event_name": "Visit 1", "arm_num": 1, "unique_event_name": "visit_1_arm_1", "custom_event_label": "", "event_id": 42},
    {"event_name": "Follow-up", "arm_num": 1, "unique_event_name": "followup_arm_1", "custom_event_label": "", "event_id": 43},
    {"event_name": "Baseline", "arm_num": 2, "unique_event_name": "baseline_arm_2", "custom_event_label": "", "event_id": 44},
    {"event_name": "Week 1", "arm_num": 2, "unique_event_name": "week_1_arm_2", "custom_event_label": "", "event_id": 45},
]
LONG_MAPPING = [
    {"arm_num": 1, "unique_event_name": "baseline_arm_1", "form": "enrollment"},
    {"arm_num": 1, "unique_event_name": "visit_1_arm_1", "form": "labs"},
    {"arm_num": 1, "unique_event_name": "followup_arm_1", "form": "labs"},
    {"arm_num": 1, "unique_event_name": "followup_arm_1", "form": "imaging"},
    {"arm_num": 2, "unique_event_name": "baseline_arm_2", "form": "enrollment"},
    {"arm_num": 2, "unique_event_name": "week_1_arm_2", "form": "labs"},
]
LONG_REPEATING = [
    {"event_name": "visit_1_arm_1", "form_name": "labs", "custom_form_label": ""},
    {"event_name": "followup_arm_1", "form_name": "", "custom_form_label": ""},
]


def longitudinal() -> ProjectShape:
    return ProjectShape.from_api(LONG_INFO, LONG_META, LONG_ARMS, LONG_EVENTS, LONG_MAPPING, LONG_REPEATING)


def row(**values: object) -> dict:
    """A flat export row of the longitudinal project: every requested column present."""
    base = {"study_id": "", "redcap_event_name": "", "redcap_repeat_instrument": "",
            "redcap_repeat_instance": "", "consent_pdf": "", "participant_sig": "", "lab_report": "",
            "scan": "", "orphan_file": ""}
    base.update(values)
    return base


def crow(**values: object) -> dict:
    """A flat export row of the classic project (no redcap_event_name)."""
    base = {"record_id": "", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
            "consent_pdf": "", "visit_photo": "", "participant_sig": ""}
    base.update(values)
    return base


# ------------------------------------------------------------------- shape


def test_classic_shape() -> None:
    shape = classic()
    assert not shape.longitudinal
    assert shape.record_id_field == "record_id"
    assert list(shape.file_fields) == ["consent_pdf", "visit_photo", "participant_sig"]
    assert shape.file_fields["participant_sig"] == FileField("participant_sig", "consent", True)
    assert shape.file_fields["consent_pdf"].signature is False
    assert shape.events() == [] and shape.arms() == []
    assert shape.has_event(None) and not shape.has_event("baseline_arm_1")
    assert shape.fields_in_event(None) == ["consent_pdf", "visit_photo", "participant_sig"]
    assert shape.repeats(None, "visit_photo")
    assert not shape.repeats(None, "consent_pdf")
    assert shape.export_fields() == ["record_id", "consent_pdf", "visit_photo", "participant_sig"]
    with pytest.raises(NotFound):
        shape.fields_in_event("baseline_arm_1")


def test_longitudinal_shape() -> None:
    shape = longitudinal()
    assert shape.longitudinal and shape.record_id_field == "study_id"
    assert shape.events() == ["baseline_arm_1", "visit_1_arm_1", "followup_arm_1", "baseline_arm_2", "week_1_arm_2"]
    assert shape.arms() == [1, 2]
    assert shape.arm_of_event("week_1_arm_2") == 2
    assert shape.events_of_arm(1) == ["baseline_arm_1", "visit_1_arm_1", "followup_arm_1"]
    assert shape.events_of_arm(2) == ["baseline_arm_2", "week_1_arm_2"]
    assert shape.fields_in_event("baseline_arm_1") == ["consent_pdf", "participant_sig"]
    assert shape.fields_in_event("followup_arm_1") == ["lab_report", "scan"]
    assert shape.file_fields["participant_sig"].signature
    assert not shape.has_event(None) and not shape.has_event("nope_arm_1")
    assert shape.has_field("orphan_file")
    assert not any(shape.field_in_event(e, "orphan_file") for e in shape.events())  # form mapped nowhere
    with pytest.raises(NotFound):
        shape.arm_of_event("nope")
    with pytest.raises(NotFound):
        shape.events_of_arm(3)


def test_repeating_instrument_and_event() -> None:
    shape = longitudinal()
    assert shape.repeats("visit_1_arm_1", "lab_report")  # labs repeats in visit 1 ...
    assert not shape.repeats("week_1_arm_2", "lab_report")  # ... but not in week 1
    assert shape.repeats("followup_arm_1", "lab_report")  # the whole event repeats
    assert shape.repeats("followup_arm_1", "scan")
    assert shape.event_repeats("followup_arm_1") and not shape.event_repeats("visit_1_arm_1")
    assert not shape.repeats("baseline_arm_1", "consent_pdf")


def test_empty_metadata_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        ProjectShape.from_api(CLASSIC_INFO, [], [], [], [], [])


def test_unknown_events_in_structure_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    mapping = LONG_MAPPING + [{"arm_num": 9, "unique_event_name": "ghost_arm_9", "form": "labs"}]
    repeating = LONG_REPEATING + [{"event_name": "ghost_arm_9", "form_name": "", "custom_form_label": ""}]
    with caplog.at_level(logging.WARNING):
        shape = ProjectShape.from_api(LONG_INFO, LONG_META, LONG_ARMS, LONG_EVENTS, mapping, repeating)
    assert "ghost_arm_9" not in shape.events()
    assert "ghost_arm_9" in caplog.text


# ------------------------------------------------------------------- index


def classic_index() -> RecordIndex:
    return RecordIndex(classic(), [
        crow(record_id="1", consent_pdf="consent 1.pdf", participant_sig="signature.png"),
        crow(record_id="1", redcap_repeat_instrument="visits", redcap_repeat_instance=1, visit_photo="knee.jpg"),
        crow(record_id="1", redcap_repeat_instrument="visits", redcap_repeat_instance="2", visit_photo=""),
        crow(record_id="1", redcap_repeat_instrument="visits", redcap_repeat_instance=3, visit_photo="[document]"),
        crow(record_id="2"),
        crow(record_id="a/b", consent_pdf="../x"),
    ])


def test_classic_index() -> None:
    index = classic_index()
    assert index.records() == ["1", "2", "a/b"]
    assert index.has_record("a/b") and not index.has_record("3")
    assert index.events_of("1") == []
    assert index.file_name(Slot("1", None, "consent_pdf", None)) == "consent 1.pdf"
    assert index.file_name(Slot("1", None, "participant_sig", None)) == "signature.png"
    assert index.instances("1", None, "visit_photo") == [1, 2, 3]
    assert index.instances("2", None, "visit_photo") == []
    assert index.instances("1", None, "consent_pdf") == []  # does not repeat
    assert index.file_name(Slot("1", None, "visit_photo", 1)) == "knee.jpg"
    assert index.file_name(Slot("1", None, "visit_photo", 2)) is None
    assert index.file_name(Slot("1", None, "visit_photo", 3)) == DOCUMENT_PLACEHOLDER
    assert index.file_name(Slot("2", None, "consent_pdf", None)) is None
    assert index.file_name(Slot("a/b", None, "consent_pdf", None)) == "../x"
    assert index.file_name(Slot("nobody", None, "consent_pdf", None)) is None
    assert list(index.slots_with_files()) == [
        (Slot("1", None, "consent_pdf", None), "consent 1.pdf"),
        (Slot("1", None, "participant_sig", None), "signature.png"),
        (Slot("1", None, "visit_photo", 1), "knee.jpg"),
        (Slot("1", None, "visit_photo", 3), "[document]"),
        (Slot("a/b", None, "consent_pdf", None), "../x"),
    ]


def long_index() -> RecordIndex:
    return RecordIndex(longitudinal(), [
        row(study_id="1001", redcap_event_name="baseline_arm_1", consent_pdf="consent.pdf"),
        row(study_id="1001", redcap_event_name="visit_1_arm_1", redcap_repeat_instrument="labs",
            redcap_repeat_instance=1, lab_report="cbc.pdf"),
        row(study_id="1001", redcap_event_name="visit_1_arm_1", redcap_repeat_instrument="labs",
            redcap_repeat_instance="2", lab_report=""),
        row(study_id="1001", redcap_event_name="followup_arm_1", redcap_repeat_instance=1, scan="mri.dcm"),
        row(study_id="1001", redcap_event_name="followup_arm_1", redcap_repeat_instance="3",
            lab_report="late.pdf", scan=""),
        row(study_id="2001", redcap_event_name="week_1_arm_2", lab_report="[document]"),
    ])


def test_longitudinal_index() -> None:
    index = long_index()
    assert index.records() == ["1001", "2001"]
    assert index.file_name(Slot("1001", "baseline_arm_1", "consent_pdf", None)) == "consent.pdf"
    assert index.instances("1001", "visit_1_arm_1", "lab_report") == [1, 2]
    assert index.file_name(Slot("1001", "visit_1_arm_1", "lab_report", 1)) == "cbc.pdf"
    assert index.file_name(Slot("1001", "visit_1_arm_1", "lab_report", 2)) is None
    # A repeating event: instances are the event's, shared by all its fields.
    assert index.instances("1001", "followup_arm_1", "scan") == [1, 3]
    assert index.instances("1001", "followup_arm_1", "lab_report") == [1, 3]
    assert index.file_name(Slot("1001", "followup_arm_1", "scan", 1)) == "mri.dcm"
    assert index.file_name(Slot("1001", "followup_arm_1", "lab_report", 3)) == "late.pdf"
    assert index.file_name(Slot("2001", "week_1_arm_2", "lab_report", None)) == DOCUMENT_PLACEHOLDER


def test_events_of_lists_whole_arms() -> None:
    index = long_index()
    # Data in arm 1 only: every arm-1 event, empty ones too, and no arm-2 event.
    assert index.events_of("1001") == ["baseline_arm_1", "visit_1_arm_1", "followup_arm_1"]
    # A record in arm 2 lists only arm-2 events.
    assert index.events_of("2001") == ["baseline_arm_2", "week_1_arm_2"]
    with pytest.raises(NotFound):
        index.events_of("9999")


def test_record_in_two_arms_lists_both() -> None:
    index = RecordIndex(longitudinal(), [
        row(study_id="7", redcap_event_name="baseline_arm_1"),
        row(study_id="7", redcap_event_name="baseline_arm_2"),
    ])
    assert index.events_of("7") == longitudinal().events()


def test_unknown_columns_events_and_instruments_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        index = RecordIndex(longitudinal(), [
            row(study_id="1", redcap_event_name="baseline_arm_1", consent_pdf="c.pdf", mystery_file="x.pdf"),
            row(study_id="1", redcap_event_name="ghost_arm_1", consent_pdf="ghost.pdf"),
            row(study_id="1", redcap_event_name="visit_1_arm_1", redcap_repeat_instrument="nonsense",
                redcap_repeat_instance=1),
            row(study_id="1", redcap_event_name="visit_1_arm_1", redcap_repeat_instrument="labs",
                redcap_repeat_instance="x", lab_report="bad.pdf"),
            row(study_id="1", redcap_event_name="visit_1_arm_1", redcap_repeat_instrument="labs",
                redcap_repeat_instance=0, lab_report="zero.pdf"),
            row(study_id="", redcap_event_name="baseline_arm_1", consent_pdf="nobody.pdf"),
            {"study_id": "1", "redcap_event_name": "baseline_arm_1", "enrollment_complete": "2",
             "lab_date": "2024-01-01", "redcap_data_access_group": "site_a"},
        ])
    assert index.records() == ["1"]
    assert [name for _, name in index.slots_with_files()] == ["c.pdf"]
    assert index.instances("1", "visit_1_arm_1", "lab_report") == []
    for word in ("mystery_file", "ghost_arm_1", "nonsense", "'x'", "0"):
        assert word in caplog.text
    assert "enrollment_complete" not in caplog.text and "lab_date" not in caplog.text
    assert "redcap_data_access_group" not in caplog.text


def test_warnings_are_not_repeated_per_row(caplog: pytest.LogCaptureFixture) -> None:
    rows = [row(study_id=str(i), redcap_event_name="baseline_arm_1", extra="1") for i in range(50)]
    with caplog.at_level(logging.WARNING):
        RecordIndex(longitudinal(), rows)
    assert caplog.text.count("'extra'") == 1


def test_repeating_form_value_on_base_row_is_instance_1() -> None:
    """A form made repeating after data entry: the API reads that value as instance 1."""
    index = RecordIndex(classic(), [crow(record_id="1", visit_photo="old.jpg")])
    assert index.instances("1", None, "visit_photo") == [1]
    assert index.file_name(Slot("1", None, "visit_photo", 1)) == "old.jpg"


def test_instance_1_of_non_repeating_event_is_the_base_row() -> None:
    index = RecordIndex(longitudinal(), [
        row(study_id="1", redcap_event_name="baseline_arm_1", redcap_repeat_instance=1, consent_pdf="a.pdf"),
        row(study_id="1", redcap_event_name="baseline_arm_1", redcap_repeat_instance=2, consent_pdf="b.pdf"),
    ])
    assert list(index.slots_with_files()) == [(Slot("1", "baseline_arm_1", "consent_pdf", None), "a.pdf")]


def test_with_file_and_local_creation() -> None:
    index = long_index()
    slot = Slot("1001", "baseline_arm_1", "consent_pdf", None)
    index.with_file(slot, "v2.pdf")
    assert index.file_name(slot) == "v2.pdf"
    index.with_file(slot, None)
    assert index.file_name(slot) is None
    index.with_file(slot, None)  # deleting twice is harmless

    index.add_record("3001", 2)
    assert index.records()[-1] == "3001"
    assert index.events_of("3001") == ["baseline_arm_2", "week_1_arm_2"]
    index.add_record("3002", "visit_1_arm_1")
    assert index.events_of("3002")[0] == "baseline_arm_1"

    index.add_instance("1001", "visit_1_arm_1", "lab_report", 5)
    assert index.instances("1001", "visit_1_arm_1", "lab_report") == [1, 2, 5]
    new = Slot("1001", "followup_arm_1", "scan", 4)
    index.with_file(new, "ct.dcm")
    assert index.instances("1001", "followup_arm_1", "lab_report") == [1, 3, 4]
    assert (new, "ct.dcm") in list(index.slots_with_files())


def test_with_file_adds_an_unknown_record() -> None:
    index = classic_index()
    index.with_file(Slot("new", None, "consent_pdf", None), "n.pdf")
    assert index.records()[-1] == "new"


@pytest.mark.parametrize("slot", [
    Slot("1001", "baseline_arm_1", "lab_report", None),  # labs is not in baseline
    Slot("1001", "nope_arm_1", "consent_pdf", None),
])
def test_with_file_rejects_impossible_slots(slot: Slot) -> None:
    with pytest.raises(NotFound):
        long_index().with_file(slot, "x.pdf")


@pytest.mark.parametrize("slot", [
    Slot("1001", "baseline_arm_1", "consent_pdf", 1),  # does not repeat
    Slot("1001", "visit_1_arm_1", "lab_report", None),  # repeats: needs an instance
])
def test_with_file_rejects_wrong_instance(slot: Slot) -> None:
    with pytest.raises(InvalidArgument):
        long_index().with_file(slot, "x.pdf")


def test_local_creation_errors() -> None:
    index = long_index()
    with pytest.raises(NotFound):
        index.add_record("x", 7)
    with pytest.raises(InvalidArgument):
        index.add_record("x")  # longitudinal needs an arm or event
    assert not index.has_record("x")  # a refused creation leaves nothing behind
    with pytest.raises(InvalidArgument):
        index.add_instance("1001", "baseline_arm_1", "consent_pdf", 2)
    with pytest.raises(InvalidArgument):
        index.add_instance("1001", "visit_1_arm_1", "lab_report", 0)
    classic_index().add_record("c")  # classic: no arm needed
