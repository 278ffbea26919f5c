"""Names created through the mount list back exactly as typed, or are refused at create.

The mount test (tests/mount/test_name_rules.py) drives the kernel; these check the
rule itself over arbitrary text with Hypothesis: for every component a user
can type, either ``rules.creatable`` + ``rules.check_upload_name`` refuse it
with InvalidArgument, or the name REDCap then stores (``stored_name``, the
same function the sandbox stores with) is listed as exactly that component.
Also the rate-limited refusal log, the state files, and the tools' temp names.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redcapfs import names
from redcapfs.errors import InvalidArgument
from redcapfs.fs import rules
from redcapfs.fs.refusals import RefusalLog
from redcapfs.locations import UnsafeDirectoryError
from redcapfs.redcapnames import stored_name
from redcapfs.shape import Slot
from redcapfs.statefiles import connect_private, open_private, write_pid
from redcapfs.tempnames import TempNames

SLOT = Slot("1001", "baseline_arm_1", "radiology_report", None)

# Characters that make names interesting: escapes, tokens, quotes, entities, controls, surrogates.
TRICKY = st.sampled_from(list("%~./\\'\"&;#\0\n\r\x01\x7fé😀") + ["\udc80", "%25", "%2F", "%0A", "%00", "%EMPTY",
                                                                   "%2E", "&amp;", "%~0123456789", "%uDC80"])
COMPONENTS = st.lists(st.one_of(TRICKY, st.text(max_size=3)), max_size=8).map("".join).filter(
    lambda c: c not in ("", ".", "..") and "/" not in c and "\0" not in c)


def created(component: str, record: bool = False) -> str | None:
    """The name the mount would send for ``component``, or None if it refuses the create."""
    try:
        name = rules.creatable(component, "/x/" + component, SLOT, record=record)
        if not record:
            rules.check_upload_name(SLOT, name, "/x/" + component)
    except InvalidArgument:
        return None
    return name


@settings(max_examples=1500, deadline=None)
@given(COMPONENTS)
@example("%EMPTY")
@example("%0A")
@example("%00.txt")
@example("%2E")
@example("%uDC80")
@example("\udcff\udcfe.txt")
@example("%252F.txt")
@example("50%off.pdf")
def test_a_created_file_name_lists_back_as_typed(component: str) -> None:
    name = created(component)
    if name is None:
        return
    assert stored_name(name) == name  # what REDCap keeps is what was sent
    assert names.encode(name) == component  # and it is listed as typed
    assert names.decode(component) == name
    assert not names.needs_escape(name)
    name.encode("utf-8")  # never a lone surrogate on the wire


@settings(max_examples=800, deadline=None)
@given(COMPONENTS)
@example("%252Erepository")
@example("%2Erepository")
@example("%EMPTY")
def test_a_created_record_name_lists_back_as_typed(component: str) -> None:
    name = created(component, record=True)
    if name is not None:
        assert names.encode_record(name) == component
        assert names.decode_record(component) == name
        assert not names.needs_escape(name)


@pytest.mark.parametrize("component", ["%EMPTY", "%0A", "%00.txt", "a%01b", "%7F", "%2E", "%2E%2E", "%uDC80",
                                       "%25off.pdf", "x%~0123456789.pdf", "%2Fetc", "it's.pdf", "a\\b.txt",
                                       "&amp;.txt", "\udcff.txt"])
def test_names_refused_at_create(component: str) -> None:
    assert created(component) is None


@pytest.mark.parametrize("component, name", [("50%off.pdf", "50%off.pdf"), ("%252F.txt", "%2F.txt"),
                                             ("%25EMPTY", "%EMPTY"), ("%250A", "%0A"), ("%2525", "%25"),
                                             ("résumé.pdf", "résumé.pdf"), ("...", "...")])
def test_names_accepted_at_create(component: str, name: str) -> None:
    assert created(component) == name


def test_not_utf8_says_so() -> None:
    with pytest.raises(InvalidArgument, match="not valid UTF-8"):
        rules.creatable("caf\udce9.txt", "/x", SLOT)


# ------------------------------------------------------------------ the refusal log


def test_refusals_are_logged_once_per_key_and_window(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(window=60, clock=lambda: now[0])
    logger = logging.getLogger("test.refusals")
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        said = [refusals.warn(logger, ("slot", "occupied"), "refused %s", i) for i in range(1000)]
        refusals.warn(logger, ("slot", "stored"), "refused other")
        now[0] = 61.0
        refusals.warn(logger, ("slot", "occupied"), "refused %s", "late")
    assert said.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused other",
        "refused late (and 999 more refusal(s) like it in the last 60 s, not logged)"]


# ------------------------------------------------------------------ state files


def test_state_files_are_0600_and_refuse_symlinks(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_pid(tmp_path / "m.pid", 123)
        db = connect_private(tmp_path / "attrs.sqlite")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.close()
    finally:
        os.umask(old)
    assert (tmp_path / "m.pid").read_text() == "123"
    for name in ("m.pid", "attrs.sqlite"):
        assert stat.S_IMODE(os.lstat(tmp_path / name).st_mode) == 0o600
    loose = tmp_path / "old.pid"
    loose.write_text("1")
    loose.chmod(0o644)
    write_pid(loose, 7)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for planted in (tmp_path / "link.pid", tmp_path / "link.sqlite", tmp_path / "attrs.sqlite-wal"):
        planted.symlink_to(victim)
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        write_pid(tmp_path / "link.pid", 1)
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        connect_private(tmp_path / "link.sqlite")
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        connect_private(tmp_path / "attrs.sqlite")  # its WAL file is a planted link
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        open_private(tmp_path / "link.pid", os.O_WRONLY | os.O_APPEND)
    assert victim.read_text() == "keep"


# ------------------------------------------------------------------ tools' temporary names


@pytest.mark.parametrize("name, temp", [("tmpa1b2_c3d", True), ("tmp.AbC123xyZ9", True), ("tmpABCDEFGH", False),
                                        ("tmp.abc", False), ("tmpa1b2c3d.pdf", False), ("tmp123456789", False)])
def test_python_and_mktemp_temporary_names(name: str, temp: bool) -> None:
    assert TempNames().is_temp(name) is temp


def test_python_tempfile_names_are_temporary(tmp_path: Path) -> None:
    import tempfile

    for _ in range(50):
        with tempfile.NamedTemporaryFile(dir=tmp_path) as handle:
            assert TempNames().is_temp(os.path.basename(handle.name))
