"""The sandbox server against redcap-api.md, over real HTTP, with PyCap as an independent client.

Each test seeds a data dir with a small known project (``tests/sandbox_projects``)
and starts ``python -m redcapfs.sandbox`` on it through the ``sandbox`` fixture.
Raw ``requests`` calls check what PyCap hides (status codes, error bodies, headers).
"""

from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import redcap
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import classic_project, longitudinal_project, seed

from redcapfs.sandbox.config import SandboxConfig, TokenGrant
from redcapfs.sandbox.server import SandboxServer

FULL = "A" * 32
EXPORT = "B" * 32
NONE = "C" * 32
TOKENS = ["--token", FULL, "--token", f"{EXPORT}:export", "--token", f"{NONE}:none"]
XML_ERR = '<?xml version="1.0" encoding="UTF-8" ?><hash><error>{}</error></hash>'


@pytest.fixture
def start(sandbox, tmp_path):
    """Start a sandbox on a seeded data dir: ``start()`` longitudinal, ``start(classic=True)``."""

    def go(*args: str, classic: bool = False, name: str = "sb"):
        build = classic_project if classic else longitudinal_project
        seed(tmp_path / f"{name}-data", build(tmp_path / f"{name}-src"))
        return sandbox(*TOKENS, *args, name=name)

    return go


def post(sb, token: str = FULL, files: Any = None, **params: Any) -> requests.Response:
    return requests.post(sb.url, data={"token": token, **params}, files=files, timeout=30)


def export(sb, record: str, field: str, **params: Any) -> requests.Response:
    return post(sb, content="file", action="export", record=record, field=field, **params)


def upload(sb, record: str, field: str, name: str, data: bytes, token: str = FULL, **params: Any):
    return post(sb, token, files={"file": (name, io.BytesIO(data))}, content="file", action="import",
                record=record, field=field, **params)


def assert_error(resp: requests.Response, status: int, message: str) -> None:
    """An xml error body (the default returnFormat) with exactly this message."""
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"] == "text/xml"
    assert resp.text == XML_ERR.format(message)


# ------------------------------------------------------------------ basics


def test_startup_prints_url_tokens_ready(start):
    sb = start()
    assert sb.url.startswith("http://127.0.0.1:") and sb.url.endswith("/api/")
    assert sb.tokens == [FULL, EXPORT, NONE]
    assert "ready" in sb.output


def test_methods_and_paths(start):
    sb = start()
    assert requests.get(sb.url, timeout=10).status_code == 501
    assert requests.put(sb.url, data="x", timeout=10).status_code == 501
    other = sb.url.replace("/api/", "/other/")
    assert requests.post(other, data={"token": FULL, "content": "version"}, timeout=10).status_code == 404


def test_in_process_server(tmp_path):
    config = SandboxConfig(tokens=[TokenGrant(FULL)])
    server = SandboxServer.from_project(classic_project(tmp_path / "src"), config=config)
    with server:
        resp = requests.post(server.url, data={"token": FULL, "content": "version"}, timeout=10)
        assert resp.text == "14.5.2"
        data_dir = server.store.data_dir
    assert not data_dir.exists()  # private temp dir removed at stop


# --------------------------------------------------------------- structure


def test_pycap_project_structure(start):
    sb = start("--redcap-version", "13.1.0")
    proj = redcap.Project(sb.url, FULL)
    info = proj.export_project_info()
    assert info["project_id"] == 77 and info["is_longitudinal"] == 1
    assert info["has_repeating_instruments_or_events"] == 1
    assert str(proj.export_version()) == "13.1.0"
    meta = proj.export_metadata()
    assert meta[0]["field_name"] == "record_id"
    assert list(meta[0]) == [
        "field_name", "form_name", "section_header", "field_type", "field_label",
        "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
        "text_validation_min", "text_validation_max", "identifier", "branching_logic", "required_field",
        "custom_alignment", "question_number", "matrix_group_name", "matrix_ranking", "field_annotation"]
    assert [m["field_name"] for m in proj.export_metadata(fields=["ae_doc"])] == ["ae_doc"]
    assert {m["form_name"] for m in proj.export_metadata(forms=["visit"])} == {"visit"}
    assert proj.export_arms() == [{"arm_num": 1, "name": "Arm 1"}, {"arm_num": 2, "name": "Arm 2"}]
    events = proj.export_events()
    assert [e["unique_event_name"] for e in events] == ["baseline_arm_1", "followup_arm_1", "baseline_arm_2"]
    fem = proj.export_instrument_event_mappings()
    assert {"arm_num": 1, "unique_event_name": "followup_arm_1", "form": "visit"} in fem
    rep = proj.export_repeating_instruments_events()
    assert {"event_name": "followup_arm_1", "form_name": "", "custom_form_label": ""} in rep
    assert [i["instrument_name"] for i in proj.export_instruments()] == ["demographics", "visit", "adverse_events"]
    assert proj.is_longitudinal


