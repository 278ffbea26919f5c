"""``InProcessClient``: the sandbox's API called without HTTP, as a ``RedcapClient``.

The last test runs one script of calls against the in-process client and
against the sandbox process through ``HttpClient`` and compares the outcomes,
so the two ways to the one emulator cannot drift apart. Results are checked
in the sandbox's store, not only through the client.
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
from redcapfs.client import FileInfo, HttpClient, RedcapClient
from redcapfs.sandbox.config import SandboxConfig
from redcapfs.sandbox.inprocess import InProcessClient
from redcapfs.sandbox.loaders import demo_path

BASE = "baseline_arm_1"


@pytest.fixture
def inproc(tmp_path) -> InProcessClient:
    return InProcessClient.from_project(longitudinal_project(tmp_path / "src"), tmp_path / "store")


def stored_bytes(client: InProcessClient, record: str, field: str, event: str, rform: str, inst: int) -> bytes | None:
    """A slot's bytes read straight from the sandbox store (not through the client)."""
    opened = client.store.open_file((record, event, rform, inst), field)
    if opened is None:
        return None
    with opened[1] as fh:
        return fh.read()


def test_structure_and_counting(inproc, tmp_path):
    assert inproc.project_info()["is_longitudinal"] == 1
    assert inproc.metadata()[0]["field_name"] == "record_id"
    assert len(inproc.arms()) == 2 and len(inproc.events()) == 3 and len(inproc.form_event_mapping()) == 4
    assert inproc.version() == "14.5.2"
    assert inproc.calls[("metadata", "export")] == 1 and inproc.calls[("arm", "export")] == 1
    classic = InProcessClient.from_project(classic_project(tmp_path / "c"), tmp_path / "c-store")
    assert classic.arms() == [] and classic.events() == [] and classic.form_event_mapping() == []
    assert classic.repeating_forms_events() == [{"form_name": "attachments", "custom_form_label": ""}]
    assert classic.calls[("arm", "export")] == 1, "the refused call was made and answered []"


def test_records_show_file_names_and_filters(inproc, tmp_path):
    rows = inproc.export_records(records=["1"], events=[BASE])
    base = next(r for r in rows if not r.get("redcap_repeat_instrument"))
    assert base["consent_file"] == "consent.pdf"
    ae = [r for r in rows if r.get("redcap_repeat_instrument") == "adverse_events"]
    assert [r["ae_doc"] for r in ae] == ["", "ae2.txt"]
    assert all(set(r) <= {"record_id", "name", "redcap_event_name", "redcap_repeat_instrument",
                          "redcap_repeat_instance"} for r in inproc.export_records(fields=["name"]))
    assert inproc.export_records(records=[]) == []
    assert [r["record_id"] for r in inproc.export_records(fields=["name"], batch_size=2)] == \
        [r["record_id"] for r in inproc.export_records(fields=["name"])]
    legacy = InProcessClient.from_project(longitudinal_project(tmp_path / "l"), tmp_path / "l-store",
                                          config=SandboxConfig(legacy_document_values=True))
    assert legacy.export_records(records=["1"], events=[BASE])[0]["consent_file"] == "[document]"


def test_file_calls(inproc, tmp_path):
    out = io.BytesIO()
    assert inproc.export_file("1", "consent_file", out, event=BASE) == FileInfo("consent.pdf", 16, "application/pdf")
    assert out.getvalue() == b"%PDF-1.4 consent"
    assert inproc.file_info("1", "consent_file", event=BASE) == FileInfo("consent.pdf", 16, None)
    src = tmp_path / "x"
    src.write_bytes(b"hello")
    inproc.import_file("1", "ae_doc", str(src), "it's.txt", event=BASE, repeat_instance=5)
    assert stored_bytes(inproc, "1", "ae_doc", BASE, "adverse_events", 5) == b"hello"
    assert inproc.store.get_file(("1", BASE, "adverse_events", 5), "ae_doc").name == "its.txt"  # quotes removed
    assert any(r.get("redcap_repeat_instance") == 5 for r in inproc.export_records(records=["1"]))  # instance made
    inproc.delete_file("1", "ae_doc", event=BASE, repeat_instance=5)
    assert stored_bytes(inproc, "1", "ae_doc", BASE, "adverse_events", 5) is None
    assert list((inproc.store.data_dir / "tmp").iterdir()) == [], "no spool file left behind"
    assert inproc.calls[("file", "export")] == 1 and inproc.calls[("file", "info")] == 1
    assert inproc.calls[("file", "import")] == 1 and inproc.calls[("file", "delete")] == 1
    no_info = InProcessClient.from_project(longitudinal_project(tmp_path / "n"), tmp_path / "n-store",
                                           config=SandboxConfig(fileinfo=False))
    assert no_info.file_info("1", "consent_file", event=BASE) is None


