"""Helpers for the WebDAV share tests: ``redcapfs serve webdav`` as a real process, real clients against it.

``share(sb, *options, tls=False, args=())`` starts the command the user runs
against a sandbox (``tests/conftest.py``), with the token in the environment
and the state folder in ``tmp_path``, reads the ``url=``/``user=``/``password=``
/``ready`` lines and stops it with SIGTERM at the end. The clients (litmus,
davfs2, rclone) are Debian packages; as root the session installs any that are
missing (scripts/setup does the same), otherwise their tests are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"litmus": "litmus", "mount.davfs": "davfs2", "rclone": "rclone"}
START_TIMEOUT = 60


def ensure_tools() -> dict[str, str | None]:
    """Install the missing client packages when we can (root); say per tool why not otherwise."""
    missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True, timeout=600)
        if any(shutil.which(t) is None for t, p in PACKAGES.items() if p in missing):
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, capture_output=True, timeout=600)
    return {tool: None if shutil.which(tool) else f"{pkg} is not installed (apt-get install {pkg})"
            for tool, pkg in PACKAGES.items()}


def need(tools: dict[str, str | None], tool: str) -> None:
    if tools.get(tool):
        pytest.skip(tools[tool] or "")


@dataclass
class Share:
    """One run of ``redcapfs serve webdav``."""

    url: str
    user: str
    password: str
    proc: subprocess.Popen
    env: dict[str, str]
    log_file: Path
    output: list[str] = field(default_factory=list)
    verify: str | bool = True

    @property
    def auth(self) -> HTTPDigestAuth:
        return HTTPDigestAuth(self.user, self.password)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path.lstrip("/"), auth=self.auth, timeout=60,
                                verify=self.verify, **kwargs)

    @property
    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Another redcapfs command (unsent, retry) with this share's state folder and token."""
        return subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True,
                              env=self.env, cwd=str(REPO), timeout=120)


def start_share(sb: Any, state: Path, log_file: Path, *options: str, args: tuple[str, ...] = (),
                verify: str | bool = True, expect_fail: bool = False, source: str | None = None,
                env: dict[str, str] | None = None) -> Share | subprocess.CompletedProcess:
    """``source`` (a profile name) replaces the URL; ``env`` replaces the token-in-the-environment one."""
    env = env if env is not None else dict(os.environ, REDCAP_API_TOKEN=sb.token, REDCAPFS_STATE_DIR=str(state))
    argv = [sys.executable, "-m", "redcapfs", "serve", "webdav", source or sb.url, "--log-file", str(log_file)]
    argv += ["--addr", "127.0.0.1:0", *args]
    for opt in options:
        argv += ["-o", opt]
    if expect_fail:
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=START_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=env, cwd=str(REPO))
    assert proc.stdout is not None
    values: dict[str, str] = {}
    output: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value
        elif line.strip() == "ready":
            break
    if "url" not in values or output[-1:] != ["ready"]:
        proc.kill()
        raise RuntimeError("serve webdav did not start:\n" + "\n".join(output) + "\n" + log_file.read_text())
    share = Share(values["url"], values["user"], values["password"], proc, env, log_file, output, verify)

    def drain() -> None:
        for rest in proc.stdout:  # type: ignore[union-attr]
            share.output.append(rest.rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    return share


def pycap(sb: Any) -> Any:
    import redcap

    return redcap.Project(sb.url, sb.token)


def server_bytes(sb: Any, record: str, field: str, event: str | None = None,
                 instance: int | None = None) -> bytes | None:
    """The slot's file as PyCap downloads it, None when the slot is empty."""
    try:
        content, _ = pycap(sb).export_file(record=record, field=field, event=event, repeat_instance=instance)
    except Exception as exc:
        if "no file" in str(exc).lower():
            return None
        raise
    return content


def settled(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Whether ``check`` becomes true within ``timeout``: davfs2 uploads after close() returned."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
