"""A truncation to empty closed with nothing written is held for a short grace (issue 10 §3).

ImageMagick's `convert` onto an existing name opens it with O_TRUNC, closes it,
then opens it again and writes. The server must never hold an empty file in
between: the sandbox's request log shows no empty import. When no write follows,
the empty file is uploaded once the grace (docs/SEMANTICS.md) has passed, and
the old version is in the trash. Checked with PyCap, the request log and
`redcapfs trash --json`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO

redcap = pytest.importorskip("redcap")

SLOT = ("1003", "baseline_arm_1", "mri_upload")  # holds mri_02.png in the demo project
NAME = "mri_02.png"


def server_file(sb: Any) -> tuple[str, bytes]:
    content, headers = redcap.Project(sb.url, sb.token).export_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])
    return str(headers["name"]), bytes(content)


def imports(sb: Any) -> list[dict[str, Any]]:
    return sb.calls(content="file", action="import", field=SLOT[2], record=SLOT[0])


def wait_for(check: Any, limit: float = 30.0) -> bool:
    """Poll ``check()`` until true (the grace ends in the background); False if it never became true."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def test_truncate_close_reopen_write_never_uploads_an_empty_file(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path.joinpath(*SLOT) / NAME
    old = path.read_bytes()
    assert old
    for n in range(3):
        new = f"version {n}\n".encode() * 1000
        os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))  # what convert does first
        assert path.stat().st_size == 0  # as on a local disk, the file is empty now
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, new)
        os.close(fd)
        assert server_file(sb) == (NAME, new), mnt.log[-3000:]
        assert path.read_bytes() == new
    assert [c["bytes"] for c in imports(sb)] == [len(f"version {n}\n") * 1000 for n in range(3)], imports(sb)
    assert "Traceback" not in mnt.log


def test_a_truncation_nobody_writes_after_is_uploaded_after_the_grace(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path.joinpath(*SLOT) / NAME
    old = path.read_bytes()
    subprocess.run(["sh", "-c", f": > '{path}'"], check=True)
    assert path.read_bytes() == b""
    assert wait_for(lambda: server_file(sb) == (NAME, b"")), "the empty file never reached the server"
    assert [c["bytes"] for c in imports(sb)] == [0]
    trash = subprocess.run([sys.executable, "-m", "redcapfs", "trash", "--json"], capture_output=True, text=True,
                           cwd=str(REPO), env=mnt.env, timeout=60)
    assert trash.returncode == 0, trash.stderr
    kept = [e for e in json.loads(trash.stdout) if e["name"] == NAME and e["record"] == SLOT[0]]
    assert [(e["bytes"], e["why"]) for e in kept] == [(len(old), "replaced")], trash.stdout


def test_a_held_truncation_is_sent_at_unmount(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path.joinpath(*SLOT) / NAME
    os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))
    mnt.unmount()
    assert server_file(sb) == (NAME, b"")


def test_rm_right_after_a_truncation_deletes_the_file(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    slot = mnt.path.joinpath(*SLOT)
    subprocess.run(["sh", "-c", f": > '{slot / NAME}' && rm '{slot / NAME}'"], check=True)
    assert os.listdir(slot) == []
    with pytest.raises(redcap.RedcapError):
        server_file(sb)


@pytest.mark.skipif(shutil.which("convert") is None or subprocess.run(
    ["convert", "-version"], capture_output=True, text=True).stdout.find("ImageMagick") < 0,
    reason="ImageMagick's convert is not installed")
def test_imagemagick_convert_onto_an_existing_name(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path.joinpath(*SLOT) / NAME
    for n, colour in enumerate(("red", "blue", "green")):
        local = tmp_path / f"{colour}.png"
        subprocess.run(["convert", "-size", "64x64", f"xc:{colour}", str(local)], check=True)
        r = subprocess.run(["convert", str(local), str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        name, body = server_file(sb)
        assert name == NAME and body == path.read_bytes() and body[:8] == b"\x89PNG\r\n\x1a\n", n
    assert all(c["bytes"] > 0 for c in imports(sb)), imports(sb)
