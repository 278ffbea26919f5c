"""``mount -t fuse.redcapfs`` and an fstab line, the way mount(8) and mount.fuse3(8) run redcapfs.

mount(8) runs mount.fuse3, which runs ``redcapfs URL MOUNTPOINT -o OPTIONS``
(no subcommand) with mount(8)'s generic options mixed in, from a fixed PATH.
fstab_driver.py does the mount inside a private mount namespace whose
/usr/local/sbin holds only a symlink to the venv's ``redcapfs`` (what
scripts/install-mount-helper makes after a pipx install), and reports what the
kernel's mount table and ``stat`` show; the bytes are checked against PyCap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import REPO, daemon_pids, expected_files, pycap_bytes
from namespaces import private_mounts_problem

redcap = pytest.importorskip("redcap")
pytestmark = [
    pytest.mark.skipif(not Path("/sbin/mount.fuse3").exists() and shutil.which("mount.fuse3") is None,
                       reason="mount.fuse3 is not installed (Debian package fuse3)"),
    pytest.mark.skipif(private_mounts_problem() is not None, reason=str(private_mounts_problem())),
]
DRIVER = Path(__file__).resolve().parent / "fstab_driver.py"


def drive(tmp_path: Path, mountpoint: Path, *mount_argv: str) -> dict[str, Any]:
    """Run mount(8) with ``mount_argv`` in a private namespace; the driver's JSON report."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "redcapfs"
    if not link.exists():
        link.symlink_to(Path(sys.executable).parent / "redcapfs")
    env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
    env["REDCAPFS_STATE_DIR"] = str(tmp_path / "state")
    try:
        out = subprocess.run(["unshare", "-m", sys.executable, str(DRIVER), str(bin_dir), str(mountpoint),
                              *mount_argv], capture_output=True, text=True, env=env, cwd=str(REPO), timeout=240)
    finally:
        for pid in daemon_pids(mountpoint):  # a driver that failed half-way must not leave a daemon
            os.kill(pid, 9)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "study.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def test_mount_t_fuse_redcapfs(sandbox: Any, load: Any, tmp_path: Path) -> None:
    sb = sandbox()
    mp = tmp_path / "mnt"
    mp.mkdir()
    opts = (f"token_file={token_file(tmp_path, sb.token)},rate=200,nosuid,nodev,noexec,noatime,_netdev,nofail,"
            "noauto,users,defaults,x-systemd.automount,x-systemd.mount-timeout=30,uid=4321,gid=4322,umask=027")
    got = drive(tmp_path, mp, "-t", "fuse.redcapfs", sb.url, str(mp), "-o", opts)
    assert got["rc"] == 0, got["stderr"]
    assert sb.token not in json.dumps(got)
    fstype, source, mount_opts = got["mountinfo"]
    project_id = redcap.Project(sb.url, sb.token).export_project_info()["project_id"]
    host = sb.url.split("//", 1)[1].split("/", 1)[0]
    assert (fstype, source) == ("fuse.redcapfs", f"redcapfs:{host}/{project_id}")
    assert {"nosuid", "nodev", "noexec", "noatime", "rw"} <= set(mount_opts.split(","))
    assert (got["uid"], got["gid"], got["mode"], got["dir_mode"]) == (4321, 4322, 0o640, 0o750)
    assert bytes.fromhex(got["bytes"]) == pycap_bytes(sb.url, sb.token, expected_files(load(None))[got["path"]])
    assert (got["unmount_rc"], got["still_mounted"]) == (0, False)


def readme_fstab_line() -> str:
    """The fstab line README.md gives (the one line naming fuse.redcapfs that starts with its example URL)."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith("https://redcap.example.edu/api/") and " fuse.redcapfs " in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_fstab_line(sandbox: Any, load: Any, tmp_path: Path) -> None:
    """README's fstab line, with the sandbox's URL, a temp mountpoint and token file, read by mount -T."""
    sb = sandbox()
    mp = tmp_path / "mnt"
    mp.mkdir()
    _url, _mountpoint, fstype, options, *rest = readme_fstab_line().split()
    assert (fstype, rest) == ("fuse.redcapfs", ["0", "0"])
    options = options.replace("token_file=/etc/redcapfs/study1.token", f"token_file={token_file(tmp_path, sb.token)}")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{sb.url}  {mp}  {fstype}  {options},rate=200  0  0\n")
    got = drive(tmp_path, mp, "-T", str(fstab), str(mp))
    assert got["rc"] == 0, got["stderr"]
    assert "umask=077" in got["stderr"]  # allow_other without umask: said at mount
    assert got["mountinfo"][:2] == ["fuse.redcapfs", "study1"]
    assert (got["uid"], got["gid"], got["mode"], got["dir_mode"]) == (1000, 1000, 0o600, 0o700)
    assert bytes.fromhex(got["bytes"]) == pycap_bytes(sb.url, sb.token, expected_files(load(None))[got["path"]])
    assert (got["unmount_rc"], got["still_mounted"]) == (0, False)


def test_read_only_by_mount8(sandbox: Any, load: Any, tmp_path: Path) -> None:
    """-o ro through mount(8): the kernel mount is ro, modes drop their write bits, a write is refused."""
    sb = sandbox()
    mp = tmp_path / "mnt"
    mp.mkdir()
    got = drive(tmp_path, mp, "-t", "fuse.redcapfs", "-o", f"ro,token_file={token_file(tmp_path, sb.token)},rate=200",
                sb.url, str(mp))
    assert got["rc"] == 0, got["stderr"]
    assert "ro" in got["mountinfo"][2].split(",")
    assert (got["mode"], got["dir_mode"]) == (0o444, 0o555)
    assert got["write"] != "allowed"
    assert (got["unmount_rc"], got["still_mounted"]) == (0, False)
