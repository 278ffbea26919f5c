"""Uploads that overlap the writes (fs/streaming.py): a large new file's Import File runs while it is written.

Each test mounts a real sandbox and writes through the kernel; what was stored
is read back with PyCap and compared by hash, how it was sent is read from the
sandbox's request log (``chunked`` marks a body sent with Transfer-Encoding:
chunked).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import held_writer, kill_mid_write, settle
from test_upload_failures import cli, unsent
from test_write import server_file

pytest.importorskip("redcap")

SLOT = ("1001", "baseline_arm_1", "radiology_report")
MIB = 1 << 20
BIG = ("--max-upload-mb", "200")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def imports(sb: Any) -> list[dict[str, Any]]:
    """Import File calls, and chunked calls whose params never arrived (``--no-chunked empty`` and ``411``)."""
    def found() -> list[dict[str, Any]]:
        return [c for c in sb.calls() if (c.get("content"), c.get("action")) == ("file", "import") or c.get("chunked")]

    settle(lambda: len(found()))
    return found()


def stored_hash(sb: Any) -> str | None:
    found = server_file(sb, SLOT[0], SLOT[2], SLOT[1])
    return None if found is None else found[0] + ":" + sha(found[1])


def status(mnt: Any) -> dict[str, Any]:
    out = cli(mnt, "status", "--json", str(mnt.path))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return doc[0] if isinstance(doc, list) else doc


def writer(target: Path, script: str, data_hex_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` with ``fd`` open for writing on ``target`` and ``data`` the source bytes."""
    code = (f"import os\ndata = open({str(data_hex_path)!r}, 'rb').read()\n"
            f"fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n{script}\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_cp_of_40_mib_streams_one_chunked_import(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox(*BIG)
    mnt = mount(sb)
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(40 * MIB))
    done = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    calls = imports(sb)
    assert [(c.get("chunked"), c["status"], c["bytes"]) for c in calls] == [(True, 200, 40 * MIB)], calls
    assert stored_hash(sb) == "scan.bin:" + sha(src.read_bytes())
    assert "upload started while it is written" in mnt.log and "streamed upload of" in mnt.log
    state = status(mnt)["stream_upload"]
    assert state["on"] is True and state["streamed"] == 1 and state["sent_again"] == 0, state
    assert unsent(mnt) == []
    # Replacing it streams too (O_TRUNC onto the name), and the trash keeps the version it replaced.
    new = tmp_path / "scan2.bin"
    new.write_bytes(os.urandom(33 * MIB))
    done = subprocess.run(["cp", str(new), str(mnt.path.joinpath(*SLOT) / "scan.bin")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [(c.get("chunked"), c["status"]) for c in imports(sb)] == [(True, 200), (True, 200)]
    assert stored_hash(sb) == "scan.bin:" + sha(new.read_bytes())
    kept = json.loads(cli(mnt, "trash", "--json").stdout)
    assert [(k["name"], k["bytes"], k["sha256"]) for k in kept] == [("scan.bin", 40 * MIB, sha(src.read_bytes()))]


def test_small_files_never_stream(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox(*BIG)
    mnt = mount(sb)
    src = tmp_path / "small.bin"
    src.write_bytes(os.urandom(5 * MIB))
    assert subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))]).returncode == 0
    assert [c.get("chunked") for c in imports(sb)] == [None]
    assert stored_hash(sb) == "small.bin:" + sha(src.read_bytes())


@pytest.mark.parametrize("how", ["seek_back", "gap", "ftruncate", "second_writer"])
def test_a_writer_that_breaks_the_order_falls_back_and_the_bytes_are_right(how: str, sandbox, mount,
                                                                           tmp_path: Path) -> None:
    """After 20 MiB the writer does something a stream cannot follow: the close uploads the ordinary way."""
    sb = sandbox(*BIG)
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "odd.bin"
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(30 * MIB))
    first = "for i in range(20):\n    os.write(fd, data[i * 2**20:(i + 1) * 2**20])\n"
    rest = "os.write(fd, data[20 * 2**20:])\n"
    script = {
        "seek_back": first + "os.pwrite(fd, b'X' * 4096, 5 * 2**20)\n" + rest + "os.close(fd)\n",
        "gap": first + "os.pwrite(fd, data[21 * 2**20:], 21 * 2**20)\nos.pwrite(fd, data[20 * 2**20:21 * 2**20], "
                       "20 * 2**20)\nos.close(fd)\n",
        "ftruncate": first + "os.ftruncate(fd, 10 * 2**20)\nos.lseek(fd, 0, os.SEEK_END)\n"
                             "os.write(fd, data[10 * 2**20:])\nos.close(fd)\n",
        "second_writer": first + f"other = os.open({str(target)!r}, os.O_WRONLY)\nos.close(other)\n" + rest
                         + "os.close(fd)\n",
    }[how]
    expected = bytearray(data.read_bytes())
    if how == "seek_back":
        expected[5 * MIB:5 * MIB + 4096] = b"X" * 4096
    result = writer(target, script, data)
    assert result.returncode == 0, result.stderr
    calls = imports(sb)
    assert calls[-1]["status"] == 200 and not calls[-1].get("chunked"), calls
    assert all(c["status"] is None for c in calls if c.get("chunked")), calls  # an aborted stream stored nothing
    found = server_file(sb, SLOT[0], SLOT[2], SLOT[1])
    assert found is not None and found[0] == "odd.bin" and sha(found[1]) == sha(bytes(expected))
    assert "streamed upload abandoned" in mnt.log
    assert unsent(mnt) == []