def test_classic_project_structure_errors(start):
    sb = start(classic=True)
    proj = redcap.Project(sb.url, FULL)
    assert not proj.is_longitudinal
    for content, message in [
        ("arm", "You cannot export arms for classic projects"),
        ("event", "You cannot export events for classic projects"),
        ("formEventMapping", "You cannot export form/event mappings for classic projects"),
    ]:
        resp = post(sb, content=content, format="json")
        assert resp.status_code == 400
        assert resp.json() == {"error": message}
    assert proj.export_repeating_instruments_events() == [{"form_name": "attachments", "custom_form_label": ""}]


# ----------------------------------------------------------------- records


def test_pycap_export_records_layout(start):
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    rows = proj.export_records()
    keys = [(r["record_id"], r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"])
            for r in rows]
    assert keys == [
        ("1", "baseline_arm_1", "", ""),
        ("1", "baseline_arm_1", "adverse_events", 1),
        ("1", "baseline_arm_1", "adverse_events", 2),
        ("1", "followup_arm_1", "", 1),
        ("2", "baseline_arm_1", "", ""),
        ("3", "baseline_arm_2", "", ""),
        ("9", "baseline_arm_1", "", ""),
    ]
    base, ae1, ae2, follow = rows[:4]
    assert base["consent_file"] == "consent.pdf" and base["ae_doc"] == "" and base["name"] == "Alice"
    assert ae2["ae_doc"] == "ae2.txt" and ae2["name"] == "" and ae2["ae_term"] == "Rash"
    assert ae1["ae_doc"] == ""
    assert follow["visit_scan"] == "scan.png" and follow["symptoms___1"] == "0" and follow["symptoms___2"] == "1"
    assert "intro" not in base  # descriptive fields have no column
    assert list(base)[:4] == ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]


def test_pycap_export_records_filters(start):
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    rows = proj.export_records(records=["2", "3"], fields=["name"])
    assert rows == [
        {"record_id": "2", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "",
         "redcap_repeat_instance": "", "name": "Bob"},
        {"record_id": "3", "redcap_event_name": "baseline_arm_2", "redcap_repeat_instrument": "",
         "redcap_repeat_instance": "", "name": "Carol"},
    ]
    rows = proj.export_records(records=["1"], events=["followup_arm_1"], forms=["visit"])
    assert len(rows) == 1 and rows[0]["visit_scan"] == "scan.png" and "name" not in rows[0]
    rows = proj.export_records(records=["1"], fields=["ae_doc"])
    assert [r["ae_doc"] for r in rows if r["redcap_repeat_instrument"]] == ["", "ae2.txt"]


def test_record_export_csv_and_legacy_document(start):
    sb = start("--legacy-document-values")
    resp = post(sb, content="record", format="csv", type="flat", **{"records[0]": "1", "fields[0]": "consent_file"})
    assert resp.status_code == 200
    lines = resp.text.splitlines()
    assert lines[0] == "record_id,redcap_event_name,redcap_repeat_instrument,redcap_repeat_instance,consent_file"
    assert lines[1] == "1,baseline_arm_1,,,[document]"


def test_classic_records_have_no_event_column(start):
    sb = start(classic=True)
    rows = redcap.Project(sb.url, FULL).export_records()
    assert rows[0] == {"record_id": "1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
                       "notes": "first", "doc": "doc.txt", "main_complete": "0", "att": "",
                       "attachments_complete": ""}


