"""The REDCap API as redcapfs needs it: one interface, two implementations.

``HttpClient`` (``redcapfs.client.http``) speaks to a real server or the sandbox.
``InProcessClient`` (``redcapfs.sandbox.inprocess``) calls the sandbox's API in
this process, for fast unit and model tests of the filesystem; there is one
REDCap emulator (the sandbox), reached with or without HTTP.

Rows are returned exactly as REDCap's JSON API returns them (lists of dicts with
string values), so the path model can be tested on real API output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class FileInfo:
    """What the server says about a stored file.

    ``name`` comes from the ``Content-Type: …; name="…"`` header (or the
    ``fileinfo`` JSON); ``size`` is the byte count when known.
    """

    name: str | None
    size: int | None = None
    content_type: str | None = None


class RedcapClient(Protocol):
    """Every REDCap call redcapfs makes. Errors are ``redcapfs.errors.RedcapError`` subclasses."""

    def project_info(self) -> dict[str, Any]: ...

    def version(self) -> str: ...

    def metadata(self) -> list[dict[str, Any]]: ...

    def arms(self) -> list[dict[str, Any]]:
        """Arms; ``[]`` for a classic project (no error)."""

    def events(self) -> list[dict[str, Any]]:
        """Events; ``[]`` for a classic project (no error)."""

    def form_event_mapping(self) -> list[dict[str, Any]]:
        """Form-event mapping; ``[]`` for a classic project (no error)."""

    def repeating_forms_events(self) -> list[dict[str, Any]]:
        """Repeating setup; ``[]`` when nothing repeats."""

    def instruments(self) -> list[dict[str, Any]]: ...

    def export_users(self) -> list[dict[str, Any]]:
        """Every project user and their rights; needs the User Rights privilege (fs/rights.py)."""
        ...

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Flat JSON rows. With ``batch_size`` the record list is fetched first and
        the export is done ``batch_size`` records at a time."""

    def import_records(
        self,
        rows: Sequence[dict[str, Any]],
        overwrite: bool = False,
        return_content: str = "count",
    ) -> Any: ...

    def generate_next_record_name(self) -> str: ...

    def export_file(
        self,
        record: str,
        field: str,
        out: BinaryIO,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo:
        """Stream the file into ``out`` in chunks; return its name and byte count.

        Raises ``TransportError`` if the body ends short of ``Content-Length``: a
        partial file must never pass for a whole one."""

    def file_info(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo | None:
        """Name and size without downloading (the undocumented ``fileinfo`` call).

        ``None`` when the server does not support it; callers then download."""

    def import_file(
        self,
        record: str,
        field: str,
        path: str,
        filename: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        """Upload the file at ``path`` (streamed, never read whole) as ``filename``."""

    def delete_file(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None: ...

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]: ...

    def export_log(
        self,
        begin_time: str,
        end_time: str | None = None,
        record: str | None = None,
        logtype: str | None = None,
    ) -> list[dict[str, Any]]:
        """Log rows from ``begin_time`` on (``YYYY-MM-DD HH:MM``, server time, inclusive), newest first.

        Rows carry ``timestamp`` (minute resolution), ``username``, ``action``,
        ``details`` and ``record``. Needs the Logging right (``NoRights`` without it)."""

    # File Repository (``content=fileRepository``); ``folder_id`` None is the top level.
    def repo_list(self, folder_id: int | None = None) -> list[dict[str, Any]]:
        """Rows ``{folder_id, name}`` for folders and ``{doc_id, name}`` for files; no sizes, no times."""
        ...

    def repo_export(self, doc_id: int, out: BinaryIO) -> FileInfo: ...

    def repo_import(self, path: str, filename: str, folder_id: int | None = None) -> None:
        """A new document (REDCap never replaces one, even of the same name)."""
        ...

    def repo_delete(self, doc_id: int) -> None: ...

    def repo_create_folder(self, name: str, parent: int | None = None) -> int: ...

    def close(self) -> None: ...


def chunked(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    """Yield ``items`` in slices of ``size`` (the last one shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
