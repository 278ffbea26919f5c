"""The README's demo command, and the content cache's life: private, wiped at unmount unless kept."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, downloads, force_unmount, is_mounted, settle


def test_demo_mounts_shows_hints_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    mp = tmp_path / "demo"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("REDCAPFS_STATE_DIR", "XDG_STATE_HOME")}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "redcapfs", "demo", str(mp)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(REPO), env=env)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        assert "is mounted at" in text and "cp /etc/hostname" in text, text
        assert is_mounted(mp)
        assert "1001" in os.listdir(mp)
        consent = mp / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
        assert consent.read_bytes().startswith(b"%PDF")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert not is_mounted(mp)
        assert not mp.exists(), "the demo removes the mountpoint it created"
        assert list(tmp.iterdir()) == [], "the demo's sandbox data and state folder are gone"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"], "nothing left in HOME (no ~/.local/state)"
    finally:
        if proc.poll() is None:
            proc.kill()
        force_unmount(mp)


def cache_dirs(state: Path) -> list[Path]:
    return [p for p in state.glob("*/cache*") if p.is_dir()]


def test_cache_is_private_and_wiped_at_unmount(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    consent = mnt.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
    consent.read_bytes()
    (cache,) = cache_dirs(tmp_path / "state")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    files = [p for p in cache.iterdir() if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert all("consent" not in p.name for p in files), "no server name becomes a local path"
    mnt.unmount()
    deadline = time.monotonic() + 10
    while cache_dirs(tmp_path / "state") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache_dirs(tmp_path / "state") == [], "clinical files must not outlive the mount"


def test_keep_cache_survives_a_remount_and_saves_the_download(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb, "keep_cache")
    consent = mnt.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
    data = consent.read_bytes()
    mnt.unmount()
    assert cache_dirs(tmp_path / "state")
    before = settle(lambda: len(downloads(sb.calls())))
    again = mount(sb, "keep_cache", mountpoint=mnt.path)
    assert (again.path / consent.relative_to(mnt.path)).read_bytes() == data
    assert settle(lambda: len(downloads(sb.calls()))) == before
