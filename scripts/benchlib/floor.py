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
from pathlib import Path

from .procs import SCRIPTS, FuseProcess

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


class Floor(FuseProcess):
    """One mount of the floor: RECORDS records, FIELDS folders each, a file in every EVERY-th record's first."""

    def __init__(self, exe: Path, mp: Path, records: int, every: int, fields: list[str], log: Path) -> None:
        super().__init__([str(exe), str(records), str(every), *fields, "--", str(mp), "-f"], mp, log, "fusefloor")
