"""A normal user who cannot mount FUSE is told the real cause by ``redcapfs mount``, before anything starts.

Each case runs the real command as the unprivileged user ``nobody`` inside a
private mount namespace (``unshare -m``), where a device node of the wanted
mode is bound over /dev/fuse, so the machine's own /dev/fuse is never touched
and the test means the same whether this machine's device is 0600 or 0666.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from redcapfs import fusecheck

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from namespaces import private_mounts_problem

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534

as_nobody = pytest.mark.skipif(
    private_mounts_problem() is not None or not shutil.which("setpriv") or not Path("/dev/fuse").exists(),
    reason=f"needs setpriv, /dev/fuse and a private mount namespace ({private_mounts_problem()})",
)


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder that uid nobody can reach (pytest's own tmp root is 0700), removed afterwards."""
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                            "-c", "import redcapfs.mount"], capture_output=True, cwd="/", env={"PYTHONPATH": str(REPO)})
    if probe.returncode != 0:
        pytest.skip(f"uid nobody cannot run this checkout's Python ({REPO} not readable by others)")
    folder = Path(tempfile.mkdtemp(prefix="redcapfs-nobody-", dir="/tmp"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_as_nobody(tmp_path: Path, device_mode: int, command: list[str], path: str | None = None,
                  group: int | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` as uid nobody, in a mount namespace whose /dev/fuse has ``device_mode`` (and group)."""
    node = tmp_path / "fuse-node"
    os.mknod(node, 0o020000 | device_mode, os.makedev(10, 229))
    os.chmod(node, device_mode)
    if group is not None:
        os.chown(node, 0, group)
    home = tmp_path / "home"
    mountpoint = home / "mnt"
    mountpoint.mkdir(parents=True)
    for p in (home, mountpoint):
        os.chown(p, NOBODY, NOBODY)
    env = {"PATH": path or os.environ["PATH"], "HOME": str(home), "REDCAP_API_TOKEN": "A" * 32,
           "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    inner = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    script = f'mount --bind "{node}" /dev/fuse && exec "$@"'
    unshare = shutil.which("unshare") or "unshare"
    return subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c", script, "sh", *inner],
                          capture_output=True, text=True, env=env, cwd=str(home), timeout=60)


def mount_cmd(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "redcapfs", "mount", "http://127.0.0.1:9/api/", str(tmp_path / "home" / "mnt")]


@as_nobody
def test_mount_names_permission_denied_on_dev_fuse(tmp_path: Path) -> None:
    result = run_as_nobody(tmp_path, 0o600, mount_cmd(tmp_path))
    assert result.returncode != 0
    assert "cannot open /dev/fuse: Permission denied" in result.stderr, result.stderr
    assert "chmod 0666 /dev/fuse" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "home" / ".local").exists(), "a refused mount leaves no state behind"


@as_nobody
def test_mount_names_the_fuse_group(tmp_path: Path) -> None:
    result = run_as_nobody(tmp_path, 0o660, mount_cmd(tmp_path), group=4242)
    assert result.returncode != 0
    assert "you are not in the '4242' group" in result.stderr, result.stderr


@as_nobody
def test_mount_names_missing_fusermount3(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "setpriv", "mount"):  # only what the namespace setup itself needs
        os.symlink(shutil.which(tool) or tool, bindir / tool)
    result = run_as_nobody(tmp_path, 0o666, mount_cmd(tmp_path), path=str(bindir))
    assert result.returncode != 0
    assert "fusermount3 is missing: install the fuse3 package" in result.stderr, result.stderr


def test_allow_other_needs_user_allow_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "fuse.conf"
    conf.write_text("# mount_max = 1000\n#user_allow_other\n")
    monkeypatch.setattr(fusecheck, "FUSE_CONF", str(conf))
    assert not fusecheck._user_allow_other()
    conf.write_text("user_allow_other  # for redcapfs\n")
    assert fusecheck._user_allow_other()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root is sure to be able to mount here")
def test_root_with_a_device_has_no_problem() -> None:
    assert fusecheck.fuse_problem() is None