def test_a_rename_or_unlink_while_streaming_cuts_the_stream_off(sandbox, mount, tmp_path: Path) -> None:
    """A rename of the open file is refused (EPERM) and cuts the stream off: the close sends it the ordinary way.
    An unlink cuts it off too, and then nothing at all is stored."""
    sb = sandbox(*BIG)
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "moved.bin"
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(24 * MIB))
    first = "for i in range(16):\n    os.write(fd, data[i * 2**20:(i + 1) * 2**20])\n"
    script = (first + "try:\n    os.rename(" + repr(str(target)) + ", " + repr(str(target) + ".2") + ")\n"
              "except OSError as exc:\n    print('refused', exc.errno)\n"
              "os.write(fd, data[16 * 2**20:])\nos.close(fd)\n")
    result = writer(target, script, data)
    assert result.returncode == 0 and "refused" in result.stdout, result.stdout + result.stderr
    calls = imports(sb)
    assert [(c.get("chunked"), c["status"]) for c in calls] == [(True, None), (None, 200)], calls
    assert stored_hash(sb) == "moved.bin:" + sha(data.read_bytes())
    # An unlink while it streams: nothing reaches the server, nothing is kept.
    gone = mnt.path.joinpath("1002", "baseline_arm_1", "radiology_report") / "gone.bin"
    script = first + f"os.unlink({str(gone)!r})\n" + (  # libfuse2 refuses writes after an unlink: either way
        "try:\n    os.write(fd, data[16 * 2**20:])\nexcept OSError:\n    pass\nos.close(fd)\n")
    result = writer(gone, script, data)
    assert result.returncode == 0, result.stderr
    later = [c for c in imports(sb) if c.get("record") == "1002"]
    assert [(c.get("chunked"), c["status"]) for c in later] == [(True, None)], later
    assert server_file(sb, "1002", SLOT[2], SLOT[1]) is None
    assert unsent(mnt) == []


@pytest.mark.parametrize("mode", ["nofile", "empty", "411"])
def test_a_server_that_refuses_chunked_bodies_gets_the_file_again_and_streaming_stops(mode: str, sandbox, mount,
                                                                                      tmp_path: Path) -> None:
    sb = sandbox(*BIG, "--no-chunked", mode)
    mnt = mount(sb)
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(24 * MIB))
    assert subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))]).returncode == 0
    calls = imports(sb)
    assert [(c.get("chunked"), c["status"]) for c in calls][-1] == (None, 200), calls
    assert [c.get("chunked") for c in calls] == [True, None], calls
    assert stored_hash(sb) == "scan.bin:" + sha(src.read_bytes())
    state = status(mnt)["stream_upload"]
    assert state["on"] is False and state["off_reason"] and state["sent_again"] == 1, state
    assert mnt.log.count("streamed uploads are off for the rest of this mount") == 1
    # The next large file is not streamed at all: one ordinary import.
    other = tmp_path / "second.bin"
    other.write_bytes(os.urandom(12 * MIB))
    assert subprocess.run(["cp", str(other), str(mnt.path.joinpath(*SLOT) / "scan.bin")]).returncode == 0
    assert [c.get("chunked") for c in imports(sb)] == [True, None, None]
    assert stored_hash(sb) == "scan.bin:" + sha(other.read_bytes())


@pytest.mark.parametrize(("fault", "hits"), [("do=500", 2), ("do=drop,after=4194304", 2), ("do=hang,seconds=6", 1)],
                         ids=["500", "drop", "hang"])
