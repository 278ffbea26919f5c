"""The project loaders: REDCap project XML, JSON directories and the bundled demo.

File bytes are checked against an independent oracle (a regex over the XML plus
``base64``), names against the fixtures' deliberately nasty values, and every
malformed input must fail with a ``ValueError`` that names the file and the fault.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import struct
import zlib
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

from redcapfs.sandbox.loaders import METADATA_KEYS, demo_path, load_project
from redcapfs.sandbox.odm import AttributeNewlineEscaper
from redcapfs.sandbox.project import ProjectDef

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
CLASSIC_XML = DATA / "classic-project.xml"
LONG_XML = DATA / "longitudinal-project.xml"


def load(path, tmp_path: Path) -> ProjectDef:
    return load_project(path, str(tmp_path / "work"))


def xml_files(path: Path) -> dict[str, bytes]:
    """Oracle: DocName → decoded bytes, straight from the XML text."""
    text = path.read_text(encoding="utf-8")
    pattern = r'<ItemDataBase64Binary [^>]*redcap:DocName="([^"]*)"[^>]*><!\[CDATA\[([^\]]*)\]\]>'
    unescape = {"&quot;": '"', "&amp;": "&", "&lt;": "<", "&gt;": ">", "&#039;": "'"}
    out = {}
    for name, data in re.findall(pattern, text):
        for ent, char in unescape.items():
            name = name.replace(ent, char)
        out[name] = base64.b64decode(data)
    return out


def field(project: ProjectDef, name: str) -> dict:
    return next(r for r in project.metadata if r["field_name"] == name)


# ------------------------------------------------------------- classic XML


def test_classic_xml_structure(tmp_path: Path) -> None:
    p = load(CLASSIC_XML, tmp_path)
    assert not p.longitudinal and p.arms == [] and p.events == [] and p.form_event_mapping == []
    assert p.info["project_title"] == "redcapfs fixture: classic with files"
    assert p.info["is_longitudinal"] == 0 and p.info["has_repeating_instruments_or_events"] == 1
    assert p.info["record_autonumbering_enabled"] == 1
    assert [r["field_name"] for r in p.metadata] == [
        "record_id", "name_first", "dob", "sex", "race", "height", "consent_file", "signature",
        "visit_date", "visit_note", "visit_attachment"]
    assert all(list(r) == list(METADATA_KEYS) for r in p.metadata)
    assert p.record_id_field == "record_id"
    assert p.instruments == [{"instrument_name": "demographics", "instrument_label": "Demographics"},
                             {"instrument_name": "visit_log", "instrument_label": "Visit Log"}]
    assert p.repeating == [{"form_name": "visit_log", "custom_form_label": "[visit_date]"}]


def test_classic_xml_field_attributes(tmp_path: Path) -> None:
    p = load(CLASSIC_XML, tmp_path)
    assert field(p, "signature")["field_type"] == "file"
    assert field(p, "signature")["text_validation_type_or_show_slider_number"] == "signature"
    assert field(p, "consent_file")["text_validation_type_or_show_slider_number"] == ""
    assert field(p, "consent_file")["field_annotation"] == "@HIDDEN-SURVEY"
    race = field(p, "race")
    assert race["field_type"] == "checkbox"
    assert race["select_choices_or_calculations"] == "1, Asian | 2, White | 98, Other / unknown"
    assert field(p, "sex")["select_choices_or_calculations"] == "0, Female | 1, Male"
    name = field(p, "name_first")
    assert (name["section_header"], name["identifier"], name["required_field"]) == ("Contact Information", "y", "y")
    height = field(p, "height")
    assert (height["text_validation_min"], height["text_validation_max"]) == ("130", "215")
    assert height["field_label"] == "<b>Height</b> (cm)"
    assert height["branching_logic"] == "[sex] = '1'"
    assert field(p, "dob")["field_note"] == "Y-M-D"


def test_classic_xml_records(tmp_path: Path) -> None:
    p = load(CLASSIC_XML, tmp_path)
    assert [r["record_id"] for r in p.records] == ["1", "1", "1", "2", "2", "A 3/ü"]
    base = p.records[0]
    assert base["redcap_repeat_instrument"] == "" and base["redcap_repeat_instance"] == ""
    assert base["race___1"] == "1" and base["race___98"] == "1" and base["demographics_complete"] == "2"
    assert base["consent_file"] == "consent_1.pdf"
    assert "redcap_data_access_group" not in base and "redcap_event_name" not in base
    first_visit = p.records[1]
    assert first_visit["redcap_repeat_instrument"] == "visit_log" and first_visit["redcap_repeat_instance"] == 1
    assert first_visit["visit_note"] == "First visit.\nSecond line\twith tab."  # line breaks in attributes survive
    assert "name_first" not in first_visit


def test_classic_xml_files_byte_exact(tmp_path: Path) -> None:
    p = load(CLASSIC_XML, tmp_path)
    oracle = xml_files(CLASSIC_XML)
    assert sorted(f.name for f in p.files) == sorted(oracle)
    for f in p.files:
        assert f.event is None
        assert Path(f.source).read_bytes() == oracle[f.name], f.name
        assert Path(f.source).parent == tmp_path / "work"
    by_name = {f.name: f for f in p.files}
    assert by_name['résumé; "final".pdf'].record == "A 3/ü"
    assert by_name["photo 2024-03-01.png"].repeat_instance == 2
    assert by_name["photo 2024-03-01.png"].field == "visit_attachment"
    assert by_name["notes – äöü.txt"].mime == "text/plain"
    assert Path(by_name["consent_1.pdf"].source).read_bytes().startswith(b"%PDF-1.4")


# -------------------------------------------------------- longitudinal XML


def test_longitudinal_xml_structure(tmp_path: Path) -> None:
    p = load(LONG_XML, tmp_path)
    assert p.longitudinal and p.info["is_longitudinal"] == 1
    assert p.record_id_field == "study_id"
    assert p.arms == [{"arm_num": 1, "name": "Treatment"}, {"arm_num": 2, "name": "Control"}]
    assert [(e["unique_event_name"], e["arm_num"]) for e in p.events] == [
        ("enrollment_arm_1", 1), ("visit_1_arm_1", 1), ("visit_2_arm_1", 1), ("enrollment_arm_2", 2),
        ("followup_arm_2", 2)]
    assert all(set(e) == {"event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"}
               for e in p.events)
    assert len({e["event_id"] for e in p.events}) == 5
    assert p.events[1]["event_name"] == "Visit 1" and p.events[4]["custom_event_label"] == "[fu_date]"
    assert {"arm_num": 1, "unique_event_name": "visit_1_arm_1", "form": "adverse_events"} in p.form_event_mapping
    assert len(p.form_event_mapping) == 6
    assert p.repeating == [
        {"event_name": "visit_1_arm_1", "form_name": "adverse_events", "custom_form_label": "[ae_term]"},
        {"event_name": "followup_arm_2", "form_name": "", "custom_form_label": ""}]
    assert field(p, "fu_consent_sig")["text_validation_type_or_show_slider_number"] == "signature"


def test_longitudinal_xml_records_and_files(tmp_path: Path) -> None:
    p = load(LONG_XML, tmp_path)
    followups = [r for r in p.records if r["redcap_event_name"] == "followup_arm_2"]
    assert [(r["redcap_repeat_instrument"], r["redcap_repeat_instance"]) for r in followups] == [
        ("", 1), ("", 2), ("", 3)]
    aes = [r for r in p.records if r["redcap_repeat_instrument"] == "adverse_events"]
    assert [r["ae_term"] for r in aes] == ["Headache", "Rash"]
    arm_of = {e["unique_event_name"]: e["arm_num"] for e in p.events}
    arms = {}
    for r in p.records:
        arms.setdefault(r["study_id"], set()).add(arm_of[r["redcap_event_name"]])
    assert arms == {"101": {1}, "102/b": {1}, "201": {2}}
    oracle = xml_files(LONG_XML)
    slots = {(f.record, f.event, f.field, f.repeat_instance): f for f in p.files}
    assert set(slots) == {
        ("101", "enrollment_arm_1", "photo", 1), ("101", "visit_1_arm_1", "scan", 1),
        ("101", "visit_1_arm_1", "ae_doc", 2), ("201", "followup_arm_2", "fu_consent_sig", 1),
        ("201", "followup_arm_2", "fu_report", 1), ("201", "followup_arm_2", "fu_report", 3)}
    for f in p.files:
        assert Path(f.source).read_bytes() == oracle[f.name]


# ----------------------------------------------------------- JSON projects


def test_classic_json(tmp_path: Path) -> None:
    p = load(DATA / "classic-json", tmp_path)
    assert not p.longitudinal and p.info["has_repeating_instruments_or_events"] == 1
    assert [i["instrument_name"] for i in p.instruments] == ["main", "notes"]  # derived from metadata
    assert all(list(r) == list(METADATA_KEYS) for r in p.metadata)
    assert field(p, "signature")["text_validation_type_or_show_slider_number"] == "signature"
    names = {(f.record, f.field, f.repeat_instance): f for f in p.files}
    nasty = names[("a/b c", "report", 1)]
    assert nasty.name == '../escape;"q".txt'
    assert Path(nasty.source).is_absolute() and Path(nasty.source).read_bytes() == b"report for a/b c\n"
    assert names[("1", "signature", 1)].mime == "image/png"  # guessed from the name
    assert names[("1", "note_file", 2)].name == "nöte 2.txt"
    rows = {(r["record_id"], r["redcap_repeat_instance"]): r for r in p.records}
    assert rows[("1", 2)]["note_file"] == "nöte 2.txt"  # file names appear in the record rows
    assert rows[("a/b c", "")]["report"] == '../escape;"q".txt'


def test_longitudinal_json(tmp_path: Path) -> None:
    p = load(DATA / "longitudinal-json", tmp_path)
    assert p.longitudinal and p.info["project_id"] == 9
    assert [e["event_id"] for e in p.events] == [41, 42, 43, 44]  # assigned when absent
    assert {"arm_num": 2, "unique_event_name": "diary_arm_2", "form": "diary"} in p.form_event_mapping
    # an event's plain name in repeatingFormsEvents becomes its unique name
    assert {"event_name": "diary_arm_2", "form_name": "", "custom_form_label": ""} in p.repeating
    assert p.locked == {"Zoë 2"}
    diary = next(f for f in p.files if f.field == "diary_photo")
    assert (diary.record, diary.event, diary.repeat_instance, diary.name) == ("Zoë 2", "diary_arm_2", 2, "日記.png")


# ------------------------------------------------------------------ demo


def _png_ok(data: bytes) -> bool:
    """Signature, every chunk CRC, and IDAT inflating to height × (1 + 3 × width) bytes."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            return False
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return size is not None and len(zlib.decompress(idat)) == size[1] * (1 + 3 * size[0])