def test_record_import_and_next_name(start):
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    assert proj.generate_next_record_name() == "10"
    assert proj.import_records([{"record_id": "20", "redcap_event_name": "baseline_arm_2"}]) == {"count": 1}
    rows = proj.export_records(records=["20"])
    assert [(r["redcap_event_name"], r["redcap_repeat_instance"]) for r in rows] == [("baseline_arm_2", "")]
    ids = proj.import_records([{"record_id": "x", "redcap_event_name": "baseline_arm_1", "name": "Auto"}],
                              force_auto_number=True, return_content="auto_ids")
    assert ids == ["21,x"]
    assert proj.export_records(records=["21"])[0]["demographics_complete"] == "0"
    # overwriteBehavior=normal keeps values that are blank in the import
    proj.import_records([{"record_id": "21", "redcap_event_name": "baseline_arm_1", "name": ""}])
    assert proj.export_records(records=["21"])[0]["name"] == "Auto"
    resp = post(sb, content="record", format="json", type="flat", returnFormat="json",
                data=json.dumps([{"record_id": "30"}]))
    assert resp.status_code == 400 and "redcap_event_name" in resp.json()["error"]
    resp = post(sb, content="record", format="json", returnFormat="json",
                data=json.dumps([{"record_id": "30", "redcap_event_name": "baseline_arm_1", "bogus": "1"}]))
    assert resp.json() == {"error": "The following fields were not found in the project as real data fields: bogus"}
    assert post(sb, content="record", format="json", returnContent="ids",
                data=json.dumps([{"record_id": "31", "redcap_event_name": "baseline_arm_1"}])).json() == ["31"]


# ------------------------------------------------------------------- files


def test_pycap_file_round_trip_with_event_and_instance(start):
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    content, info = proj.export_file("1", "ae_doc", event="baseline_arm_1", repeat_instance=2)
    assert content == b"second adverse event\n"
    assert info == {"name": "ae2.txt", "charset": "UTF-8"}
    assert proj.import_file("2", "ae_doc", "new.bin", io.BytesIO(b"\x00\x01new"), event="baseline_arm_1",
                            repeat_instance=3) == [{}]
    assert proj.export_file("2", "ae_doc", event="baseline_arm_1", repeat_instance=3)[0] == b"\x00\x01new"
    rows = proj.export_records(records=["2"], fields=["ae_doc"])
    assert [(r["redcap_repeat_instrument"], r["redcap_repeat_instance"], r["ae_doc"]) for r in rows] == [
        ("", "", ""), ("adverse_events", 3, "new.bin")]  # the instance was created
    # replace
    proj.import_file("2", "ae_doc", "newer.txt", io.BytesIO(b"v2"), event="baseline_arm_1", repeat_instance=3)
    content, info = proj.export_file("2", "ae_doc", event="baseline_arm_1", repeat_instance=3)
    assert (content, info["name"]) == (b"v2", "newer.txt")
    # a repeating event
    proj.import_file("1", "visit_scan", "scan2.png", io.BytesIO(b"two"), event="followup_arm_1", repeat_instance=2)
    assert proj.export_file("1", "visit_scan", event="followup_arm_1", repeat_instance=2)[0] == b"two"
    assert proj.export_file("1", "visit_scan", event="followup_arm_1", repeat_instance=1)[0] == b"scan bytes"


def test_file_export_headers(start):
    sb = start()
    resp = export(sb, "1", "consent_file", event="baseline_arm_1")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == 'application/pdf; name="consent.pdf";charset=UTF-8'
    assert resp.headers["Content-Length"] == str(len(b"%PDF-1.4 consent"))
    assert "Content-Disposition" not in resp.headers


def test_pycap_delete_sends_no_instance(start):
    """PyCap's delete_file sends no repeat_instance: the server normalises it to 1."""
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    proj.delete_file("1", "ae_doc", event="baseline_arm_1")  # instance 1 is empty: 400, PyCap hides it
    assert sb.calls(content="file", action="delete")[-1]["status"] == 400
    assert export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="2").status_code == 200
    proj.import_file("1", "ae_doc", "one.txt", io.BytesIO(b"1"), event="baseline_arm_1", repeat_instance=1)
    proj.delete_file("1", "ae_doc", event="baseline_arm_1")
    assert sb.calls(content="file", action="delete")[-1]["status"] == 200
    assert_error(export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="1"), 400,
                 "There is no file to download for this record")
    assert export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="2").content == b"second adverse event\n"


