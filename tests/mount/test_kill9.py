"""kill -9 of the mount daemon during a write, an upload and a download, each recovered the way a user would.

Recovery (issue 10, §5) is the product's own: ``redcapfs mount`` straight onto
the dead mountpoint clears it (one "stale mount" line) and mounts, and the dead
mount's cache folder is gone; then §1's checks: ``unsent --json`` gives the
right ``state`` (``incomplete`` for a write never closed; ``unsent``, or
nothing because REDCap already has the bytes, for an upload) and ``retry``
leaves the server byte-exact (PyCap) with nothing left to send.

Where the moment of the kill races the transfer, several rounds run. Each kill
waits on a fact (``redcapfs status --json`` ``in_flight``, the sandbox's
request log, a writer's own report), never on a sleep. The sandbox's
``--latency`` keeps each call open long enough to be seen in flight; it is
restarted with it (same port and data) only for the transfer, so mounting
stays quick.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import held_writer
from test_recovery import kill_daemon
from test_unsent_states import wait_for
from test_upload_failures import SLOT, cli, unsent
from test_write import server_file

redcap = pytest.importorskip("redcap")

LATENCY_MS = "700"
ROUNDS = 3


def in_flight(mnt: Any, kind: str) -> bool:
    """True when ``redcapfs status --json`` shows a transfer of that kind running on this mount."""
    result = cli(mnt, "status", str(mnt.path), "--json")
    if result.returncode != 0:
        return False
    return any(t.get("kind") == kind for doc in json.loads(result.stdout) for t in doc.get("in_flight") or [])


def restart(sandbox: Any, sb: Any, *args: str) -> Any:
    """Stop ``sb`` and start the same server again (port, data, request log) with other options."""
    sb.stop()
    again = sandbox("--port", sb.url.rsplit(":", 1)[1].split("/")[0], *args)
    assert again.url == sb.url
    return again


def recover(sb: Any, mount: Any, dead: Any, pid: int) -> Any:
    """``redcapfs mount`` on the dead mountpoint: it says it cleared it, mounts, and removes the dead cache."""
    again = mount(sb, mountpoint=dead.path)
    cleared = [line for line in again.stderr.splitlines() if "stale mount" in line]
    assert len(cleared) == 1 and str(dead.path) in cleared[0], again.describe()
    state = Path(dead.env["REDCAPFS_STATE_DIR"])
    assert not list(state.glob(f"*/cache-{pid}")), "the dead mount's cache folder is still there"
    return again


@pytest.mark.parametrize("chunks", [1, 3, 8])
def test_kill_9_during_a_write_then_mount_on_the_dead_mountpoint(chunks: int, sandbox, mount) -> None:
    sb = sandbox()
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "notes.bin"
    chunk = os.urandom(256 << 10)
    writer = held_writer(target, chunk, chunks)
    try:
        pid = kill_daemon(mnt)
    finally:
        writer.kill()
        writer.wait(10)
    again = recover(sb, mount, mnt, pid)
    (entry,) = unsent(again)
    assert (entry["state"], entry["name"], entry["bytes"]) == ("incomplete", "notes.bin", chunks * len(chunk))
    assert Path(entry["data_path"]).read_bytes() == chunk * chunks
    retry = cli(again, "retry")
    assert retry.returncode == 0 and f"skipped {entry['id']}" in retry.stdout, retry.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None  # half a file is never sent as the whole
    assert os.listdir(again.path.joinpath(*SLOT)) == []
    sent = cli(again, "retry", "--incomplete", entry["id"])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("notes.bin", chunk * chunks)
    assert unsent(again) == []


@pytest.mark.parametrize("moment", ["in-flight", "stored"] * (ROUNDS - 1), ids=lambda m: m)
def test_kill_9_during_an_upload_then_mount_on_the_dead_mountpoint(moment: str, sandbox, mount,
                                                                   tmp_path: Path) -> None:
    """Killed while the upload waits for REDCap (not stored yet), or just after REDCap stored it (its
    answer may or may not have reached the mount): either way nothing is lost and nothing sent twice."""
    sb = sandbox()
    mnt = mount(sb)
    sb = restart(sandbox, sb, "--latency", LATENCY_MS)
    src = tmp_path / "scan.bin"
    data = os.urandom(2 << 20)
    src.write_bytes(data)
    cp = subprocess.Popen(["cp", str(src), str(mnt.path.joinpath(*SLOT))], stderr=subprocess.DEVNULL)
    try:
        if moment == "in-flight":
            wait_for(lambda: in_flight(mnt, "upload"), "status shows the upload in flight")
        else:
            wait_for(lambda: sb.calls(content="file", action="import", status=200), "REDCap stored the upload")
        pid = kill_daemon(mnt)
    finally:
        cp.kill()
        cp.wait(10)
    sb = restart(sandbox, sb)
    again = recover(sb, mount, mnt, pid)
    entries = unsent(again)
    if entries:
        (entry,) = entries
        assert (entry["state"], entry["name"], entry["bytes"]) == ("unsent", "scan.bin", len(data))
        assert Path(entry["data_path"]).read_bytes() == data
        retry = cli(again, "retry")
        assert retry.returncode == 0, retry.stdout + retry.stderr
        if moment == "stored":
            assert f"already on the server {entry['id']}" in retry.stdout
    else:
        assert moment == "stored", "killed before REDCap had it, yet nothing is left to send"
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.bin", data)
    assert len(sb.calls(content="file", action="import", status=200)) == 1, "sent twice"
    assert unsent(again) == []


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_kill_9_during_a_download_then_mount_on_the_dead_mountpoint(round_: int, sandbox, mount,
                                                                    tmp_path: Path) -> None:
    sb = sandbox()
    data = os.urandom((1 + round_) << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        redcap.Project(sb.url, sb.token).import_file(record=SLOT[0], field=SLOT[2], file_name="big.bin",
                                                     file_object=fh, event=SLOT[1])
    mnt = mount(sb)
    sb = restart(sandbox, sb, "--latency", LATENCY_MS)
    target = mnt.path.joinpath(*SLOT) / "big.bin"
    reader = subprocess.Popen(["cat", str(target)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: in_flight(mnt, "download"), "status shows the download in flight")
        pid = kill_daemon(mnt)
    finally:
        reader.kill()
        reader.wait(10)
    sb = restart(sandbox, sb)
    again = recover(sb, mount, mnt, pid)
    assert unsent(again) == []  # a download leaves nothing to send
    assert target.read_bytes() == data
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("big.bin", data)
    again.unmount()
