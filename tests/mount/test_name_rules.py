"""Names through a real kernel mount: a bijection or a refusal at create (docs/names.md, temp-names.md).

Every check of the server is independent of redcapfs: PyCap's download of a
slot (its name and bytes), the sandbox's request log, and the sandbox's
``docs`` table, which keeps every document name ever stored (a random
temporary name that was uploaded and then replaced would still be there).

Demo slots used: empty ``radiology_report`` of 1001/1002/1003 in
baseline_arm_1 and week_12_arm_1; filled
``1001/screening_arm_1/consent_form/consent_1001.pdf`` and
``1003/baseline_arm_1/mri_upload/mri_02.png``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mounthelp import errno_of, stored_names

redcap = pytest.importorskip("redcap")

EMPTY_SLOTS = [(record, event) for event in ("baseline_arm_1", "week_12_arm_1") for record in ("1001", "1002", "1003")]
OCCUPIED = ("1001", "screening_arm_1", "consent_form", "consent_1001.pdf")

# (typed component, the name REDCap must hold): names that need care but can be created.
CREATABLE = [
    ("50%off.pdf", "50%off.pdf"),
    ("%252F.txt", "%2F.txt"),
    ("%25EMPTY", "%EMPTY"),
    ("%250A", "%0A"),
    ("résumé 2024.pdf", "résumé 2024.pdf"),
    ("%2525", "%25"),
]

# Components refused at create, and why (the reason key of fs/rules.py's log line).
REFUSED = [
    ("%EMPTY", "empty names"),
    ("%0A", "control characters"),
    ("%00.txt", "control characters"),
    ("a%01b", "control characters"),
    ("%7F", "control characters"),
    ("%2E", "'.'"),
    ("%2E%2E", "'.'"),
    ("%uDC80", "control characters"),
    ("%25off.pdf", "would be listed as"),
    ("x%~0123456789.pdf", "shortened name"),
    ("%2Fetc", "REDCap would store"),
    ("it's.pdf", "REDCap would store"),
]


def server_file(sb: Any, record: str, field: str, event: str) -> tuple[str, bytes] | None:
    """``(name, bytes)`` of a slot as PyCap downloads it; None for an empty slot."""
    try:
        content, headers = redcap.Project(sb.url, sb.token).export_file(record=record, field=field, event=event)
    except redcap.RedcapError as exc:
        if "no file" in str(exc).lower():
            return None
        raise
    name = headers["name"]
    try:  # HTTP headers reach PyCap as latin-1: a UTF-8 name comes back as mojibake
        name = name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return name, content



def imports(sb: Any) -> list[dict[str, Any]]:
    return sb.calls(content="file", action="import")



def create(path: Path | bytes, data: bytes = b"") -> None:
    """``open(O_WRONLY|O_CREAT|O_EXCL)``, write, close: a refusal must come from the open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def unsent(m: Any) -> list[dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "redcapfs", "unsent", "--json"], capture_output=True, text=True,
                       timeout=60, env=m.env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def refusal_lines(m: Any) -> list[str]:
    return [line for line in m.log.splitlines() if "refused" in line and "WARNING" in line]


# ------------------------------------------------------------------ the bijection


def test_created_names_list_back_as_typed_after_a_refresh_and_a_remount(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "records_ttl=0", "poll=0")  # every listing reads the records again
    slots = {}
    for (component, name), (record, event) in zip(CREATABLE, EMPTY_SLOTS, strict=True):
        slot = m.path / record / event / "radiology_report"
        create(slot / component, f"bytes of {name}".encode())
        slots[component] = (slot, record, event, name)
    exports_before = len(sb.calls(content="record"))
    for component, (slot, record, event, name) in slots.items():
        assert os.listdir(slot) == [component]
        assert server_file(sb, record, "radiology_report", event) == (name, f"bytes of {name}".encode())
    assert len(sb.calls(content="record")) > exports_before  # the listings above came after a refresh
    m.unmount()
    again = mount(sb, mountpoint=m.path)
    for component, (slot, _record, _event, name) in slots.items():
        assert os.listdir(slot) == [component]
        assert (slot / component).read_bytes() == f"bytes of {name}".encode()
    assert unsent(again) == []