def test_upload_limit_and_refusals_leave_no_spool(inproc, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    small = InProcessClient.from_project(longitudinal_project(tmp_path / "s"), tmp_path / "s-store",
                                         config=SandboxConfig(max_upload_mb=1))
    with pytest.raises(E.TooLarge):
        small.import_file("2", "consent_file", str(big), "big.bin", event=BASE)
    with pytest.raises(E.Locked):
        inproc.import_file("9", "consent_file", str(big), "big.bin", event=BASE)
    for client in (small, inproc):
        assert list((client.store.data_dir / "tmp").iterdir()) == []
    assert small.store.get_file(("2", BASE, "", 0), "consent_file") is None


def test_records_import_and_next_name(inproc):
    assert inproc.generate_next_record_name() == "10"
    assert inproc.import_records([{"record_id": "10", "redcap_event_name": BASE, "name": "Dora"}]) == {"count": 1}
    assert inproc.import_records([{"record_id": "10", "redcap_event_name": BASE, "name": ""}],
                                 return_content="ids") == ["10"]
    assert inproc.store.row_data(("10", BASE, "", 0))["name"] == "Dora"  # blank did not overwrite
    assert [r["action"] for r in inproc.export_logging(record="10")] == ["Update record (API) 10",
                                                                         "Create record (API) 10"]


def test_rights_and_a_second_user(inproc, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"from a colleague")
    reader = inproc.with_token(rights="export", username="reader")
    with pytest.raises(E.NoRights):
        reader.import_file("2", "consent_file", str(src), "x.txt", event=BASE)
    colleague = inproc.with_token(username="colleague")
    colleague.import_file("2", "consent_file", str(src), "x.txt", event=BASE)
    assert inproc.file_info("2", "consent_file", event=BASE) == FileInfo("x.txt", 16, None)
    assert inproc.export_logging(user="colleague")[0]["action"] == "Update record (API) 2"
    assert colleague.calls[("file", "import")] == 1 and inproc.calls[("file", "import")] == 0
    none = InProcessClient.from_project(longitudinal_project(tmp_path / "r"), tmp_path / "r-store", rights="none")
    with pytest.raises(E.NoRights):
        none.export_records()


def test_built_project_and_private_dir(tmp_path):
    built = InProcessClient.build(tmp_path / "b", metadata=[
        {"field_name": "record_id", "form_name": "main", "field_type": "text"},
        {"field_name": "doc", "form_name": "main", "field_type": "file"}],
        records=[{"record_id": "1"}], files={("1", None, "doc", 1): ("a.pdf", b"%PDF")}, locked=["1"])
    assert built.file_info("1", "doc") == FileInfo("a.pdf", 4, None)
    assert built.store.is_locked("1")
    with pytest.raises(ValueError, match="not a file field"):
        InProcessClient.build(tmp_path / "bad", metadata=[{"field_name": "record_id", "form_name": "main",
                                                           "field_type": "text"}],
                              records=[{"record_id": "1"}], files={("1", None, "record_id", 1): ("a", b"")})
    demo = InProcessClient.from_project(demo_path())
    private = demo.store.data_dir
    assert demo.metadata() and private.is_dir()
    demo.close()
    assert not private.exists()


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
        ("file info", lambda c: c.file_info("1", "ae_doc", event=BASE, repeat_instance=2)),
        ("upload missing record", lambda c: c.import_file("77", "consent_file", str(small), "s.txt", event=BASE)),
        ("upload signature", lambda c: c.import_file("1", "signature", str(small), "s.txt", event=BASE)),
        ("upload locked", lambda c: c.import_file("9", "consent_file", str(small), "s.txt", event=BASE)),
        ("upload", lambda c: c.import_file("2", "consent_file", str(small), 'dir\\s\'q &amp; "x".txt', event=BASE)),
        ("after upload", export("2", "consent_file")),
        ("delete", lambda c: c.delete_file("2", "consent_file", event=BASE)),
        ("delete again", lambda c: c.delete_file("2", "consent_file", event=BASE)),
        ("delete locked", lambda c: c.delete_file("9", "consent_file", event=BASE)),
        ("import", lambda c: c.import_records([{"record_id": "20", "redcap_event_name": BASE, "name": "E"}])),
        ("import unknown column", lambda c: c.import_records([{"record_id": "20", "redcap_event_name": BASE,
                                                                "nope": "1"}])),
        ("import locked", lambda c: c.import_records([{"record_id": "9", "redcap_event_name": BASE, "name": "x"}])),
        ("next name", lambda c: c.generate_next_record_name()),
        ("project", lambda c: c.project_info()),
        ("repeating", lambda c: c.repeating_forms_events()),
        ("file values", lambda c: sorted(tuple(str(r.get(k) or "") for k in (
            "record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "consent_file",
            "ae_doc", "visit_scan")) for r in c.export_records())),
        ("log actions", lambda c: [(r["username"], r["action"], r["details"], r["record"])
                                   for r in c.export_logging(logtype="record")]),
    ]


def outcome(call: Callable[[RedcapClient], Any], client: RedcapClient) -> Any:
    try:
        return ("ok", call(client))
    except E.RedcapError as exc:
        return (type(exc).__name__, exc.message, exc.status)


def test_in_process_client_matches_the_http_sandbox(sandbox, tmp_path):
    seed(tmp_path / "sb-data", longitudinal_project(tmp_path / "sb-src"))
    sb = sandbox("--token", "A" * 32)
    http = HttpClient(sb.url, "A" * 32, rate_limit=None)
    inproc = InProcessClient.from_project(longitudinal_project(tmp_path / "ip-src"), tmp_path / "ip-store")
    try:
        for label, call in script(tmp_path):
            assert outcome(call, inproc) == outcome(call, http), label
    finally:
        http.close()
