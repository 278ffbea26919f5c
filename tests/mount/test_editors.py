"""Editors' real save sequences on a mounted demo project (see docs/SEMANTICS.md, temp-names.md).

(One suite: the former test_editors.py and test_editor_saves.py, merged; their
LibreOffice and ``mv f f~; rm f~`` scenarios were the same, and vim's
backup settings all do nothing under its default 'backupskip', so that case
runs once, as ``backupskip-default``.)

Checked independently of redcapfs: the slot's file through PyCap, the upload
and delete calls in the sandbox's request log, and every document name the
sandbox ever stored (its ``docs`` table keeps deleted ones too), so a
temporary name that was uploaded and then replaced would still be seen.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
from mounthelp import stored_names

redcap = pytest.importorskip("redcap")

TEMP_NAME = re.compile(r"^(4913|5036|\..*\.sw[a-z]|.*~|\.~lock\..*#|lu.*\.tmp)$")


def server_file(sb: Any, record: str, field: str, event: str, instance: int | None = None
                ) -> tuple[str, bytes] | None:
    """``(name, bytes)`` of a slot as PyCap downloads it; None for an empty slot."""
    try:
        content, headers = redcap.Project(sb.url, sb.token).export_file(
            record=record, field=field, event=event, repeat_instance=instance)
    except redcap.RedcapError as exc:
        if "no file" in str(exc).lower():
            return None
        raise
    return headers["name"], content



def file_calls(sb: Any, action: str) -> list[dict[str, Any]]:
    return sb.calls(content="file", action=action)


# ------------------------------------------------------------------ vim


# With -u NONE vim is 'compatible': backupcopy=yes (copy to NAME~, write in place,
# delete NAME~). backupcopy=no: rename NAME -> NAME~, create NAME, delete NAME~.
# backup: keep NAME~. backupcopy=auto: probe with "4913", then rename as for "no".
# The mount lives under /tmp, which vim's default 'backupskip' exempts from any
# backup; `set backupskip=` makes vim do the save it does in a user's folders.
# ``backupskip-default`` keeps vim's default: no backup at all, the file is
# rewritten in place.
@pytest.mark.parametrize("variant", [[], ["-c", "set backupcopy=no"], ["-c", "set backup"],
                                     ["-c", "set backupcopy=auto"], None],
                         ids=["default", "backupcopy-no", "backup", "backupcopy-auto", "backupskip-default"])
def test_vim_save(sandbox: Any, mount: Any, variant: list[str] | None) -> None:
    if subprocess.run(["sh", "-c", "command -v vim"], capture_output=True).returncode != 0:
        pytest.skip("vim is not installed")
    settings = ["-c", "set backupskip=", *variant] if variant is not None else []
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1002" / "baseline_arm_1" / "radiology_report"
    path = slot / "report.txt"
    path.write_bytes(b"line one\nthe old text\nline three\n")
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") == (
        "report.txt", b"line one\nthe old text\nline three\n")
    names_before = len(stored_names(sb))
    imports_before = len(file_calls(sb, "import"))

    r = subprocess.run(["vim", "-es", "-u", "NONE", "-i", "NONE", *settings, "-c", "%s/old/new/", "-c", "wq",
                        str(path)], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                       cwd=str(slot))
    assert r.returncode == 0, f"vim exited {r.returncode}: {r.stdout} {r.stderr}\n{m.log[-3000:]}"

    expected = b"line one\nthe new text\nline three\n"
    assert server_file(sb, "1002", "radiology_report", "baseline_arm_1") == ("report.txt", expected), m.log[-3000:]
    new_names = stored_names(sb)[names_before:]
    assert new_names == ["report.txt"], new_names
    assert [c["bytes"] for c in file_calls(sb, "import")[imports_before:]] == [len(expected)]
    assert file_calls(sb, "delete") == []
    assert not any(TEMP_NAME.match(n) for n in stored_names(sb))
    # Exactly one file in the slot (a kept backup `report.txt~` is local only).
    visible = [n for n in os.listdir(slot) if not TEMP_NAME.match(n)]
    assert visible == ["report.txt"], os.listdir(slot)
    assert path.read_bytes() == expected
    if variant == ["-c", "set backup"]:  # the kept backup is a local file with the old bytes
        assert (slot / "report.txt~").read_bytes() == b"line one\nthe old text\nline three\n"
    else:  # no backup or swap file is left
        assert os.listdir(slot) == ["report.txt"], os.listdir(slot)


# ------------------------------------------------------------------ LibreOffice


def test_libreoffice_save_sequence(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "screening_arm_1" / "consent_form"
    name = "consent_1001.pdf"
    new = b"%PDF-1.7\n" + os.urandom(40_000) + b"\n%%EOF\n"

    lock = slot / f".~lock.{name}#"
    lock.write_text(",user,host,28.11.2026 19:00,file:///home/user/.config/libreoffice/4;\n")
    tmp = slot / "lu123.tmp"
    with open(tmp, "wb") as fh:
        fh.write(new[:1000])
        fh.flush()
        fh.write(new[1000:])
        os.fsync(fh.fileno())
    assert file_calls(sb, "import") == [], "a LibreOffice temporary file was uploaded"
    os.rename(tmp, slot / name)
    os.unlink(lock)

    assert server_file(sb, "1001", "consent_form", "screening_arm_1") == (name, new)
    assert [c["bytes"] for c in sb.calls(at_least=1, content="file", action="import")] == [len(new)]
    assert file_calls(sb, "delete") == []
    assert not any(TEMP_NAME.match(n) for n in stored_names(sb))
    assert os.listdir(slot) == [name]
    assert (slot / name).read_bytes() == new


# ------------------------------------------------------------------ mv f f~; rm f~


def test_move_to_backup_name_then_remove_deletes(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb)
    slot = m.path / "1001" / "baseline_arm_1" / "mri_upload"
    original = server_file(sb, "1001", "mri_upload", "baseline_arm_1")
    assert original is not None and original[0] == "mri_00.png"

    subprocess.run(["mv", str(slot / "mri_00.png"), str(slot / "mri_00.png~")], check=True, timeout=30)
    # Hidden here, untouched in REDCap.
    assert "mri_00.png" not in os.listdir(slot)
    assert (slot / "mri_00.png~").read_bytes() == original[1]
    assert server_file(sb, "1001", "mri_upload", "baseline_arm_1") == original
    assert file_calls(sb, "import") == [] and file_calls(sb, "delete") == []

    subprocess.run(["rm", str(slot / "mri_00.png~")], check=True, timeout=30)
    assert server_file(sb, "1001", "mri_upload", "baseline_arm_1") is None
    assert len(sb.calls(at_least=1, content="file", action="delete")) == 1
    assert file_calls(sb, "import") == []
    assert os.listdir(slot) == []
