"""A project whose design changes while it is mounted: fields, events, arms and the repeating setup.

The designer is a second user changing the project through PyCap (as the API
or the Online Designer would), during the test. With the change feed a design
change shows at the next poll; without the log, within ``-o metadata_ttl``.
Nothing cached for a slot that disappeared is served, and bytes being written
into a slot that vanished are kept as unsent. Waits wait for a cause (a poll,
or a design read, that started after the change), never for a time.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

redcap = pytest.importorskip("redcap")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, errno_of, settle  # noqa: E402
from test_change_feed import after, wait_for_poll  # noqa: E402

ALICE, DANA = "A1" * 16, "D4" * 16  # the mount's user; the designer
NO_KERNEL_CACHE = "attr_timeout=0,entry_timeout=0"
CONSENT = Path("1001") / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
REPORT_DIR = Path("1001") / "baseline_arm_1" / "radiology_report"  # empty in the demo project



def designer(sb: Any) -> Any:
    return redcap.Project(sb.url, DANA)


def team(sandbox: Any) -> Any:
    return sandbox("--token", f"{ALICE}:full:alice", "--token", f"{DANA}:full:dana")


def drop_field(sb: Any, field: str) -> None:
    project = designer(sb)
    project.import_metadata([row for row in project.export_metadata() if row["field_name"] != field])


def wait_for_design_read(sb: Any, mark: float, limit: float = 30.0) -> None:
    """Without the log: until a metadata export that started after ``mark`` has ended (the second to end)."""
    deadline = time.monotonic() + limit
    while len(after(sb, mark, content="metadata")) < 2:
        assert time.monotonic() < deadline, "the design was not read again"
        time.sleep(0.1)
    settle(lambda: len(sb.calls()))


def test_events_arms_and_the_repeating_setup_follow_the_log(sandbox: Any, mount: Any) -> None:
    sb = team(sandbox)
    m = mount(sb, "poll=1", NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": ALICE})
    dana = designer(sb)
    assert "week_4_arm_1" in os.listdir(m.path / "1001")

    # A new event with vitals and imaging (and a record's vitals there), a new arm; an event removed.
    mark = time.time()
    dana.import_events([{"event_name": "Week 8", "arm_num": "1", "unique_event_name": "week_8_arm_1"}])
    mappings = dana.export_instrument_event_mappings()
    dana.import_instrument_event_mappings(
        [{"arm_num": r["arm_num"], "unique_event_name": r["unique_event_name"], "form": r["form"]}
         for r in mappings if str(r["arm_num"]) == "1"]
        + [{"arm_num": 1, "unique_event_name": "week_8_arm_1", "form": f} for f in ("vitals", "imaging")])
    dana.import_arms([{"arm_num": "3", "name": "Extension"}])
    dana.import_events([{"event_name": "Intake", "arm_num": "3", "unique_event_name": "intake_arm_3"}])
    dana.import_instrument_event_mappings([{"arm_num": 3, "unique_event_name": "intake_arm_3", "form": "consent"}])
    dana.import_records([{"record_id": "1001", "redcap_event_name": "week_8_arm_1", "visit_date": "2024-02-26"},
                         {"record_id": "3001", "redcap_event_name": "intake_arm_3", "consent_date": "2024-05-01"}])
    dana.delete_events(["week_4_arm_1"])
    wait_for_poll(sb, mark)
    week_8 = m.path / "1001" / "week_8_arm_1"
    assert "week_8_arm_1" in os.listdir(m.path / "1001")
    assert sorted(os.listdir(week_8)) == ["mri_upload", "radiology_report"]
    assert "week_4_arm_1" not in os.listdir(m.path / "1001")
    assert errno_of(os.stat, m.path / "1001" / "week_4_arm_1") == errno.ENOENT
    assert os.listdir(m.path / "3001") == ["intake_arm_3"]
    assert sorted(os.listdir(m.path / "3001" / "intake_arm_3")) == ["consent_form", "consent_signature"]

    # Imaging repeats in week 8 from now on: the slot gains an instance level; and then no longer.
    assert errno_of(os.mkdir, week_8 / "mri_upload" / "2") == errno.EPERM
    setup = dana.export_repeating_instruments_events()
    mark = time.time()
    dana.import_repeating_instruments_events(
        setup + [{"event_name": "week_8_arm_1", "form_name": "imaging", "custom_form_label": ""}])
    wait_for_poll(sb, mark)
    os.mkdir(week_8 / "mri_upload" / "2")  # an instance level now
    (week_8 / "mri_upload" / "2" / "scan.txt").write_bytes(b"second scan\n")
    content, _ = dana.export_file(record="1001", field="mri_upload", event="week_8_arm_1", repeat_instance=2)
    assert content == b"second scan\n"
    mark = time.time()
    dana.import_repeating_instruments_events(setup)
    wait_for_poll(sb, mark)
    assert errno_of(os.stat, week_8 / "mri_upload" / "2") == errno.ENOENT
    assert errno_of(os.mkdir, week_8 / "mri_upload" / "3") == errno.EPERM

    # The arm goes: its record with it.
    mark = time.time()
    dana.delete_arms([3])
    wait_for_poll(sb, mark)
    assert "3001" not in os.listdir(m.path) or os.listdir(m.path / "3001") == []
    assert errno_of(os.stat, m.path / "3001" / "intake_arm_3") == errno.ENOENT


def test_without_the_log_a_design_change_shows_within_metadata_ttl(sandbox: Any, mount: Any) -> None:
    sb = team(sandbox)
    m = mount(sb, "poll=0", "metadata_ttl=1", "records_ttl=0.5", NO_KERNEL_CACHE,
              env={"REDCAP_API_TOKEN": ALICE})
    event_dir = m.path / "1001" / "baseline_arm_1"
    assert "extra_scan" not in os.listdir(event_dir)
    assert (m.path / CONSENT).read_bytes()  # cached now
    dana = designer(sb)
    metadata = dana.export_metadata()
    added = dict(next(r for r in metadata if r["field_name"] == "mri_upload"), field_name="extra_scan",
                 field_label="Extra scan")
    mark = time.time()
    dana.import_metadata([r for r in metadata if r["field_name"] != "consent_form"] + [added])
    wait_for_design_read(sb, mark)
    assert "extra_scan" in os.listdir(event_dir)
    assert "consent_form" not in os.listdir(m.path / "1001" / "screening_arm_1")
    downloads = len(sb.calls(content="file"))
    assert errno_of(open, m.path / CONSENT, "rb") == errno.ENOENT  # the cached copy is not served
    settle(lambda: len(sb.calls()))
    assert len(sb.calls(content="file")) == downloads


def test_a_cached_file_of_a_removed_field_is_not_served(sandbox: Any, mount: Any) -> None:
    sb = team(sandbox)
    m = mount(sb, "poll=1", NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": ALICE})
    before = (m.path / CONSENT).read_bytes()
    fd = os.open(m.path / CONSENT, os.O_RDONLY)  # a reader that was already reading
    try:
        mark = time.time()
        drop_field(sb, "consent_form")
        wait_for_poll(sb, mark)
        assert errno_of(os.stat, m.path / CONSENT) == errno.ENOENT
        assert errno_of(open, m.path / CONSENT, "rb") == errno.ENOENT
        assert "consent_form" not in os.listdir(m.path / CONSENT.parent.parent)
        assert os.pread(fd, len(before), 0) == before  # what an open handle already had stays its own
    finally:
        os.close(fd)


def test_a_write_in_progress_to_a_vanished_slot_is_kept_as_unsent(sandbox: Any, mount: Any) -> None:
    sb = team(sandbox)
    m = mount(sb, "poll=1", NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": ALICE})
    data = b"radiology report, dictated\n" * 1000
    fd = os.open(m.path / REPORT_DIR / "report.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data[:10000])
        mark = time.time()
        drop_field(sb, "radiology_report")
        wait_for_poll(sb, mark)
        os.write(fd, data[10000:])
    finally:
        with pytest.raises(OSError):
            os.close(fd)  # the upload is refused: the close says so
    settle(lambda: len(sb.calls()))
    r = subprocess.run([sys.executable, "-m", "redcapfs", "unsent", "--json"], capture_output=True, text=True,
                       timeout=60, cwd=str(REPO), env=m.env)
    kept = [e for e in json.loads(r.stdout) if e["name"] == "report.txt"]
    assert len(kept) == 1, r.stdout
    entry = kept[0]
    assert (entry["record"], entry["field"], entry["event"]) == ("1001", "radiology_report", "baseline_arm_1")
    assert "radiology_report" in entry["error"], entry
    assert Path(entry["data_path"]).read_bytes() == data  # nothing lost
    assert "radiology_report" not in {r["field_name"] for r in designer(sb).export_metadata()}
