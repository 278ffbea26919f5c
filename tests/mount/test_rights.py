"""The mount shows what its token may do: modes without import rights, EACCES for an unexportable instrument, DAGs.

One sandbox (the bundled demo project) with several tokens of different
users; rights and DAGs are set through PyCap with the full user's token, and
every outcome is checked through PyCap or the sandbox's request log.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mounthelp import errno_of

redcap = pytest.importorskip("redcap")

from redcapfs.sandbox.team import FULL_RIGHTS  # noqa: E402

FULL, EXPORTER, NOFORM, DAGGER = "A" * 32, "E" * 32, "F" * 32, "D" * 32
CONSENT = Path("1001") / "screening_arm_1" / "consent_form" / "consent_1001.pdf"



@pytest.fixture
def team(sandbox: Any) -> tuple[Any, Any]:
    """A sandbox with alice (full), erin (export-only token), fred (no export on consent's form), dora (a DAG)."""
    sb = sandbox(*(a for t in (f"{FULL}:full:alice", f"{EXPORTER}:export:erin", f"{NOFORM}:full:fred",
                                f"{DAGGER}:full:dora") for a in ("--token", t)))
    alice = redcap.Project(sb.url, FULL)
    forms = [i["instrument_name"] for i in alice.export_instruments()]
    alice.import_users([{"username": "fred", **FULL_RIGHTS, "forms": {f: 1 for f in forms},
                         "forms_export": {f: 1 for f in forms}},
                        {"username": "dora", **FULL_RIGHTS, "forms": {f: 1 for f in forms},
                         "forms_export": {f: 1 for f in forms}}])
    alice.import_dags([{"data_access_group_name": "Site A", "unique_group_name": ""}])
    group = alice.export_dags()[0]["unique_group_name"]
    alice.import_user_dag_assignment([{"username": "dora", "redcap_data_access_group": group}])
    dora = redcap.Project(sb.url, DAGGER)  # a record a DAG member creates joins their DAG
    dora.import_records([{"record_id": dora.generate_next_record_name(), "redcap_event_name": "screening_arm_1"}])
    return sb, alice


def test_an_export_only_token_shows_read_only_modes_and_refuses_writes(team: Any, mount: Any) -> None:
    sb, alice = team
    m = mount(sb, "attr_timeout=0", env={"REDCAP_API_TOKEN": EXPORTER})  # stat asks the mount each time
    assert stat.S_IMODE(os.stat(m.path / "1001").st_mode) == 0o755  # nothing known yet: the usual modes
    assert errno_of(open, m.path / CONSENT, "r+b") == errno.EACCES  # the first write asks REDCap once
    assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(m.path / "1001").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(m.path / CONSENT).st_mode) == 0o444
    content, _ = alice.export_file(record="1001", field="consent_form", event="screening_arm_1")
    assert (m.path / CONSENT).read_bytes() == content
    assert errno_of(os.unlink, m.path / CONSENT) == errno.EACCES
    assert sb.calls(content="file", action="import") == [] and sb.calls(content="file", action="delete") == []


def test_a_full_token_keeps_writable_modes(team: Any, mount: Any) -> None:
    sb, _ = team
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    assert stat.S_IMODE(os.stat(m.path / "1001").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(m.path / CONSENT).st_mode) == 0o644


def test_an_unexportable_instrument_stays_listed_and_reading_it_is_eacces(team: Any, mount: Any) -> None:
    """Learned from a whole records export: the TTL mode's refresh (with the change feed, a rights change
    alone rereads no record, so it shows at the next export that includes the field's records)."""
    sb, alice = team
    m = mount(sb, "records_ttl=0.5", "poll=0", env={"REDCAP_API_TOKEN": NOFORM})  # TTL refreshes: see below
    assert os.listdir(m.path / CONSENT.parent) == [CONSENT.name]
    forms = [i["instrument_name"] for i in alice.export_instruments()]
    consent_form = next(r["form_name"] for r in alice.export_metadata() if r["field_name"] == "consent_form")
    alice.import_users([{"username": "fred", "forms_export": {f: int(f != consent_form) for f in forms}}])
    fred_view = redcap.Project(sb.url, NOFORM).export_records(records=["1001"])
    assert all("consent_form" not in row for row in fred_view)  # what the mount learns from
    deadline = time.monotonic() + 20  # a bound, not an assertion: the refresh shows in the log
    while "leaves it out" not in m.log and time.monotonic() < deadline:
        os.listdir(m.path / "1001")
        time.sleep(0.2)
    assert "field consent_form: the records export leaves it out" in m.log
    assert os.listdir(m.path / CONSENT.parent) == [CONSENT.name]  # rsync --delete keeps the backup's copy
    assert errno_of((m.path / CONSENT).read_bytes) == errno.EACCES
    assert os.stat(m.path / CONSENT).st_size >= 0  # stat still answers (no download, no refusal)
    other = m.path / "1001" / "baseline_arm_1" / "mri_upload"
    assert os.listdir(other)  # other instruments read as before
    content, _ = alice.export_file(record="1001", field="consent_form", event="screening_arm_1")
    assert content  # the file is still on the server


def test_a_dag_token_sees_only_its_dags_records_and_mkdir_joins_the_dag(team: Any, mount: Any) -> None:
    sb, alice = team
    m = mount(sb, env={"REDCAP_API_TOKEN": DAGGER})
    group = alice.export_dags()[0]["unique_group_name"]
    groups = {r["record_id"]: r["redcap_data_access_group"]
              for r in alice.export_records(export_data_access_groups=True)}
    mine = sorted(r for r, g in groups.items() if g == group)
    assert len(mine) == 1 and len(groups) > 1
    assert sorted(os.listdir(m.path)) == [".repository", *mine]  # the File Repository is listed too
    assert errno_of(os.stat, m.path / "1001") == errno.ENOENT
    new = redcap.Project(sb.url, DAGGER).generate_next_record_name()
    os.mkdir(m.path / new)
    groups = {r["record_id"]: r["redcap_data_access_group"]
              for r in alice.export_records(export_data_access_groups=True)}
    assert groups[new] == group
    assert sorted(os.listdir(m.path)) == sorted([".repository", *mine, new])


def test_a_locked_record_shows_read_only_after_the_first_refusal(team: Any, mount: Any, tmp_path: Path) -> None:
    sb, alice = team
    m = mount(sb, "attr_timeout=0", env={"REDCAP_API_TOKEN": FULL})  # stat asks the mount each time
    record = m.path / "1006"  # locked in the demo project
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o755  # nothing known yet: the usual modes
    draft = tmp_path / "notes.txt"
    draft.write_bytes(b"visit notes\n")
    r = subprocess.run(["cp", str(draft), str(record / "baseline_arm_1" / "radiology_report") + "/"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o555
    assert stat.S_IMODE(os.stat(record / "baseline_arm_1").st_mode) == 0o555
    assert stat.S_IMODE(os.stat(m.path / "1001").st_mode) == 0o755  # other records as before
    assert "record '1006': locked in REDCap" in m.log
    rows = alice.export_records(records=["1006"], fields=["radiology_report"], events=["baseline_arm_1"])
    assert all(not row.get("radiology_report") for row in rows)
