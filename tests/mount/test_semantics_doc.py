"""docs/SEMANTICS.md's examples, run in order against a mounted demo project.

The document is the users' contract; running it keeps it true. Each ``sh``
block runs in bash with ``MNT`` set; every ``# => TEXT`` line in a block
requires TEXT in what the block printed (stdout and stderr).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mounthelp import REPO

DOC = REPO / "docs" / "SEMANTICS.md"
BIN = str(Path(sys.executable).parent)  # the venv's `redcapfs` command


def blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples_for_reads_writes_renames_and_directories() -> None:
    text = "\n".join(blocks())
    for needle in ("ls ", "cat ", ">>", "mv ", "rm ", "mkdir ", "rmdir "):
        assert needle in text, f"SEMANTICS.md has no example using {needle!r}"


def test_semantics_examples_hold(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox()
    mnt = mount(sb)
    for number, block in enumerate(blocks(), 1):
        result = subprocess.run(["bash", "-c", block], capture_output=True, text=True, timeout=60,
                                env=dict(mnt.env, MNT=str(mnt.path), PATH=f"{BIN}:/usr/bin:/bin:/usr/sbin:/sbin",
                                         LANG="C.UTF-8"), cwd=str(tmp_path))
        output = result.stdout + result.stderr
        for expected in re.findall(r"^# => (.*)$", block, flags=re.M):
            assert expected.strip() in output, (
                f"block {number} of SEMANTICS.md:\n{block}\nexpected {expected!r} in:\n{output}\n"
                f"mount log:\n{mnt.log[-3000:]}")
