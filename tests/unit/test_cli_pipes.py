"""Every command's output into a closed pipe, or into ``head -c1``: no traceback, no BrokenPipeError.

The closed pipe is made deterministic: the read end is closed before the
command starts, so its first write meets EPIPE whatever the output size.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from redcapfs.cli import COMMANDS
from redcapfs.locations import project_key
from redcapfs.spool import Spool, Target

URL = "http://127.0.0.1:1/api/"
RUNS = [["--help"], ["--version"], ["status"], ["status", "--json"], ["unsent"], ["unsent", "--json"],
        ["trash"], ["trash", "--json"], ["profiles"], ["profiles", "--json"], ["docs"], ["docs", "semantics"],
        ["clean", "--dry-run"], ["clean", "--dry-run", "--json"], ["completion", "bash"], ["help"],
        ["retry", "--delete", "nope"]]
RUNS += [["help", name] for name in COMMANDS] + [[name, "--help"] for name in COMMANDS if name != "help"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    state = tmp_path / "state"
    spool = Spool(state / project_key(URL, "7") / "spool")
    for n in range(50):
        entry = spool.create(Target(URL, "7", str(n), None, "f", None, f"{n}.pdf"))
        entry.mark_unsent("x" * 500)
    config = tmp_path / "config.toml"
    config.write_text(f'default = "a"\n[a]\nurl = "{URL}"\n')
    config.chmod(0o600)
    out = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
    out.update(REDCAPFS_STATE_DIR=str(state), REDCAPFS_CONFIG=str(config))
    return out


def _clean(stderr: str) -> bool:
    return "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


@pytest.mark.parametrize("args", RUNS, ids=" ".join)
def test_closed_pipe(args: list[str], env: dict[str, str]) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "redcapfs", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.close(write)
    assert _clean(done.stderr), done.stderr
    assert done.returncode in (0, 2), done.stderr  # 2: the usage error of `retry --delete nope`


@pytest.mark.parametrize("command", ["unsent --json", "docs semantics", "help", "status --json", "clean --dry-run"])
def test_head_c1(command: str, env: dict[str, str]) -> None:
    done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{sys.executable} -m redcapfs {command} | head -c1"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert len(done.stdout) == 1 and _clean(done.stderr), done.stderr
    assert done.returncode == 0, done.stderr
