"""Sandbox projects for the bench, written as JSON project directories (docs/project-formats.md).

The bench starts the sandbox the way a user does, with a project path on the command line, rather than
building its store in-process: the command line and the JSON layout are the sandbox's public interface, so
the bench keeps working while the sandbox's internals change.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Slot:
    """A stored file: which record and field hold it, its name, and the bytes on disk it is loaded from."""

    record: str
    field: str
    name: str
    source: Path


@dataclass
class Project:
    """A classic (non-longitudinal) project: records, file fields, and the files stored at start."""

    title: str
    records: list[str]
    file_fields: list[str]
    files: list[Slot] = field(default_factory=list)


def write_project(project: Project, root: Path) -> Path:
    """Write ``project`` as a JSON project directory at ``root``; stored files are symlinked, not copied."""
    files_dir = root / "files"
    files_dir.mkdir(parents=True)
    metadata = [{"field_name": "record_id", "form_name": "main", "field_type": "text"}]
    metadata += [{"field_name": f, "form_name": "main", "field_type": "file"} for f in project.file_fields]
    _dump(root / "project.json", {"project_id": 900, "project_title": project.title})
    _dump(root / "metadata.json", metadata)
    _dump(root / "records.json", [{"record_id": r} for r in project.records])
    manifest = []
    for i, slot in enumerate(project.files):
        link = files_dir / f"f{i:06d}"
        os.symlink(slot.source.resolve(), link)
        manifest.append({"record": slot.record, "field": slot.field, "name": slot.name, "path": link.name})
    _dump(files_dir / "manifest.json", manifest)
    return root


def _dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def random_file(path: Path, size: int, chunk: int = 1 << 20) -> Path:
    """``size`` random bytes at ``path`` (random, so no layer can compress or deduplicate them)."""
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n
    return path


def small_files(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` distinct random files of ``size`` bytes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [random_file(folder / f"file-{i:04d}.bin", size) for i in range(count)]
