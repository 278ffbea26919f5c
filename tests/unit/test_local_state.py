"""The local state that must never lose a write or leak a token: spool, temporary names, credentials."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from redcapfs.credentials import CredentialError, read_token, read_token_from_fd
from redcapfs.spool import Spool, Target, boot_id
from redcapfs.tempnames import DEFAULT_PATTERNS, TempNames

TOKEN = "0123456789ABCDEF0123456789ABCDEF"
TARGET = Target("http://127.0.0.1:1/api/", "7", "1001", "baseline_arm_1", "consent_form", None, "a.pdf")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------ spool


def test_spool_entry_life_cycle_and_modes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    entry = spool.create(TARGET)
    assert mode(tmp_path / "spool") == 0o700
    assert mode(entry.data_path) == 0o600 and mode(entry.meta_path) == 0o600
    entry.data_path.write_bytes(b"data")
    assert entry.size() == 4 and entry.state == "open" and spool.unsent() == []
    entry.mark_unsent("REDCap said no")
    again = spool.get(entry.id)
    assert again.state == "unsent" and again.error == "REDCap said no" and again.target == TARGET
    assert [e.id for e in spool.unsent()] == [entry.id]
    moved = Target(**{**TARGET.__dict__, "name": "b.pdf"})
    again.retarget(moved, temp=False)
    assert spool.get(entry.id).target.name == "b.pdf" and spool.get(entry.id).state == "open"
    again.remove()
    assert spool.entries() == [] and list((tmp_path / "spool").iterdir()) == []


def test_an_open_entry_of_a_dead_process_is_unsent_and_dead_temps_are_dropped(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    code = ("import sys; from redcapfs.spool import Spool, Target; "
            f"t = Target(*{tuple(TARGET.__dict__.values())!r}); s = Spool(sys.argv[1]); "
            "e = s.create(t); e.data_path.write_bytes(b'half written'); s.create(t, temp=True)")
    subprocess.run([sys.executable, "-c", code, str(root)], check=True)
    spool = Spool(root)
    (lost,) = spool.unsent()
    assert lost.state == "open" and not lost.alive() and lost.data_path.read_bytes() == b"half written"
    assert spool.drop_dead_temps() == 1
    assert len(spool.entries()) == 1


def test_a_reused_pid_does_not_look_alive(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.create(TARGET)
    meta = json.loads(entry.meta_path.read_text())
    meta["pid_start"] = "1"  # our pid, but another process's start time
    entry.meta_path.write_text(json.dumps(meta))
    assert [e.id for e in spool.unsent()] == [entry.id]


def test_corrupt_entries_are_skipped_and_orphans_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    good = spool.create(TARGET)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "lost.data").write_bytes(b"x")
    assert [e.id for e in spool.entries()] == [good.id]
    assert spool.orphans() == [tmp_path / "lost.data"]
    with pytest.raises(KeyError):
        spool.get("nope")


# ------------------------------------------------------------------ temporary names


@pytest.mark.parametrize("name", [
    ".consent.pdf.Xy12Ab", "4913", "5036", ".notes.txt.swp", ".notes.txt.swo", ".notes.txt.swx", "notes.txt~",
    "#notes.txt#", ".#notes.txt", ".~lock.report.odt#", "lu12345.tmp", ".goutputstream-ABC123", "~$report.docx",
    "scan.dcm.crdownload", "scan.dcm.part",
])
def test_tool_temporary_names(name: str) -> None:
    assert TempNames().is_temp(name)


@pytest.mark.parametrize("name", [
    "consent.pdf", "scan.v2.dcm", ".hidden consent.txt", "4913.pdf", "4914", "notes.part.pdf", "report~final.pdf",
    "lu.pdf", "~report.docx", "signed_consent.pdf",
])
def test_real_names(name: str) -> None:
    assert not TempNames().is_temp(name)


def test_temp_names_option() -> None:
    assert TempNames.from_option(None).patterns == DEFAULT_PATTERNS
    added = TempNames.from_option("+*.tmp")
    assert added.is_temp("x.tmp") and added.is_temp("x~")
    removed = TempNames.from_option("-*.part")
    assert not removed.is_temp("scan.part") and removed.is_temp("x~")
    replaced = TempNames.from_option("*.bak:*.tmp")
    assert replaced.is_temp("a.bak") and not replaced.is_temp("a~")
    with pytest.raises(ValueError):
        TempNames.from_option("-*.nothing")


# ------------------------------------------------------------------ credentials


def test_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(CredentialError) as info:
        read_token(str(path), environ={})
    assert "chmod 600" in str(info.value) and TOKEN not in str(info.value)
    path.chmod(0o600)
    assert read_token(str(path), environ={}) == TOKEN


def test_token_from_environment_and_missing_token() -> None:
    assert read_token(None, environ={"REDCAP_API_TOKEN": f" {TOKEN}\n"}, interactive=False) == TOKEN
    with pytest.raises(CredentialError) as info:
        read_token(None, environ={}, interactive=False)
    assert "--token-file" in str(info.value)


def test_a_malformed_token_is_refused_without_being_echoed() -> None:
    secret = "not-a-token-but-secret-anyway-123"
    with pytest.raises(CredentialError) as info:
        read_token(None, environ={"REDCAP_API_TOKEN": secret}, interactive=False)
    assert secret not in str(info.value)


def test_token_through_a_pipe() -> None:
    r, w = os.pipe()
    os.write(w, (TOKEN + "\n").encode())
    os.close(w)
    assert read_token_from_fd(r) == TOKEN


def test_entries_missing_fields_are_skipped_and_pid_zero_is_dead(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    good = spool.create(TARGET)
    broken = spool.create(TARGET)
    meta = json.loads(broken.meta_path.read_text())
    del meta["pid"]
    broken.meta_path.write_text(json.dumps(meta))
    assert [e.id for e in spool.entries()] == [good.id]
    meta = json.loads(good.meta_path.read_text())
    meta["pid"] = 0
    good.meta_path.write_text(json.dumps(meta))
    assert [e.id for e in spool.unsent()] == [good.id]


def test_a_zombie_owner_counts_as_dead(tmp_path: Path) -> None:
    from redcapfs.spool import pid_alive, process_start

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = None
    for _ in range(100):  # not reaped: a zombie once it exits
        try:
            state = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            break
        start = start or process_start(child.pid)
        if state == "Z":
            assert not pid_alive(child.pid, start)
            break
        import time
        time.sleep(0.02)
    child.wait()
    assert not pid_alive(child.pid, start)


# ------------------------------------------------------------------ spool states (complete, incomplete, delivered)


def _in_dead_process(root: Path, steps: str) -> str:
    """Create an entry in a child process, run ``steps`` on it (``e``), and let the process die; its id."""
    code = ("import sys; from redcapfs.spool import Spool, Target; "
            f"t = Target(*{tuple(TARGET.__dict__.values())!r}); s = Spool(sys.argv[1]); "
            f"e = s.create(t); {steps}; print(e.id)")
    return subprocess.run([sys.executable, "-c", code, str(root)], check=True, capture_output=True,
                          text=True).stdout.strip()


WRITE = "e.writing(); open(e.data_path, 'ab').write(b'bytes')"


@pytest.mark.parametrize(("steps", "status", "maybe_sent"), [
    (WRITE, "incomplete", False),  # killed while the file was open for writing
    (f"{WRITE}; e.mark_sending()", "unsent", True),  # killed during the upload
    (f"{WRITE}; e.mark_sending(); e.mark_unsent('HTTP 500')", "unsent", True),  # refused
    (f"{WRITE}; e.mark_sending(); e.mark_sent(); {WRITE}", "incomplete", True),  # written after an fsync upload
    (f"{WRITE}; e.mark_unsent('HTTP 500'); {WRITE}", "incomplete", False),  # written after a failed upload
    (f"{WRITE}; e.mark_conflict('changed on the server')", "conflict", False),
], ids=["mid-write", "in-flight", "refused", "written-after-sent", "written-after-refused", "conflict"])
def test_what_a_dead_writer_left_is_told_apart(tmp_path: Path, steps: str, status: str, maybe_sent: bool) -> None:
    entry_id = _in_dead_process(tmp_path, steps)
    spool = Spool(tmp_path)
    entry = spool.get(entry_id)
    assert (entry.status(), entry.may_be_delivered()) == (status, maybe_sent)
    assert [e.id for e in spool.unsent()] == [entry_id]
    assert spool.drop_dead_temps() == 0 and spool.get(entry_id)


def test_a_delivered_entry_of_a_dead_mount_is_a_leftover(tmp_path: Path) -> None:
    entry_id = _in_dead_process(tmp_path, f"{WRITE}; e.mark_sending(); e.mark_sent()")
    spool = Spool(tmp_path)
    assert spool.get(entry_id).status() is None and spool.unsent() == []
    assert spool.drop_dead_temps() == 1 and spool.entries() == []


def test_a_temporary_file_renamed_onto_a_real_name_is_not_dropped_mid_upload(tmp_path: Path) -> None:
    moved = {**TARGET.__dict__, "name": "b.pdf"}
    entry_id = _in_dead_process(tmp_path, f"e.retarget(Target(**{moved!r}), temp=True); {WRITE}; e.mark_sending()")
    spool = Spool(tmp_path)
    assert spool.get(entry_id).status() == "unsent" and spool.drop_dead_temps() == 0


def test_the_live_writer_owns_its_entry_and_states_are_durable(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.create(TARGET)
    entry.writing()
    entry.data_path.write_bytes(b"abc")
    assert entry.status() is None and not entry.final
    entry.mark_sending()
    again = spool.get(entry.id)
    assert again.final and again.final_size == 3 and again.attempted and again.status() is None
    entry.mark_sent()
    assert spool.get(entry.id).delivered
    entry.writing()
    assert not spool.get(entry.id).final and not spool.get(entry.id).delivered
    entry.mark_unsent("no")
    assert spool.get(entry.id).status() == "unsent"  # a live mount's refused upload is listed at once


def test_bytes_lost_after_the_close_make_the_entry_incomplete(tmp_path: Path) -> None:
    entry_id = _in_dead_process(tmp_path, f"{WRITE}; e.mark_unsent('HTTP 500')")
    spool = Spool(tmp_path)
    entry = spool.get(entry_id)
    assert entry.status() == "unsent"
    entry.data_path.write_bytes(b"")  # what a power cut can leave of unsynced data
    assert entry.status() == "incomplete"


def test_an_upload_flushes_its_bytes_beside_the_send_and_a_restart_before_that_makes_them_incomplete(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.create(TARGET)
    entry.writing()
    entry.data_path.write_bytes(b"abc")
    entry.mark_sending()  # the upload does not wait for the fsync
    meta = json.loads(entry.meta_path.read_text())
    assert (meta["final"], meta["final_size"], meta["synced"], meta["boot"]) == (True, 3, False, boot_id())
    assert spool.get(entry.id).status() is None  # the live mount owns it
    entry.mark_unsent("HTTP 500")  # a refused upload waits for the flush before it says the bytes are kept
    again = spool.get(entry.id)
    assert (again.status(), again.synced) == ("unsent", True)

    in_flight = _in_dead_process(tmp_path, f"{WRITE}; e.mark_sending(); e._syncing.join()")
    assert spool.get(in_flight).status() == "unsent"  # killed mid-upload: this boot's page cache has the bytes
    meta = json.loads((tmp_path / f"{in_flight}.json").read_text())
    meta.update(synced=False, boot="another boot")  # a power cut before the flush ended
    (tmp_path / f"{in_flight}.json").write_text(json.dumps(meta))
    assert spool.get(in_flight).status() == "incomplete"


def test_entries_written_before_the_states_existed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for state in ("unsent", "open"):
        entry = spool.create(TARGET)
        meta = json.loads(entry.meta_path.read_text())
        for key in ("final", "final_size", "attempted", "delivered"):
            del meta[key]
        meta.update(state=state, pid=0)
        entry.meta_path.write_text(json.dumps(meta))
        assert spool.get(entry.id).status() == ("unsent" if state == "unsent" else "incomplete")