def _pdf_ok(data: bytes) -> bool:
    """Header, trailer, and every xref offset pointing at its ``N 0 obj``."""
    if not data.startswith(b"%PDF-") or not data.rstrip().endswith(b"%%EOF"):
        return False
    startxref = int(data[data.rindex(b"startxref") + 9:].split()[0])
    if not data[startxref:].startswith(b"xref"):
        return False
    lines = data[startxref:].split(b"\n")
    count = int(lines[1].split()[1])
    for num in range(1, count):
        offset = int(lines[2 + num].split()[0])
        if not data[offset:].startswith(b"%d 0 obj" % num):
            return False
    return True


def test_demo_structure(tmp_path: Path) -> None:
    p = load(None, tmp_path)
    assert p.longitudinal and [a["arm_num"] for a in p.arms] == [1, 2]
    assert [e["unique_event_name"] for e in p.events] == [
        "screening_arm_1", "baseline_arm_1", "week_4_arm_1", "week_12_arm_1", "baseline_arm_2",
        "follow_up_arm_2", "visit_arm_2"]
    assert {"event_name": "visit_arm_2", "form_name": "", "custom_form_label": ""} in p.repeating
    assert any(r["form_name"] == "adverse_event" for r in p.repeating)
    assert field(p, "consent_signature")["text_validation_type_or_show_slider_number"] == "signature"
    files = {r["field_name"] for r in p.metadata if r["field_type"] == "file"}
    assert files == {"consent_form", "consent_signature", "mri_upload", "radiology_report", "ae_photo", "ecg_file"}
    records = list(dict.fromkeys(r["record_id"] for r in p.records))
    assert len(records) == 20
    for nasty in ("12/3", "Zoë-07", "-007", "1001.A", "site 2 patient 9"):
        assert nasty in records
    arm_of = {e["unique_event_name"]: e["arm_num"] for e in p.events}
    arms: dict[str, set[int]] = {}
    for r in p.records:
        arms.setdefault(r["record_id"], set()).add(arm_of[r["redcap_event_name"]])
    assert all(len(a) == 1 for a in arms.values()), arms
    assert any(f.event == "visit_arm_2" and f.repeat_instance > 1 for f in p.files)
    assert any(f.field == "ae_photo" and f.repeat_instance > 1 for f in p.files)
    assert p.locked == {"1006"}


