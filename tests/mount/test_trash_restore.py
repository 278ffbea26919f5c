"""The local trash through `redcapfs retry`, `redcapfs trash` and `redcapfs restore`, against a real sandbox.

Unsent entries come from uploads the sandbox refused through a real mount;
the server is read back with PyCap after every step, and the kept bytes are
compared with what was removed, byte for byte.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_unsent_states import pycap_upload
from test_upload_failures import SLOT, cli, unsent
from test_write import server_file

from redcapfs.spool import Target
from redcapfs.trash import Left, Trash, TrashSettings

redcap = pytest.importorskip("redcap")


def trash_rows(mnt: Any) -> list[dict[str, Any]]:
    result = cli(mnt, "trash", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def trash_dir(mnt: Any) -> Path:
    (path,) = Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/trash")
    return path


def refused_upload(sandbox: Any, mount: Any, tmp_path: Path, name: str, data: bytes) -> tuple[Any, Any]:
    """A mount whose first upload REDCap refuses: ``name`` ends up unsent."""
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb)
    src = tmp_path / name
    src.write_bytes(data)
    assert subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True).returncode != 0
    assert [e["name"] for e in unsent(mnt)] == [name]
    return sb, mnt


def test_retry_keeps_the_replaced_version_and_restore_puts_it_back(sandbox, mount, tmp_path: Path) -> None:
    mine, theirs = os.urandom(200_000), os.urandom(150_000)
    sb, mnt = refused_upload(sandbox, mount, tmp_path, "consent.pdf", mine)
    pycap_upload(sb, "consent.pdf", theirs, tmp_path)  # a colleague's version, same name
    retry = cli(mnt, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("consent.pdf", mine)
    (row,) = trash_rows(mnt)
    assert {k: row[k] for k in ("record", "event", "field", "instance", "name", "bytes", "why")} == {
        "record": SLOT[0], "event": SLOT[1], "field": SLOT[2], "instance": None, "name": "consent.pdf",
        "bytes": len(theirs), "why": "replaced"}
    assert row["id"] in retry.stdout and row["when"]
    folder = trash_dir(mnt)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert "consent" not in path.name and SLOT[0] not in path.name and SLOT[2] not in path.name
    assert (folder / f"{row['id']}.data").read_bytes() == theirs
    assert row["id"] in cli(mnt, "trash").stdout
    restored = cli(mnt, "restore", row["id"])
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("consent.pdf", theirs)
    (undo,) = trash_rows(mnt)  # what the restore replaced, so the restore can be undone too
    assert (undo["name"], undo["bytes"], undo["why"]) == ("consent.pdf", len(mine), "replaced")
    assert cli(mnt, "restore", undo["id"]).returncode == 0
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("consent.pdf", mine)


def test_restore_refuses_without_force_when_the_slot_changed_since(sandbox, mount, tmp_path: Path) -> None:
    sb, mnt = refused_upload(sandbox, mount, tmp_path, "mine.txt", b"my upload\n")
    pycap_upload(sb, "theirs.txt", b"their upload\n", tmp_path)
    assert cli(mnt, "retry").returncode == 1  # another name: not without --force
    (entry,) = unsent(mnt)
    forced = cli(mnt, "retry", "--force", entry["id"])
    assert forced.returncode == 0, forced.stdout + forced.stderr
    (row,) = trash_rows(mnt)
    assert (row["name"], row["why"]) == ("theirs.txt", "replaced")
    pycap_upload(sb, "third.txt", b"a later upload\n", tmp_path)
    refused = cli(mnt, "restore", row["id"])
    assert refused.returncode == 1 and "--force" in refused.stdout and "third.txt" in refused.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("third.txt", b"a later upload\n")
    forced = cli(mnt, "restore", "--force", row["id"])
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("theirs.txt", b"their upload\n")
    assert [(r["name"], r["bytes"]) for r in trash_rows(mnt)] == [("third.txt", len(b"a later upload\n"))]


def test_a_deleted_version_is_restored_into_the_empty_slot(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    data = os.urandom(50_000)
    pycap_upload(sb, "scan.dcm", data, tmp_path)
    project_id = str(redcap.Project(sb.url, sb.token).export_project_info()["project_id"])
    (state,) = Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/spool")
    trash = Trash(state.parent / "trash")
    kept = tmp_path / "kept"
    kept.write_bytes(data)
    entry = trash.keep(Target(sb.url, project_id, SLOT[0], SLOT[1], SLOT[2], None, "scan.dcm"), kept, "deleted",
                       Left(None))
    assert entry is not None
    pycap_upload(sb, "new.dcm", b"in the slot meanwhile", tmp_path)
    refused = cli(mnt, "restore", entry.id)
    assert refused.returncode == 1 and "an empty slot" in refused.stdout
    redcap.Project(sb.url, sb.token).delete_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])
    restored = cli(mnt, "restore", entry.id)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.dcm", data) and trash_rows(mnt) == []


def test_a_version_larger_than_the_trash_stops_the_replace(sandbox, mount, tmp_path: Path) -> None:
    mine = os.urandom(4096)
    sb, mnt = refused_upload(sandbox, mount, tmp_path, "big.bin", mine)
    theirs = os.urandom(8192)
    pycap_upload(sb, "big.bin", theirs, tmp_path)
    (state,) = Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/spool")
    Trash(state.parent / "trash", TrashSettings(size=4096))  # as a mount with -o trash_size=4K saves it
    retry = cli(mnt, "retry")
    assert retry.returncode == 1 and "trash_size" in retry.stdout and "trash=off" in retry.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("big.bin", theirs)
    assert [e["state"] for e in unsent(mnt)] == ["unsent"] and trash_rows(mnt) == []
    Trash(state.parent / "trash", TrashSettings(enabled=False))  # -o trash=off: replaced without keeping
    assert cli(mnt, "retry").returncode == 0
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("big.bin", mine) and trash_rows(mnt) == []


def test_trash_empty_and_retry_delete_report_what_they_removed(sandbox, mount, tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    sb, mnt = refused_upload(sandbox, mount, tmp_path, "big.bin", big)
    (entry,) = unsent(mnt)
    gone = cli(mnt, "retry", "--delete", entry["id"])
    assert gone.returncode == 0 and f"{len(big)} bytes" in gone.stdout and unsent(mnt) == []
    project_id = str(redcap.Project(sb.url, sb.token).export_project_info()["project_id"])
    (state,) = Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/spool")
    trash = Trash(state.parent / "trash")
    src = tmp_path / "v"
    ids = []
    for n in range(3):
        src.write_bytes(b"v%d" % n)
        kept = trash.keep(Target(sb.url, project_id, SLOT[0], SLOT[1], SLOT[2], None, f"v{n}.txt"), src,
                          "replaced")
        assert kept is not None
        ids.append(kept.id)
    one = cli(mnt, "trash", "--empty", ids[1])
    assert one.returncode == 0 and "v1.txt" in one.stdout
    assert [r["id"] for r in trash_rows(mnt)] == [ids[0], ids[2]]
    assert cli(mnt, "trash", "--empty", "nope").returncode == 2
    assert cli(mnt, "trash", "--empty").returncode == 0 and trash_rows(mnt) == []
    assert {p.name for p in trash_dir(mnt).iterdir()} <= {".lock", "settings.json"}  # no bytes, no entries


def restore(mnt: Any, row: dict[str, Any]) -> None:
    result = cli(mnt, "restore", row["id"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_cp_rm_and_an_editor_save_through_the_mount_each_keep_the_old_version(sandbox, mount,
                                                                             tmp_path: Path) -> None:
    sb = sandbox()
    first, second = os.urandom(300_000), os.urandom(120_000)
    pycap_upload(sb, "report.txt", first, tmp_path)  # there before the mount (an upload a moment before a
    mnt = mount(sb)  # cp is slot_check's window: test_change_feed.py, test_slot_check_*)
    path = mnt.path.joinpath(*SLOT) / "report.txt"
    src = tmp_path / "second"
    src.write_bytes(second)

    assert subprocess.run(["cp", str(src), str(path)], capture_output=True).returncode == 0  # over the file
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", second)
    rows = trash_rows(mnt)
    assert len(rows) == 1, mnt.log[-4000:]
    (row,) = rows
    assert (row["name"], row["why"], row["bytes"], row["left"]["name"]) == ("report.txt", "replaced",
                                                                            len(first), "report.txt")
    assert (trash_dir(mnt) / f"{row['id']}.data").read_bytes() == first
    restore(mnt, row)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", first)

    for row in trash_rows(mnt):  # the restore's own undo entry: out of the way
        assert cli(mnt, "trash", "--empty", row["id"]).returncode == 0
    os.unlink(path)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    (row,) = trash_rows(mnt)
    assert (row["name"], row["why"], row["bytes"], row["left"]["name"]) == ("report.txt", "deleted",
                                                                            len(first), None)
    restore(mnt, row)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", first)

    assert cli(mnt, "trash", "--empty").returncode == 0
    text = b"line one\nthe old text\n"
    pycap_upload(sb, "report.txt", text, tmp_path)
    mnt = mount(sb)  # a fresh listing: this mount learnt of the restore only from the records TTL
    path = mnt.path.joinpath(*SLOT) / "report.txt"
    r = subprocess.run(["vim", "-es", "-u", "NONE", "-i", "NONE", "-c", "set backupskip=", "-c",
                        "set backupcopy=no", "-c", "%s/old/new/", "-c", "wq", str(path)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL, cwd=str(path.parent))
    assert r.returncode == 0, r.stdout + r.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", b"line one\nthe new text\n")
    (row,) = trash_rows(mnt)
    assert (row["name"], row["why"], row["bytes"]) == ("report.txt", "replaced", len(text))
    restore(mnt, row)
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("report.txt", text)
