"""Uploads that fail: the error reaches close(), the bytes are kept, `redcapfs retry` sends them.

Faults are injected by the sandbox (a real HTTP server), so the real client,
FUSE and spool paths run. After every failure the spool entry is compared byte
for byte with the source, and after every retry the server copy is read back
with PyCap.
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
from mounthelp import REPO, held_writer, kill_mid_write
from test_write import server_file

redcap = pytest.importorskip("redcap")

SLOT = ("1001", "baseline_arm_1", "radiology_report")


def cli(mnt: Any, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = dict(mnt.env)
    if token is not None:
        env["REDCAP_API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=120)


def unsent(mnt: Any) -> list[dict[str, Any]]:
    result = cli(mnt, "unsent", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("fault", ["do=500", "do=drop", "do=hang,seconds=30"], ids=["500", "drop", "hang"])
def test_failed_upload_is_kept_and_retry_sends_it(fault: str, sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox("--fault", f"content=file,action=import,nth=1,{fault}")
    mnt = mount(sb, "timeout=3")
    src = tmp_path / "ecg.bin"
    src.write_bytes(os.urandom(400_000))
    result = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True, text=True)
    assert result.returncode != 0, "a failed upload must never look like success"
    assert "Input/output error" in result.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    entries = unsent(mnt)
    assert len(entries) == 1
    assert Path(entries[0]["data_path"]).read_bytes() == src.read_bytes()
    assert entries[0]["target"]["name"] == "ecg.bin" and entries[0]["target"]["record"] == SLOT[0]
    assert "ecg.bin" in mnt.log and "failed" in mnt.log
    listing = cli(mnt, "unsent")
    assert "ecg.bin" in listing.stdout and entries[0]["id"] in listing.stdout
    retry = cli(mnt, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("ecg.bin", src.read_bytes())
    assert unsent(mnt) == []


def test_retry_will_not_replace_a_different_file_without_force(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb)
    src = tmp_path / "mine.txt"
    src.write_bytes(b"my upload\n")
    assert subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True).returncode != 0
    other = tmp_path / "theirs.txt"
    other.write_bytes(b"someone else's upload\n")
    with open(other, "rb") as fh:
        redcap.Project(sb.url, sb.token).import_file(record=SLOT[0], field=SLOT[2], file_name="theirs.txt",
                                                     file_object=fh, event=SLOT[1])
    refused = cli(mnt, "retry")
    assert refused.returncode == 1 and "theirs.txt" in refused.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("theirs.txt", other.read_bytes())
    (entry,) = unsent(mnt)
    forced = cli(mnt, "retry", "--force", entry["id"])
    assert forced.returncode == 0, forced.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("mine.txt", src.read_bytes())


def test_retry_with_a_wrong_token_keeps_the_entry_and_delete_gives_up(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox("--fault", "content=file,action=import,nth=1,do=500")
    mnt = mount(sb)
    src = tmp_path / "a.txt"
    src.write_bytes(b"a\n")
    subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True)
    (entry,) = unsent(mnt)
    wrong = cli(mnt, "retry", token="0" * 32)
    assert wrong.returncode == 1 and sb.token not in wrong.stdout + wrong.stderr
    (still,) = unsent(mnt)
    assert still["id"] == entry["id"] and "permission" in (still["error"] or "").lower()
    gone = cli(mnt, "retry", "--delete", entry["id"])
    assert gone.returncode == 0 and unsent(mnt) == []


def test_kill_9_mid_write_keeps_what_was_written(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "big.bin"
    chunk = os.urandom(1 << 20)
    kill_mid_write(mnt, held_writer(target, chunk, 8))
    entries = unsent(mnt)
    assert len(entries) == 1
    (entry,) = entries
    assert Path(entry["data_path"]).read_bytes() == chunk * 8
    assert (entry["state"], entry["name"], entry["record"], entry["bytes"]) == ("incomplete", "big.bin", SLOT[0],
                                                                                8 << 20)
    assert "never closed" in entry["error"]
    listing = cli(mnt, "unsent")
    assert f"{entry['id']}  incomplete  {8 << 20} bytes" in listing.stdout
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    again = mount(sb, mountpoint=mnt.path)
    assert "unsent" in again.stderr and "unsent" in again.log
    # Half a file is never sent as if it were the whole one: a plain retry skips it, and says so.
    retry = cli(again, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert f"skipped {entry['id']}" in retry.stdout and "--incomplete" in retry.stdout
    named = cli(again, "retry", entry["id"])
    assert named.returncode == 2 and "--incomplete" in named.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    assert [e["state"] for e in unsent(again)] == ["incomplete"]
    # Sent as it is only when the user asks for it by ID.
    sent = cli(again, "retry", "--incomplete", entry["id"])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("big.bin", chunk * 8)
    assert unsent(again) == []
