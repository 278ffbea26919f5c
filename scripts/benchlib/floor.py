"""The floor of a `find` through FUSE on this machine: ``scripts/fusefloor.c``, built and mounted.

A C filesystem on libfuse3's low-level API that answers the find project's tree from arithmetic. Its
`find` costs the kernel's round trips to a FUSE daemon and nothing else, so the ratio of the mount to it
says how much of the mount's time is redcapfs's, and the floor's own ratio to the local tree says how much
any FUSE filesystem pays here. Built with gcc and libfuse3's headers (Debian: gcc, libfuse3-dev,
pkg-config; ``scripts/bench`` installs them when it runs as root); without them the figure is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from .procs import SCRIPTS, mounted

SOURCE = SCRIPTS / "fusefloor.c"


def build(work: Path) -> tuple[Path | None, str]:
    """The compiled floor in ``work``, or None and why it could not be built."""
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        return None, "gcc or pkg-config is not installed (Debian packages gcc, pkg-config)"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True)
    if flags.returncode != 0:
        return None, "libfuse3's headers are not installed (Debian package libfuse3-dev)"
    exe = work / "fusefloor"
    proc = subprocess.run(["gcc", "-O2", "-o", str(exe), str(SOURCE), *flags.stdout.split()],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"gcc failed: {proc.stderr.strip()[-300:]}"
    return exe, ""


class Floor:
    """One mount of the floor: RECORDS records, FIELDS folders each, a file in every EVERY-th record's first."""

    def __init__(self, exe: Path, mp: Path, records: int, every: int, fields: list[str], log: Path) -> None:
        self.mp = mp
        mp.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([str(exe), str(records), str(every), *fields, "--", str(mp), "-f"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not mounted(mp):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fusefloor did not mount: {log.read_text()[-2000:]}")
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

    def __enter__(self) -> Floor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
