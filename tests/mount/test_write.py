"""Writes through a real kernel mount of the demo project, with real tools (one suite: the former
test_write.py and test_writes.py, merged so that each scenario mounts once).

Every result is checked independently of redcapfs: through PyCap (a separate
REDCap client) and through the sandbox's request log / stored documents.

Demo slots used (see redcapfs/sandbox/demo/files/manifest.json):
- empty: ``radiology_report`` of 1001/1002/1003 baseline_arm_1,
  ``consent_signature`` of 1003/screening_arm_1, ``ae_photo`` instances 1 and 2
  of 1002/week_12_arm_1, ``radiology_report`` of week_12_arm_1;
- filled: ``1001/screening_arm_1/consent_form/consent_1001.pdf``,
  ``1003/baseline_arm_1/mri_upload/mri_02.png``,
  ``1001/screening_arm_1/consent_signature/signature.png``;
- record 1006 is locked.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, errno_of, settle, stored_names

redcap = pytest.importorskip("redcap")

EXPORT_ONLY = "0123456789ABCDEF0123456789ABCDEF"
DEMO_FILES = REPO / "redcapfs" / "sandbox" / "demo" / "files"


# ------------------------------------------------------------------ independent checks


def server_file(sb: Any, record: str, field: str, event: str | None, instance: int | None = None
                ) -> tuple[str, bytes] | None:
    """``(name, bytes)`` of a slot as PyCap downloads it; None for an empty slot (also used by other suites)."""
    project = redcap.Project(sb.url, sb.token)
    try:
        content, headers = project.export_file(record=record, field=field, event=event, repeat_instance=instance)
    except redcap.RedcapError as exc:
        if "no file" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise
    return headers["name"], content


def demo_bytes(record: str, event: str, field: str, instance: int = 1) -> bytes:
    manifest = json.loads((DEMO_FILES / "manifest.json").read_text())
    for row in manifest:
        if (row["record"], row["event"], row["field"], int(row["repeat_instance"])) == (record, event, field, instance):
            return (DEMO_FILES / row["path"]).read_bytes()
    raise KeyError((record, event, field, instance))


def imports(sb: Any, at_least: int = 0) -> list[dict[str, Any]]:
    return sb.calls(at_least=at_least, content="file", action="import")


def changes(sb: Any) -> list[dict[str, Any]]:
    """Every change the server recorded: its audit log without the downloads, plus file imports/deletes."""
    log = [row for row in redcap.Project(sb.url, sb.token).export_logging()
           if row["action"] != "Download file (API)"]
    calls = [c for c in sb.calls() if c.get("content") == "file" and c.get("action") in ("import", "delete")]
    return log + calls



def run(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60, **kw)
    if check:
        assert r.returncode == 0, f"{cmd} exited {r.returncode}: {r.stderr}"
    return r



def create(path: Path) -> None:
    """``open(O_WRONLY|O_CREAT|O_TRUNC)`` as cp and shells do; the error, if any, is the open's."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))


# ------------------------------------------------------------------ cp, >, >>, stat