def test_delete_file(start):
    sb = start()
    resp = post(sb, content="file", action="delete", record="1", field="consent_file", event="baseline_arm_1")
    assert (resp.status_code, resp.content) == (200, b"")
    resp = post(sb, content="file", action="delete", record="1", field="consent_file", event="baseline_arm_1")
    assert_error(resp, 400, "There is no file to delete for this record")
    rows = redcap.Project(sb.url, FULL).export_records(records=["1"], fields=["consent_file"])
    assert rows[0]["consent_file"] == ""
    # signature fields can be deleted
    resp = post(sb, content="file", action="delete", record="1", field="signature", event="baseline_arm_1")
    assert resp.status_code == 200


def test_silent_instance_forcing(start):
    sb = start()
    for raw in ("5", "abc", "0", "-3", ""):
        resp = export(sb, "1", "consent_file", event="baseline_arm_1", repeat_instance=raw)
        assert resp.content == b"%PDF-1.4 consent", raw
    # not a positive number on a repeating form becomes 1 (empty there)
    assert_error(export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="x"), 400,
                 "There is no file to download for this record")
    # an upload to instance 4 of a non-repeating slot lands in the only slot
    resp = upload(sb, "2", "consent_file", "c.txt", b"c", event="baseline_arm_1", repeat_instance="4")
    assert resp.status_code == 200
    assert export(sb, "2", "consent_file", event="baseline_arm_1").content == b"c"


def test_file_export_check_order(start):
    sb = start()
    assert_error(export(sb, "1", "consent_file"), 400, "invalid event")
    assert_error(export(sb, "1", "nope", event="nope_arm_1"), 400, "invalid event")
    assert_error(export(sb, "3", "nope", event="baseline_arm_1"), 400, 'The record "3" does not exist')
    assert_error(export(sb, "404", "consent_file", event="baseline_arm_1"), 400, 'The record "404" does not exist')
    assert_error(export(sb, "1", "name", event="baseline_arm_1"), 400,
                 "The field 'name' does not exist or is not a 'file' field")
    assert_error(export(sb, "1", "nope", event="baseline_arm_1"), 400,
                 "The field 'nope' does not exist or is not a 'file' field")
    assert_error(export(sb, "2", "consent_file", event="baseline_arm_1"), 400,
                 "There is no file to download for this record")


def test_file_import_errors(start):
    sb = start("--lock", "2", "--max-upload-mb", "1")
    ev = {"event": "baseline_arm_1"}
    assert_error(upload(sb, "1", "consent_file", "x.txt", b"x"), 400, "invalid event")
    assert_error(upload(sb, "77", "consent_file", "x.txt", b"x", **ev), 400,
                 "The record '77' does not exist. It must exist to upload a file")
    assert_error(upload(sb, "1", "name", "x.txt", b"x", **ev), 400,
                 "The field 'name' does not exist or is not a 'file' field")
    assert_error(upload(sb, "1", "signature", "x.png", b"x", **ev), 400,
                 "The field 'signature' is a signature field, which cannot be imported using the API but can only "
                 "be created using the web interface. However, it can be downloaded or deleted using the API.")
    for record in ("2", "9"):  # --lock and ProjectDef.locked
        assert_error(upload(sb, record, "consent_file", "x.txt", b"x", **ev), 400,
                     f'The uploaded file could not be saved because record "{record}" is locked.')
    assert post(sb, content="file", action="delete", record="9", field="consent_file", **ev).status_code == 400
    assert export(sb, "9", "consent_file", **ev).content == b"locked"  # reading a locked record is fine
    assert_error(upload(sb, "1", "consent_file", "big.bin", b"\0" * (1024 * 1024 + 1), **ev), 400,
                 "The uploaded file exceeded the maximum file size limit of 1 MB for File Upload fields.")
    resp = post(sb, content="file", action="import", record="1", field="consent_file", **ev)
    assert_error(resp, 400, "No valid file was uploaded")
    assert export(sb, "1", "consent_file", **ev).content == b"%PDF-1.4 consent"  # nothing changed
    assert list((sb.data_dir / "tmp").iterdir()) == []  # no spool files left behind


