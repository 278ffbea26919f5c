"""The share's ``.repository/``, the share in ``redcapfs status``, and the record folders' refusals by status.

REDCap's side is checked with PyCap (``*_repository`` methods); the local side
with ``redcapfs unsent --json``, ``redcapfs trash --json`` and ``redcapfs status``.
"""

from __future__ import annotations

import json
from typing import Any

from davhelp import pycap


def _docs(sb: Any, folder_id: int | None = None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for row in pycap(sb).export_file_repository(folder_id=folder_id):
        if row.get("doc_id"):
            out.setdefault(row["name"], []).append(int(row["doc_id"]))
    return out


def _folder(sb: Any, name: str) -> int:
    return next(int(r["folder_id"]) for r in pycap(sb).export_file_repository()
                if r.get("name") == name and not r.get("doc_id"))


def test_copy_move_delete_in_the_repository(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb, "records_ttl=0")
    assert sh.request("MKCOL", ".repository/Protocols").status_code == 201
    folder = _folder(sb, "Protocols")
    assert sh.request("PUT", ".repository/Protocols/plan.txt", data=b"version 1\n").status_code == 201
    copied = sh.request("COPY", ".repository/Protocols/plan.txt",
                        headers={"Destination": sh.url + ".repository/plan copy.txt"})
    assert copied.status_code == 201
    assert pycap(sb).export_file_from_repository(_docs(sb)["plan copy.txt"][0])[0] == b"version 1\n"
    moved = sh.request("MOVE", ".repository/plan copy.txt",
                       headers={"Destination": sh.url + ".repository/Protocols/moved.txt"})
    assert moved.status_code == 201
    assert "plan copy.txt" not in _docs(sb)  # deleted only after the copy arrived
    assert sorted(_docs(sb, folder)) == ["moved.txt", "plan.txt"]
    kept = [e for e in json.loads(sh.cli("trash", "--json").stdout) if e["repository"]]
    assert [(e["name"], e["why"]) for e in kept] == [("plan copy.txt", "deleted")]
    assert sh.request("DELETE", ".repository/Protocols").status_code == 403  # no folder delete in the API
    assert sh.request("MOVE", ".repository/Protocols",
                      headers={"Destination": sh.url + ".repository/P2"}).status_code == 403
    assert _folder(sb, "Protocols") == folder


def test_a_failed_repository_put_is_unsent_and_retry_sends_it(sandbox, share) -> None:
    sb = sandbox("--fault", "content=fileRepository,action=import,nth=1,do=500")
    sh = share(sb, "timeout=5")
    result = sh.request("PUT", ".repository/consent.pdf", data=b"%PDF signed\n")
    assert result.status_code >= 500, result.status_code
    assert "consent.pdf" not in _docs(sb)
    rows = json.loads(sh.cli("unsent", "--json").stdout)
    assert [(r["repository"], r["folder"], r["name"], r["state"]) for r in rows] == \
        [(True, "", "consent.pdf", "unsent")]
    assert sh.stop() == 0
    sent = sh.cli("retry")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert pycap(sb).export_file_from_repository(_docs(sb)["consent.pdf"][0])[0] == b"%PDF signed\n"


def test_status_shows_the_running_share(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    shown = sh.cli("status", "--json")
    assert shown.returncode == 0, shown.stderr
    (doc,) = json.loads(shown.stdout)
    assert doc["mode"] == "webdav" and doc["state"] == "serving" and doc["mountpoint"] == sh.url
    assert doc["share_url"] == sh.url and doc["url"].startswith(sb.url.rstrip("/"))
    for key in ("project_id", "title", "options", "pid", "started", "calls", "rate", "in_flight", "unsent",
                "incomplete", "conflict", "cache_bytes", "trash_bytes", "state_dir", "change_feed"):
        assert key in doc, key
    assert sh.password not in shown.stdout
    text = sh.cli("status", sh.url)
    assert text.returncode == 0 and "WebDAV share" in text.stdout and "serving" in text.stdout
    assert sh.stop() == 0
    assert json.loads(sh.cli("status", "--json").stdout) == []  # a clean stop removes it, as an unmount does


def test_record_folders_refuse_by_the_slot_rules(sandbox, share) -> None:
    sb = sandbox()
    sh = share(sb)
    slot = "1001/baseline_arm_1/radiology_report"
    refusals = [
        (sh.request("PUT", "1001/report.txt", data=b"x"), 404),  # files live in a field's folder only
        (sh.request("PUT", "1001/baseline_arm_1/report.txt", data=b"x"), 404),
        (sh.request("MKCOL", f"{slot}/sub"), 403),  # EPERM: mkdir in a slot
        (sh.request("DELETE", "1001"), 403),  # rmdir of a record
        (sh.request("MOVE", "1001", headers={"Destination": sh.url + "1009"}), 403),  # folders never move
    ]
    assert [status for response, status in refusals] == [r.status_code for r, _ in refusals]
    assert sh.request("PUT", f"{slot}/a.txt", data=b"a").status_code == 201
    assert sh.request("PUT", f"{slot}/b.txt", data=b"b").status_code == 409  # EEXIST: one file per slot
