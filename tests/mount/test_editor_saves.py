"""Editors' real saves through the mount: vim (several backup settings) and LibreOffice's sequence.

What matters: after the save REDCap holds the new content under the same name,
the slot holds one file, and no temporary name (4913, .swp, ~, lock files,
lu*.tmp) ever reached the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_writes import imports, server_file

SLOT = ("1001", "baseline_arm_1", "radiology_report")


def seed_file(mnt, text: bytes) -> Path:
    path = mnt.path / SLOT[0] / SLOT[1] / SLOT[2] / "notes.txt"
    path.write_bytes(text)
    return path


@pytest.mark.parametrize("settings", [[], ["set backupcopy=no"], ["set backup", "set backupcopy=no"],
                                      ["set backupcopy=yes"]],
                         ids=["default", "rename", "backup-rename", "copy"])
def test_vim_save(settings: list[str], sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = seed_file(mnt, b"old line\nsecond\n")
    uploads_before = len(imports(sb))
    commands = []
    for setting in settings:
        commands += ["-c", setting]
    result = subprocess.run(["vim", "-es", "-u", "NONE", "-i", "NONE", *commands, "-c", "%s/old/new/", "-c", "wq",
                             str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("notes.txt", b"new line\nsecond\n")
    assert sorted(os.listdir(path.parent)) == ["notes.txt"], "no backup or swap file is left"
    uploaded = imports(sb)[uploads_before:]
    assert uploaded and all(c["record"] == SLOT[0] for c in uploaded)
    assert len(uploaded) <= 2
    assert sb.calls(content="file", action="delete") == [], "a save never deletes the file in REDCap"


def test_libreoffice_save_sequence(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = seed_file(mnt, b"version 1")
    folder = path.parent
    uploads_before = len(imports(sb))
    lock = folder / ".~lock.notes.txt#"
    lock.write_bytes(b",user,host,28.11.2026 10:00,user;")
    tmp = folder / "lu12345abcd.tmp"
    tmp.write_bytes(b"version 2, saved by the office suite")
    os.rename(tmp, path)
    lock.unlink()
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("notes.txt", b"version 2, saved by the office suite")
    assert len(imports(sb)) == uploads_before + 1
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def test_mv_to_a_backup_name_then_rm_deletes_the_file(sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = seed_file(mnt, b"to be removed")
    backup = path.with_name("notes.txt~")
    os.rename(path, backup)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("notes.txt", b"to be removed"), \
        "renaming to a temporary name does not touch REDCap"
    assert backup.read_bytes() == b"to be removed"
    backup.unlink()
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
