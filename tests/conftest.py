"""Shared fixtures: a real sandbox server in its own process, on 127.0.0.1.

``sandbox(...)`` starts ``python -m redcapfs.sandbox`` with the given arguments,
reads the ``url=`` / ``token=`` lines it prints (and the final ``ready`` line),
and stops it at the end of the test. ``sb.calls()`` reads its request log, which
is how tests count API calls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


@dataclass
class SandboxProc:
    """A running sandbox: where it listens, its tokens, its request log."""

    url: str
    tokens: list[str]
    request_log: Path
    data_dir: Path
    argv: list[str]
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)
    ca: Path | None = None  # the CA bundle of an https sandbox (``--tls``)

    @property
    def token(self) -> str:
        return self.tokens[0]

    def calls(self, at_least: int = 0, **match: Any) -> list[dict[str, Any]]:
        """Request-log entries, optionally only those whose keys equal ``match``.

        The sandbox logs a call when it *ends*, which can be just after the client
        has its answer: ``at_least=N`` waits (up to 5 s) for N matching entries.
        """
        deadline = time.monotonic() + 5
        rows = self._matching(match)
        while len(rows) < at_least and time.monotonic() < deadline:
            time.sleep(0.02)
            rows = self._matching(match)
        return rows

    def _matching(self, match: dict[str, Any]) -> list[dict[str, Any]]:
        if not self.request_log.exists():
            return []
        rows = []
        for line in self.request_log.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if all(row.get(k) == v for k, v in match.items()):
                    rows.append(row)
        return rows

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_sandbox(
    args: list[str],
    data_dir: Path,
    request_log: Path,
    timeout: float = 30.0,
) -> SandboxProc:
    """Start a sandbox process and wait until it prints ``ready``."""
    argv = [sys.executable, "-m", "redcapfs.sandbox", "--port", "0", "--host", "127.0.0.1"]
    argv += ["--data-dir", str(data_dir), "--request-log", str(request_log)] + list(args)
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=str(REPO),
    )
    url: str | None = None
    tokens: list[str] = []
    ca: Path | None = None
    output: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        line = line.rstrip("\n")
        output.append(line)
        if line.startswith("url="):
            url = line[4:]
        elif line.startswith("token="):
            tokens.append(line[6:])
        elif line.startswith("ca="):
            ca = Path(line[3:])
        elif line == "ready":
            break
    if not url or not tokens:
        proc.kill()
        raise RuntimeError("sandbox did not start:\n" + "\n".join(output))
    sb = SandboxProc(url, tokens, request_log, data_dir, argv, proc, output, ca)
    # Keep draining its output so a chatty server never blocks on a full pipe.
    import threading

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            sb.output.append(line.rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    return sb


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Callable[..., SandboxProc]]:
    """Factory: ``sandbox("--fault", "...", project="tests/data/x.xml")``."""
    started: list[SandboxProc] = []

    def factory(*args: str, project: str | os.PathLike | None = None, name: str = "sb") -> SandboxProc:
        data_dir = tmp_path / f"{name}-data"
        data_dir.mkdir(exist_ok=True)
        argv = ([str(project)] if project else []) + list(args)
        sb = start_sandbox(argv, data_dir, tmp_path / f"{name}-requests.jsonl")
        started.append(sb)
        return sb

    yield factory
    for sb in started:
        sb.stop()
