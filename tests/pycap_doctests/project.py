"""The project PyCap's doctests show, built for the sandbox (a ``ProjectDef``, not PyCap's own XML).

What the doctests read: one arm, events ``event_1_arm_1`` (form_1, repeating as a whole
event) and ``event_2_arm_1`` (no forms); fields ``record_id``, ``field_1`` (yes/no),
``checkbox_field`` (two options), ``upload_field``; records 1 and 2; record 1's
``test_upload.txt`` holding ``test upload\\n``; a DAG "Test DAG", a role "Test role";
the File Repository's ``test.txt`` (``hello``) and folder ``test`` with ``test_in_folder.txt``;
a log history (PyCap's ``export_logging`` doctest shows the ``Create project`` row with older
rows after it; here, as if REDCap wrote that row after importing the project XML's records:
the order REDCap really uses is not shown by any public source).
"""

from __future__ import annotations

from pathlib import Path

from redcapfs.sandbox.project import ProjectDef, RepositoryFile, StoredFile
from tests.sandbox_projects import field

USER = "sandbox_api"


def _file(tmp: Path, name: str, data: bytes) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_bytes(data)
    return str(tmp / name)


def doctest_project(tmp: Path) -> ProjectDef:
    metadata = [
        field("record_id", "form_1"),
        {**field("field_1", "form_1", "yesno"), "field_label": "Field 1"},
        field("checkbox_field", "form_1", "checkbox", choices="1, Option 1 | 2, Option 2"),
        {**field("upload_field", "form_1", "file"), "field_label": "File Upload"},
    ]
    events = [
        {"event_name": "Event 1", "arm_num": 1, "unique_event_name": "event_1_arm_1",
         "custom_event_label": "", "event_id": 101},
        {"event_name": "Event 2", "arm_num": 1, "unique_event_name": "event_2_arm_1",
         "custom_event_label": "", "event_id": 102},
    ]
    records = [
        {"record_id": "1", "redcap_event_name": "event_1_arm_1", "redcap_repeat_instance": 1,
         "field_1": "1", "checkbox_field___1": "0", "checkbox_field___2": "1", "form_1_complete": "2"},
        {"record_id": "2", "redcap_event_name": "event_1_arm_1", "redcap_repeat_instance": 1,
         "field_1": "0", "checkbox_field___1": "0", "checkbox_field___2": "0", "form_1_complete": "0"},
    ]
    files = [StoredFile("1", "upload_field", "test_upload.txt", _file(tmp, "t1", b"test upload\n"),
                        "event_1_arm_1", 1, "text/plain")]
    role = {"role_label": "Test role", **{k: "0" for k in ROLE_ZERO}, "forms": {"form_1": 2},
            "forms_export": {"form_1": 0}}
    project = ProjectDef(
        info={"project_id": 38759, "project_title": "PyCap doctest_project", "is_longitudinal": 1,
              "surveys_enabled": 1, "record_autonumbering_enabled": 1},
        metadata=metadata,
        instruments=[{"instrument_name": "form_1", "instrument_label": "Form 1"}],
        arms=[{"arm_num": 1, "name": "Arm 1"}],
        events=events,
        form_event_mapping=[{"arm_num": 1, "unique_event_name": "event_1_arm_1", "form": "form_1"}],
        repeating=[{"event_name": "event_1_arm_1", "form_name": "", "custom_form_label": ""}],
        records=records,
        files=files,
        dags=[{"data_access_group_name": "Test DAG", "unique_group_name": "test_dag"}],
        roles=[role],
        repository=[
            RepositoryFile("test.txt", _file(tmp, "r1", b"hello"), "", "text/plain"),
            RepositoryFile("test_in_folder.txt", _file(tmp, "r2", b"in folder"), "test", "text/plain"),
        ],
        log=[
            {"username": USER, "action": "Manage/Design ", "details": "Create project (API)"},
            {"username": USER, "action": "Create record (API) 2", "details": "", "record": "2",
             "kind": "record_add"},
            {"username": USER, "action": "Create record (API) 1", "details": "", "record": "1",
             "kind": "record_add"},
        ],
    )
    return project


ROLE_ZERO = (
    "design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
    "manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool", "logging",
    "email_logging", "file_repository", "data_quality_create", "data_quality_execute", "api_export",
    "api_import", "api_modules", "mobile_app", "mobile_app_download_data", "record_create", "record_rename",
    "record_delete", "lock_records_customization", "lock_records", "lock_records_all_forms",
)
