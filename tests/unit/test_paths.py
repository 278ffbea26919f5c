"""PathModel: parse and path_of for classic and longitudinal projects, and every NotFound case."""

from __future__ import annotations

import pytest

from redcapfs.errors import InvalidArgument, NameTooLong, NotFound
from redcapfs.names import Resolver, encode, is_shortened
from redcapfs.paths import PathModel, PathRef
from redcapfs.shape import Slot
from tests.unit.test_shape import classic, longitudinal

LONG_RECORD = "R" * 300


@pytest.fixture
def cpaths() -> PathModel:
    return PathModel(classic())


@pytest.fixture
def lpaths() -> PathModel:
    return PathModel(longitudinal())


CLASSIC_CASES = [
    ("/", PathRef("root")),
    ("/1", PathRef("record", record="1")),
    ("/a%2Fb", PathRef("record", record="a/b")),
    ("/%EMPTY", PathRef("record", record="")),
    ("/1/consent_pdf", PathRef("field", "1", None, "consent_pdf")),
    ("/1/consent_pdf/consent.pdf", PathRef("file", "1", None, "consent_pdf", None, "consent.pdf")),
    ("/1/consent_pdf/..%2Fx", PathRef("file", "1", None, "consent_pdf", None, "../x")),
    ("/1/consent_pdf/%2E%2E", PathRef("file", "1", None, "consent_pdf", None, "..")),
    ("/1/participant_sig/sig.png", PathRef("file", "1", None, "participant_sig", None, "sig.png")),
    ("/1/visit_photo", PathRef("field", "1", None, "visit_photo", repeats=True)),
    ("/1/visit_photo/2", PathRef("instance", "1", None, "visit_photo", 2, repeats=True)),
    ("/1/visit_photo/12/knee.jpg", PathRef("file", "1", None, "visit_photo", 12, "knee.jpg", repeats=True)),
]

LONG_CASES = [
    ("/", PathRef("root")),
    ("/1001", PathRef("record", record="1001")),
    ("/1001/baseline_arm_1", PathRef("event", "1001", "baseline_arm_1")),
    ("/1001/week_1_arm_2", PathRef("event", "1001", "week_1_arm_2")),  # arm membership is the index's job
    ("/1001/baseline_arm_1/consent_pdf", PathRef("field", "1001", "baseline_arm_1", "consent_pdf")),
    ("/1001/baseline_arm_1/consent_pdf/c.pdf",
     PathRef("file", "1001", "baseline_arm_1", "consent_pdf", None, "c.pdf")),
    ("/1001/visit_1_arm_1/lab_report/1", PathRef("instance", "1001", "visit_1_arm_1", "lab_report", 1, repeats=True)),
    ("/1001/visit_1_arm_1/lab_report/3/cbc 50%.pdf",
     PathRef("file", "1001", "visit_1_arm_1", "lab_report", 3, "cbc 50%.pdf", repeats=True)),
    ("/1001/followup_arm_1/scan/2/mri.dcm", PathRef("file", "1001", "followup_arm_1", "scan", 2, "mri.dcm", repeats=True)),
    ("/1001/week_1_arm_2/lab_report/x.pdf", PathRef("file", "1001", "week_1_arm_2", "lab_report", None, "x.pdf")),
]


@pytest.mark.parametrize("path, ref", CLASSIC_CASES)
def test_classic_round_trip(cpaths: PathModel, path: str, ref: PathRef) -> None:
    assert cpaths.parse(path) == ref
    assert cpaths.path_of(ref) == path


@pytest.mark.parametrize("path, ref", LONG_CASES)
def test_longitudinal_round_trip(lpaths: PathModel, path: str, ref: PathRef) -> None:
    assert lpaths.parse(path) == ref
    assert lpaths.path_of(ref) == path


def test_trailing_slash_is_accepted(lpaths: PathModel) -> None:
    assert lpaths.parse("/1001/baseline_arm_1/") == PathRef("event", "1001", "baseline_arm_1")


def test_slots(lpaths: PathModel) -> None:
    assert lpaths.parse("/1/baseline_arm_1/consent_pdf").slot() == Slot("1", "baseline_arm_1", "consent_pdf", None)
    assert lpaths.parse("/1/baseline_arm_1/consent_pdf/a").slot() == Slot("1", "baseline_arm_1", "consent_pdf", None)
    assert lpaths.parse("/1/visit_1_arm_1/lab_report/4").slot() == Slot("1", "visit_1_arm_1", "lab_report", 4)
    assert lpaths.parse("/1/followup_arm_1/scan/2/a").slot() == Slot("1", "followup_arm_1", "scan", 2)
    for path in ["/", "/1", "/1/baseline_arm_1", "/1/visit_1_arm_1/lab_report"]:
        with pytest.raises(InvalidArgument):
            lpaths.parse(path).slot()


