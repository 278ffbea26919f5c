"""``redcapfs unmount`` waits for an upload in flight, says which, and the file reaches REDCap.

The sandbox delays every call (--latency), so a ``cp`` into the mount is still
in its close (the Import File call) when unmount runs. The upload is seen in
flight through ``redcapfs status --json`` first (a condition, not a sleep);
the file is then checked with PyCap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, is_mounted

redcap = pytest.importorskip("redcap")
SLOT = ("1001", "baseline_arm_1", "radiology_report")  # empty in the demo project


def cli(mnt: Any, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True,
                          env=mnt.env, cwd=str(REPO), timeout=120)


def uploads_in_flight(mnt: Any) -> list[dict[str, Any]]:
    out = cli(mnt, "status", "--json", str(mnt.path))
    docs = json.loads(out.stdout) if out.returncode == 0 else []
    return [t for d in docs for t in d.get("in_flight") or [] if t.get("kind") == "upload"]


def test_unmount_waits_for_upload(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox("--latency", "3000")
    m = mount(sb)
    data = os.urandom(200_000)
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    target = m.path.joinpath(*SLOT, "report.pdf")
    copied: list[subprocess.CompletedProcess] = []
    copier = threading.Thread(target=lambda: copied.append(
        subprocess.run(["cp", str(source), str(target)], capture_output=True, text=True, timeout=120)))
    copier.start()
    deadline = time.monotonic() + 60
    while not uploads_in_flight(m):
        assert copier.is_alive() and time.monotonic() < deadline, f"the upload was never seen in flight: {copied}"
    done = cli(m, "unmount", str(m.path))
    copier.join(60)
    assert done.returncode == 0, done.stderr
    assert "waiting for 1 upload(s) to REDCap: " + "/".join(SLOT) in done.stderr
    assert "report.pdf" in done.stderr
    assert copied and copied[0].returncode == 0, copied
    assert not is_mounted(m.path)
    project = redcap.Project(sb.url, sb.token)
    content, _headers = project.export_file(record=SLOT[0], event=SLOT[1], field=SLOT[2])
    assert content == data
