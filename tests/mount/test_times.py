"""File times through a real mount: a time set with `touch` on an existing file sticks, also after a remount."""

from __future__ import annotations

import os
import subprocess
from typing import Any


def test_touch_d_on_an_existing_file_sticks_across_a_remount(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    path = mnt.path / "1002" / "baseline_arm_1" / "radiology_report" / "report.txt"
    path.write_bytes(b"a report\n")
    r = subprocess.run(["touch", "-d", "2020-05-17 10:11:12 UTC", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = 1589710272
    assert int(os.stat(path).st_mtime) == want
    mnt.unmount()
    again = mount(sb)
    path = again.path / "1002" / "baseline_arm_1" / "radiology_report" / "report.txt"
    assert int(os.stat(path).st_mtime) == want
    assert path.read_bytes() == b"a report\n"
