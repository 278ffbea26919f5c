"""``HttpClient``: the REDCap API over HTTP, for many FUSE threads at once.

Design points, each forced by how REDCap behaves (see ``docs/redcap-api.md``):

* One POST endpoint, form-encoded; ``returnFormat=json`` always so error bodies
  are parseable, but xml and ``ERROR:`` bodies are recognised too.
* REDCap bans an IP that exceeds its page-hit limit, so every request passes a
  token bucket shared by all threads, and retries back off with full jitter.
* Only idempotent calls are retried: repeating an upload, a delete or a record
  import could double a write the server already made.
* Files are streamed both ways; a download that ends short is an error, never a
  silently truncated file.
* The API token travels only in the POST body and is kept out of every repr,
  log line and exception message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import closing
from typing import Any, BinaryIO

from requests_toolbelt import MultipartEncoder

from redcapfs import errors as E

from . import download
from .base import FileInfo, chunked
from .chunkedform import ChunkedUploads
from .contenttype import parse_content_type
from .formbody import FileForm
from .params import export_records_params, import_records_params, slot_params, upload_mime
from .responses import (
    CallContext,
    file_info_answer,
    means_empty,
    not_an_api,
    rows_answer,
)
from .transport import (  # RateLimiter, RetryPolicy and redirect_message are part of this module's interface
    DEFAULT_USER_AGENT,
    Progress,
    RateLimiter,
    RetryPolicy,
    redirect_message,
)

__all__ = ["HttpClient", "RateLimiter", "RetryPolicy", "redirect_message"]

log = logging.getLogger(__name__)


class HttpClient(ChunkedUploads):
    """The REDCap API over HTTP (implements ``RedcapClient``). Thread-safe.

    ``timeout`` is (connect, read) seconds; ``verify`` is a bool or a CA bundle
    path; ``rate_limit`` is requests per second for the whole client (``None``
    disables it; ``burst`` calls may go at once, within ``rate_limit × 60`` a
    minute: client/ratelimit.py); ``retries``/``backoff``/``max_backoff``/``retry_deadline``
    bound the retries of idempotent calls. ``fileinfo_params`` are the names
    of the undocumented "size and name only" flag sent by :meth:`file_info`.
    ``call_budget`` bounds each call other than a file transfer, retries
    included (a transfer only has to keep moving: ``timeout``'s read part is the
    longest pause allowed between bytes).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (10, 60),
        verify: bool | str = True,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8,
        retry_deadline: float = 60,
        pool_size: int = 16,
        rate_limit: float | None = 5.0,
        user_agent: str = DEFAULT_USER_AGENT,
        fileinfo_params: Sequence[str] = ("fileinfo", "filesize"),
        call_budget: float | None = None,
        burst: float | None = None,
    ) -> None:
        super().__init__(url, token, timeout=timeout, verify=verify,
                         retry=RetryPolicy(retries, backoff, max_backoff, retry_deadline), pool_size=pool_size,
                         rate_limit=rate_limit, user_agent=user_agent, call_budget=call_budget, burst=burst)
        self.fileinfo_params = tuple(fileinfo_params)
        self._fileinfo_supported: bool | None = None
        self._record_id_field: str | None = None

    @property
    def fileinfo_supported(self) -> bool | None:
        """``False`` once the server has shown it ignores the fileinfo flag; ``None`` until tried."""
        return self._fileinfo_supported

    # ----------------------------------------------------- project structure

    def project_info(self) -> dict[str, Any]:
        data = self._json(CallContext("project"), {})
        if not isinstance(data, dict):
            raise not_an_api(CallContext("project"), 200, "application/json", "project info is not an object")
        return data

    def version(self) -> str:
        return self._text(CallContext("version"), {})

    def metadata(self) -> list[dict[str, Any]]:
        rows = self._json_rows(CallContext("metadata"), {})
        if rows:
            self._record_id_field = rows[0].get("field_name") or self._record_id_field
        return rows

    def arms(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("arm")

    def events(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("event")

    def form_event_mapping(self) -> list[dict[str, Any]]:
        return self._longitudinal_only("formEventMapping")

    def repeating_forms_events(self) -> list[dict[str, Any]]:
        try:
            return self._json_rows(CallContext("repeatingFormsEvents"), {})
        except E.BadRequest as exc:
            if means_empty("repeatingFormsEvents", exc):
                return []
            raise

    def instruments(self) -> list[dict[str, Any]]:
        return self._json_rows(CallContext("instrument"), {})

    def export_users(self) -> list[dict[str, Any]]:
        """``content=user``: every project user with their rights (needs the User Rights privilege: 403 else)."""
        return self._json_rows(CallContext("user", "export"), {})

    def _longitudinal_only(self, content: str) -> list[dict[str, Any]]:
        """Classic projects answer 400 "You cannot export … for classic projects": that means ``[]``."""
        try:
            return self._json_rows(CallContext(content), {})
        except E.BadRequest as exc:
            if means_empty(content, exc):
                return []
            raise

    # ---------------------------------------------------------------- records

    def record_id_field(self) -> str:
        """The record-ID field: the first metadata row (fetched once)."""
        if self._record_id_field is None:
            rows = self.metadata()
            if not rows:
                raise E.ProtocolError("the project has no metadata", content="metadata")
        assert self._record_id_field is not None
        return self._record_id_field

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Flat rows. An explicit empty ``records`` list means no records (not all of them).

        With ``batch_size``, the record list comes first (record-ID field only),
        then the rows ``batch_size`` records at a time, in the server's order.
        """
        if records is not None and not records:
            return []
        if batch_size is None:
            return self._export_records(records, fields, events)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        ids = list(records) if records is not None else self._record_ids(events)
        rows: list[dict[str, Any]] = []
        for batch in chunked(ids, batch_size):
            rows.extend(self._export_records(batch, fields, events))
        return rows

    def _record_ids(self, events: Sequence[str] | None) -> list[str]:
        id_field = self.record_id_field()
        rows = self._export_records(None, [id_field], events)
        return list(dict.fromkeys(str(row[id_field]) for row in rows if id_field in row))

    def _export_records(
        self,
        records: Sequence[str] | None,
        fields: Sequence[str] | None,
        events: Sequence[str] | None,
    ) -> list[dict[str, Any]]:
        return self._json_rows(CallContext("record", "export"), export_records_params(records, fields, events))

    def import_records(
        self,
        rows: Sequence[dict[str, Any]],
        overwrite: bool = False,
        return_content: str = "count",
        *,
        force_auto_number: bool = False,
    ) -> Any:
        """Import flat rows; returns REDCap's answer (``{"count": N}``, a list of ids, or ``None``)."""
        ctx = CallContext("record", "import")
        params = import_records_params(rows, overwrite, return_content, force_auto_number)
        if return_content == "nothing":
            self._once(ctx, params)
            return None
        return self._json(ctx, params, idempotent=False)

    def generate_next_record_name(self) -> str:
        return self._text(CallContext("generateNextRecordName"), {}, idempotent=False)

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]:
        """Audit log rows; ``filters`` are REDCap's (logtype, user, record, beginTime, endTime, dag).

        ``datetime`` values are formatted as REDCap wants them (``YYYY-MM-DD HH:MM``).
        """
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json_rows(CallContext("log", "export", record=filters.get("record")), params)

    def export_log(self, begin_time: str, end_time: str | None = None, record: str | None = None,
                   logtype: str | None = None) -> list[dict[str, Any]]:
        """``content=log`` from ``begin_time`` (``YYYY-MM-DD HH:MM``, server time) on: the change feed's one call."""
        return self.export_logging(beginTime=begin_time, endTime=end_time, record=record, logtype=logtype)

    # ------------------------------------------------------------------ files

    def export_file(
        self,
        record: str,
        field: str,
        out: BinaryIO,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo:
        """Stream a file into ``out``; a short or broken body raises ``TransportError`` (client/download.py).

        A broken download is retried from scratch only when ``out`` can be
        rewound (seek + truncate); otherwise the caller must discard ``out``.
        """
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        progress = Progress(self.stats.start_transfer("download", record=record, event=event, field=field,
                                                       instance=repeat_instance))
        return download.export_file(self, ctx, slot_params(ctx), out, progress)

    def file_info(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> FileInfo | None:
        """Name and size through the undocumented ``fileinfo`` flag, or ``None``.

        A server that ignores the flag starts sending the file: the response is
        closed unread and the client stops asking (``fileinfo_supported``).
        """
        if self._fileinfo_supported is False:
            return None
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        params = slot_params(ctx)
        params.update({name: "1" for name in self.fileinfo_params})
        return self._retrying(ctx, lambda: self._file_info_once(ctx, params), idempotent=True)

    def _file_info_once(self, ctx: CallContext, params: dict[str, Any]) -> FileInfo | None:
        resp = self._post(ctx, params, stream=True)
        with closing(resp):
            ctype = parse_content_type(resp.headers.get("Content-Type"))
            if ctype.name is not None or ctype.mime != "application/json":
                self._no_fileinfo(ctx)
                return None  # closing() drops the connection: the file is never read
            body = self._read_some(ctx, resp)
        return self._parse_file_info(ctx, body)

    def _no_fileinfo(self, ctx: CallContext) -> None:
        if self._fileinfo_supported is not False:
            log.info("%s: server ignores the fileinfo flag; sizes will need downloads", ctx.label())
        self._fileinfo_supported = False

    def _parse_file_info(self, ctx: CallContext, body: bytes) -> FileInfo | None:
        info = file_info_answer(ctx, body)
        if info is None:
            self._no_fileinfo(ctx)
            return None
        self._fileinfo_supported = True
        return info

    def import_file(
        self,
        record: str,
        field: str,
        path: str,
        filename: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        """Upload ``path`` as ``filename``, streamed from disk; never retried (not idempotent)."""
        ctx = CallContext("file", "import", record, field, event, repeat_instance)
        fields = self._with_content(ctx, slot_params(ctx))
        mime = upload_mime(filename)
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            transfer = self.stats.start_transfer("upload", record=record, event=event, field=field,
                                                 instance=repeat_instance, name=filename, total=size)
            ok = False
            try:
                transfer.begin_attempt(size)
                # Bytes of the file sent is what a user wants to see (`redcapfs status`).
                body = FileForm(fields, "file", filename, fh, size, mime, on_sent=transfer.advance)
                self._once(ctx, None, body=body, headers={"Content-Type": body.content_type})
                ok = True
            finally:
                self.stats.end_transfer(transfer, ok)

    def delete_file(
        self,
        record: str,
        field: str,
        event: str | None = None,
        repeat_instance: int | None = None,
    ) -> None:
        """Delete a stored file; never retried (a repeat would answer "no file to delete")."""
        ctx = CallContext("file", "delete", record, field, event, repeat_instance)
        self._once(ctx, slot_params(ctx))

    # ------------------------------------------------------ File Repository

    def repo_list(self, folder_id: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"action": "list"} | ({"folder_id": folder_id} if folder_id is not None else {})
        return self._json_rows(CallContext("fileRepository", "list"), params)

    def repo_export(self, doc_id: int, out: BinaryIO) -> FileInfo:
        """One download (retried from scratch when ``out`` can be rewound, as Export File)."""
        ctx = CallContext("fileRepository", "export", record=f"doc {doc_id}")
        progress = Progress(self.stats.start_transfer("download", name=f"doc {doc_id}"))
        return download.repo_export(self, ctx, {"action": "export", "doc_id": doc_id}, out, progress)

    def repo_import(self, path: str, filename: str, folder_id: int | None = None) -> None:
        ctx = CallContext("fileRepository", "import")
        params: dict[str, Any] = {"action": "import"} | ({"folder_id": folder_id} if folder_id is not None else {})
        fields = self._with_content(ctx, params)
        with open(path, "rb") as fh:
            encoder = MultipartEncoder(fields=[*fields, ("file", (filename, fh, upload_mime(filename)))])
            self._once(ctx, None, body=encoder, headers={"Content-Type": encoder.content_type})

    def repo_delete(self, doc_id: int) -> None:
        self._once(CallContext("fileRepository", "delete"), {"action": "delete", "doc_id": doc_id})

    def repo_create_folder(self, name: str, parent: int | None = None) -> int:
        params: dict[str, Any] = {"action": "createFolder", "name": name}
        if parent is not None:
            params["folder_id"] = parent
        rows = rows_answer(CallContext("fileRepository", "createFolder"),
                           self._json(CallContext("fileRepository", "createFolder"), params, idempotent=False))
        return int(rows[0]["folder_id"])
