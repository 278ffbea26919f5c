"""The File Repository keeps the record files' guarantees: unsent, retry, trash, restore; and sizes across mounts.

Through a real mount; REDCap's side is checked with PyCap and the sandbox's
request log.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_upload_failures import cli, unsent

redcap = pytest.importorskip("redcap")

FULL = "A" * 32


def _docs(proj: Any, folder_id: int | None = None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in proj.export_file_repository(folder_id=folder_id):
        if row.get("doc_id"):
            out.setdefault(row["name"], []).append(int(row["doc_id"]))
    return out


def _bytes(proj: Any, doc_id: int) -> bytes:
    return proj.export_file_from_repository(doc_id)[0]


def _trash(m: Any) -> list[dict[str, Any]]:
    r = cli(m, "trash", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _project(sandbox: Any, *faults: str) -> tuple[Any, Any, int]:
    args = ["--token", f"{FULL}:full:alice"]
    for fault in faults:
        args += ["--fault", fault]
    sb = sandbox(*args)
    alice = redcap.Project(sb.url, FULL)
    protocols = int(alice.create_folder_in_repository("Protocols")[0]["folder_id"])
    alice.import_file_into_repository("plan.txt", io.BytesIO(b"version 1\n"), folder_id=protocols)  # import 1
    return sb, alice, protocols


def test_a_failed_upload_is_unsent_and_retry_sends_it(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb, alice, protocols = _project(sandbox, "content=fileRepository,action=import,nth=2,do=500")
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    src = tmp_path / "consent.pdf"
    src.write_bytes(os.urandom(30_000))
    r = subprocess.run(["cp", str(src), str(m.path / ".repository" / "Protocols") + "/"], capture_output=True)
    assert r.returncode != 0  # import 2 failed: never reported as written
    entries = unsent(m)
    assert [(e["repository"], e["folder"], e["folder_id"], e["name"], e["state"]) for e in entries] == \
        [(True, "Protocols", protocols, "consent.pdf", "unsent")]
    assert Path(entries[0]["data_path"]).read_bytes() == src.read_bytes()
    listed = cli(m, "unsent")
    assert ".repository/Protocols/consent.pdf" in listed.stdout

    sent = cli(m, "retry")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"sent {entries[0]['id']} -> .repository/Protocols/consent.pdf" in sent.stdout
    docs = _docs(alice, protocols)
    assert len(docs["consent.pdf"]) == 1 and _bytes(alice, docs["consent.pdf"][0]) == src.read_bytes()
    assert unsent(m) == []


def test_a_failed_overwrite_is_retried_as_an_overwrite(sandbox: Any, mount: Any) -> None:
    sb, alice, protocols = _project(sandbox, "content=fileRepository,action=import,nth=2,do=500")
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    old = _docs(alice, protocols)["plan.txt"]
    with pytest.raises(OSError):
        (m.path / ".repository" / "Protocols" / "plan.txt").write_bytes(b"version 2\n")
    assert _docs(alice, protocols)["plan.txt"] == old  # nothing changed in REDCap
    sent = cli(m, "retry")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    docs = _docs(alice, protocols)["plan.txt"]
    assert len(docs) == 1 and docs != old and _bytes(alice, docs[0]) == b"version 2\n"
    kept = [e for e in _trash(m) if e["repository"]]
    assert [(e["why"], e["doc_id"], e["name"]) for e in kept] == [("replaced", old[0], "plan.txt")]


def test_overwrite_and_delete_keep_the_old_document_and_restore_puts_it_back(sandbox: Any, mount: Any) -> None:
    sb, alice, protocols = _project(sandbox)
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    plan = m.path / ".repository" / "Protocols" / "plan.txt"
    first = _docs(alice, protocols)["plan.txt"][0]
    plan.write_bytes(b"version 2, longer\n")
    second = _docs(alice, protocols)["plan.txt"]
    assert len(second) == 1 and _bytes(alice, second[0]) == b"version 2, longer\n"
    kept = [e for e in _trash(m) if e["repository"]]
    assert [(e["why"], e["doc_id"], e["folder"], e["bytes"]) for e in kept] == \
        [("replaced", first, "Protocols", 10)]
    assert Path(kept[0]["left"]["name"]) == Path("plan.txt") and kept[0]["left"]["doc_id"] == second[0]

    restored = cli(m, "restore", kept[0]["id"])
    assert restored.returncode == 0, restored.stdout + restored.stderr
    now = _docs(alice, protocols)["plan.txt"]
    assert len(now) == 1 and _bytes(alice, now[0]) == b"version 1\n"  # the replacing one went to the trash
    assert [(e["why"], e["doc_id"]) for e in _trash(m) if e["repository"]] == [("replaced", second[0])]

    os.unlink(plan)
    assert "plan.txt" not in _docs(alice, protocols)
    deleted = [e for e in _trash(m) if e["repository"] and e["why"] == "deleted"]
    assert [(e["doc_id"], e["bytes"]) for e in deleted] == [(now[0], 10)]
    assert cli(m, "restore", deleted[0]["id"]).returncode == 0
    back = _docs(alice, protocols)["plan.txt"]
    assert len(back) == 1 and _bytes(alice, back[0]) == b"version 1\n"


def test_sizes_are_learned_once_and_find_downloads_nothing(sandbox: Any, mount: Any) -> None:
    sb, alice, _ = _project(sandbox)
    alice.import_file_into_repository("readme.txt", io.BytesIO(b"top level\n"))
    exports = lambda: len(sb.calls(content="fileRepository", action="export"))  # noqa: E731
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    found = subprocess.run(["find", str(m.path)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert str(m.path / ".repository" / "Protocols" / "plan.txt") in found
    assert exports() == 0  # listing and directory stats cost list calls only
    sizes = {p.name: p.stat().st_size for p in (m.path / ".repository").rglob("*") if p.is_file()}
    assert sizes == {"plan.txt": 10, "readme.txt": 10}
    learned = exports()
    assert learned == 2  # one download per document, the cost docs/SEMANTICS.md states
    m.unmount()
    again = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    r = subprocess.run(["ls", "-lR", str(again.path / ".repository")], capture_output=True, text=True, check=True)
    assert " 10 " in r.stdout
    assert exports() == learned  # the manifest kept the sizes: the remount downloads nothing


def test_rsync_into_the_repository_uploads_real_names_only(sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb, alice, protocols = _project(sandbox)
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "plan.txt").write_bytes(b"version 3\n")
    dest = str(m.path / ".repository" / "Protocols") + "/"
    subprocess.run(["rsync", "-r", "--ignore-times", f"{src}/", dest], check=True, capture_output=True)
    docs = _docs(alice, protocols)
    assert sorted(docs) == ["a.txt", "plan.txt"]  # rsync's .NAME.XXXXXX never became a document
    assert _bytes(alice, docs["a.txt"][0]) == b"alpha\n"
    assert len(docs["plan.txt"]) == 1 and _bytes(alice, docs["plan.txt"][0]) == b"version 3\n"
    assert sorted(os.listdir(m.path / ".repository" / "Protocols")) == ["a.txt", "plan.txt"]


def test_bytes_written_after_an_fsync_replace_the_document_it_made(sandbox: Any, mount: Any) -> None:
    sb, alice, protocols = _project(sandbox)
    m = mount(sb, env={"REDCAP_API_TOKEN": FULL})
    fd = os.open(m.path / ".repository" / "Protocols" / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"part one\n")
        os.fsync(fd)  # uploaded here: a first document
        assert len(_docs(alice, protocols)["log.txt"]) == 1
        os.write(fd, b"part two\n")
    finally:
        os.close(fd)  # uploaded again: it replaces the first one, never a second document of the name
    docs = _docs(alice, protocols)["log.txt"]
    assert len(docs) == 1 and _bytes(alice, docs[0]) == b"part one\npart two\n"
    assert [(e["name"], e["why"], e["bytes"]) for e in _trash(m) if e["repository"]] == [("log.txt", "replaced", 9)]