def test_a_name_that_cannot_list_back_is_refused_at_create_and_at_rename(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "baseline_arm_1" / "radiology_report"
    temp = slot / ".draft.swp"  # a temporary name: kept local, so renaming it is the upload
    temp.write_bytes(b"draft")
    for component, _why in REFUSED:
        assert errno_of(create, slot / component, b"x") == errno.EINVAL, component
        assert errno_of(os.rename, temp, slot / component) == errno.EINVAL, component
    assert os.listdir(slot) == [".draft.swp"]
    assert imports(sb) == []
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") is None
    assert unsent(m) == []
    lines = refusal_lines(m)
    for _component, why in REFUSED:
        assert any(why in line for line in lines), (why, lines)
    assert len(lines) == 4, lines  # one per slot and reason (escape, canonical, shortened, stored), not per call
    assert "Traceback" not in m.log


def test_a_record_name_that_cannot_list_back_is_refused_by_mkdir(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    for component in ("%EMPTY", "%0A", "%2E", "%25x", "x%~0123456789"):
        assert errno_of(os.mkdir, m.path / component) == errno.EINVAL, component
    os.mkdir(m.path / "%252Erepository")  # the record literally named %2Erepository
    assert "%252Erepository" in os.listdir(m.path)
    assert "%2Erepository" in [r["record_id"] for r in redcap.Project(sb.url, sb.token).export_records()]


def test_a_name_that_is_not_utf8_is_einval_without_a_traceback(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = os.fsencode(m.path / "1001" / "baseline_arm_1" / "radiology_report")
    assert errno_of(create, slot + b"/\xff\xfe.txt", b"x") == errno.EINVAL
    assert errno_of(os.mkdir, os.fsencode(m.path) + b"/rec\xe9") == errno.EINVAL
    os.close(os.open(slot + b"/.a.swp", os.O_WRONLY | os.O_CREAT, 0o644))
    assert errno_of(os.rename, slot + b"/.a.swp", slot + b"/caf\xe9.txt") == errno.EINVAL
    assert imports(sb) == []
    log = m.log
    assert "not valid UTF-8" in log
    assert "Traceback" not in log and "Logging error" not in log, log[-3000:]


def test_many_refused_creates_leave_a_bounded_log(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    occupied = m.path / OCCUPIED[0] / OCCUPIED[1] / OCCUPIED[2]
    empty = m.path / "1002" / "baseline_arm_1" / "radiology_report"
    for i in range(300):
        assert errno_of(create, occupied / f"other-{i}.pdf") == errno.EEXIST
        assert errno_of(create, empty / f"bad%00{i}.txt") == errno.EINVAL
        assert errno_of(create, empty / f"it's {i}.txt") == errno.EINVAL
    lines = refusal_lines(m)
    assert len(lines) == 3, lines  # one per slot and reason within the window
    assert sum("already holds" in line for line in lines) == 1
    assert len(m.log.splitlines()) < 100
    assert imports(sb) == []


# ------------------------------------------------------------------ tools' temporary names


WRITE_THEN_RENAME = """
import os, sys, tempfile
slot, final, data = sys.argv[1], sys.argv[2], sys.argv[3].encode()
tmp = tempfile.NamedTemporaryFile(dir=slot, delete=False)
tmp.write(data)
tmp.close()
os.replace(tmp.name, os.path.join(slot, final))
print(os.path.basename(tmp.name))
"""


def test_python_tempfile_and_mktemp_then_rename_work_in_any_slot(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    record, event, field, name = OCCUPIED
    occupied = m.path / record / event / field
    empty = m.path / "1002" / "baseline_arm_1" / "radiology_report"
    empty2 = m.path / "1003" / "baseline_arm_1" / "radiology_report"
    r = subprocess.run([sys.executable, "-c", WRITE_THEN_RENAME, str(occupied), name, "new consent"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"tmp[a-z0-9_]{8}", r.stdout.strip()), r.stdout
    r = subprocess.run([sys.executable, "-c", WRITE_THEN_RENAME, str(empty), "report.txt", "python report"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    script = 'set -e; t=$(mktemp -p "$1"); printf %s "$3" > "$t"; mv "$t" "$1/$2"; basename "$t"'
    for slot, final, data in ((occupied, name, "mktemp consent"), (empty2, "notes.txt", "mktemp notes")):
        r = subprocess.run(["sh", "-c", script, "sh", str(slot), final, data], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(r"tmp\.[A-Za-z0-9]{10}", r.stdout.strip()), r.stdout
    assert server_file(sb, record, field, event) == (name, b"mktemp consent")
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") == ("report.txt", b"python report")
    assert server_file(sb, "1003", "radiology_report", "baseline_arm_1") == ("notes.txt", b"mktemp notes")
    assert os.listdir(occupied) == [name] and os.listdir(empty) == ["report.txt"]
    assert not [n for n in stored_names(sb) if n.startswith("tmp")], stored_names(sb)
    assert len(imports(sb)) == 4  # one upload per save, none for a temporary name
    assert stored_names(sb)[-4:] == [name, "report.txt", name, "notes.txt"]


# ------------------------------------------------------------------ editors' locks


def test_an_emacs_lock_link_stays_local(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    record, event, field, name = OCCUPIED
    slot = m.path / record / event / field
    lock = slot / f".#{name}"
    os.symlink("coordinator@ward.4242:1700000000", lock)
    assert os.readlink(lock) == "coordinator@ward.4242:1700000000"
    assert stat.S_ISLNK(os.lstat(lock).st_mode)
    assert sorted(os.listdir(slot)) == sorted([name, f".#{name}"])
    assert errno_of(os.symlink, "someone@else.1:2", lock) == errno.EEXIST  # how emacs sees a held lock
    assert errno_of(os.symlink, "x", slot / "link.pdf") == errno.EPERM  # only lock links
    os.unlink(lock)
    assert os.listdir(slot) == [name]
    assert errno_of(os.readlink, slot / name) == errno.EINVAL  # a file is not a link
    assert imports(sb) == [] and sb.calls(content="file", action="delete") == []


RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(new))


def test_renameat2_noreplace_works_where_the_binding_passes_flags(sandbox: Any, mount: Any) -> None:
    from redcapfs import binding

    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "baseline_arm_1" / "radiology_report"
    (slot / ".notes.txt.swp").write_bytes(b"saved by renameat2")
    if binding.major() == 2:  # libfuse2 has no rename flags: the kernel says EINVAL, a plain rename works
        assert errno_of(renameat2, slot / ".notes.txt.swp", slot / "notes.txt", RENAME_NOREPLACE) == errno.EINVAL
        return
    renameat2(slot / ".notes.txt.swp", slot / "notes.txt", RENAME_NOREPLACE)
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == ("notes.txt", b"saved by renameat2")
    (slot / ".other.swp").write_bytes(b"other")
    assert errno_of(renameat2, slot / ".other.swp", slot / "notes.txt", RENAME_NOREPLACE) == errno.EEXIST
    assert errno_of(renameat2, slot / ".other.swp", slot / "notes.txt", RENAME_EXCHANGE) == errno.EINVAL
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == ("notes.txt", b"saved by renameat2")


# ------------------------------------------------------------------ the state folder's own files


def _project_folder(state: Path) -> Path:
    (folder,) = [p for p in state.iterdir() if p.is_dir() and p.name != "mounts"]
    return folder


def test_state_files_are_private_and_never_opened_through_a_symlink(sandbox: Any, mount: Any,
                                                                    tmp_path: Path) -> None:
    sb = sandbox()
    state = tmp_path / "state"
    m = mount(sb, args=("--log-file", str(state / "mount.log")), env={"REDCAPFS_STATE_DIR": str(state)})
    (pid,) = list((state / "mounts").glob("*.pid"))
    project = _project_folder(state)
    for path in (pid, state / "mount.log", project / "attrs.sqlite", project / "manifest.sqlite"):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path
    m.unmount()
    assert not pid.exists()
    victim = tmp_path / "victim"
    victim.write_text("not the mount's")
    victim.chmod(0o644)
    for planted in (pid, project / "attrs.sqlite"):
        saved = planted.with_name(planted.name + ".saved")
        if planted.exists():
            planted.rename(saved)
        planted.symlink_to(victim)
        failed = mount(sb, mountpoint=m.path, expect_fail=True)
        assert "symbolic link" in failed.stderr and "Traceback" not in failed.stderr, failed.describe()
        assert victim.read_text() == "not the mount's" and stat.S_IMODE(victim.stat().st_mode) == 0o644
        planted.unlink()
        if saved.exists():
            saved.rename(planted)
    (state / "mount.log").rename(state / "mount.log.saved")
    (state / "mount.log").symlink_to(victim)
    failed = mount(sb, mountpoint=m.path, args=("--log-file", str(state / "mount.log")), expect_fail=True)
    assert "symbolic link" in failed.stderr, failed.describe()
    assert victim.read_text() == "not the mount's"
