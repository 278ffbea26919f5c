"""``redcapfs unmount MOUNTPOINT``: unmount, wait for the mount process's cleanup; clear a dead mount."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from redcapfs import status
from redcapfs.daemon import pidfile, read_pid, wait_exit
from redcapfs.mountpoint import clear_dead, is_dead, unmount
from redcapfs.options import MountError

EXIT_WAIT = 60.0  # seconds for the mount process to finish uploads and close its stores
# Seconds `unmount` waits for uploads in flight (the status file's in_flight) before unmounting anyway; the
# same bound as the units' TimeoutStopSec. A file whose upload is cut off stays in `redcapfs unsent`.
UPLOAD_WAIT = 300.0


def unmount_main(argv: list[str]) -> int:
    """Unmount, then wait for the mount process to finish its cleanup.

    A dead mount (its process killed) is cleared too: that is what a user
    reaching for ``redcapfs unmount`` after "Transport endpoint is not
    connected" needs, and there is no process left to wait for.
    """
    parser = argparse.ArgumentParser(prog="redcapfs unmount")
    parser.add_argument("mountpoint")
    parser.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    parser.add_argument("--if-dead", action="store_true",
                        help="only clear a dead mount (its process ended); leave a live one (systemd ExecStartPre)")
    parser.add_argument("--wait", type=float, default=UPLOAD_WAIT, metavar="SECONDS",
                        help=f"wait this long for uploads in flight before unmounting (default {UPLOAD_WAIT:g})")
    args = parser.parse_args(argv)
    mountpoint = Path(os.path.realpath(Path(args.mountpoint).expanduser()))
    if is_dead(mountpoint):
        try:
            print(f"redcapfs unmount: {clear_dead(mountpoint)}", file=sys.stderr)
        except MountError as exc:
            print(f"redcapfs unmount: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.if_dead:
        return 0
    mountpoint = mountpoint.resolve()
    if not os.path.ismount(mountpoint):
        print(f"redcapfs unmount: {args.mountpoint} is not mounted", file=sys.stderr)
        return 1
    pid = read_pid(pidfile(mountpoint, create=False))
    wait_uploads(str(mountpoint), args.wait)
    error = unmount(mountpoint, args.lazy)
    if error:
        print(f"redcapfs unmount: {error}{_hint(error, args.lazy)}", file=sys.stderr)
        return 1
    wait_exit(pid, EXIT_WAIT)
    return 0


def _hint(error: str, lazy: bool) -> str:
    """What to do about fusermount3's refusal."""
    if "/etc/mtab" in error:
        return (" (this system has no /etc/mtab, which fusermount3 needs to unmount as a normal user; "
                "as root: ln -s ../proc/self/mounts /etc/mtab)")
    return "" if lazy else " (files open? try --lazy)"


def _uploads(mountpoint: str) -> list[dict]:
    doc = status.find(mountpoint) or {}
    return [t for t in doc.get("in_flight") or [] if t.get("kind") == "upload"]


def _describe(transfer: dict) -> str:
    where = "/".join(str(transfer.get(k)) for k in ("record", "event", "field", "instance", "name")
                     if transfer.get(k) not in (None, ""))
    done, total = transfer.get("bytes_done") or 0, transfer.get("bytes_total")
    return f"{where} ({done}/{total} bytes)" if total else f"{where} ({done} bytes)"


def wait_uploads(mountpoint: str, bound: float) -> bool:
    """Wait up to ``bound`` seconds for the uploads in flight, saying which; True if none is left.

    Unmounting while a close is uploading would fail "busy" (or, lazily, cut
    the upload off and leave the file unsent), so the wait comes first.
    """
    deadline = time.monotonic() + bound
    said = ""
    while (flying := _uploads(mountpoint)):
        line = f"waiting for {len(flying)} upload(s) to REDCap: " + ", ".join(_describe(t) for t in flying)
        if line != said:
            print(f"redcapfs unmount: {line}", file=sys.stderr, flush=True)
            said = line
        if time.monotonic() >= deadline:
            print(f"redcapfs unmount: uploads still running after {bound:g} s; unmounting anyway "
                  "(a cut-off file stays in `redcapfs unsent`)", file=sys.stderr)
            return False
        time.sleep(0.5)
    return True
