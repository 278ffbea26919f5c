"""Load a project definition for the sandbox: REDCap project XML, a JSON directory, or the demo.

``load_project(path, workdir)`` is the one entry point (the sandbox CLI calls it).
Whatever the input, the result is a :class:`ProjectDef` whose tables hold rows in
the exact JSON shapes REDCap's API exports, so the loaders are the only place
that knows about input formats. Both formats go through :func:`validate_project`
afterwards, so a broken fixture fails at load time with a message that names
the file and the row rather than as a puzzling API answer later.

Formats are described in ``docs/project-formats.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from . import jsondir, odm
from .metarows import (  # noqa: F401  (re-exported: loaders was their first home)
    FIELD_NAME,
    FIELD_TYPES,
    METADATA_KEYS,
    NO_COLUMN_TYPES,
    checkbox_columns,
    data_columns,
    metadata_row,
    unique_event_name,
)
from .project import ProjectDef

PathLike = Union[str, "os.PathLike[str]"]

def demo_path() -> Path:
    """The bundled demo project (a JSON directory shipped inside the package)."""
    try:
        from importlib.resources import files

        candidate = Path(str(files("redcapfs.sandbox") / "demo"))
        if candidate.is_dir():
            return candidate
    except (ImportError, TypeError, ModuleNotFoundError):  # pragma: no cover - odd installs
        pass
    return Path(__file__).resolve().parent / "demo"


def is_project_xml(path: Path) -> bool:
    """An ``.xml`` name, or a file whose first bytes (after a BOM/whitespace) open XML or ODM."""
    if path.suffix.lower() == ".xml":
        return True
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<?xml") or head.startswith(b"<ODM")


def load_project(path: PathLike | None, workdir: str) -> ProjectDef:
    """Load the project at ``path`` (``None`` = the bundled demo).

    A directory is read as a JSON project, a file as REDCap project XML. Inline
    file data is decoded into ``workdir`` (which must exist or is created), and
    the returned ``StoredFile.source`` paths point there or into the project dir.
    Raises ``ValueError`` naming the file and the problem for malformed input.
    """
    Path(workdir).mkdir(parents=True, exist_ok=True)
    source = demo_path() if path is None else Path(path)
    if source.is_dir():
        project = jsondir.load_json_dir(source)
    elif source.is_file():
        if not is_project_xml(source):
            raise ValueError(f"{source}: not a project XML file (expected .xml or an <ODM> document) "
                             "nor a JSON project directory")
        project = odm.load_project_xml(source, Path(workdir))
    else:
        raise ValueError(f"{source}: no such file or directory")
    validate_project(project, str(source))
    return project


# ----------------------------------------------------------------- validation


class _Problems:
    """Collects validation messages so one error lists every problem (up to a limit)."""

    LIMIT = 20

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self) -> None:
        if self.items:
            shown = self.items[: self.LIMIT]
            more = len(self.items) - len(shown)
            tail = f"\n  … and {more} more" if more > 0 else ""
            raise ValueError(f"{self.source}: invalid project:\n  " + "\n  ".join(shown) + tail)


def validate_project(project: ProjectDef, source: str) -> None:
    """Cross-check the tables of ``project``; ``ValueError`` listing every problem found."""
    problems = _Problems(source)
    _check_metadata(project, problems)
    problems.raise_if_any()  # later checks rely on sane metadata
    _check_structure(project, problems)
    _check_records(project, problems)
    _check_files(project, problems)
    records = {str(r.get(project.record_id_field, "")) for r in project.records}
    for name in sorted(project.locked - records):
        problems.add(f"locked record {name!r} does not exist")
    problems.raise_if_any()


def _check_metadata(project: ProjectDef, problems: _Problems) -> None:
    if not project.metadata:
        problems.add("metadata is empty (the first field must be the record-ID field)")
        return
    seen: set[str] = set()
    for i, row in enumerate(project.metadata):
        missing = [k for k in METADATA_KEYS if k not in row]
        name = row.get("field_name", "")
        if missing:
            problems.add(f"metadata row {i} ({name!r}) lacks keys: {', '.join(missing)}")
            continue
        if not FIELD_NAME.match(str(name)):
            problems.add(f"metadata row {i}: field name {name!r} is not a valid REDCap variable name")
        if name in seen:
            problems.add(f"metadata row {i}: field {name!r} is defined twice")
        seen.add(name)
        if row["field_type"] not in FIELD_TYPES:
            problems.add(f"field {name!r}: unknown field_type {row['field_type']!r}")
        if not row["form_name"]:
            problems.add(f"field {name!r}: empty form_name")
    if project.metadata[0].get("field_type") in ("file", "descriptive", "checkbox"):
        problems.add("the first metadata row (the record-ID field) must be a data field")


def _forms(project: ProjectDef) -> list[str]:
    forms = [str(r["instrument_name"]) for r in project.instruments]
    return forms + [f for f in dict.fromkeys(r["form_name"] for r in project.metadata) if f not in forms]


def _check_structure(project: ProjectDef, problems: _Problems) -> None:
    forms = set(_forms(project))
    arms = {int(a["arm_num"]) for a in project.arms}
    events = {e["unique_event_name"]: int(e["arm_num"]) for e in project.events}
    if len(events) != len(project.events):
        problems.add("events: a unique_event_name is used twice")
    for ev in project.events:
        if int(ev["arm_num"]) not in arms:
            problems.add(f"event {ev['unique_event_name']!r}: arm {ev['arm_num']} is not in arms")
    for row in project.form_event_mapping:
        if row["unique_event_name"] not in events:
            problems.add(f"formEventMapping: unknown event {row['unique_event_name']!r}")
        if row["form"] not in forms:
            problems.add(f"formEventMapping: unknown form {row['form']!r}")
    for row in project.repeating:
        form = row.get("form_name") or ""
        if form and form not in forms:
            problems.add(f"repeatingFormsEvents: unknown form {form!r}")
        if project.events and row.get("event_name") not in events:
            problems.add(f"repeatingFormsEvents: unknown event {row.get('event_name')!r}")
        if not project.events and not form:
            problems.add("repeatingFormsEvents: a classic project cannot have a repeating event")
    for row in project.instruments:
        if row["instrument_name"] not in {m["form_name"] for m in project.metadata}:
            problems.add(f"instrument {row['instrument_name']!r} has no fields")


class _Layout:
    """Which (event, form) slots exist and repeat: the rules records and files must obey."""

    def __init__(self, project: ProjectDef) -> None:
        self.longitudinal = bool(project.events)
        self.events = {e["unique_event_name"] for e in project.events}
        self.event_forms: dict[str, set[str]] = {}
        for row in project.form_event_mapping:
            self.event_forms.setdefault(row["unique_event_name"], set()).add(row["form"])
        self.repeating_events = {r.get("event_name", "") for r in project.repeating if not r.get("form_name")}
        self.repeating_forms = {(r.get("event_name", "") if self.longitudinal else "", r["form_name"])
                                for r in project.repeating if r.get("form_name")}
        self.form_of = {r["field_name"]: r["form_name"] for r in project.metadata}

    def form_in_event(self, event: str, form: str) -> bool:
        return not self.longitudinal or form in self.event_forms.get(event, set())

    def repeats(self, event: str, form: str) -> bool:
        return event in self.repeating_events or (event, form) in self.repeating_forms


def _check_records(project: ProjectDef, problems: _Problems) -> None:
    layout = _Layout(project)
    columns = data_columns(project.metadata)
    rid = project.record_id_field
    specials = {"redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
                "redcap_data_access_group"}
    for i, row in enumerate(project.records):
        where = f"record row {i}"
        if not str(row.get(rid, "")):
            problems.add(f"{where}: no value for the record-ID field {rid!r}")
            continue
        where = f"record {row[rid]!r} (row {i})"
        event = str(row.get("redcap_event_name") or "")
        if layout.longitudinal and event not in layout.events:
            problems.add(f"{where}: unknown or missing redcap_event_name {event!r}")
        rform = str(row.get("redcap_repeat_instrument") or "")
        if rform and not layout.repeats(event, rform):
            problems.add(f"{where}: form {rform!r} does not repeat in event {event!r}")
        for col, value in row.items():
            if col in specials or col == rid:
                continue
            if col not in columns:
                problems.add(f"{where}: unknown column {col!r}")
            elif value not in ("", None) and not layout.form_in_event(event, columns[col]):
                problems.add(f"{where}: form {columns[col]!r} (column {col!r}) is not used in event {event!r}")


def _check_files(project: ProjectDef, problems: _Problems) -> None:
    layout = _Layout(project)
    rid = project.record_id_field
    fields = {r["field_name"]: r for r in project.metadata}
    rows = {(str(r.get(rid)), str(r.get("redcap_event_name") or "")) for r in project.records}
    slots: set[tuple[str, str, str, int]] = set()
    for f in project.files:
        where = f"file {f.name!r} (record {f.record!r}, field {f.field!r})"
        row = fields.get(f.field)
        event = f.event or ""
        if row is None or row["field_type"] != "file":
            problems.add(f"{where}: {f.field!r} is not a file field")
            continue
        if layout.longitudinal and event not in layout.events:
            problems.add(f"{where}: unknown or missing event {f.event!r}")
        elif not layout.longitudinal and f.event:
            problems.add(f"{where}: a classic project has no events (got {f.event!r})")
        elif not layout.form_in_event(event, row["form_name"]):
            problems.add(f"{where}: form {row['form_name']!r} is not used in event {event!r}")
        if f.repeat_instance < 1 or (f.repeat_instance > 1 and not layout.repeats(event, row["form_name"])):
            problems.add(f"{where}: repeat_instance {f.repeat_instance} but the form does not repeat there")
        if (f.record, event) not in rows:
            problems.add(f"{where}: the record has no data in event {event!r} (add a record row)")
        if not f.name or "\x00" in f.name:
            problems.add(f"{where}: empty or invalid file name")
        if not os.path.isfile(f.source):
            problems.add(f"{where}: source {f.source} is missing")
        slot = (f.record, event, f.field, f.repeat_instance)
        if slot in slots:
            problems.add(f"{where}: two files for the same slot")
        slots.add(slot)
