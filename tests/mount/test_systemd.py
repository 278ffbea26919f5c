"""The shipped systemd units, and the notify protocol and exit status they rely on, with a real mount.

``systemd-analyze verify`` checks the units as systemd would load them: the
user unit with a HOME whose ~/.local/bin/redcapfs is a symlink to the venv's
(where pipx puts it), the system unit in a private mount namespace whose
/usr/local/bin holds only such a symlink (what scripts/install-mount-helper
makes), so the machine is left alone. The notify test binds its own
NOTIFY_SOCKET, mounts the sandbox, and reads the datagrams the mount sends.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mounthelp import REPO, force_unmount
from namespaces import private_mounts_problem

UNITS = REPO / "systemd"
USER_UNIT = UNITS / "redcapfs@.service"
SYSTEM_UNIT = UNITS / "redcapfs-system@.service"
VENV_REDCAPFS = Path(sys.executable).parent / "redcapfs"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "systemd"], capture_output=True, timeout=600)
        found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed and could not be installed (apt-get install systemd)")
    return found


def test_user_unit_verifies_after_pipx_install(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    home, run = tmp_path / "home", tmp_path / "run"
    (home / ".local/bin").mkdir(parents=True)
    (home / ".local/bin/redcapfs").symlink_to(VENV_REDCAPFS)
    run.mkdir(mode=0o700)
    unit = tmp_path / "redcapfs@study1.service"
    shutil.copy(USER_UNIT, unit)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(run)}
    out = subprocess.run([analyze, "--user", "verify", str(unit)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0 and "not executable" not in out.stderr, out.stderr


@pytest.mark.skipif(private_mounts_problem() is not None, reason=str(private_mounts_problem()))
def test_system_unit_verifies_with_the_mount_helper(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redcapfs").symlink_to(VENV_REDCAPFS)
    unit = tmp_path / "redcapfs@study1.service"
    shutil.copy(SYSTEM_UNIT, unit)
    script = f"mount --make-rprivate / && mount --bind {bin_dir} /usr/local/bin && {analyze} verify {unit}"
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "not executable" not in out.stderr, out.stderr


def _directives(unit: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def _example_config(unit: Path) -> list[str]:
    """The lines of the example .conf in the unit's comment (between <<'CONF' and CONF)."""
    text = unit.read_text()
    block = re.search(r"<<'CONF'\n(.*?)\n#\s+CONF\n", text, re.S)
    assert block, f"{unit.name} has no example config"
    return [line.lstrip("#").strip() for line in block.group(1).splitlines()]


@pytest.mark.parametrize("unit", [USER_UNIT, SYSTEM_UNIT], ids=["user", "system"])
def test_unit_settings(unit: Path) -> None:
    pairs = _directives(unit)
    keys = [key for key, _ in pairs]
    assert ("RestartPreventExitStatus", "77") in pairs
    assert any(k == "ExecStartPre" and "unmount --if-dead" in v for k, v in pairs)
    assert "Type" in keys and ("Type", "notify") in pairs
    network = any("network-online" in v for _, v in pairs)
    assert network == (unit == SYSTEM_UNIT)  # it does nothing in a user unit
    for line in _example_config(unit):
        if line and not line.startswith("#"):
            assert "#" not in line.partition("=")[2], f"a comment inside a value: {line!r}"


def _until(sock: socket.socket, prefix: str) -> list[str]:
    """Datagrams up to and including the first starting with ``prefix`` (each waited for up to 30 s)."""
    got: list[str] = []
    sock.settimeout(30)
    while not got or not got[-1].startswith(prefix):
        got.append(sock.recv(4096).decode())
    return got


def test_notify_protocol(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    """READY=1 once the mount is usable, STATUS= with the state and the unsent count, STOPPING=1 at unmount."""
    sb = sandbox()
    address = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        m = mount(sb, env={"NOTIFY_SOCKET": str(address)})
        assert m.mounted
        first = _until(sock, "STATUS=")
        assert first[0] == "READY=1"  # before any status: systemd counts the unit started from here
        assert first[-1].startswith(f"STATUS=mounted {sb.url} project ") and str(m.path) in first[-1]
        assert first[-1].endswith("nothing unsent")
        force_unmount(m.path, m.env)
        last = _until(sock, "STOPPING=1")
    assert any(d.startswith("STATUS=unmounting") for d in last)


def test_refused_token_exits_77(sandbox: Any, mount: Any) -> None:
    """The status the units' RestartPreventExitStatus= names; any other refusal stays 1 (restart may help)."""
    sb = sandbox()
    m = mount(sb, env={"REDCAP_API_TOKEN": "0" * 32}, expect_fail=True)
    assert m.returncode == 77, m.describe()
    assert "refused" in m.stderr
    other = mount(sb, url=sb.url.replace("/api/", "/nothing/"), expect_fail=True)
    assert other.returncode == 1, other.describe()
