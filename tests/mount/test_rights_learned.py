"""What the mount learns of its token's rights before any write: the user export at mount, and lock rows in the log.

One sandbox (the bundled demo project) per test, with tokens of different
users; rights are set through PyCap with the full user's token, records and
instruments are locked as in the web page (the sandbox answers the Locking API
module's calls: docs/sandbox.md, "Locking"), and every outcome is checked
through PyCap or the sandbox's request log.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

redcap = pytest.importorskip("redcap")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, errno_of, settle  # noqa: E402
from test_change_feed import after, wait_for_poll  # noqa: E402

ALICE, ERIN, FRED = "A1" * 16, "E5" * 16, "F6" * 16
NO_KERNEL_CACHE = "poll=1,attr_timeout=0,entry_timeout=0"
CONSENT_DIR = Path("1001") / "screening_arm_1" / "consent_form"
CONSENT = CONSENT_DIR / "consent_1001.pdf"
MRI_DIR = Path("1001") / "baseline_arm_1" / "mri_upload"
REPORT_DIR = Path("1001") / "baseline_arm_1" / "radiology_report"  # empty in the demo project



def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _joined(sb: Any, *tokens: str) -> None:
    for token in tokens:  # a token's user joins the project at its first call
        redcap.Project(sb.url, token).export_version()


def _writes(sb: Any, mark: float) -> list[dict[str, Any]]:
    settle(lambda: len(sb.calls()))
    return [c for c in after(sb, mark) if c.get("action") in ("import", "delete", "createFolder")]


def lock(sb: Any, token: str, page: str, record: str, **where: str) -> None:
    """What a colleague does in the web page (lock box of an instrument, or "Lock entire record")."""
    r = requests.post(f"{sb.url}?NOAUTH&type=module&prefix=locking_api&page={page}",
                      data={"token": token, "record": record, "returnFormat": "json", **where}, timeout=30)
    assert r.status_code == 200, r.text


def test_a_user_export_that_names_no_import_right_shows_read_only_before_any_write(sandbox: Any,
                                                                                   mount: Any) -> None:
    """erin may read the user list (User Rights) and is its only reader: her row is hers."""
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{ERIN}:full:erin")
    _joined(sb, ERIN)
    alice = redcap.Project(sb.url, ALICE)
    alice.import_users([{"username": "erin", "api_import": 0, "record_create": 0, "file_repository": 0}])
    alice.import_users([{"username": "alice", "user_rights": 0}])  # alice set things up and steps back
    mark = time.time()
    m = mount(sb, "attr_timeout=0,entry_timeout=0", env={"REDCAP_API_TOKEN": ERIN})
    assert sb.calls(content="user", at_least=1), "the user export was not asked at mount"
    assert _mode(m.path) == 0o555 and _mode(m.path / "1001") == 0o555
    assert _mode(m.path / CONSENT) == 0o444
    assert errno_of(open, m.path / CONSENT, "r+b") == errno.EACCES
    assert errno_of(os.mkdir, m.path / "4001") == errno.EACCES
    assert errno_of(os.stat, m.path / ".repository") == errno.ENOENT
    content, _ = alice.export_file(record="1001", field="consent_form", event="screening_arm_1")
    assert (m.path / CONSENT).read_bytes() == content  # reading is as before
    assert _writes(sb, mark) == [], "a write (or the import probe) reached the server"
    assert sb.calls(content="fileRepository") == []
    assert "4001" not in {r["record_id"] for r in alice.export_records(fields=["record_id"])}


def test_without_the_user_rights_privilege_nothing_is_learned_and_nothing_is_said(sandbox: Any,
                                                                                  mount: Any) -> None:
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{ERIN}:full:erin")
    _joined(sb, ERIN)
    redcap.Project(sb.url, ALICE).import_users([{"username": "erin", "user_rights": 0, "api_import": 0}])
    mark = time.time()
    m = mount(sb, "attr_timeout=0", env={"REDCAP_API_TOKEN": ERIN})
    assert [c.get("status") for c in after(sb, mark, content="user")] == [403]  # one call, refused
    assert "user export" not in m.stderr and "User Rights" not in m.stderr
    assert _mode(m.path / "1001") == 0o755  # nothing known yet: the usual modes
    assert errno_of(open, m.path / CONSENT, "r+b") == errno.EACCES  # the import probe at the first write
    assert _mode(m.path / "1001") == 0o555


def test_a_remount_knows_its_user_from_the_log_and_applies_changed_rights(sandbox: Any, mount: Any,
                                                                         tmp_path: Path) -> None:
    """Several users may read the user list: the mount's user name, learned from its own upload in the
    log, picks its row at the next mount."""
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{FRED}:full:fred")
    _joined(sb, FRED)
    m = mount(sb, NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": FRED})
    (m.path / REPORT_DIR / "fred.txt").write_bytes(b"fred's scan notes\n")
    mark = time.time()
    wait_for_poll(sb, mark)  # the poll that sees fred's upload teaches the mount its user name
    m.unmount()
    alice = redcap.Project(sb.url, ALICE)
    forms = [i["instrument_name"] for i in alice.export_instruments()]
    alice.import_users([{"username": "fred", "api_import": 0, "record_create": 0, "file_repository": 0,
                         "forms_export": {f: int(f != "consent") for f in forms}}])
    mark = time.time()
    m2 = mount(sb, NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": FRED})
    assert _mode(m2.path / "1001") == 0o555 and _mode(m2.path / REPORT_DIR / "fred.txt") == 0o444
    assert errno_of(os.mkdir, m2.path / "4002") == errno.EACCES
    assert errno_of(os.stat, m2.path / ".repository") == errno.ENOENT
    # Its files were never seen by this mount: unknown, not absent (rsync --delete stops there, deletes nothing).
    assert errno_of(os.listdir, m2.path / CONSENT_DIR) == errno.EACCES
    backup = tmp_path / "backup"
    (backup / CONSENT_DIR).mkdir(parents=True)
    (backup / CONSENT).write_bytes(b"the backup's copy\n")
    r = subprocess.run(["rsync", "-a", "--delete", f"{m2.path}/1001/", f"{backup}/1001/"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and (backup / CONSENT).read_bytes() == b"the backup's copy\n", r.stderr
    assert (m2.path / REPORT_DIR / "fred.txt").read_bytes() == b"fred's scan notes\n"
    assert _writes(sb, mark) == []
    assert "user rights from the user export (fred)" in m2.log


def test_locks_in_the_web_page_show_at_the_next_poll_and_unlocks_too(sandbox: Any, mount: Any,
                                                                     tmp_path: Path) -> None:
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{FRED}:full:fred")
    m = mount(sb, NO_KERNEL_CACHE, env={"REDCAP_API_TOKEN": FRED})
    assert _mode(m.path / CONSENT) == 0o644
    mark = time.time()
    lock(sb, ALICE, "lock", "1001", event="screening_arm_1", instrument="consent")
    wait_for_poll(sb, mark)
    assert _mode(m.path / CONSENT) == 0o444  # that instrument in that event
    assert _mode(m.path / "1001") == 0o755 and _mode(m.path / MRI_DIR) == 0o755
    assert [_mode(f) for f in (m.path / MRI_DIR).iterdir()] == [0o644]  # other instruments as before
    rows = redcap.Project(sb.url, ALICE).export_logging(log_type="lock_record")
    assert rows and rows[0]["action"] == "Lock/Unlock Record 1001" and rows[0]["details"].startswith("Lock record")
    draft = tmp_path / "signed.pdf"
    draft.write_bytes(b"%PDF signed again\n")
    with pytest.raises(OSError) as info, open(m.path / CONSENT, "wb") as out:
        out.write(draft.read_bytes())
    assert info.value.errno == errno.EROFS  # REDCap refuses; the bytes are kept as unsent
    r = subprocess.run([sys.executable, "-m", "redcapfs", "unsent", "--json"], capture_output=True, text=True,
                       timeout=60, cwd=str(REPO), env=m.env)
    kept = [e for e in json.loads(r.stdout) if e["field"] == "consent_form" and e["record"] == "1001"]
    assert kept and "instrument is locked" in kept[0]["error"], r.stdout
    assert Path(kept[0]["data_path"]).read_bytes() == draft.read_bytes()
    content, _ = redcap.Project(sb.url, ALICE).export_file(record="1001", field="consent_form",
                                                            event="screening_arm_1")
    assert content != draft.read_bytes()

    mark = time.time()
    lock(sb, ALICE, "unlock", "1001", event="screening_arm_1", instrument="consent")
    lock(sb, ALICE, "lock", "1002", lock_record_level="true")
    wait_for_poll(sb, mark)
    assert _mode(m.path / CONSENT) == 0o644
    assert _mode(m.path / "1002") == 0o555 and _mode(m.path / "1002" / "baseline_arm_1") == 0o555
    assert _mode(m.path / "1003") == 0o755

    mark = time.time()
    lock(sb, ALICE, "unlock", "1002", lock_record_level="true")
    wait_for_poll(sb, mark)
    assert _mode(m.path / "1002") == 0o755
    assert [c for c in after(sb, mark, content="record") if c.get("record")] == []  # a lock re-reads nothing
