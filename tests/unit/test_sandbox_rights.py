"""Users, rights, DAGs, the File Repository and the log, through HTTP with PyCap and tokens of different users.

One sandbox process per test, seeded with PyCap's doctest project plus users:
``alice`` (every right), ``bob`` (site A's DAG, may create but not delete
records), ``carol`` (no DAG; form_1 de-identified, no File Repository). Every
check reads the answer through PyCap, or a second user's view, never the
sandbox's internals.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redcap

from redcapfs.sandbox.team import FULL_RIGHTS
from tests.conftest import DATA, SandboxProc, start_sandbox
from tests.pycap_doctests.project import doctest_project
from tests.sandbox_projects import field, seed

ALICE, BOB, CAROL = "A" * 32, "B" * 32, "C" * 32


def _user(name: str, **rights: Any) -> dict[str, Any]:
    return {"username": name, **FULL_RIGHTS, "forms": {"form_1": 1}, "forms_export": {"form_1": 1}, **rights}


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[SandboxProc]:
    project = doctest_project(tmp_path / "source")
    project.metadata.insert(1, {**field("name", "form_1"), "identifier": "y"})
    project.metadata.insert(2, field("note", "form_1", "notes"))
    project.records[0]["name"] = "Ann"
    project.dags.append({"data_access_group_name": "Site B", "unique_group_name": "site_b"})
    project.users = [
        _user("alice"),
        _user("bob", record_delete=0, data_access_group="test_dag"),
        _user("carol", file_repository=0, forms_export={"form_1": 2}),
    ]
    project.record_dags = {"2": "site_b"}
    data_dir = seed(tmp_path / "data", project)
    tokens = [f"{ALICE}:full:alice", f"{BOB}:full:bob", f"{CAROL}:full:carol"]
    proc = start_sandbox([a for t in tokens for a in ("--token", t)], data_dir, tmp_path / "requests.jsonl")
    yield proc
    proc.stop()


def projects(sb: SandboxProc) -> tuple[redcap.Project, redcap.Project, redcap.Project]:
    return tuple(redcap.Project(sb.url, t) for t in (ALICE, BOB, CAROL))  # type: ignore[return-value]


def error_of(call: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(redcap.RedcapError) as info:
        call(*args, **kw)
    return str(info.value)


def test_a_dag_member_sees_and_changes_only_their_dags_records(sb: SandboxProc) -> None:
    alice, bob, _ = projects(sb)
    assert bob.export_records() == []
    assert bob.generate_next_record_name() == "1-1"  # REDCap prefixes the DAG's id
    row = {"record_id": "1-1", "field_1": "1"}
    assert bob.import_records([row]) == {"count": 1}
    assert [r["record_id"] for r in bob.export_records()] == ["1-1"]
    dags = {r["record_id"]: r["redcap_data_access_group"]
            for r in alice.export_records(export_data_access_groups=True)}
    assert dags == {"1": "", "2": "site_b", "1-1": "test_dag"}
    assert "belongs to a Data Access Group" in error_of(bob.import_records, [{"record_id": "2", "field_1": "0"}])
    assert 'The record "1" does not exist' in error_of(
        bob.export_file, record="1", field="upload_field", event="event_1_arm_1")
    assert "permission to delete" in error_of(bob.delete_records, ["1-1"])
    assert alice.delete_records(["1-1"]) == 1


def test_rights_set_through_the_api_govern_the_next_call(sb: SandboxProc) -> None:
    alice, bob, _ = projects(sb)
    assert alice.import_users([{"username": "bob", "api_import": 0}]) == 1
    assert "API Import/Update privileges" in error_of(bob.import_records, [{"record_id": "1-2"}])
    assert alice.import_user_dag_assignment([{"username": "bob", "redcap_data_access_group": ""}]) == 1
    assert [r["record_id"] for r in bob.export_records(fields=["record_id"])] == ["1", "2"]
    roles = [{"role_label": "Readers", "api_export": 1, "forms": {"form_1": 2}, "forms_export": {"form_1": 0}}]
    assert alice.import_user_roles(roles) == 1
    name = next(r["unique_role_name"] for r in alice.export_user_roles() if r["role_label"] == "Readers")
    assert alice.import_user_role_assignment([{"username": "bob", "unique_role_name": name}]) == 1
    assert "No Access" in error_of(bob.export_records)  # the role's rights replace the user's own
    assert alice.delete_users(["bob"]) == 1
    assert "permissions to use the API" in error_of(bob.export_records)


def test_deidentified_export_leaves_out_identifiers_and_free_text(sb: SandboxProc) -> None:
    alice, _, carol = projects(sb)
    assert alice.export_records(records=["1"])[0]["name"] == "Ann"
    row = carol.export_records(records=["1"])[0]
    assert "name" not in row and "note" not in row and row["field_1"] == "1"
    assert alice.import_users([{"username": "carol", "forms_export": {"form_1": 3}}]) == 1
    row = carol.export_records(records=["1"])[0]
    assert "name" not in row and "note" in row


def test_file_repository_folders_dags_roles_and_duplicate_names(sb: SandboxProc) -> None:
    alice, bob, carol = projects(sb)
    site_a = next(d["data_access_group_id"] for d in alice.export_dags() if d["unique_group_name"] == "test_dag")
    site_b = next(d["data_access_group_id"] for d in alice.export_dags() if d["unique_group_name"] == "site_b")
    folder_a = alice.create_folder_in_repository("Site A docs", dag_id=site_a)[0]["folder_id"]
    folder_b = alice.create_folder_in_repository("Site B docs", dag_id=site_b)[0]["folder_id"]
    names = [r["name"] for r in bob.export_file_repository() if "folder_id" in r]
    assert "Site A docs" in names and "Site B docs" not in names
    assert "does not exist or else you do not have permission" in error_of(
        bob.export_file_repository, folder_id=folder_b)
    for body in (b"one", b"two"):
        bob.import_file_into_repository("same.txt", io.BytesIO(body), folder_id=folder_a)
    docs = [r for r in alice.export_file_repository(folder_id=folder_a) if r["name"] == "same.txt"]
    assert len(docs) == 2 and docs[0]["doc_id"] != docs[1]["doc_id"]
    contents = sorted(alice.export_file_from_repository(doc_id=d["doc_id"])[0] for d in docs)
    assert contents == [b"one", b"two"]
    bob.delete_file_from_repository(doc_id=docs[0]["doc_id"])
    assert len([r for r in alice.export_file_repository(folder_id=folder_a) if r["name"] == "same.txt"]) == 1
    assert "File Repository privilege" in error_of(carol.export_file_repository)


def test_every_change_is_logged_with_the_users_name_and_filters(sb: SandboxProc) -> None:
    alice, bob, _ = projects(sb)
    bob.import_records([{"record_id": "1-1", "field_1": "1"}])
    bob.import_file("1-1", "upload_field", "a.txt", io.BytesIO(b"a"), event="event_1_arm_1")
    bob.delete_file("1-1", "upload_field", event="event_1_arm_1")
    alice.import_events([{"event_name": "Week 2", "arm_num": "1"}])
    alice.delete_records(["1-1"])
    rows = alice.export_logging()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", r["timestamp"]) for r in rows)
    mine = [(r["username"], r["action"]) for r in rows[:5]]
    assert mine == [("alice", "Delete record (API) 1-1"), ("alice", "Manage/Design "),
                    ("bob", "Delete uploaded document (API)"), ("bob", "Update record (API) 1-1"),
                    ("bob", "Create record (API) 1-1")]
    assert [r["action"] for r in alice.export_logging(user="bob", log_type="record_add")] == [
        "Create record (API) 1-1"]
    assert len(alice.export_logging(record="1-1")) == 4
    assert any("Week 2" in r["details"] or "events" in r["details"]
               for r in alice.export_logging(log_type="manage"))


def test_design_rules_production_and_override(sb: SandboxProc) -> None:
    alice, bob, _ = projects(sb)
    assert alice.import_arms([{"arm_num": 2, "name": "Arm 2"}, {"arm_num": 3, "name": "Arm 3"}]) == 2
    assert alice.import_arms([{"arm_num": 1, "name": "Only"}], override=1) == 1
    assert alice.export_arms() == [{"arm_num": 1, "name": "Only"}]
    assert alice.import_users([{"username": "bob", "design": 0}]) == 1
    assert "Project Design and Setup" in error_of(bob.import_events, [{"event_name": "X", "arm_num": "1"}])
    assert alice.delete_events(["event_2_arm_1"]) == 1
    assert [e["unique_event_name"] for e in alice.export_events()] == ["event_1_arm_1"]


def test_a_json_project_carries_its_team_and_repository(tmp_path: Path) -> None:
    """``redcapfs sandbox DIR --token T:RIGHTS:USER``: users, DAGs and the repository come from the dir."""
    src = tmp_path / "proj"
    shutil.copytree(DATA / "classic-json", src)
    records = json.loads((src / "records.json").read_text())
    records[-1]["redcap_data_access_group"] = "north"
    (src / "records.json").write_text(json.dumps(records))
    (src / "dags.json").write_text(json.dumps([{"data_access_group_name": "North", "unique_group_name": "north"}]))
    (src / "users.json").write_text(json.dumps([
        {"username": "nora", "data_access_group": "north", **FULL_RIGHTS},
        {"username": "olga", **FULL_RIGHTS, "api_import": 0}]))
    (src / "repository").mkdir()
    (src / "repository" / "p.txt").write_bytes(b"protocol")
    (src / "repository" / "manifest.json").write_text(json.dumps([{"folder": "Protocols/v2", "path": "p.txt",
                                                                  "name": "protocol.txt"}]))
    args = ["--token", f"{BOB}:full:nora", "--token", f"{CAROL}:full:olga", "--token", f"{ALICE}:export"]
    sb = start_sandbox([str(src)] + args, tmp_path / "data", tmp_path / "requests.jsonl")
    try:
        nora, olga, anon = (redcap.Project(sb.url, t) for t in (BOB, CAROL, ALICE))
        assert [r["record_id"] for r in nora.export_records(fields=["record_id"])] == ["a/b c"]
        assert "API Import/Update privileges" in error_of(olga.import_records, [{"record_id": "9"}])
        top = olga.export_file_repository()
        protocols = next(r["folder_id"] for r in top if r.get("name") == "Protocols")
        v2 = olga.export_file_repository(folder_id=protocols)[0]["folder_id"]
        doc = olga.export_file_repository(folder_id=v2)[0]
        assert olga.export_file_from_repository(doc_id=doc["doc_id"])[0] == b"protocol"
        assert "API Import/Update privileges" in error_of(anon.import_records, [{"record_id": "9"}])
        assert {u["username"] for u in olga.export_users()} == {"nora", "olga", "sandbox_api"}
    finally:
        sb.stop()


def test_a_production_project_refuses_metadata_arm_and_event_changes(tmp_path: Path) -> None:
    project = doctest_project(tmp_path / "source")
    project.info["in_production"] = 1
    sb = start_sandbox(["--token", f"{ALICE}:full:alice"], seed(tmp_path / "data", project),
                       tmp_path / "requests.jsonl")
    try:
        proj = redcap.Project(sb.url, ALICE)
        assert "production" in error_of(proj.import_metadata, proj.export_metadata(format_type="csv"),
                                        import_format="csv")
        assert "production" in error_of(proj.import_events, [{"event_name": "Late", "arm_num": "1"}])
        assert "production" in error_of(proj.delete_arms, [1])
        mapping = [{"arm_num": "1", "unique_event_name": "event_2_arm_1", "form": "form_1"}]
        assert proj.import_instrument_event_mappings(mapping) == 1
        assert proj.export_instrument_event_mappings() == [
            {"arm_num": 1, "unique_event_name": "event_2_arm_1", "form": "form_1"}]
    finally:
        sb.stop()


def test_repository_csv_listing_has_redcaprs_columns(sb: SandboxProc) -> None:
    alice, _, _ = projects(sb)
    text = alice.export_file_repository(format_type="csv", return_format_type="csv")
    lines = text.splitlines()
    assert lines[0] == "folder_id,doc_id,name,role,dag"
    assert lines[1].split(",")[1:] == ["", "test", "", ""] and lines[2].split(",")[0] == ""


def test_record_export_options_and_partial_delete(sb: SandboxProc) -> None:
    alice, _, _ = projects(sb)
    eav = alice.export_records(records=["1"], fields=["field_1", "checkbox_field"], record_type="eav")
    pairs = [(r["field_name"], r["value"]) for r in eav]
    assert pairs == [("record_id", "1"), ("field_1", "1"), ("checkbox_field", "2")]
    csv_text = alice.export_records(format_type="csv", records=["1"], fields=["field_1"],
                                    raw_or_label_headers="label")
    assert csv_text.splitlines()[0] == '"Record Id","Event Name","Repeat Instrument","Repeat Instance","Field 1"'
    assert [r["record_id"] for r in alice.export_records(filter_logic="[field_1] = '0' or [name] = 'Ann'")] == [
        "1", "2"]
    assert alice.export_records(filter_logic="[checkbox_field(2)] = 1 and not [field_1] = 0")[0]["record_id"] == "1"
    assert alice.delete_records(["1"], instrument="form_1", event="event_1_arm_1") == 1
    assert alice.export_records(records=["1"]) == []
    assert "does not exist" in error_of(alice.export_file, record="1", field="upload_field", event="event_1_arm_1")
    rows = alice.export_logging(begin_time=datetime.now() + timedelta(days=1))
    assert rows == []
    assert alice.export_logging(end_time=datetime.now() - timedelta(days=1)) == []
