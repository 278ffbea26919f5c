"""A crashed mount is easy to recover (issue: nothing lost, §5), each after a real ``kill -9`` of the daemon.

* ``redcapfs mount`` on the dead mountpoint ("Transport endpoint is not
  connected") clears it and mounts, with one line saying so;
* ``redcapfs unmount`` of a dead mountpoint clears it;
* the dead mount's content cache (``cache-<pid>``, a half-downloaded file
  included) is removed at the next mount of that state folder.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, daemon_pids, is_mounted

pytestmark = pytest.mark.smoke

FILE = ("1001", "screening_arm_1", "consent_form", "consent_1001.pdf")


def kill_daemon(mnt: Any) -> int:
    """kill -9 the one mount process serving ``mnt`` and wait until it is gone; the mount stays, dead."""
    (pid,) = daemon_pids(mnt.path)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while daemon_pids(mnt.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not daemon_pids(mnt.path)
    with pytest.raises(OSError) as dead:
        os.listdir(mnt.path)
    assert dead.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)  # the latter with requests in flight
    assert is_mounted(mnt.path)
    return pid


def cache_dirs(state: Path) -> list[Path]:
    return sorted(p for p in state.glob("*/cache-*") if p.is_dir())


def test_mount_over_a_dead_mount_clears_it(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    first = mount(sb)
    names = sorted(os.listdir(first.path))
    kill_daemon(first)
    again = mount(sb, mountpoint=first.path)
    cleared = [line for line in again.stderr.splitlines() if "stale mount" in line]
    assert len(cleared) == 1 and str(first.path) in cleared[0], again.describe()
    assert sorted(os.listdir(again.path)) == names
    again.unmount()


def test_unmount_of_a_dead_mount_clears_it(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    mnt = mount(sb)
    kill_daemon(mnt)
    result = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(mnt.path)], capture_output=True,
                            text=True, timeout=60, cwd=str(REPO), env=mnt.env)
    assert result.returncode == 0 and "stale mount" in result.stderr, result.stderr
    assert not is_mounted(mnt.path)
    assert os.listdir(mnt.path) == []  # the plain empty folder again


def test_caches_of_dead_mounts_are_removed_at_the_next_mount(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """One download completes, a second hangs (its .part file is there); kill -9; the next mount removes both.

    Without fileinfo the size of a file is learnt by downloading it, so a stat is enough to start one.
    """
    sb = sandbox("--no-fileinfo", "--fault", "content=file,action=export,record=1003,do=hang,seconds=60")
    state = tmp_path / "state"
    mnt = mount(sb)
    complete = mnt.path.joinpath(*FILE).read_bytes()
    assert complete
    (dead_cache,) = cache_dirs(state)
    assert any(p.stat().st_size == len(complete) for p in dead_cache.iterdir())
    slot = mnt.path / "1003" / "baseline_arm_1" / "mri_upload"
    reader = subprocess.Popen(["cat", str(slot / "mri_02.png")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not any(".part" in p.name for p in dead_cache.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(".part" in p.name for p in dead_cache.iterdir()), sorted(os.listdir(dead_cache))
        pid = kill_daemon(mnt)
    finally:
        reader.kill()
        reader.wait(10)
    assert dead_cache.name == f"cache-{pid}"
    again = mount(sb, mountpoint=mnt.path)
    assert not dead_cache.exists(), again.log
    (live,) = cache_dirs(state)
    assert live.name == f"cache-{daemon_pids(again.path)[0]}"
    assert "removed 1 content cache folder" in again.log
    again.unmount()
    assert cache_dirs(state) == []  # and a clean unmount leaves none