def test_upload_name_cleaning_and_raw_names(start):
    sb = start()
    ev = {"event": "baseline_arm_1"}
    # PHP keeps what follows the last backslash; REDCap then decodes entities and drops quotes
    # (redcapfs/redcapnames.py, docs/sandbox.md "Upload names")
    for sent, stored in (("O'Brien\\'s &amp; co.txt", "s & co.txt"), ("O'Brien &amp; co&#39;s.txt", "OBrien & cos.txt"),
                         ('a"b.txt', "a%22b.txt")):
        assert upload(sb, "2", "consent_file", sent, b"n", **ev).status_code == 200
        assert export(sb, "2", "consent_file", fileinfo="1", **ev).json()["name"] == stored, sent
    assert upload(sb, "2", "consent_file", "Ünïcode;x.pdf", b"u", **ev).status_code == 200
    resp = export(sb, "2", "consent_file", **ev)
    raw = resp.headers["Content-Type"].encode("latin-1").decode("utf-8")  # raw UTF-8 bytes, like PHP
    assert raw == 'application/pdf; name="Ünïcode;x.pdf";charset=UTF-8'


def test_fileinfo(start):
    sb = start()
    resp = export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="2", fileinfo="1")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json() == {"size": 21, "name": "ae2.txt"}
    assert sb.calls(content="file")[-1]["fileinfo"] is True


def test_no_fileinfo_and_no_charset(start):
    sb = start("--no-fileinfo", "--no-charset", "--legacy-messages")
    resp = export(sb, "1", "ae_doc", event="baseline_arm_1", repeat_instance="2", fileinfo="1")
    assert resp.content == b"second adverse event\n"
    assert resp.headers["Content-Type"] == 'text/plain; name="ae2.txt"'
    assert_error(export(sb, "404", "ae_doc", event="baseline_arm_1"), 400, "The record '404' does not exist")


def test_classic_file_round_trip(start):
    sb = start(classic=True)
    proj = redcap.Project(sb.url, FULL)
    assert proj.export_file("1", "doc")[0] == b"classic doc\n"
    assert export(sb, "1", "doc", event="whatever").status_code == 200  # event ignored in classic projects
    proj.import_file("2", "att", "a2.txt", io.BytesIO(b"a2"), repeat_instance=2)
    rows = proj.export_records(records=["2"])
    assert [(r["redcap_repeat_instrument"], r["redcap_repeat_instance"], r["att"]) for r in rows] == [
        ("", "", ""), ("attachments", 2, "a2.txt")]
    assert_error(export(sb, "3", "doc"), 400, 'The record "3" does not exist')


# ------------------------------------------------------------------ rights


def test_bad_token_in_every_format(start):
    sb = start()
    message = "You do not have permissions to use the API"
    for token in ("", "D" * 32, "short"):
        assert_error(post(sb, token=token, content="version"), 403, message)
    resp = post(sb, token="D" * 32, content="metadata", format="json")
    assert (resp.status_code, resp.json()) == (403, {"error": message})
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    resp = post(sb, token="D" * 32, content="metadata", format="json", returnFormat="csv")
    assert (resp.status_code, resp.text) == (403, f"ERROR: {message}")
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    # only the first 32 characters are read
    assert post(sb, token=FULL + "EXTRA", content="version").text == "14.5.2"
    with pytest.raises(redcap.RedcapError):
        redcap.Project(sb.url, "D" * 32).export_metadata()


def test_export_only_token_cannot_write(start):
    sb = start()
    message = "You do not have API Import/Update privileges"
    ev = {"event": "baseline_arm_1"}
    assert_error(upload(sb, "1", "consent_file", "x.txt", b"x", token=EXPORT, **ev), 403, message)
    assert_error(post(sb, EXPORT, content="file", action="delete", record="1", field="consent_file", **ev),
                 403, message)
    resp = post(sb, EXPORT, content="record", format="json", returnFormat="json",
                data=json.dumps([{"record_id": "50", "redcap_event_name": "baseline_arm_1"}]))
    assert (resp.status_code, resp.json()) == (403, {"error": message})
    assert export(sb, "1", "consent_file", token=EXPORT, **ev).status_code == 200
    assert redcap.Project(sb.url, EXPORT).export_records(records=["2"])[0]["name"] == "Bob"


def test_no_access_token(start):
    sb = start()
    no_access = ('The API request cannot complete because currently you have "No Access" data export rights. '
                 "Higher level data export rights are required for this operation.")
    assert_error(export(sb, "1", "consent_file", token=NONE, event="baseline_arm_1"), 403, no_access)
    resp = post(sb, NONE, content="record", format="json")
    assert (resp.status_code, resp.json()) == (403, {"error": no_access})
    assert post(sb, NONE, content="metadata", format="json").status_code == 200
    assert_error(upload(sb, "1", "consent_file", "x.txt", b"x", token=NONE, event="baseline_arm_1"), 403,
                 "You do not have API Import/Update privileges")


