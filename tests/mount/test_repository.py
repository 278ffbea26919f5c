"""The File Repository under ``/.repository``, through a real mount, checked with PyCap.

The repository is filled and read back with PyCap (``*_repository`` methods)
using the same sandbox; the mount's own calls are counted in the request log.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mounthelp import errno_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_upload_failures import unsent

redcap = pytest.importorskip("redcap")

FULL, NOREPO = "A" * 32, "B" * 32



def _docs(proj: Any, folder_id: int | None = None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in proj.export_file_repository(folder_id=folder_id):
        if row.get("doc_id"):
            out.setdefault(row["name"], []).append(int(row["doc_id"]))
    return out


@pytest.fixture
def filled(sandbox: Any) -> tuple[Any, Any, int]:
    sb = sandbox("--token", f"{FULL}:full:alice", "--token", f"{NOREPO}:full:bob")
    alice = redcap.Project(sb.url, FULL)
    protocols = int(alice.create_folder_in_repository("Protocols")[0]["folder_id"])
    alice.import_file_into_repository("readme.txt", io.BytesIO(b"top level\n"))
    alice.import_file_into_repository("protocol.pdf", io.BytesIO(b"%PDF version 1\n"), folder_id=protocols)
    alice.import_file_into_repository("protocol.pdf", io.BytesIO(b"%PDF version 2, longer\n"), folder_id=protocols)
    forms = [i["instrument_name"] for i in alice.export_instruments()]
    alice.import_users([{"username": "bob", "file_repository": 0, "api_export": 1, "api_import": 1,
                         "forms": {f: 1 for f in forms}, "forms_export": {f: 1 for f in forms}}])
    return sb, alice, protocols


def test_listing_read_and_two_files_of_one_name(filled: Any, mount: Any) -> None:
    sb, alice, protocols = filled
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    repo = m.path / ".repository"
    assert ".repository" in os.listdir(m.path)  # listed in the root (docs/SEMANTICS.md)
    assert "%2Erepository" not in os.listdir(m.path)
    assert sorted(os.listdir(repo)) == ["Protocols", "readme.txt"]
    assert (repo / "Protocols").is_dir()
    first, second = sorted(_docs(alice, protocols)["protocol.pdf"])
    assert sorted(os.listdir(repo / "Protocols")) == sorted(["protocol.pdf", f"protocol [doc {second}].pdf"])
    assert (repo / "Protocols" / "protocol.pdf").read_bytes() == alice.export_file_from_repository(first)[0]
    assert (repo / "Protocols" / f"protocol [doc {second}].pdf").read_bytes() == \
        alice.export_file_from_repository(second)[0]
    assert os.stat(repo / "readme.txt").st_size == len(b"top level\n")
    before = len(sb.calls(content="fileRepository", action="export"))
    assert (repo / "readme.txt").read_bytes() == b"top level\n"
    assert os.stat(repo / "readme.txt").st_size == 10
    assert len(sb.calls(content="fileRepository", action="export")) == before  # a size costs one download, once


def test_cp_in_rm_mkdir_and_refusals(filled: Any, mount: Any, tmp_path: Path) -> None:
    sb, alice, protocols = filled
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    repo = m.path / ".repository"
    src = tmp_path / "consent template.docx"
    src.write_bytes(os.urandom(50_000))
    subprocess.run(["cp", str(src), str(repo / "Protocols") + "/"], check=True)
    docs = _docs(alice, protocols)
    assert len(docs["consent template.docx"]) == 1
    assert alice.export_file_from_repository(docs["consent template.docx"][0])[0] == src.read_bytes()
    assert (repo / "Protocols" / "consent template.docx").read_bytes() == src.read_bytes()

    (repo / "readme.txt").write_bytes(b"replaced\n")  # an overwrite: import, then delete of the old document
    top = _docs(alice)
    assert len(top["readme.txt"]) == 1
    assert alice.export_file_from_repository(top["readme.txt"][0])[0] == b"replaced\n"
    assert os.listdir(repo).count("readme.txt") == 1

    os.unlink(repo / "Protocols" / "consent template.docx")
    assert "consent template.docx" not in _docs(alice, protocols)
    assert "consent template.docx" not in os.listdir(repo / "Protocols")

    os.mkdir(repo / "Protocols" / "2026")
    folders = [r["name"] for r in alice.export_file_repository(folder_id=protocols) if not r.get("doc_id")]
    assert folders == ["2026"]
    shutil.copy(src, repo / "Protocols" / "2026" / "a.bin")
    sub = next(int(r["folder_id"]) for r in alice.export_file_repository(folder_id=protocols)
               if r.get("name") == "2026" and not r.get("doc_id"))
    assert list(_docs(alice, sub)) == ["a.bin"]

    assert errno_of(os.rmdir, repo / "Protocols" / "2026") == errno.EPERM
    assert errno_of(os.rename, repo / "readme.txt", repo / "Protocols" / "readme.txt") == errno.EPERM
    assert errno_of(os.rename, repo / "Protocols", repo / "P2") == errno.EPERM
    assert sorted(os.listdir(repo)) == ["Protocols", "readme.txt"]


def test_without_the_file_repository_right_it_is_absent(filled: Any, mount: Any) -> None:
    sb, _, _ = filled
    m = mount(sb, env={"REDCAP_API_TOKEN": NOREPO})
    assert ".repository" not in os.listdir(m.path)
    assert errno_of(os.stat, m.path / ".repository") == errno.ENOENT
    assert os.listdir(m.path)  # the records are there as before
    assert "File Repository is not shown" in m.log


def test_a_record_named_like_the_folder_is_listed_escaped(filled: Any, mount: Any) -> None:
    sb, alice, _ = filled
    alice.import_records([{"record_id": ".repository", "redcap_event_name": "screening_arm_1"}])
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    listed = os.listdir(m.path)
    assert ".repository" in listed and "%2Erepository" in listed
    assert sorted(os.listdir(m.path / "%2Erepository")) == sorted(os.listdir(m.path / "1001"))
    assert sorted(os.listdir(m.path / ".repository")) == ["Protocols", "readme.txt"]


def test_an_empty_repository_is_reachable_and_takes_a_first_folder(sandbox: Any, mount: Any) -> None:
    sb = sandbox("--token", f"{FULL}:full:alice")
    alice = redcap.Project(sb.url, FULL)
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    assert os.listdir(m.path / ".repository") == []
    os.mkdir(m.path / ".repository" / "Protocols")
    assert [r["name"] for r in alice.export_file_repository()] == ["Protocols"]
    assert os.listdir(m.path / ".repository") == ["Protocols"]


def test_a_failed_upload_fails_close_and_keeps_the_bytes(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox("--token", f"{FULL}:full:alice", "--fault", "content=fileRepository,action=import,nth=2,do=500",
                 "--fault", "content=fileRepository,action=delete,nth=1,do=500")
    alice = redcap.Project(sb.url, FULL)
    alice.import_file_into_repository("plan.txt", io.BytesIO(b"version 1\n"))  # import 1
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    repo = m.path / ".repository"
    src = tmp_path / "new.txt"
    src.write_bytes(b"must not be lost\n")
    r = subprocess.run(["cp", str(src), str(repo) + "/"], capture_output=True, text=True)  # import 2: fails
    assert r.returncode != 0, r
    assert "new.txt" not in _docs(alice)
    kept = [e for e in unsent(m) if e["repository"]]
    assert len(kept) == 1 and Path(kept[0]["data_path"]).read_bytes() == src.read_bytes()
    assert "upload of 'new.txt'" in m.log and "the bytes are kept in" in m.log

    (repo / "plan.txt").write_bytes(b"version 2\n")  # import 3 succeeds, the delete of the old one fails
    versions = sorted(_docs(alice)["plan.txt"])
    assert len(versions) == 2
    assert [alice.export_file_from_repository(d)[0] for d in versions][-1] == b"version 2\n"
    assert sorted(os.listdir(repo)) == sorted(["plan.txt", f"plan [doc {versions[1]}].txt"])
    assert "both stay listed" in m.log


def test_names_that_cannot_list_back_are_refused_at_create_in_the_repository(filled: Any, mount: Any,
                                                                             tmp_path: Path) -> None:
    """The name rule of record slots (docs/names.md) holds in .repository: EINVAL at create, rename and mkdir."""
    sb, alice, _ = filled
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    repo = m.path / ".repository"
    before = _docs(alice)
    imports = len(sb.calls(content="fileRepository", action="import"))
    for bad in ("%EMPTY", "%00.txt", "%0A", "%2E", "%25off.pdf"):
        assert errno_of(os.open, str(repo / bad), os.O_CREAT | os.O_WRONLY, 0o644) == errno.EINVAL, bad
        assert errno_of(os.mkdir, str(repo / bad)) == errno.EINVAL, bad
    src = repo / "notes.txt"
    src.write_bytes(b"kept under its own name\n")
    tmp = repo / ".notes.txt.Ab12Cd"  # rsync's temporary name, renamed onto a bad name
    tmp.write_bytes(b"never sent under a bad name\n")
    assert errno_of(os.rename, str(tmp), str(repo / "%00.txt")) == errno.EINVAL
    os.unlink(tmp)
    after = _docs(alice)
    assert set(after) - set(before) == {"notes.txt"}, after
    assert len(sb.calls(content="fileRepository", action="import")) == imports + 1
    assert unsent(m) == []
