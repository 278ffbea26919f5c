"""A reopen of an unchanged file keeps the kernel's cached pages (FOPEN_KEEP_CACHE), and only then.

The second and later reads of a file the daemon holds complete are the kernel's own (no read request
reaches the daemon: its unmount log counts them); after a colleague's replace (seen by the change feed,
same name and same size, while the kernel keeps the old attributes and names), after our own overwrite,
and after a rename over it, every read is the new version, whole. The bytes are checked
against PyCap; the calls against the sandbox's request log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redcap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import downloads
from test_change_feed import ALICE, BOB, SLOT, upload_as, wait_for_poll
from test_write import server_file

pytestmark = pytest.mark.smoke  # scripts/test runs these again on libfuse2

SIZE = 3 << 20


def daemon_read_bytes(log: str) -> int:
    """Bytes the kernel asked the daemon for, from the ``read sizes SIZExCOUNT, ...`` line at unmount."""
    line = re.search(r"read sizes ([^;]*);", log)
    assert line is not None, log[-2000:]
    return sum(int(a) * int(b) for a, b in re.findall(r"(\d+)x(\d+)", line.group(1)))


# The kernel keeps attributes and names for a minute: it cannot notice a change by itself (a changed mtime
# or size would make it drop the pages anyway); only the daemon's open can say the pages are stale.
LONG_KERNEL_CACHE = "poll=1,attr_timeout=60,entry_timeout=60"


def test_reopens_are_the_kernels_until_a_colleague_replaces_the_file(sandbox: Any, mount: Any,
                                                                     tmp_path: Path) -> None:
    sb = sandbox("--token", f"{ALICE}:full:alice", "--token", f"{BOB}:full:bob")
    m = mount(sb, LONG_KERNEL_CACHE)
    target = m.path.joinpath(*SLOT) / "scan.bin"
    one, two = os.urandom(SIZE), os.urandom(SIZE)
    upload_as(sb, ALICE, tmp_path, "scan.bin", one)
    wait_for_poll(sb, time.time())
    assert [target.read_bytes() == one for _ in range(3)] == [True] * 3  # one read by the daemon, two kept

    mark = time.time()
    upload_as(sb, BOB, tmp_path, "scan.bin", two)  # a colleague: same name, same size
    wait_for_poll(sb, mark)
    assert [target.read_bytes() == two for _ in range(2)] == [True, True]
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.bin", two)
    m.unmount()
    served = daemon_read_bytes(m.log)
    # Five reads: the first of each version is the daemon's, the others the kernel's (2 x SIZE). The kernel
    # sends a release after the close returns: if the last read of one is released only after the first
    # open of two, that open saw a handle on another version, and the second read of two is the daemon's
    # too (3 x SIZE). Without kept pages: 5 x SIZE.
    assert served <= 3 * SIZE, (served, len(downloads(sb.calls())))


def test_after_our_overwrite_or_a_rename_over_it_every_read_is_the_new_version(sandbox: Any, mount: Any,
                                                                               tmp_path: Path) -> None:
    sb = sandbox("--token", f"{ALICE}:full:alice")
    m = mount(sb, LONG_KERNEL_CACHE)
    target = m.path.joinpath(*SLOT) / "scan.bin"
    one, two, three = (os.urandom(SIZE) for _ in range(3))
    upload_as(sb, ALICE, tmp_path, "scan.bin", one)
    wait_for_poll(sb, time.time())
    assert [target.read_bytes() == one for _ in range(2)] == [True, True]

    (tmp_path / "two.bin").write_bytes(two)
    subprocess.run(["cp", str(tmp_path / "two.bin"), str(target)], check=True)  # our own overwrite
    assert [target.read_bytes() == two for _ in range(2)] == [True, True]

    (tmp_path / "three.bin").write_bytes(three)
    temp = target.parent / ".scan.bin.Ab12Cd"
    subprocess.run(["cp", str(tmp_path / "three.bin"), str(temp)], check=True)
    subprocess.run(["mv", str(temp), str(target)], check=True)  # an editor's save: a rename over it
    assert [target.read_bytes() == three for _ in range(2)] == [True, True]
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("scan.bin", three)
    assert redcap.Project(sb.url, ALICE).export_file(record=SLOT[0], field=SLOT[2], event=SLOT[1])[0] == three