@pytest.mark.smoke  # also run on the libfuse2 binding (scripts/test)
def test_cp_in_out_overwrite_append(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "baseline_arm_1" / "radiology_report"
    src = tmp_path / "scan report.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)

    run("cp", str(src), str(slot) + "/")
    target = slot / src.name
    # Own writes show at once (no waiting for the next records export).
    ls = run("ls", "-l", str(slot)).stdout
    assert f" {len(data)} " in ls and src.name in ls, ls
    assert target.stat().st_size == len(data)
    assert (target.stat().st_mode & 0o777) == 0o644
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == (src.name, data)
    assert [c["bytes"] for c in imports(sb, 1)] == [len(data)]

    out = tmp_path / "back.bin"
    run("cp", str(target), str(out))
    assert out.read_bytes() == data

    # '>' overwrite: builtin and external command; never an empty upload in between.
    before = len(imports(sb))
    run("bash", "-c", f"echo 'short text' > '{target}'")
    run("bash", "-c", f"printf 'replaced by printf\\n' > '{target}'")
    run("bash", "-c", f"/bin/cat '{src}' | head -c 1000 > '{target}'")
    new = imports(sb, before + 3)[before:]
    assert [c["bytes"] for c in new] == [len(b"short text\n"), len(b"replaced by printf\n"), 1000], new
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == (src.name, data[:1000])

    run("bash", "-c", f"echo appended >> '{target}'")
    expected = data[:1000] + b"appended\n"
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == (src.name, expected)
    assert target.read_bytes() == expected
    assert all(c["bytes"] > 0 for c in imports(sb)), imports(sb)
    assert set(stored_names(sb)[-5:]) == {src.name}

    # Our own upload shares its bytes with the content cache: changing it in place must not corrupt either.
    with open(target, "r+b") as fh:
        fh.seek(2)
        fh.write(b"LL")
    expected = expected[:2] + b"LL" + expected[4:]
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == (src.name, expected)
    assert target.read_bytes() == expected
    run("truncate", "-s", "5", str(target))
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == (src.name, expected[:5])
    run("rm", str(target))
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") is None
    assert list(slot.iterdir()) == []


@pytest.mark.smoke  # also run on the libfuse2 binding (scripts/test)
def test_pwrite_truncate_rm(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    path = m.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
    original = demo_bytes("1001", "screening_arm_1", "consent_form")
    assert len(original) > 200

    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"PATCHED")
    expected = original[:100] + b"PATCHED" + original[107:]
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") == ("consent_1001.pdf", expected)
    assert [c["bytes"] for c in imports(sb, 1)] == [len(expected)]

    run("truncate", "-s", "150", str(path))
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") == ("consent_1001.pdf", expected[:150])
    run("truncate", "-s", "170", str(path))
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") == (
        "consent_1001.pdf", expected[:150] + b"\0" * 20)
    assert path.stat().st_size == 170

    run("rm", str(path))
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") is None
    assert os.listdir(path.parent) == []
    assert len(sb.calls(at_least=1, content="file", action="delete")) == 1