def test_demo_files_are_real_and_small(tmp_path: Path) -> None:
    p = load(None, tmp_path)
    total = 0
    for f in p.files:
        data = Path(f.source).read_bytes()
        total += len(data)
        if f.mime == "application/pdf":
            assert _pdf_ok(data), f.name
        elif f.mime == "image/png":
            assert _png_ok(data), f.name
        else:
            assert f.mime == "text/plain" and data.decode("utf-8")
    assert total < 1_000_000
    names = [f.name for f in p.files]
    assert any(len(n) >= 190 for n in names)
    assert any('"' in n for n in names) and any(";" in n for n in names)
    assert any(not n.isascii() for n in names) and any(" " in n for n in names)


def test_demo_generator_is_deterministic(tmp_path: Path) -> None:
    script = REPO / "scripts" / "make-demo-project"
    spec = importlib.util.spec_from_loader("make_demo", SourceFileLoader("make_demo", str(script)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.build(tmp_path / "demo")
    shipped = demo_path()
    produced = sorted(q.relative_to(tmp_path / "demo") for q in (tmp_path / "demo").rglob("*") if q.is_file())
    assert produced == sorted(q.relative_to(shipped) for q in shipped.rglob("*") if q.is_file())
    for rel in produced:
        assert (tmp_path / "demo" / rel).read_bytes() == (shipped / rel).read_bytes(), rel


# ------------------------------------------------------------ the streaming


def test_newline_escaper_is_chunking_independent() -> None:
    doc = (b'<?xml version="1.0"?>\n<a x="l1\nl2\r\nl3\tt" y=\'q\n\'>text\nkept<![CDATA[a"b\n]]>'
           b'<!-- c"\n --><b z="\r"/></a>')
    whole = AttributeNewlineEscaper().feed(doc, final=True)
    assert b'x="l1&#10;l2&#10;l3&#9;t"' in whole and b"y='q&#10;'" in whole and b'z="&#13;"' in whole
    assert b"text\nkept<![CDATA[a\"b\n]]><!-- c\"\n -->" in whole
    for size in (1, 2, 3, 5, 7):
        esc = AttributeNewlineEscaper()
        parts = [esc.feed(doc[i:i + size]) for i in range(0, len(doc), size)]
        assert b"".join(parts) + esc.feed(b"", final=True) == whole, size


def test_large_inline_file_streams_to_disk(tmp_path: Path) -> None:
    """A 3 MB file (not a multiple of the read chunk, base64 with line breaks) decodes byte-exact."""
    blob = bytes((i * 7 + i // 251) % 256 for i in range(3 * 1024 * 1024 + 17))
    encoded = base64.encodebytes(blob).decode()  # 76-character lines, as some tools write
    text = CLASSIC_XML.read_text(encoding="utf-8")
    start = text.index('<ItemDataBase64Binary ItemOID="consent_file" redcap:DocName="consent_1.pdf"')
    end = text.index("</ItemDataBase64Binary>", start)
    head = '<ItemDataBase64Binary ItemOID="consent_file" redcap:DocName="big.bin" redcap:MimeType="application/octet-stream">'
    path = tmp_path / "big.xml"
    path.write_text(text[:start] + head + "<![CDATA[" + encoded + "]]>" + text[end:], encoding="utf-8")
    p = load(path, tmp_path)
    big = next(f for f in p.files if f.name == "big.bin")
    assert Path(big.source).read_bytes() == blob


# ---------------------------------------------------------------- errors


def _replace(src: Path, dst: Path, old: str, new: str) -> Path:
    text = src.read_text(encoding="utf-8")
    assert old in text, old
    dst.write_text(text.replace(old, new, 1), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("</ClinicalData>", "</ClinicalDataX>", "not well-formed"),
        ('<ItemData ItemOID="dob"', '<ItemData ItemOID="no_such_field"', "unknown field 'no_such_field'"),
        ("<![CDATA[", "<![CDATA[*!", "invalid base64"),
        ('redcap:RecordIdField="record_id">', 'redcap:RecordIdField="nope">', "RecordIdField 'nope'"),
        ('<ItemDataBase64Binary ItemOID="consent_file"', '<ItemDataBase64Binary ItemOID="dob"', "not a file field"),
        ('FormRepeatKey="2"', 'FormRepeatKey="zwei"', "repeat key"),
        ('<ItemGroupRef ItemGroupOID="visit_log.visit_date"', '<ItemGroupRef ItemGroupOID="visit_log.gone"',
         "unknown ItemGroupDef"),
    ],
)
def test_malformed_xml(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _replace(CLASSIC_XML, tmp_path / "bad.xml", old, new)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load(path, tmp_path)
    assert str(path) in str(info.value)


def test_xml_bombs_and_entities_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE ODM [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>\n'
                    "<ODM><Study/></ODM>")
    with pytest.raises(ValueError, match="DTDs"):
        load(bomb, tmp_path)


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty document|not well-formed"),
        ("<?xml version='1.0'?><hash><error>x</error></hash>", "root element is <hash>"),
        ("<ODM></ODM>", "no Study"),
        ("<ODM><ClinicalData/></ODM>", "ClinicalData before Study"),
    ],
)
def test_not_project_xml(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "p.xml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load(path, tmp_path)


def test_other_paths(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        load(tmp_path / "missing", tmp_path)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="not a project XML"):
        load(other, tmp_path)
    sniffed = tmp_path / "export.odm"
    sniffed.write_bytes(b"\xef\xbb\xbf" + CLASSIC_XML.read_bytes())
    assert load(sniffed, tmp_path).record_id_field == "record_id"


def _copy_json(tmp_path: Path, name: str) -> Path:
    import shutil

    dst = tmp_path / name
    shutil.copytree(DATA / name, dst)
    return dst


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data = change(data) or data
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    "target,change,message",
    [
        ("metadata.json", lambda d: d[1].update(field_type="widget"), "unknown field_type 'widget'"),
        ("metadata.json", lambda d: d[1].update(field_name="Bad Name"), "not a valid REDCap variable name"),
        ("metadata.json", lambda d: d[1].update(colour="red"), "unknown keys colour"),
        ("records.json", lambda d: d[0].update(nope="1"), "unknown column 'nope'"),
        ("files/manifest.json", lambda d: d[0].update(field="title"), "'title' is not a file field"),
        ("files/manifest.json", lambda d: d[0].update(path="../metadata.json"), "must stay inside files/"),
        ("files/manifest.json", lambda d: d[0].update(path="missing.pdf"), "does not exist"),
        ("files/manifest.json", lambda d: d[0].update(record="ghost"), "no data"),
        ("files/manifest.json", lambda d: d[0].update(repeat_instance=2), "does not repeat"),
        ("files/manifest.json", lambda d: d[0].update(event="event_1_arm_1"), "classic project has no events"),
        ("files/manifest.json", lambda d: d.append(dict(d[0])), "two files for the same slot"),
    ],
)
def test_malformed_classic_json(tmp_path: Path, target: str, change, message: str) -> None:
    root = _copy_json(tmp_path, "classic-json")
    _edit(root / target, change)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load(root, tmp_path)
    assert str(root) in str(info.value)


@pytest.mark.parametrize(
    "target,change,message",
    [
        ("files/manifest.json", lambda d: d[0].update(event="nowhere"), "unknown or missing event 'nowhere'"),
        ("files/manifest.json", lambda d: d[0].__delitem__("event"), "'event' is required"),
        ("files/manifest.json", lambda d: d[0].update(event="month_1_arm_1"), "not used in event"),
        ("records.json", lambda d: d[0].update(redcap_event_name="x"), "unknown or missing redcap_event_name"),
        ("records.json", lambda d: d[1].update(redcap_repeat_instrument="intake"), "does not repeat"),
        ("events.json", lambda d: d[0].update(arm_num=7), "arm 7 is not in arms"),
        ("formEventMapping.json", lambda d: d[0].update(form="nope"), "unknown form 'nope'"),
        ("locked.json", lambda d: ["nobody"], "locked record 'nobody'"),
    ],
)
def test_malformed_longitudinal_json(tmp_path: Path, target: str, change, message: str) -> None:
    root = _copy_json(tmp_path, "longitudinal-json")
    _edit(root / target, change)
    with pytest.raises(ValueError, match=re.escape(message)):
        load(root, tmp_path)


def test_json_syntax_and_missing_metadata(tmp_path: Path) -> None:
    root = _copy_json(tmp_path, "classic-json")
    (root / "records.json").write_text("[{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"records\.json: invalid JSON"):
        load(root, tmp_path)
    (root / "metadata.json").unlink()
    with pytest.raises(ValueError, match=r"metadata\.json: missing"):
        load(root, tmp_path)
