"""Read a project stored as a directory of JSON files (the API's own export shapes).

Layout (see ``docs/project-formats.md``)::

    project.json               content=project object            (optional)
    metadata.json              content=metadata rows             (required)
    instruments.json           content=instrument rows           (optional: derived from metadata)
    arms.json                  content=arm rows                  (longitudinal only)
    events.json                content=event rows                (longitudinal only; event_id optional)
    formEventMapping.json      content=formEventMapping rows     (longitudinal only)
    repeatingFormsEvents.json  content=repeatingFormsEvents rows (optional)
    records.json               flat record export rows           (optional)
    locked.json                list of locked record names       (optional)
    files/manifest.json        list of {record, event, field, repeat_instance, name, mime, path}
    files/…                    the files, at the manifest's ``path`` (relative to files/)

Record and file names never become paths: they are only values in the
manifest, so any name (``12/3``, ``Zoë``, ``a;"b``) works, and the path of
each file is whatever safe name the author picked.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path, PurePosixPath
from typing import Any

from .jsondir_team import load_team
from .metarows import METADATA_KEYS, metadata_row
from .project import ProjectDef, StoredFile

FIRST_EVENT_ID = 41
MANIFEST_KEYS = {"record", "event", "field", "repeat_instance", "name", "mime", "path"}


def _read_json(path: Path, expected: type, required: bool = False) -> Any:
    """The parsed file, or ``None`` when it is absent and optional; ``ValueError`` naming it otherwise."""
    if not path.exists():
        if required:
            raise ValueError(f"{path}: missing (a JSON project needs it)")
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8: {exc}") from None
    if not isinstance(data, expected):
        raise ValueError(f"{path}: expected a JSON {expected.__name__ if expected is not dict else 'object'}, "
                         f"got {type(data).__name__}")
    if isinstance(data, list) and not all(isinstance(r, (dict, str)) for r in data):
        raise ValueError(f"{path}: every entry must be an object")
    return data


def _rows(path: Path, required: bool = False) -> list[dict[str, Any]]:
    data = _read_json(path, list, required) or []
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: entry {i} is not an object")
    return data


def _metadata(path: Path) -> list[dict[str, str]]:
    """Rows with all 18 keys; missing keys default to "" so hand-written files stay short."""
    out = []
    for i, row in enumerate(_rows(path, required=True)):
        unknown = set(row) - set(METADATA_KEYS)
        if unknown:
            raise ValueError(f"{path}: row {i}: unknown keys {', '.join(sorted(unknown))}")
        for key in ("field_name", "form_name", "field_type"):
            if not row.get(key):
                raise ValueError(f"{path}: row {i}: {key!r} is required")
        out.append(metadata_row(**row))
    return out


def _instruments(path: Path, metadata: list[dict[str, str]]) -> list[dict[str, str]]:
    rows = _rows(path)
    if rows:
        for i, row in enumerate(rows):
            if not row.get("instrument_name"):
                raise ValueError(f"{path}: row {i}: 'instrument_name' is required")
        return [{"instrument_name": r["instrument_name"],
                 "instrument_label": r.get("instrument_label") or _title(r["instrument_name"])} for r in rows]
    forms = dict.fromkeys(r["form_name"] for r in metadata)
    return [{"instrument_name": f, "instrument_label": _title(f)} for f in forms]


def _title(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


def _events(path: Path) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(_rows(path)):
        for key in ("event_name", "arm_num", "unique_event_name"):
            if row.get(key) in (None, ""):
                raise ValueError(f"{path}: row {i}: {key!r} is required")
        out.append({"event_name": row["event_name"], "arm_num": int(row["arm_num"]),
                    "unique_event_name": row["unique_event_name"],
                    "custom_event_label": row.get("custom_event_label") or "",
                    "event_id": int(row.get("event_id") or FIRST_EVENT_ID + i)})
    return out


def _arms(path: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = _rows(path)
    if not rows and events:
        nums = sorted({e["arm_num"] for e in events})
        return [{"arm_num": n, "name": f"Arm {n}"} for n in nums]
    return [{"arm_num": int(r["arm_num"]), "name": r.get("name") or f"Arm {r['arm_num']}"} for r in rows]


def _mapping(path: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{arm_num, unique_event_name, form}``; ``arm_num`` may be left out (taken from the event)."""
    arm_of = {e["unique_event_name"]: e["arm_num"] for e in events}
    out = []
    for i, row in enumerate(_rows(path)):
        event, form = row.get("unique_event_name"), row.get("form")
        if not event or not form:
            raise ValueError(f"{path}: row {i}: 'unique_event_name' and 'form' are required")
        out.append({"arm_num": int(row.get("arm_num") or arm_of.get(event, 1)), "unique_event_name": event,
                    "form": form})
    return out


