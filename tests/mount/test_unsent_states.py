"""Spool states through a real mount killed with -9, and what `redcapfs retry` does with each.

* killed during an upload: the entry is ``unsent`` and may already be on the
  server; retry looks first: the same bytes there mean delivered (removed,
  nothing sent), otherwise it sends;
* killed after a successful upload at fsync and more writes: ``incomplete``,
  never dropped as delivered nor sent as complete;
* a ``conflict`` entry is sent only with ``--force``.

Server state is read back with PyCap; calls are counted in the sandbox's request log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import daemon_pids, force_unmount, settle
from test_upload_failures import SLOT, cli, unsent
from test_write import server_file

redcap = pytest.importorskip("redcap")

from redcapfs.spool import Spool  # noqa: E402


def spool_jsons(mnt: Any) -> list[dict[str, Any]]:
    """The spool's json files under the mount's state folder."""
    rows = []
    for path in Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/spool/*.json"):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # replaced while we read it
    return rows


def wait_for(predicate: Any, what: str, limit: float = 30.0) -> None:
    """A bounded wait for a state the test drives towards (not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def kill_mount(mnt: Any, *others: subprocess.Popen) -> None:
    (pid,) = daemon_pids(mnt.path)
    os.kill(pid, signal.SIGKILL)
    for proc in others:
        proc.kill()
        proc.wait(10)
    force_unmount(mnt.path, mnt.env)


def imports_done(sb: Any) -> int:
    settle(lambda: len(sb.calls()))
    return len(sb.calls(content="file", action="import", status=200))


def pycap_upload(sb: Any, name: str, data: bytes, tmp_path: Path) -> None:
    path = tmp_path / f"pycap-{name}"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        redcap.Project(sb.url, sb.token).import_file(record=SLOT[0], field=SLOT[2], file_name=name,
                                                     file_object=fh, event=SLOT[1])


def killed_during_upload(sandbox: Any, mount: Any, tmp_path: Path, data: bytes, *sandbox_args: str
                         ) -> tuple[Any, Any, dict]:
    """cp into a slot whose upload hangs; kill -9 the mount while it waits for REDCap's answer."""
    sb = sandbox("--log-level", "INFO", "--fault", "content=file,action=import,nth=1,do=hang,seconds=60",
                 *sandbox_args)
    mnt = mount(sb, "timeout=100")
    src = tmp_path / "scan.bin"
    src.write_bytes(data)
    cp = subprocess.Popen(["cp", str(src), str(mnt.path.joinpath(*SLOT))], stderr=subprocess.DEVNULL)
    wait_for(lambda: any(r.get("attempted") for r in spool_jsons(mnt)), "the upload began")
    # The spool says "attempted" just before the request leaves: kill only once the sandbox holds it (else
    # the one hang would be spent on the test's own PyCap upload later).
    wait_for(lambda: any("fault: hanging" in line for line in sb.output), "the upload reached the sandbox")
    kill_mount(mnt, cp)
    (entry,) = unsent(mnt)
    return sb, mnt, entry


@pytest.mark.parametrize("fileinfo", [True, False], ids=["fileinfo", "no-fileinfo"])
@pytest.mark.parametrize("arrived", [True, False], ids=["arrived", "lost"])
def test_kill_9_during_upload_retry_looks_before_sending(arrived: bool, fileinfo: bool, sandbox, mount,
                                                         tmp_path: Path) -> None:
    data = os.urandom(300_000)
    sb, mnt, entry = killed_during_upload(sandbox, mount, tmp_path, data, *([] if fileinfo else ["--no-fileinfo"]))
    assert (entry["state"], entry["name"], entry["bytes"]) == ("unsent", "scan.bin", len(data))
    assert entry["may_be_on_server"] and "during the upload" in entry["error"]
    assert Path(entry["data_path"]).read_bytes() == data
    if arrived:  # what REDCap would hold had the upload landed before its answer was lost
        pycap_upload(sb, "scan.bin", data, tmp_path)
    else:  # same name and size, other bytes: size alone cannot tell
        pycap_upload(sb, "scan.bin", bytes(len(data)), tmp_path)
    before = imports_done(sb)
    retry = cli(mnt, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.bin", data)
    assert unsent(mnt) == []
    if arrived:
        assert f"already on the server {entry['id']}" in retry.stdout
        assert imports_done(sb) == before, "delivered bytes must not be sent again"
    else:
        assert f"sent {entry['id']}" in retry.stdout and imports_done(sb) == before + 1


def test_kill_9_after_an_fsync_upload_and_more_writes_is_incomplete(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "log.txt"
    writer = subprocess.Popen([sys.executable, "-c", f"""
import os, sys, time
fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, b"first part\\n")
os.fsync(fd)
print("synced", flush=True)
sys.stdin.readline()
os.write(fd, b"second part, never closed\\n")
print("wrote", flush=True)
time.sleep(60)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdin and writer.stdout
    assert writer.stdout.readline().strip() == "synced"
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("log.txt", b"first part\n")
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "wrote"
    kill_mount(mnt, writer)
    (entry,) = unsent(mnt)
    assert (entry["state"], entry["name"]) == ("incomplete", "log.txt")
    assert Path(entry["data_path"]).read_bytes() == b"first part\nsecond part, never closed\n"
    again = mount(sb, mountpoint=mnt.path)  # the next mount keeps it: not a delivered leftover
    assert [e["id"] for e in unsent(again)] == [entry["id"]]
    retry = cli(again, "retry")
    assert retry.returncode == 0 and f"skipped {entry['id']}" in retry.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("log.txt", b"first part\n")


def test_a_conflict_is_sent_only_with_force(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb)
    src = tmp_path / "c.txt"
    src.write_bytes(b"mine\n")
    assert subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True).returncode != 0
    (row,) = unsent(mnt)
    (spool_dir,) = Path(mnt.env["REDCAPFS_STATE_DIR"]).glob("*/spool")
    Spool(spool_dir).get(row["id"]).mark_conflict("REDCap's log shows a newer upload by someone else")
    (row,) = unsent(mnt)
    assert row["state"] == "conflict" and "newer upload" in row["error"]
    assert f"{row['id']}  conflict" in cli(mnt, "unsent").stdout
    plain = cli(mnt, "retry")
    assert plain.returncode == 0 and f"skipped {row['id']}" in plain.stdout and "--force" in plain.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    assert cli(mnt, "retry", row["id"]).returncode == 2
    forced = cli(mnt, "retry", "--force", row["id"])
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("c.txt", b"mine\n") and unsent(mnt) == []