def test_analysis_cleanup(start):
    sb = start("--analysis-cleanup")
    message = "The file cannot be uploaded because the project is in Analysis/Cleanup status."
    assert_error(upload(sb, "1", "consent_file", "x.txt", b"x", event="baseline_arm_1"), 403, message)
    assert_error(post(sb, content="file", action="delete", record="1", field="consent_file",
                      event="baseline_arm_1"), 403, message)
    assert export(sb, "1", "consent_file", event="baseline_arm_1").status_code == 200


# -------------------------------------------------------------- error shapes


def test_error_body_formats(start):
    sb = start()
    params = {"content": "file", "action": "export", "record": "2", "field": "consent_file",
              "event": "baseline_arm_1"}
    message = "There is no file to download for this record"
    resp = post(sb, returnFormat="json", **params)
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.json() == {"error": message}
    resp = post(sb, returnFormat="csv", **params)
    assert (resp.headers["Content-Type"], resp.text) == ("text/html; charset=utf-8", f"ERROR: {message}")
    assert_error(post(sb, returnFormat="xml", **params), 400, message)
    assert_error(post(sb, **params), 400, message)
    assert post(sb, content="nonsense").status_code == 400


def test_pycap_raises_on_export_errors(start):
    sb = start()
    proj = redcap.Project(sb.url, FULL)
    with pytest.raises(redcap.RedcapError, match="There is no file to download"):
        proj.export_file("2", "consent_file", event="baseline_arm_1")


# --------------------------------------------------------------------- log


def test_log_export(start):
    sb = start()
    upload(sb, "2", "consent_file", "c.txt", b"c", event="baseline_arm_1")
    export(sb, "2", "consent_file", event="baseline_arm_1")
    post(sb, content="file", action="delete", record="2", field="consent_file", event="baseline_arm_1")
    post(sb, content="record", format="json", data=json.dumps([{"record_id": "40", "redcap_event_name":
                                                                "baseline_arm_1"}]))
    rows = post(sb, content="log", format="json").json()
    assert [r["action"] for r in rows] == ["Create record (API) 40", "Delete uploaded document (API)",
                                           "Download file (API)", "Update record (API) 2"]
    assert set(rows[0]) == {"timestamp", "username", "action", "details", "record"}
    assert len(rows[0]["timestamp"]) == 16
    assert "consent_file = '" in rows[3]["details"]
    assert [r["record"] for r in post(sb, content="log", format="json", logtype="export").json()] == ["2"]
    assert len(post(sb, content="log", format="json", record="40").json()) == 1


def _multipart(boundary: str, fields: dict[str, str], name: str, data: bytes) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return b"".join(parts) + head + data + f"\r\n--{boundary}--\r\n".encode()


def test_uploads_whose_bytes_look_like_the_delimiter_are_stored_exactly(start):
    """The sandbox streams a file part past werkzeug's decoder: bytes near or like a delimiter stay data."""
    sb = start(classic=True)
    boundary = "b0undary-7f3a"
    near = [b"--" + boundary.encode() + b"X", b"\r\n--" + boundary.encode() + b"-", b"\r", b"\r\n", b"\n--"]
    chunk = 256 * 1024  # the sandbox's read size: put look-alikes across its edges
    blob = bytearray(random.Random(7).randbytes(3 * chunk))
    for i, piece in enumerate(near):
        at = chunk * (1 + i % 2) - len(piece) // 2 - i
        blob[at:at + len(piece)] = piece
    cases = [bytes(blob), *near, b"", b"plain", bytes(blob) + b"\r\n--" + boundary.encode() + b"Z"]
    fields = {"token": FULL, "content": "file", "action": "import", "record": "1", "field": "doc"}
    for n, data in enumerate(cases):
        body = _multipart(boundary, fields, f"f{n}.bin", data)
        for sent in (body, (body[i:i + 4099] for i in range(0, len(body), 4099))):  # Content-Length, chunked
            resp = requests.post(sb.url, data=sent, timeout=30,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            assert resp.status_code == 200, (n, resp.text)
            assert redcap.Project(sb.url, FULL).export_file("1", "doc")[0] == data, n
