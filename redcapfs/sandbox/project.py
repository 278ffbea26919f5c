"""A project definition as the sandbox loads it, before it is put into a store.

Loaders (``loaders.py``: project XML, JSON directory, the bundled demo) all
produce a :class:`ProjectDef`; the server's store is initialised from one. Every
table holds rows in the exact JSON shape REDCap's API exports, so what a loader
reads is what the API later answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .schema import Structure


@dataclass
class StoredFile:
    """One file in one slot. ``source`` is a path on disk the bytes are copied from
    (loaders write inline base64 to a temporary file rather than keep it in memory)."""

    record: str
    field: str
    name: str
    source: str
    event: str | None = None  # unique event name; None in classic projects
    repeat_instance: int = 1
    mime: str = "application/octet-stream"


@dataclass
class RepositoryFile:
    """One File Repository document; ``folder`` is a ``/``-separated folder path ("" = top level)."""

    name: str
    source: str
    folder: str = ""
    mime: str = "application/octet-stream"


@dataclass
class ProjectDef(Structure):
    """A whole project: the structure tables (see ``Structure``), records and files.

    * ``info``: the ``content=project`` row (``project_id``, ``project_title``,
      ``is_longitudinal`` 0/1, ``has_repeating_instruments_or_events`` 0/1, …).
    * ``metadata``: ``content=metadata`` rows; the first row is the record-ID field.
    * ``arms``, ``events``, ``form_event_mapping``: empty for classic projects.
    * ``repeating``: ``content=repeatingFormsEvents`` rows (``event_name`` omitted
      in classic projects; ``form_name`` "" = the whole event repeats).
    * ``instruments``: ``content=instrument`` rows.
    * ``records``: flat export rows (file fields may hold the file name or "").
    * ``files``: the stored files.
    * ``locked``: record names whose writes are refused.
    * ``users``, ``roles``, ``dags``: ``content=user`` / ``userRole`` / ``dag`` rows (partial rows are
      completed with REDCap's defaults; a user row may carry ``unique_role_name`` and
      ``data_access_group``).
    * ``record_dags``: record name -> unique DAG name.
    * ``repository``: File Repository entries (``RepositoryFile``); folders named in them are created.
    * ``log``: the project's log history, newest first (``username``, ``action``, ``details``,
      ``record``, ``kind``), stamped with the load time.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    files: list[StoredFile] = field(default_factory=list)
    locked: set[str] = field(default_factory=set)
    users: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    dags: list[dict[str, Any]] = field(default_factory=list)
    record_dags: dict[str, str] = field(default_factory=dict)
    repository: list[RepositoryFile] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def longitudinal(self) -> bool:
        return bool(int(self.info.get("is_longitudinal", 0) or 0))

    @property
    def record_id_field(self) -> str:
        return self.metadata[0]["field_name"]
