"""Each fixture project and the demo, served by a real sandbox process and read back with PyCap.

The expected answers come from the loaders themselves (the ``ProjectDef``), so
these tests pin the contract between loaders and server: what a project file
says is exactly what REDCap's API (as PyCap sees it) answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from redcapfs.sandbox.loaders import load_project
from redcapfs.sandbox.project import ProjectDef

redcap = pytest.importorskip("redcap")

DATA = Path(__file__).resolve().parents[1] / "data"
PROJECTS = {
    "classic-xml": DATA / "classic-project.xml",
    "longitudinal-xml": DATA / "longitudinal-project.xml",
    "classic-json": DATA / "classic-json",
    "longitudinal-json": DATA / "longitudinal-json",
    "demo": None,
}


def _key(row: dict[str, Any], rid: str) -> tuple[str, str, str, str]:
    return (str(row[rid]), str(row.get("redcap_event_name") or ""), str(row.get("redcap_repeat_instrument") or ""),
            str(row.get("redcap_repeat_instance") or ""))


@pytest.fixture(params=list(PROJECTS), ids=list(PROJECTS))
def served(request, sandbox, tmp_path: Path) -> tuple[ProjectDef, Any]:
    path: Path | None = PROJECTS[request.param]
    expected = load_project(path, str(tmp_path / "expected"))
    sb = sandbox(project=path) if path is not None else sandbox()
    return expected, redcap.Project(sb.url, sb.token)


def test_structure(served) -> None:
    expected, proj = served
    info = proj.export_project_info()
    assert info["project_title"] == expected.info["project_title"]
    assert int(info["is_longitudinal"]) == int(expected.longitudinal)
    assert int(info["has_repeating_instruments_or_events"]) == int(bool(expected.repeating))
    assert proj.export_metadata() == expected.metadata
    assert proj.export_metadata()[0]["field_name"] == expected.record_id_field
    assert proj.export_instruments() == expected.instruments
    assert proj.export_repeating_instruments_events() == expected.repeating


def test_events_and_arms(served) -> None:
    expected, proj = served
    if expected.longitudinal:
        assert proj.export_arms() == expected.arms
        assert proj.export_events() == expected.events
        assert proj.export_instrument_event_mappings() == expected.form_event_mapping
    else:
        with pytest.raises(redcap.RedcapError, match="classic projects"):
            proj.export_arms()
        with pytest.raises(redcap.RedcapError, match="classic projects"):
            proj.export_events()


def test_records(served) -> None:
    expected, proj = served
    rid = expected.record_id_field
    rows = proj.export_records()
    got = {_key(r, rid): r for r in rows}
    assert set(got) == {_key(r, rid) for r in expected.records}
    for row in expected.records:
        answer = got[_key(row, rid)]
        for col, value in row.items():
            if col.startswith("redcap_"):
                continue
            assert answer[col] == value, (row[rid], col)
    if expected.longitudinal:  # every record lives in exactly one arm's events
        arm_of = {e["unique_event_name"]: e["arm_num"] for e in expected.events}
        arms: dict[str, set[int]] = {}
        for r in rows:
            arms.setdefault(r[rid], set()).add(arm_of[r["redcap_event_name"]])
        assert all(len(a) == 1 for a in arms.values())


def test_files(served) -> None:
    expected, proj = served
    for f in expected.files:
        content, headers = proj.export_file(record=f.record, field=f.field, event=f.event,
                                            repeat_instance=f.repeat_instance)
        assert content == Path(f.source).read_bytes(), (f.record, f.field, f.name)
        if ";" not in f.name and '"' not in f.name:  # PyCap splits the content type naively
            # REDCap sends the name as raw UTF-8; http.client reads header bytes as latin-1
            assert headers["name"].encode("latin-1").decode("utf-8") == f.name


def test_empty_slot(served) -> None:
    expected, proj = served
    filled = {(f.record, f.event, f.field, f.repeat_instance) for f in expected.files}
    rid = expected.record_id_field
    form_of = {r["field_name"]: r["form_name"] for r in expected.metadata}
    for row in expected.records:
        if row.get("redcap_repeat_instrument") or row.get("redcap_repeat_instance"):
            continue
        event = row.get("redcap_event_name") or None
        for name in (r["field_name"] for r in expected.metadata if r["field_type"] == "file"):
            in_event = not expected.longitudinal or any(
                m["unique_event_name"] == event and m["form"] == form_of[name] for m in expected.form_event_mapping)
            repeats = any(r["form_name"] in ("", form_of[name]) and r.get("event_name") == event
                          for r in expected.repeating) if expected.longitudinal else any(
                r["form_name"] == form_of[name] for r in expected.repeating)
            if in_event and not repeats and (row[rid], event, name, 1) not in filled:
                with pytest.raises(redcap.RedcapError, match="There is no file to download"):
                    proj.export_file(record=row[rid], field=name, event=event)
                return
    pytest.skip("no empty non-repeating file slot in this project")
