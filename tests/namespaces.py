"""Whether tests may make a private mount namespace (``unshare -m``) to change what one process sees.

Several tests bind a file over a system path (/dev/fuse, the trust store,
/usr/local/sbin) inside a namespace of their own, so the machine itself is
never touched. That needs root and unshare(1), and a root that is a mount
point (in a plain chroot it is not, and ``--propagation private`` fails).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess


@functools.cache
def private_mounts_problem() -> str | None:
    """Why a private mount namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace"
    if shutil.which("unshare") is None:
        return "needs unshare(1) for a private mount namespace"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private mount namespace here ({probe.stderr.strip() or probe.returncode})"
    return None
