"""Fixtures for tests that mount a real FUSE filesystem with ``python -m redcapfs mount``.

Why a subprocess and not an in-process FUSE loop: the user runs the command,
so the tests do too (argument parsing, the readiness handshake of the
background mode, exit codes and stderr messages are part of what is tested),
and a crash of the filesystem then cannot take pytest down with it.

``mount(sb, *options, mountpoint=None, expect_fail=False, env=None, args=())``
runs the mount command against a sandbox (see ``tests/conftest.py``) with
``REDCAP_API_TOKEN`` in the environment (never in argv),
``REDCAPFS_STATE_DIR`` inside ``tmp_path`` and ``--log-file`` per mount. It
returns a :class:`Mounted`. Teardown always unmounts (product ``unmount``,
then ``fusermount3 -u -z``, then ``umount -l``), ends a leftover daemon, and
fails the test if a mount could not be removed.

The whole directory is skipped when the machine cannot mount FUSE at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, expected_files, expected_tree, force_unmount, is_mounted  # noqa: F401

MOUNT_TIMEOUT = 60  # seconds for the mount command to report ready or refuse


def fuse_missing() -> str | None:
    """Why FUSE mounts cannot work here for this user, or None (the mount command's own diagnosis)."""
    from redcapfs.fusecheck import fuse_problem

    return fuse_problem()


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Mark every test in this directory ``mount``, and skip them all cleanly without FUSE."""
    here = Path(__file__).resolve().parent
    reason = fuse_missing()
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.mount)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Mounted:
    """One run of the mount command: where it mounted (or tried to), its output and log."""

    path: Path
    returncode: int
    stdout: str
    stderr: str
    log_file: Path
    argv: list[str]
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def log(self) -> str:
        """The text of ``--log-file`` so far ("" if it was never written)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def mounted(self) -> bool:
        return is_mounted(self.path)

    def unmount(self) -> None:
        """``python -m redcapfs unmount MOUNTPOINT``; asserts it worked and the mount is gone."""
        r = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(self.path)], capture_output=True,
                           text=True, timeout=30, cwd=str(REPO), env=self.env)
        assert r.returncode == 0, f"unmount failed ({r.returncode}): {r.stderr}"
        assert not is_mounted(self.path), "still mounted after unmount"

    def describe(self) -> str:
        """Everything useful for a failure message."""
        return (f"argv: {self.argv}\nexit: {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}\n"
                f"log (tail):\n{self.log[-4000:]}")


@pytest.fixture
def mount(sandbox: Any, tmp_path: Path) -> Callable[..., Mounted]:
    """Factory running ``python -m redcapfs mount``; see the module docstring.

    Depends on ``sandbox`` so that mounts are torn down before the servers stop.
    Options default to ``rate=200`` (the default 5/s would make tests slow).
    """
    attempted: list[tuple[Path, dict[str, str]]] = []
    counter = [0]
    state_dir = tmp_path / "state"

    def factory(sb: Any, *options: str, mountpoint: os.PathLike | str | None = None, expect_fail: bool = False,
                env: dict[str, str | None] | None = None, args: tuple[str, ...] = (),
                url: str | None = None) -> Mounted:
        counter[0] += 1
        n = counter[0]
        mp = Path(mountpoint) if mountpoint is not None else tmp_path / f"mnt{n}"
        if mountpoint is None:
            mp.mkdir()
        opts = list(options)
        if not any(o.startswith("rate=") for o in opts):
            opts.insert(0, "rate=200")
        full_env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
        full_env["REDCAP_API_TOKEN"] = sb.token if sb is not None else ""
        full_env["REDCAPFS_STATE_DIR"] = str(state_dir)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        log_file = tmp_path / f"mount-{n}.log"
        argv = [sys.executable, "-m", "redcapfs", "mount", url or sb.url, str(mp), "-o", ",".join(opts),
                "--log-file", str(log_file), *args]
        attempted.append((mp, full_env))
        out_path, err_path = tmp_path / f"mount-{n}.stdout", tmp_path / f"mount-{n}.stderr"
        # Files, not pipes: a background daemon that kept an inherited pipe open
        # would make a pipe reader wait for the daemon to exit.
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=str(REPO),
                                    env=full_env)
            try:
                rc = proc.wait(MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                rc = -9
        m = Mounted(mp, rc, out_path.read_text(errors="replace"), err_path.read_text(errors="replace"), log_file,
                    argv, full_env)
        if expect_fail:
            assert rc != 0, "mount unexpectedly succeeded\n" + m.describe()
            assert not is_mounted(mp) or mountpoint is not None, "refused but mounted\n" + m.describe()
        else:
            assert rc == 0, "mount failed\n" + m.describe()
            assert m.mounted, "mount command returned 0 but nothing is mounted\n" + m.describe()
        return m

    yield factory

    problems = []
    for mp, env in reversed(attempted):
        notes = force_unmount(mp, env)
        if is_mounted(mp):
            problems.append(f"{mp}: still mounted after every unmount attempt ({notes})")
    assert not problems, "\n".join(problems)


@pytest.fixture
def load(tmp_path: Path) -> Callable[[os.PathLike | str | None], Any]:
    """``load(path)`` -> the ProjectDef of a fixture project (``None`` = the bundled demo)."""
    from redcapfs.sandbox.loaders import load_project

    counter = [0]

    def go(path: os.PathLike | str | None = None) -> Any:
        counter[0] += 1
        return load_project(path, str(tmp_path / f"expected-{counter[0]}"))

    return go
