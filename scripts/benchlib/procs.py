"""The processes a bench run starts: sandboxes, redcapfs mounts and passthrough mounts.

Each is started the way a user starts it (``python -m redcapfs sandbox``, ``python -m redcapfs mount`` with
the token in the environment, ``scripts/passthrough.py``) and stopped by the pid it reported, never by name.
Output goes to files, not pipes: a background daemon that inherited a pipe would keep its reader waiting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


class Sandbox:
    """``python -m redcapfs sandbox PROJECT`` on 127.0.0.1 with a request log; ``calls_since`` reads it."""

    command: ClassVar[list[str]] = [sys.executable, "-m", "redcapfs", "sandbox"]  # an experiment may swap it

    def __init__(self, work: Path, name: str, project_dir: Path, latency_ms: float, tls: bool = False,
                 extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.latency_ms = latency_ms
        self.ca: str | None = None  # the throwaway CA of a --tls sandbox (its ``ca=`` line)
        self.log = work / f"{name}-requests.jsonl"
        self.data = work / f"{name}-data"
        self.stderr_path = work / f"{name}-sandbox.stderr"
        argv = [*self.command, str(project_dir), "--host", "127.0.0.1",
                "--port", "0", "--data-dir", str(self.data), "--request-log", str(self.log),
                "--latency", str(latency_ms), "--max-upload-mb", "100000", *(["--tls"] if tls else []), *extra]
        with open(self.stderr_path, "wb") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                         text=True, cwd=str(REPO))
        self.url, self.token = self._handshake()

    def _handshake(self) -> tuple[str, str]:
        """Read ``url=``, ``token=`` and ``ready`` (the sandbox's documented start lines)."""
        url = token = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("url="):
                url = line[4:]
            elif line.startswith("token=") and not token:
                token = line[6:]
            elif line.startswith("ca="):
                self.ca = line[3:]
            elif line == "ready":
                break
        if not url or not token:
            self.stop()
            raise RuntimeError(f"sandbox {self.name} did not start: {self.stderr_path.read_text()[-2000:]}")
        return url, token

    def mark(self) -> int:
        """How many calls the request log holds now (a later ``calls_since`` counts from here)."""
        return len(self._rows())

    def calls_since(self, mark: int, quiet: float = 0.1, limit: float = 10.0) -> list[dict[str, Any]]:
        """The calls logged after ``mark``, once the log has stopped growing for ``quiet`` seconds.

        The sandbox logs a call just before its answer's last byte, or when an aborted call ends, so a
        count taken the instant a tool exits could miss the last line.
        """
        rows = self._rows()
        stable = time.monotonic()
        deadline = stable + limit
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self._rows()
            if len(now) != len(rows):
                rows, stable = now, time.monotonic()
            elif time.monotonic() - stable >= quiet:
                break
        return rows[mark:]

    def _rows(self) -> list[dict[str, Any]]:
        try:
            text = self.log.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point in the kernel's table (true also for a dead FUSE mount)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as fh:
        return any(line.split(" ")[4] == target for line in fh)


class Mount:
    """One ``python -m redcapfs mount``: its daemon's pid (from the state folder) and peak RSS."""

    counter = 0

    def __init__(self, sb: Sandbox, work: Path, options: str, state: Path | None = None) -> None:
        Mount.counter += 1
        n = Mount.counter
        self.mp = work / f"mnt{n}"
        self.state = state or work / f"state{n}"  # a given state folder: a remount that keeps its manifest
        self.keep_state = state is not None
        self.mp.mkdir()
        self.env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}
        self.env.update(REDCAP_API_TOKEN=sb.token, REDCAPFS_STATE_DIR=str(self.state))
        self.log = work / f"mount{n}.log"
        if sb.ca:
            options += f",ca={sb.ca}"
        argv = [sys.executable, "-m", "redcapfs", "mount", sb.url, str(self.mp), "-o", options,
                "--log-file", str(self.log)]
        with open(work / f"mount{n}.out", "wb") as out:
            rc = subprocess.run(argv, env=self.env, cwd=str(REPO), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=300).returncode
        if rc != 0 or not mounted(self.mp):
            raise RuntimeError(f"mount failed ({rc}): {(work / f'mount{n}.out').read_text()[-2000:]}")
        pidfiles = list((self.state / "mounts").glob("*.pid"))
        self.pid = int(pidfiles[0].read_text()) if len(pidfiles) == 1 else None

    def peak_rss_mib(self) -> float:
        """The daemon's VmHWM (peak resident set) so far, in MiB."""
        if self.pid is None:
            return float("nan")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def unmount(self) -> None:
        """The product's ``unmount``, then ``fusermount3 -u -z`` if needed; waits for the daemon to exit."""
        subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(self.mp)], env=self.env, cwd=str(REPO),
                       capture_output=True, timeout=120)
        if mounted(self.mp):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mp)], capture_output=True, timeout=30)
        _wait_gone(self.pid, 30)
        if not self.keep_state:
            shutil.rmtree(self.state, ignore_errors=True)

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()


class FuseProcess:
    """A FUSE filesystem process of the bench's own (started with ``argv``, mounted at ``mp``): waited for
    until mounted, unmounted and reaped by :meth:`stop`."""

    def __init__(self, argv: list[str], mp: Path, log: Path, what: str) -> None:
        self.mp = mp
        mp.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not mounted(mp):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{what} did not mount: {log.read_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        for lazy in ([], ["-z"]):
            if mounted(self.mp):
                subprocess.run(["fusermount3", "-u", *lazy, str(self.mp)], capture_output=True, timeout=30)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)

    def __enter__(self) -> FuseProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Passthrough(FuseProcess):
    """``scripts/passthrough.py SOURCE MOUNTPOINT``: the same binding, no network, as the ceiling."""

    def __init__(self, source: Path, mp: Path, log: Path) -> None:
        super().__init__([sys.executable, str(SCRIPTS / "passthrough.py"), str(source), str(mp)], mp, log,
                         "passthrough")


def _wait_gone(pid: int | None, timeout: float) -> None:
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