def test_a_fault_during_the_stream_leaves_the_file_unsent_and_retry_sends_it(fault: str, hits: int, sandbox, mount,
                                                                             tmp_path: Path) -> None:
    """The stream fails, and so does what follows it: unsent with the right bytes, and `redcapfs retry` sends it.

    After a 500 (an answer) and a drop (cut off mid-body, nothing stored) the file is sent again the ordinary
    way, so the fault hits the first two imports; after a hang the whole body went out and no answer came,
    which is an upload whose outcome is unknown: kept as unsent at once, as the ordinary upload does.
    """
    specs = [arg for n in range(1, hits + 1) for arg in ("--fault", f"content=file,action=import,nth={n},{fault}")]
    sb = sandbox(*BIG, *specs)
    mnt = mount(sb, "timeout=3")
    src = tmp_path / "scan.bin"
    src.write_bytes(os.urandom(20 * MIB))
    result = subprocess.run(["cp", str(src), str(mnt.path.joinpath(*SLOT))], capture_output=True, text=True)
    assert result.returncode != 0 and "Input/output error" in result.stderr, result.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    sb.calls(at_least=hits, content="file", action="import")  # a hung call is logged when it ends
    calls = imports(sb)
    assert [c.get("chunked") for c in calls] == [True, None][:hits], calls
    (entry,) = unsent(mnt)
    assert sha(Path(entry["data_path"]).read_bytes()) == sha(src.read_bytes())
    assert entry["state"] == "unsent" and entry["target"]["name"] == "scan.bin"
    retry = cli(mnt, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert stored_hash(sb) == "scan.bin:" + sha(src.read_bytes())
    assert unsent(mnt) == []


def test_kill_9_mid_stream_stores_nothing_and_keeps_the_spool_entry(sandbox, mount, tmp_path: Path) -> None:
    sb = sandbox(*BIG)
    mnt = mount(sb)
    target = mnt.path.joinpath(*SLOT) / "big.bin"
    block = os.urandom(MIB)
    proc = held_writer(target, block, 16)
    deadline = time.monotonic() + 30
    while "upload started while it is written" not in mnt.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "upload started while it is written" in mnt.log
    kill_mid_write(mnt, proc)
    calls = imports(sb)
    assert calls and all(c.get("chunked") and c["status"] is None for c in calls), calls
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) is None
    (entry,) = unsent(mnt)
    assert (entry["state"], entry["name"], entry["bytes"]) == ("incomplete", "big.bin", 16 * MIB)
    assert Path(entry["data_path"]).read_bytes() == block * 16
    again = mount(sb, mountpoint=mnt.path)
    sent = cli(again, "retry", "--incomplete", entry["id"])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("big.bin", block * 16)


def test_a_colleagues_file_found_by_the_check_is_never_overwritten_again(sandbox, mount, tmp_path: Path) -> None:
    """Another name in the slot when the check after a streamed upload looks: a colleague's upload came after
    ours. Ours is not sent again over theirs; the close fails and our bytes stay unsent."""
    bob = "B2" * 16
    sb = sandbox(*BIG, "--token", f"{'A1' * 16}:full:alice", "--token", f"{bob}:full:bob",
                 "--fault", "content=file,action=export,nth=1,do=hang,seconds=4")  # the check waits: bob's turn
    mnt = mount(sb)
    src = tmp_path / "scan.bin"
    data = os.urandom(24 * MIB)
    src.write_bytes(data)
    cp = subprocess.Popen(["cp", str(src), str(mnt.path.joinpath(*SLOT))], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not [c for c in sb.calls(content="file", action="import") if c.get("chunked")]:
        assert time.monotonic() < deadline and cp.poll() is None, "the streamed import never ended"
        time.sleep(0.05)
    theirs = tmp_path / "theirs.txt"
    theirs.write_bytes(b"the colleague's file\n")
    import redcap

    with open(theirs, "rb") as fh:
        redcap.Project(sb.url, bob).import_file(record=SLOT[0], field=SLOT[2], file_name="theirs.txt",
                                                file_object=fh, event=SLOT[1])
    cp.communicate(timeout=60)
    assert cp.returncode != 0, "the close should fail"
    assert server_file(sb, SLOT[0], SLOT[2], SLOT[1]) == ("theirs.txt", b"the colleague's file\n")
    assert len([c for c in sb.calls(content="file", action="import")]) == 2  # ours (streamed) and bob's only
    (entry,) = unsent(mnt)
    assert (entry["state"], entry["name"], entry["bytes"]) == ("unsent", "scan.bin", len(data)), entry