def test_shortened_components_are_kept_for_the_resolver(cpaths: PathModel) -> None:
    long_file = "f" * 400 + ".pdf"
    path = f"/{encode(LONG_RECORD)}/consent_pdf/{encode(long_file)}"
    ref = cpaths.parse(path)
    assert Resolver(["1", LONG_RECORD]).resolve(ref.record_component) == LONG_RECORD
    assert Resolver([long_file]).resolve(ref.name_component) == long_file
    real = PathRef("file", LONG_RECORD, None, "consent_pdf", None, long_file)
    assert cpaths.path_of(real) == path


@pytest.mark.parametrize("path", [
    "/1/no_such_field",
    "/1/first_name",  # not a file field
    "/1/CONSENT_PDF",
    "/1/consent_pdf/a/b",  # too deep
    "/1/visit_photo/0",
    "/1/visit_photo/01",
    "/1/visit_photo/-1",
    "/1/visit_photo/+1",
    "/1/visit_photo/1.0",
    "/1/visit_photo/x",
    "/1/visit_photo/ 1",
    "/1/visit_photo/99999999999",
    "/1/visit_photo/1/a/b",
    "/1//consent_pdf",
    "/1/./consent_pdf",
    "/1/../1",
])
def test_classic_not_found(cpaths: PathModel, path: str) -> None:
    with pytest.raises(NotFound):
        cpaths.parse(path)


@pytest.mark.parametrize("path", [
    "/1001/nope_arm_1",
    "/1001/Baseline",  # the display name is not the unique event name
    "/1001/consent_pdf",  # a field where an event belongs
    "/1001/baseline_arm_1/lab_report",  # labs is not designated for baseline
    "/1001/baseline_arm_1/orphan_file",  # form mapped to no event
    "/1001/baseline_arm_1/consent_pdf/1/c.pdf",  # instance level where the slot does not repeat
    "/1001/baseline_arm_1/consent_pdf/c.pdf/more",
    "/1001/week_1_arm_2/lab_report/1/x.pdf",  # labs does not repeat in week 1
    "/1001/visit_1_arm_1/lab_report/01",
    "/1001/visit_1_arm_1/lab_report/0/x",
    "/1001/followup_arm_1/scan/x.dcm",  # repeating event: an instance comes first
    "/1001/followup_arm_1/scan/1/a/b",
])
def test_longitudinal_not_found(lpaths: PathModel, path: str) -> None:
    with pytest.raises(NotFound):
        lpaths.parse(path)


def test_too_long_and_relative(cpaths: PathModel) -> None:
    with pytest.raises(NameTooLong):
        cpaths.parse("/" + "x" * 256)
    with pytest.raises(NameTooLong):
        cpaths.parse("/1/consent_pdf/" + "é" * 128)
    with pytest.raises(InvalidArgument):
        cpaths.parse("1/consent_pdf")


def test_surrogates_do_not_crash(cpaths: PathModel) -> None:
    ref = cpaths.parse("/\udc801/consent_pdf/a\udcff.pdf")
    assert ref.record == "\udc801" and ref.name == "a\udcff.pdf"
    cpaths.parse("/1/consent_pdf/" + "\udcff" * 255)  # 255 raw bytes: fits
    with pytest.raises(NameTooLong):
        cpaths.parse("/1/consent_pdf/" + "\udcff" * 256)


@pytest.mark.parametrize("ref", [
    PathRef("record"),
    PathRef("event", "1"),
    PathRef("field", "1", "baseline_arm_1", "lab_report"),
    PathRef("file", "1", "baseline_arm_1", "consent_pdf", 1, "a"),
    PathRef("file", "1", "visit_1_arm_1", "lab_report", None, "a"),
    PathRef("instance", "1", "baseline_arm_1", "consent_pdf"),
    PathRef("file", "1", "baseline_arm_1", "consent_pdf"),
])
def test_path_of_rejects_inconsistent_refs(lpaths: PathModel, ref: PathRef) -> None:
    with pytest.raises(InvalidArgument):
        lpaths.path_of(ref)


def test_parse_of_every_encoded_name_round_trips(cpaths: PathModel) -> None:
    from tests.unit.test_names import RANDOM

    for name in RANDOM[:1000]:
        ref = PathRef("file", name, None, "visit_photo", 7, name, repeats=True)
        path = cpaths.path_of(ref)
        parsed = cpaths.parse(path)
        assert parsed.record_component == parsed.name_component == encode(name)
        if not is_shortened(encode(name)):
            assert parsed == ref
            assert cpaths.path_of(parsed) == path
