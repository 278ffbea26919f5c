"""Background start: the detached child, its two pipes, systemd's readiness, the pid file.

The command returns once the mount is ready. It re-runs itself as a detached
child (``--foreground`` plus two inherited pipes): one carries the token (never
argv or the environment of a long-lived process), the other carries back
"ready" or the error message, so every refusal (wrong token, not a REDCap API,
unreachable server, busy mountpoint, missing libfuse, unsafe state folder) is
printed by the command the user typed, with a non-zero exit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from redcapfs.locations import private_dir, state_root, state_root_path

log = logging.getLogger("redcapfs")

READY = "ready"
START_TIMEOUT = 300.0


def start_background(argv: list[str], token: str, log_hint: str = "see its log") -> int:
    """Start the detached child and wait for its "ready" or its error (``log_hint``: where its log is)."""
    token_r, token_w = os.pipe()
    ready_r, ready_w = os.pipe()
    child_argv = [sys.executable, "-m", "redcapfs", "mount", *argv,
                  "--token-fd", str(token_r), "--ready-fd", str(ready_w)]
    env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}  # the pipe carries it
    proc = subprocess.Popen(child_argv, pass_fds=(token_r, ready_w), stdin=subprocess.DEVNULL, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    os.close(token_r)
    os.close(ready_w)
    try:
        os.write(token_w, (token + "\n").encode())
    except BrokenPipeError:  # the child already exited; its message (or exit code) says why
        pass
    finally:
        os.close(token_w)
    message = wait_ready(ready_r, proc, log_hint)
    if message.startswith(READY):
        notice = message[len(READY):].strip()
        if notice:
            print(f"redcapfs mount: {notice}", file=sys.stderr)
        return 0
    print(f"redcapfs mount: {message}", file=sys.stderr)
    try:  # the child's own status (77 for a refused token, mount.EXIT_TOKEN); it exits right after the message
        return proc.wait(10) or 1
    except subprocess.TimeoutExpired:
        return 1


def wait_ready(fd: int, proc: subprocess.Popen, log_hint: str = "see its log") -> str:
    """The child's one-line answer; a child that dies or never answers is reported, not waited for forever.

    The child's stderr is drained meanwhile (so it can never block on a full
    pipe) and its last line kept: a crash before the child could answer (a
    broken install) is then still said, not just "see its log".
    """
    data, errors = b"", b""
    err_fd = proc.stderr.fileno() if proc.stderr is not None else None
    watched = [fd] + ([err_fd] if err_fd is not None else [])
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while b"\n" not in data and fd in watched and time.monotonic() < deadline:
            for ready_fd in select.select(watched, [], [], 0.5)[0]:
                chunk = os.read(ready_fd, 4096)
                if not chunk:
                    watched.remove(ready_fd)  # that end closed: the child answered or died
                elif ready_fd == fd:
                    data += chunk
                else:
                    errors = (errors + chunk)[-4096:]
    finally:
        os.close(fd)
        if proc.stderr is not None:
            proc.stderr.close()  # the daemon logs to its file from here on
    text = data.decode("utf-8", "replace").strip()
    if text:
        return text
    try:
        code = proc.wait(10)  # the pipe closed: the child is exiting
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        return f"the mount process gave no answer within {START_TIMEOUT:.0f} s; {log_hint}"
    lines = errors.decode("utf-8", "replace").strip().splitlines()
    return (f"the mount process exited ({code}) before the mount was ready"
            + (f": {lines[-1][:500]}" if lines else f"; {log_hint}"))


def report(fd: int, message: str) -> None:
    """Send the one-line answer to the waiting command and close the pipe."""
    try:
        os.write(fd, (message.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass


def ready(fd: int | None, notice: str = "") -> None:
    """The mount is usable: tell the waiting command and systemd."""
    log.info("mount ready")
    if fd is not None:
        report(fd, f"{READY} {notice}".strip())
    notify_systemd()


def notify_systemd(message: str = "READY=1") -> None:
    """``Type=notify`` units (systemd/redcapfs@.service) start once the mount is usable.

    Also carries ``STATUS=`` lines (:func:`status_line`), which ``systemctl
    status`` shows: the mount state and how many files are unsent.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode("utf-8", "replace"), address)
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)


def status_line(doc: dict, state: str = "mounted") -> str:
    """``STATUS=mounted https://host/api/ project 12 at /mnt; 1 upload in flight; 3 unsent (redcapfs unsent)``."""
    parts = [f"{state} {doc.get('url', '')} project {doc.get('project_id', '')} at {doc.get('mountpoint', '')}"]
    flying = [t for t in doc.get("in_flight", []) if t.get("kind") == "upload"]
    if flying:
        parts.append(f"{len(flying)} upload(s) in flight")
    unsent = int(doc.get("unsent", 0) or 0)
    parts.append(f"{unsent} unsent file(s) (see redcapfs unsent)" if unsent else "nothing unsent")
    return "STATUS=" + "; ".join(parts)


class StatusNotifier:
    """Sends ``STATUS=`` to systemd when the mount's status file says something new (every few seconds)."""

    def __init__(self, read: Callable[[], dict | None], interval: float = 5.0) -> None:
        self.read = read
        self.interval = interval
        self._stop = threading.Event()
        self._last = ""
        self._thread = threading.Thread(target=self._run, name="redcapfs-notify", daemon=True)

    def start(self) -> StatusNotifier:
        if os.environ.get("NOTIFY_SOCKET"):
            self.send()
            self._thread.start()
        return self

    def send(self, state: str = "mounted") -> None:
        doc = self.read()
        line = status_line(doc, state) if doc else f"STATUS={state}"
        if line != self._last:
            self._last = line
            notify_systemd(line)

    def stop(self) -> None:
        """Say the mount is going away (systemd shows it while uploads finish)."""
        self._stop.set()
        if os.environ.get("NOTIFY_SOCKET"):
            self.send("unmounting")
            notify_systemd("STOPPING=1")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.send()


def pidfile(mountpoint: Path, create: bool = True) -> Path:
    """Where the mount at ``mountpoint`` keeps its pid (named by a hash: no paths in names).

    Only a mount creates the folder, never a lookup.
    """
    digest = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16]
    if not create:
        return state_root_path() / "mounts" / f"{digest}.pid"
    return private_dir(state_root() / "mounts") / f"{digest}.pid"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def wait_exit(pid: int | None, timeout: float) -> None:
    """Wait for the mount process to finish its cleanup after the kernel let go."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.05)
    log.warning("the mount process %d is still running", pid)


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie has finished: the mount process is nobody's child once it has
    detached, so it stays a zombie until the system's init reaps it (about a second in some containers)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return False  # another user's process: not the mount this user started
