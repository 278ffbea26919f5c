"""Writing through a real kernel mount with real tools; every result read back through PyCap.

The demo project's empty slots used here: ``radiology_report`` in the
baseline and week-12 events of 1001-1005; ``mri_upload`` of 1001 holds
``mri_00.png`` at baseline; ``consent_signature`` is a signature field; 1006 is
locked.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import REPO, settle

redcap = pytest.importorskip("redcap")

EXPORT_TOKEN = "ABCDEF0123456789ABCDEF0123456789"


def server_file(sb: Any, record: str, field: str, event: str | None, instance: int | None = None
                ) -> tuple[str, bytes] | None:
    """(name, bytes) of the slot as PyCap sees it, or None when empty."""
    project = redcap.Project(sb.url, sb.token)
    try:
        content, headers = project.export_file(record=record, field=field, event=event, repeat_instance=instance)
    except Exception as exc:  # PyCap raises RedcapError for an empty slot
        if "no file" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise
    return headers["name"], content


def imports(sb: Any) -> list[dict[str, Any]]:
    settle(lambda: len(sb.calls()))
    return sb.calls(content="file", action="import")


def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, **kw)


@pytest.fixture
def demo(sandbox, mount):
    sb = sandbox()
    return sb, mount(sb)


def test_cp_in_and_out_overwrite_append_truncate_and_rm(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    slot = mnt.path / "1001" / "baseline_arm_1" / "radiology_report"
    src = tmp_path / "report v1.pdf"
    src.write_bytes(os.urandom(300_000))
    assert run("cp", str(src), str(slot)).returncode == 0
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == ("report v1.pdf", src.read_bytes())
    assert (slot / "report v1.pdf").stat().st_size == 300_000  # visible at once, no refresh needed
    assert ((slot / "report v1.pdf").stat().st_mode & 0o777) == 0o644
    assert run("cp", str(slot / "report v1.pdf"), str(tmp_path / "back")).returncode == 0
    assert (tmp_path / "back").read_bytes() == src.read_bytes()

    before = len(imports(sb))
    assert run("bash", "-c", f"printf 'hello\\n' > '{slot}/report v1.pdf'").returncode == 0
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") == ("report v1.pdf", b"hello\n")
    new = imports(sb)[before:]
    assert [c["bytes"] for c in new] == [6], "a > overwrite must upload once, never an empty file first"
    assert run("bash", "-c", f"printf 'world\\n' >> '{slot}/report v1.pdf'").returncode == 0
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1")[1] == b"hello\nworld\n"
    with open(slot / "report v1.pdf", "r+b") as fh:
        fh.seek(2)
        fh.write(b"LL")
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1")[1] == b"heLLo\nworld\n"
    assert run("truncate", "-s", "5", str(slot / "report v1.pdf")).returncode == 0
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1")[1] == b"heLLo"
    assert run("rm", str(slot / "report v1.pdf")).returncode == 0
    assert server_file(sb, "1001", "radiology_report", "baseline_arm_1") is None
    assert list(slot.iterdir()) == []


def test_mv_within_a_slot_and_between_slots(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    a = mnt.path / "1002" / "baseline_arm_1" / "radiology_report"
    b = mnt.path / "1002" / "week_12_arm_1" / "radiology_report"
    (tmp_path / "scan.txt").write_bytes(b"scan data\n")
    assert run("cp", str(tmp_path / "scan.txt"), str(a)).returncode == 0
    assert run("mv", str(a / "scan.txt"), str(a / "scan-final.txt")).returncode == 0
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") == ("scan-final.txt", b"scan data\n")
    assert sorted(p.name for p in a.iterdir()) == ["scan-final.txt"]
    assert run("mv", str(a / "scan-final.txt"), str(b)).returncode == 0
    assert server_file(sb, "1002", "radiology_report", "week_12_arm_1") == ("scan-final.txt", b"scan data\n")
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") is None
    assert list(a.iterdir()) == []


def test_rsync_a_tree_with_a_new_record_and_instance_then_again_changes_nothing(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    src = tmp_path / "src"
    consent = src / "7001" / "screening_arm_1" / "consent_form" / "consent 7001.pdf"
    photo = src / "1002" / "week_12_arm_1" / "ae_photo" / "4" / "episode 4.png"
    report = src / "1003" / "week_12_arm_1" / "radiology_report" / "r.txt"
    for path, size in ((consent, 50_000), (photo, 120_000), (report, 10)):
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(size))
    result = run("rsync", "-a", f"{src}/", f"{mnt.path}/")
    assert result.returncode == 0, result.stderr
    assert server_file(sb, "7001", "consent_form", "screening_arm_1") == ("consent 7001.pdf", consent.read_bytes())
    assert server_file(sb, "1002", "ae_photo", "week_12_arm_1", 4) == ("episode 4.png", photo.read_bytes())
    assert server_file(sb, "1003", "radiology_report", "week_12_arm_1") == ("r.txt", report.read_bytes())
    assert len(imports(sb)) == 3, "exactly one upload per file: rsync's temporary names stay local"
    again = run("rsync", "-a", "--itemize-changes", f"{src}/", f"{mnt.path}/")
    assert again.returncode == 0 and not [ln for ln in again.stdout.splitlines() if ln[:2] in ("<f", ">f")], \
        again.stdout
    assert len(imports(sb)) == 3
    records = redcap.Project(sb.url, sb.token).export_records(records=["7001"])
    assert records and records[0]["record_id"] == "7001"


def test_directories_mkdir_and_rmdir(demo) -> None:
    sb, mnt = demo
    os.mkdir(mnt.path / "7002")
    assert redcap.Project(sb.url, sb.token).export_records(records=["7002"])
    assert "screening_arm_1" in os.listdir(mnt.path / "7002")
    inst = mnt.path / "1002" / "week_12_arm_1" / "ae_photo" / "7"
    os.mkdir(inst)
    assert "7" in os.listdir(inst.parent)
    os.rmdir(inst)
    assert "7" not in os.listdir(inst.parent)
    for path, code in ((mnt.path / "1001" / "screening_arm_1" / "consent_form" / "sub", errno.EPERM),
                       (mnt.path / "1002" / "week_12_arm_1" / "ae_photo" / "1", errno.EEXIST)):
        with pytest.raises(OSError) as info:
            os.mkdir(path)
        assert info.value.errno == code
    with pytest.raises(OSError) as info:
        os.rmdir(mnt.path / "1002" / "week_12_arm_1" / "ae_photo" / "1")
    assert info.value.errno in (errno.EPERM, errno.ENOTEMPTY)
    with pytest.raises(OSError) as info:
        os.rename(mnt.path / "1002", mnt.path / "1002b")
    assert info.value.errno == errno.EPERM


def test_a_second_name_in_an_occupied_slot_is_refused(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    slot = mnt.path / "1001" / "baseline_arm_1" / "mri_upload"
    original = server_file(sb, "1001", "mri_upload", "baseline_arm_1")
    assert original is not None
    (tmp_path / "other.png").write_bytes(b"other")
    result = run("cp", str(tmp_path / "other.png"), str(slot))
    assert result.returncode != 0 and "File exists" in result.stderr
    assert server_file(sb, "1001", "mri_upload", "baseline_arm_1") == original
    assert imports(sb) == []
    assert "already holds" in mnt.log


def test_signature_fields_and_locked_records(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    src = tmp_path / "note.txt"
    src.write_bytes(b"locked record note\n")
    with pytest.raises(OSError) as info:
        (mnt.path / "1001" / "screening_arm_1" / "consent_signature" / "s.png").write_bytes(b"x")
    assert info.value.errno == errno.EPERM
    result = run("cp", str(src), str(mnt.path / "1006" / "baseline_arm_1" / "radiology_report"))
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    listed = run(sys.executable, "-m", "redcapfs", "unsent", "--json", env=mnt.env, cwd=str(REPO))
    entries = json.loads(listed.stdout)
    assert len(entries) == 1 and Path(entries[0]["data_path"]).read_bytes() == src.read_bytes()
    assert "locked" in entries[0]["error"]


def test_export_only_token_is_refused_before_any_data(sandbox, mount) -> None:
    sb = sandbox("--token", f"{EXPORT_TOKEN}:export")
    mnt = mount(sb, env={"REDCAP_API_TOKEN": EXPORT_TOKEN})
    target = mnt.path / "1001" / "baseline_arm_1" / "radiology_report" / "x.txt"
    with pytest.raises(OSError) as info:
        open(target, "wb")
    assert info.value.errno == errno.EACCES
    for action in (lambda: (mnt.path / "1001" / "baseline_arm_1" / "mri_upload" / "mri_00.png").unlink(),
                   lambda: os.mkdir(mnt.path / "7003")):
        with pytest.raises(OSError) as info:
            action()
        assert info.value.errno == errno.EACCES
    assert imports(sb) == [] and sb.calls(content="file", action="delete") == []


def test_parallel_cps_into_different_slots_and_into_one_slot(demo, tmp_path: Path) -> None:
    sb, mnt = demo
    candidates = [(r, e, f) for r in ("1001", "1002", "1003", "1004", "1005", "1001.A", "-007", "Zoë-07")
                  for e in ("baseline_arm_1", "week_12_arm_1") for f in ("radiology_report", "mri_upload")]
    empty = [(r, e, f) for r, e, f in candidates
             if (mnt.path / r / e / f).is_dir() and not os.listdir(mnt.path / r / e / f)]
    assert len(empty) >= 17, empty
    procs = []
    for i, (record, event, field) in enumerate(empty[:16]):
        src = tmp_path / f"par{i}.bin"
        src.write_bytes(os.urandom(200_000 + i))
        procs.append((record, event, field, src, subprocess.Popen(
            ["cp", str(src), str(mnt.path / record / event / field / "data.bin")])))
    for record, event, field, src, proc in procs:
        assert proc.wait(60) == 0
        assert server_file(sb, record, field, event) == ("data.bin", src.read_bytes())
    record, event, field = empty[16]
    same = mnt.path / record / event / field
    sources = []
    for i in range(4):
        src = tmp_path / f"same{i}.bin"
        src.write_bytes(bytes([i]) * 500_000)
        sources.append(src)
    racers = [subprocess.Popen(["cp", str(s), str(same / "same.bin")], stderr=subprocess.PIPE) for s in sources]
    codes = [p.wait(60) for p in racers]
    name, data = server_file(sb, record, field, event)  # type: ignore[misc]
    assert name == "same.bin"
    assert data in [s.read_bytes() for s in sources], "the slot holds exactly one of the sources, never a mixture"
    assert any(code == 0 for code in codes)
