"""A ``ProjectDef`` from a few Python literals: small projects for unit and model tests.

The loaders read projects from files; tests that want a two-field project
written inline use :func:`build_project` instead. Metadata rows may give only
the keys they care about (the rest default to ""), instruments are derived
from the metadata, and file bytes are written under ``workdir`` (never kept
in the ``ProjectDef``). The result is validated like a loaded project, so a
broken fixture fails here with a message rather than later as an odd answer.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .loaders import validate_project
from .metarows import metadata_row
from .project import ProjectDef, StoredFile

#: ``(record, event or None, field, repeat_instance) -> (name, bytes)``
FileTable = Mapping[tuple[str, str | None, str, int], tuple[str, bytes]]


def build_project(
    workdir: str | Path,
    *,
    metadata: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]] = (),
    files: FileTable | None = None,
    repeating: Sequence[Mapping[str, Any]] = (),
    arms: Sequence[Mapping[str, Any]] = (),
    events: Sequence[Mapping[str, Any]] = (),
    mapping: Sequence[Mapping[str, Any]] = (),
    instruments: Sequence[Mapping[str, Any]] | None = None,
    info: Mapping[str, Any] | None = None,
    locked: Iterable[str] = (),
) -> ProjectDef:
    """A validated project; ``ValueError`` lists what is wrong with the tables."""
    rows = [metadata_row(**dict(r)) for r in metadata]
    if not rows:
        raise ValueError("metadata must hold at least the record-ID field")
    project = ProjectDef(
        info={"project_id": 1, "project_title": "In-process project", **(info or {}),
              "is_longitudinal": int(bool(events)), "has_repeating_instruments_or_events": int(bool(repeating))},
        metadata=rows,
        instruments=[dict(i) for i in instruments] if instruments is not None else _instruments(rows),
        arms=[dict(a) for a in arms],
        events=[dict(e) for e in events],
        form_event_mapping=[dict(m) for m in mapping],
        repeating=[dict(r) for r in repeating],
        records=[dict(r) for r in records],
        files=_write_files(Path(workdir), files or {}),
        locked=set(locked),
    )
    validate_project(project, "build_project()")
    return project


def _instruments(metadata: list[dict[str, str]]) -> list[dict[str, str]]:
    forms = dict.fromkeys(r["form_name"] for r in metadata)
    return [{"instrument_name": f, "instrument_label": f.replace("_", " ").strip().capitalize()} for f in forms]


def _write_files(workdir: Path, files: FileTable) -> list[StoredFile]:
    """Each file's bytes into ``workdir/files/N`` (the store copies them from there)."""
    out: list[StoredFile] = []
    folder = workdir / "files"
    for i, ((record, event, field, instance), (name, data)) in enumerate(files.items()):
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / str(i)
        source.write_bytes(data)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        out.append(StoredFile(record=str(record), field=field, name=name, source=str(source),
                              event=event or None, repeat_instance=int(instance), mime=mime))
    return out