@pytest.mark.smoke  # also run on the libfuse2 binding (scripts/test)
def test_mv_within_and_between_slots(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    base = m.path / "1003" / "baseline_arm_1"
    mri = demo_bytes("1003", "baseline_arm_1", "mri_upload")

    # Within a slot: one file, new name.
    run("mv", str(base / "mri_upload" / "mri_02.png"), str(base / "mri_upload" / "renamed.png"))
    assert server_file(sb, "1003", "mri_upload", "baseline_arm_1") == ("renamed.png", mri)
    assert os.listdir(base / "mri_upload") == ["renamed.png"]

    # Between slots: the target has it, the source is empty.
    run("mv", str(base / "mri_upload" / "renamed.png"), str(base / "radiology_report") + "/")
    assert server_file(sb, "1003", "radiology_report", "baseline_arm_1") == ("renamed.png", mri)
    assert server_file(sb, "1003", "mri_upload", "baseline_arm_1") is None
    assert os.listdir(base / "mri_upload") == []
    assert os.listdir(base / "radiology_report") == ["renamed.png"]

    # The same with a file uploaded through the mount (its bytes come from the cache, not a download).
    a = m.path / "1002" / "baseline_arm_1" / "radiology_report"
    b = m.path / "1002" / "week_12_arm_1" / "radiology_report"
    (tmp_path / "scan.txt").write_bytes(b"scan data\n")
    run("cp", str(tmp_path / "scan.txt"), str(a))
    run("mv", str(a / "scan.txt"), str(a / "scan-final.txt"))
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") == ("scan-final.txt", b"scan data\n")
    assert sorted(p.name for p in a.iterdir()) == ["scan-final.txt"]
    run("mv", str(a / "scan-final.txt"), str(b))
    assert server_file(sb, "1002", "radiology_report", "week_12_arm_1") == ("scan-final.txt", b"scan data\n")
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") is None
    assert list(a.iterdir()) == []


# ------------------------------------------------------------------ rsync


def test_rsync_new_record_and_instance(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    src = tmp_path / "tree"
    x = src / "5001" / "screening_arm_1" / "consent_form" / "consent 5001.pdf"
    y = src / "1002" / "week_12_arm_1" / "ae_photo" / "4" / "episode 4.png"
    z = src / "1003" / "week_12_arm_1" / "radiology_report" / "r.txt"
    for f, size in ((x, 70_000), (y, 120_000), (z, 10)):
        f.parent.mkdir(parents=True)
        f.write_bytes(os.urandom(size))

    names_before = len(stored_names(sb))
    run("rsync", "-a", f"{src}/", f"{m.path}/")
    assert server_file(sb, "5001", "consent_form", "screening_arm_1") == ("consent 5001.pdf", x.read_bytes())
    assert server_file(sb, "1002", "ae_photo", "week_12_arm_1", 4) == ("episode 4.png", y.read_bytes())
    assert server_file(sb, "1003", "radiology_report", "week_12_arm_1") == ("r.txt", z.read_bytes())
    records = redcap.Project(sb.url, sb.token).export_records(records=["5001"])
    assert records and {row["record_id"] for row in records} == {"5001"}

    # No temporary name reached the server: one import per file, real names only.
    assert sorted(c["bytes"] for c in imports(sb, 3)) == sorted(f.stat().st_size for f in (x, y, z))
    assert sorted(stored_names(sb)[names_before:]) == ["consent 5001.pdf", "episode 4.png", "r.txt"]

    # Times were kept: a second rsync transfers nothing.
    r = run("rsync", "-a", "--itemize-changes", f"{src}/", f"{m.path}/")
    transfers = [line for line in r.stdout.splitlines() if line[:1] in "<>c" and line[1:2] == "f"]
    assert transfers == [], r.stdout
    settle(lambda: len(sb.calls()))
    assert len(imports(sb)) == 3


# ------------------------------------------------------------------ directories


def test_mkdir_and_rmdir(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    project = redcap.Project(sb.url, sb.token)
    assert project.export_records(records=["5002"]) == []

    os.mkdir(m.path / "5002")
    rows = project.export_records(records=["5002"])
    assert [r["record_id"] for r in rows] == ["5002"], rows
    assert "screening_arm_1" in os.listdir(m.path / "5002")

    assert errno_of(os.mkdir, m.path / "1001" / "screening_arm_1" / "consent_form" / "sub") == errno.EPERM
    assert errno_of(os.mkdir, m.path / "1001" / "baseline_arm_1" / "radiology_report" / "sub") == errno.EPERM

    ae = m.path / "1002" / "week_12_arm_1" / "ae_photo"
    os.mkdir(ae / "4")
    assert sorted(os.listdir(ae)) == ["1", "2", "3", "4"]
    os.rmdir(ae / "4")
    assert sorted(os.listdir(ae)) == ["1", "2", "3"]
    rows = project.export_records(records=["1002"], events=["week_12_arm_1"])
    assert sorted(r["redcap_repeat_instance"] for r in rows if r["redcap_repeat_instrument"] == "adverse_event") \
        == [1, 2, 3], rows

    assert errno_of(os.mkdir, ae / "1") == errno.EEXIST
    assert errno_of(os.rmdir, m.path / "1001" / "baseline_arm_1" / "radiology_report") == errno.EPERM
    assert errno_of(os.rmdir, ae / "1") == errno.EPERM
    assert errno_of(os.rename, m.path / "1002", m.path / "1002b") == errno.EPERM
    assert (m.path / "1001" / "baseline_arm_1" / "radiology_report").is_dir()
    assert [c for c in sb.calls() if c.get("content") == "record" and c.get("action") == "delete"] == []
    assert imports(sb) == []


# ------------------------------------------------------------------ refusals


def test_second_name_in_occupied_slot_is_eexist(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "screening_arm_1" / "consent_form"
    assert errno_of(create, slot / "other.pdf") == errno.EEXIST
    other = tmp_path / "other.pdf"
    other.write_bytes(b"%PDF-1.4 other")
    r = run("cp", str(other), str(slot) + "/", check=False)
    assert r.returncode != 0 and "File exists" in r.stderr, r.stderr
    assert os.listdir(slot) == ["consent_1001.pdf"]
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") == (
        "consent_1001.pdf", demo_bytes("1001", "screening_arm_1", "consent_form"))
    assert imports(sb) == []
    assert "already holds" in m.log


def test_read_only_mount_is_erofs(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "ro")
    assert errno_of(create, m.path / "1001" / "baseline_arm_1" / "radiology_report" / "new.txt") == errno.EROFS
    assert errno_of(os.unlink, m.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf") \
        == errno.EROFS
    assert errno_of(os.mkdir, m.path / "5003") == errno.EROFS
    assert errno_of(open, m.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf", "r+b") \
        == errno.EROFS
    assert server_file(sb, "1001", "consent_form", "screening_arm_1") is not None
    assert changes(sb) == []


def test_token_without_import_rights_is_eacces(sandbox: Any, mount: Any) -> None:
    sb = sandbox("--token", f"{EXPORT_ONLY}:export")
    m = mount(sb, env={"REDCAP_API_TOKEN": EXPORT_ONLY})
    slot = m.path / "1001" / "baseline_arm_1" / "radiology_report"
    assert errno_of(create, slot / "new.txt") == errno.EACCES
    assert errno_of(os.unlink, m.path / "1001" / "baseline_arm_1" / "mri_upload" / "mri_00.png") == errno.EACCES
    assert errno_of(os.mkdir, m.path / "5003") == errno.EACCES
    assert os.listdir(slot) == []
    assert imports(sb) == [] and sb.calls(content="file", action="delete") == []
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") is None


def test_signature_field_is_eperm_and_a_locked_record_keeps_the_bytes_as_unsent(
        sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    assert errno_of(create, m.path / "1003" / "screening_arm_1" / "consent_signature" / "sig.png") == errno.EPERM
    existing = m.path / "1001" / "screening_arm_1" / "consent_signature" / "signature.png"
    assert errno_of(open, existing, "r+b") == errno.EPERM
    assert os.listdir(existing.parent) == ["signature.png"]
    assert server_file(sb, "1003", "consent_signature", "screening_arm_1") is None
    assert imports(sb) == []

    draft = tmp_path / "draft.txt"
    data = b"visit notes for a locked record\n" * 10
    draft.write_bytes(data)
    r = run("cp", str(draft), str(m.path / "1006" / "baseline_arm_1" / "radiology_report") + "/", check=False)
    assert r.returncode != 0, r
    assert "failed to close" in r.stderr and "Read-only file system" in r.stderr, r.stderr
    assert server_file(sb, "1006", "radiology_report", "baseline_arm_1") is None

    r = run(sys.executable, "-m", "redcapfs", "unsent", "--json", cwd=str(REPO), env=m.env)
    assert len(json.loads(r.stdout)) == 1, r.stdout
    entries = [e for e in json.loads(r.stdout) if e["target"]["name"] == "draft.txt"]
    assert len(entries) == 1, r.stdout
    e = entries[0]
    assert (e["target"]["record"], e["target"]["event"], e["target"]["field"]) == (
        "1006", "baseline_arm_1", "radiology_report")
    assert e["size"] == len(data)
    assert Path(e["data_path"]).read_bytes() == data
    assert "locked" in e["error"]


# ------------------------------------------------------------------ concurrency


def test_parallel_cps_into_different_slots_and_into_one_slot(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    m = mount(sb)
    candidates = [(r, e, f) for r in ("1001", "1002", "1003", "1004", "1005", "1001.A", "-007", "Zoë-07")
                  for e in ("baseline_arm_1", "week_12_arm_1") for f in ("radiology_report", "mri_upload")]
    empty = [(r, e, f) for r, e, f in candidates
             if (m.path / r / e / f).is_dir() and not os.listdir(m.path / r / e / f)]
    assert len(empty) >= 17, empty
    procs = []
    for i, (record, event, field) in enumerate(empty[:16]):
        src = tmp_path / f"par{i}.bin"
        src.write_bytes(os.urandom(200_000 + i))
        procs.append((record, event, field, src, subprocess.Popen(
            ["cp", str(src), str(m.path / record / event / field / "data.bin")])))
    for record, event, field, src, proc in procs:
        assert proc.wait(60) == 0
        assert server_file(sb, record, field, event) == ("data.bin", src.read_bytes())
    record, event, field = empty[16]
    same = m.path / record / event / field
    sources = []
    for i in range(4):
        src = tmp_path / f"same{i}.bin"
        src.write_bytes(bytes([i]) * 500_000)
        sources.append(src)
    racers = [subprocess.Popen(["cp", str(s), str(same / "same.bin")], stderr=subprocess.PIPE) for s in sources]
    codes = [p.wait(60) for p in racers]
    stored = server_file(sb, record, field, event)
    assert stored is not None and stored[0] == "same.bin"
    assert stored[1] in [s.read_bytes() for s in sources], "the slot holds exactly one of the sources, never a mixture"
    assert any(code == 0 for code in codes)
