"""``redcapfs unmount MOUNTPOINT``: unmount, wait for the mount process's cleanup; clear a dead mount."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from redcapfs.daemon import pidfile, read_pid, wait_exit
from redcapfs.mountpoint import clear_dead, is_dead, unmount
from redcapfs.options import MountError

EXIT_WAIT = 60.0  # seconds for the mount process to finish uploads and close its stores


def unmount_main(argv: list[str]) -> int:
    """Unmount, then wait for the mount process to finish its cleanup.

    A dead mount (its process killed) is cleared too: that is what a user
    reaching for ``redcapfs unmount`` after "Transport endpoint is not
    connected" needs, and there is no process left to wait for.
    """
    parser = argparse.ArgumentParser(prog="redcapfs unmount")
    parser.add_argument("mountpoint")
    parser.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    args = parser.parse_args(argv)
    mountpoint = Path(os.path.realpath(Path(args.mountpoint).expanduser()))
    if is_dead(mountpoint):
        try:
            print(f"redcapfs unmount: {clear_dead(mountpoint)}", file=sys.stderr)
        except MountError as exc:
            print(f"redcapfs unmount: {exc}", file=sys.stderr)
            return 1
        return 0
    mountpoint = mountpoint.resolve()
    if not os.path.ismount(mountpoint):
        print(f"redcapfs unmount: {args.mountpoint} is not mounted", file=sys.stderr)
        return 1
    pid = read_pid(pidfile(mountpoint, create=False))
    error = unmount(mountpoint, args.lazy)
    if error:
        print(f"redcapfs unmount: {error}" + ("" if args.lazy else " (files open? try --lazy)"), file=sys.stderr)
        return 1
    wait_exit(pid, EXIT_WAIT)
    return 0