def _repeating(path: Path, events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows with ``event_name`` as the unique event name (an event's plain name is accepted too)."""
    by_name = {e["event_name"]: e["unique_event_name"] for e in events}
    out = []
    for row in _rows(path):
        clean = {"form_name": row.get("form_name") or "", "custom_form_label": row.get("custom_form_label") or ""}
        if events:
            event = row.get("event_name") or ""
            clean = {"event_name": by_name.get(event, event), **clean}
        out.append(clean)
    return out


def _safe_relative(base: Path, rel: Any, where: str) -> Path:
    """``base/rel`` for a relative, non-escaping POSIX path; ``ValueError`` otherwise."""
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where}: 'path' must be a non-empty string")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise ValueError(f"{where}: path {rel!r} must stay inside files/")
    target = base.joinpath(*pure.parts)
    if not target.is_file():
        raise ValueError(f"{where}: {target} does not exist")
    return target


def _files(root: Path, longitudinal: bool) -> list[StoredFile]:
    manifest = root / "files" / "manifest.json"
    out = []
    for i, entry in enumerate(_rows(manifest)):
        where = f"{manifest}: entry {i}"
        unknown = set(entry) - MANIFEST_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        for key in ("record", "field", "name"):
            if not isinstance(entry.get(key), str) or not entry.get(key):
                raise ValueError(f"{where}: {key!r} must be a non-empty string")
        if longitudinal and not entry.get("event"):
            raise ValueError(f"{where}: 'event' is required in a longitudinal project")
        instance = entry.get("repeat_instance", 1)
        if not isinstance(instance, int) or isinstance(instance, bool) or instance < 1:
            raise ValueError(f"{where}: 'repeat_instance' must be a positive integer")
        source = _safe_relative(root / "files", entry.get("path"), where)
        name = entry["name"]
        out.append(StoredFile(record=entry["record"], field=entry["field"], name=name, source=str(source),
                              event=entry.get("event") or None, repeat_instance=instance,
                              mime=entry.get("mime") or mimetypes.guess_type(name)[0] or "application/octet-stream"))
    return out


def _fill_file_values(records: list[dict[str, Any]], files: list[StoredFile], rid: str, metadata: list[dict[str, str]],
                      repeating_events: set[str]) -> None:
    """Put each file's name into its record row, as the API's record export shows it."""
    form_of = {r["field_name"]: r["form_name"] for r in metadata}
    index: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in records:
        key = (str(row.get(rid)), str(row.get("redcap_event_name") or ""),
               str(row.get("redcap_repeat_instrument") or ""), _instance(row.get("redcap_repeat_instance")))
        index[key] = row
    for f in files:
        event = f.event or ""
        for form in (form_of.get(f.field, ""), ""):
            inst = f.repeat_instance if (form or event in repeating_events) else 0
            found = index.get((f.record, event, form, inst))
            if found is not None:
                found[f.field] = f.name
                break


def _instance(raw: Any) -> int:
    text = str(raw if raw is not None else "").strip()
    return int(text) if text.isdigit() else 0


def load_json_dir(root: Path) -> ProjectDef:
    """Read the JSON project in ``root`` (validation of cross-references is the caller's)."""
    root = root.resolve()  # StoredFile.source must not depend on the working directory
    info = _read_json(root / "project.json", dict) or {}
    metadata = _metadata(root / "metadata.json")
    events = _events(root / "events.json")
    repeating = _repeating(root / "repeatingFormsEvents.json", events)
    info = {"project_id": 1, "project_title": root.name, **info,
            "is_longitudinal": int(bool(events)), "has_repeating_instruments_or_events": int(bool(repeating))}
    records = _rows(root / "records.json")
    files = _files(root, bool(events))
    repeating_events = {r.get("event_name", "") for r in repeating if not r["form_name"]}
    _fill_file_values(records, files, metadata[0]["field_name"], metadata, repeating_events)
    locked: list[Any] | None = _read_json(root / "locked.json", list)
    if locked is not None and not all(isinstance(x, str) for x in locked):
        raise ValueError(f"{root / 'locked.json'}: must be a list of record names (strings)")
    project = ProjectDef(
        info=info,
        metadata=metadata,
        instruments=_instruments(root / "instruments.json", metadata),
        arms=_arms(root / "arms.json", events),
        events=events,
        form_event_mapping=_mapping(root / "formEventMapping.json", events),
        repeating=repeating,
        records=records,
        files=files,
        locked=set(locked or []),
    )
    load_team(root, project, _rows)  # users.json, dags.json, repository/… (all optional)
    return project
