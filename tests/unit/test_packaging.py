"""The wheel carries the documentation, and an installed copy prints it (``redcapfs docs``).

Built from this tree with ``pip wheel`` and installed in a fresh venv with no
source tree in reach, as ``pipx install`` would, so the docs found are the
installed ones.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO),
                    "-w", str(out)], check=True, timeout=300, cwd=str(out))
    (found,) = out.glob("redcapfs-*.whl")
    return found


@pytest.mark.timeout(600)
def test_wheel_holds_every_doc_and_the_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for doc in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md", REPO / "CHANGELOG.md"]:
        assert f"redcapfs/docs/{doc.name}" in names, doc.name
    assert "Project-URL: Documentation" in meta and "Project-URL: Changelog" in meta
    assert "Requires-Dist: psutil" in meta and "Requires-Dist: platformdirs" in meta


@pytest.mark.timeout(600)
def test_installed_wheel_prints_its_docs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300)
    command = venv / "bin" / "redcapfs"
    where = subprocess.run([str(command), "docs", "--path"], capture_output=True, text=True, cwd=str(tmp_path),
                           timeout=60, check=True).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("redcapfs/docs"), where
    text = subprocess.run([str(command), "docs", "semantics"], capture_output=True, text=True, cwd=str(tmp_path),
                          timeout=60, check=True).stdout
    assert text.rstrip("\n") == (REPO / "docs" / "SEMANTICS.md").read_text().rstrip("\n")
    helptext = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "redcapfs docs" in helptext and "docs/SEMANTICS.md" not in helptext


def test_no_help_text_sends_users_to_a_source_tree_path() -> None:
    """An installed copy has no docs/ folder beside it: help names `redcapfs docs NAME` instead."""
    import re

    from redcapfs.cli import COMMANDS

    for name in [*COMMANDS, ""]:
        text = subprocess.run([sys.executable, "-m", "redcapfs", "help", *([name] if name else [])],
                              capture_output=True, text=True, timeout=60).stdout
        assert text.strip(), name
        assert not re.search(r"docs/\S+\.md", text), (name, re.findall(r"docs/\S+\.md", text))
    names = subprocess.run([sys.executable, "-m", "redcapfs", "docs"], capture_output=True, text=True,
                           timeout=60).stdout
    for doc in ("semantics", "troubleshooting", "profiles", "local-data", "unsent", "webdav", "readme"):
        assert f"  {doc} " in names, doc
