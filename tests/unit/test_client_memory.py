"""``MemoryClient``: the same calls and typed errors as the doc, without HTTP.

The last test runs one script of calls against both ``MemoryClient`` and the
sandbox through ``HttpClient`` and compares outcomes, so the fake cannot drift
from the server the filesystem really talks to.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import classic_project, longitudinal_project, seed

from redcapfs import errors as E
from redcapfs.client import FileInfo, HttpClient, MemoryClient, RedcapClient
from redcapfs.sandbox.project import ProjectDef

BASE = "baseline_arm_1"


def memory_from(project: ProjectDef, **kw: Any) -> MemoryClient:
    """A MemoryClient seeded with the same project the sandbox tests use."""
    files = {(f.record, f.event, f.field, f.repeat_instance): (f.name, Path(f.source).read_bytes())
             for f in project.files}
    return MemoryClient(project=project.info, metadata=project.metadata, arms=project.arms, events=project.events,
                        mapping=project.form_event_mapping, repeating=project.repeating,
                        instruments=project.instruments, records=project.records, files=files,
                        locked=project.locked, **kw)


@pytest.fixture
def mem(tmp_path) -> MemoryClient:
    return memory_from(longitudinal_project(tmp_path / "src"))


def test_structure_and_counting(mem, tmp_path):
    assert mem.project_info()["is_longitudinal"] == 1
    assert mem.metadata()[0]["field_name"] == "record_id"
    assert len(mem.arms()) == 2 and len(mem.events()) == 3 and len(mem.form_event_mapping()) == 4
    assert mem.version() == "14.5.2"
    assert mem.calls[("metadata", "export")] == 1 and mem.calls[("arm", "export")] == 1
    classic = memory_from(classic_project(tmp_path / "c"))
    assert classic.arms() == [] and classic.events() == [] and classic.form_event_mapping() == []
    assert classic.repeating_forms_events() == [{"form_name": "attachments", "custom_form_label": ""}]


def test_records_show_file_names_and_filters(mem, tmp_path):
    rows = mem.export_records(records=["1"], events=[BASE])
    base = next(r for r in rows if not r.get("redcap_repeat_instrument"))
    assert base["consent_file"] == "consent.pdf"
    ae = [r for r in rows if r.get("redcap_repeat_instrument") == "adverse_events"]
    assert [r["ae_doc"] for r in ae] == ["", "ae2.txt"]
    assert all(set(r) <= {"record_id", "name", "redcap_event_name", "redcap_repeat_instrument",
                          "redcap_repeat_instance"} for r in mem.export_records(fields=["name"]))
    assert mem.export_records(records=[]) == []
    legacy = memory_from(longitudinal_project(tmp_path / "l"), legacy_document_values=True)
    assert legacy.export_records(records=["1"], events=[BASE])[0]["consent_file"] == "[document]"


def test_file_calls(mem, tmp_path):
    out = io.BytesIO()
    assert mem.export_file("1", "consent_file", out, event=BASE) == FileInfo("consent.pdf", 16, "application/pdf")
    assert out.getvalue() == b"%PDF-1.4 consent"
    assert mem.file_info("1", "consent_file", event=BASE) == FileInfo("consent.pdf", 16, None)
    src = tmp_path / "x"
    src.write_bytes(b"hello")
    mem.import_file("1", "ae_doc", str(src), "it's.txt", event=BASE, repeat_instance=5)
    assert mem.file_bytes("1", "ae_doc", BASE, 5) == b"hello"
    assert mem.file_info("1", "ae_doc", event=BASE, repeat_instance=5).name == "its.txt"  # quotes removed
    assert any(r.get("redcap_repeat_instance") == 5 for r in mem.export_records(records=["1"]))  # instance created
    mem.delete_file("1", "ae_doc", event=BASE, repeat_instance=5)
    assert mem.file_bytes("1", "ae_doc", BASE, 5) is None
    assert mem.calls[("file", "export")] == 1 and mem.calls[("file", "info")] == 2
    assert mem.calls[("file", "import")] == 1 and mem.calls[("file", "delete")] == 1
    assert not memory_from(longitudinal_project(tmp_path / "n"), fileinfo=False).file_info("1", "consent_file",
                                                                                           event=BASE)


def test_records_import_and_next_name(mem):
    assert mem.generate_next_record_name() == "10"
    assert mem.import_records([{"record_id": "10", "redcap_event_name": BASE, "name": "Dora"}]) == {"count": 1}
    assert mem.import_records([{"record_id": "10", "redcap_event_name": BASE, "name": ""}],
                              return_content="ids") == ["10"]
    assert mem.export_records(records=["10"])[0]["name"] == "Dora"  # blank did not overwrite
    assert mem.export_logging(record="10")


def script(tmp_path: Path) -> list[tuple[str, Callable[[RedcapClient], Any]]]:
    """Calls whose outcome (value or error class + message) must match between clients."""
    small = tmp_path / "small.txt"
    small.write_bytes(b"small")

    def export(record: str, field: str, event: Any = BASE, inst: Any = None) -> Callable[[RedcapClient], Any]:
        def run(c: RedcapClient) -> Any:
            out = io.BytesIO()
            info = c.export_file(record, field, out, event=event, repeat_instance=inst)
            return info.name, info.size, out.getvalue()
        return run

    return [
        ("export", export("1", "consent_file")),
        ("instance forced to 1", export("1", "consent_file", inst=7)),
        ("repeat instance", export("1", "ae_doc", inst=2)),
        ("empty repeat instance", export("1", "ae_doc", inst=1)),
        ("empty slot", export("2", "consent_file")),
        ("not a file field", export("1", "name")),
        ("unknown field", export("1", "nope")),
        ("bad event", export("1", "consent_file", event="x_arm_9")),
        ("no event", export("1", "consent_file", event=None)),
        ("record not in event", export("3", "consent_file")),
        ("upload missing record", lambda c: c.import_file("77", "consent_file", str(small), "s.txt", event=BASE)),
        ("upload signature", lambda c: c.import_file("1", "signature", str(small), "s.txt", event=BASE)),
        ("upload locked", lambda c: c.import_file("9", "consent_file", str(small), "s.txt", event=BASE)),
        ("upload", lambda c: c.import_file("2", "consent_file", str(small), "s'q.txt", event=BASE)),
        ("after upload", export("2", "consent_file")),
        ("delete", lambda c: c.delete_file("2", "consent_file", event=BASE)),
        ("delete again", lambda c: c.delete_file("2", "consent_file", event=BASE)),
        ("delete locked", lambda c: c.delete_file("9", "consent_file", event=BASE)),
        ("file values", lambda c: sorted(tuple(str(r.get(k) or "") for k in (
            "record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "consent_file",
            "ae_doc", "visit_scan")) for r in c.export_records())),
    ]


def outcome(call: Callable[[RedcapClient], Any], client: RedcapClient) -> Any:
    try:
        return ("ok", call(client))
    except E.RedcapError as exc:
        return (type(exc).__name__, exc.message, exc.status)


def test_memory_client_matches_sandbox(sandbox, tmp_path):
    seed(tmp_path / "sb-data", longitudinal_project(tmp_path / "sb-src"))
    sb = sandbox("--token", "A" * 32, "--lock", "9")
    http = HttpClient(sb.url, "A" * 32, rate_limit=None)
    mem = memory_from(longitudinal_project(tmp_path / "m-src"))
    try:
        for label, call in script(tmp_path):
            assert outcome(call, mem) == outcome(call, http), label
    finally:
        http.close()
