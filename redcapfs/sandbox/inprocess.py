"""``InProcessClient``: the sandbox's REDCap API called in this process, as a ``RedcapClient``.

There is one REDCap emulator, the sandbox. Unit and model tests of the
filesystem need it without sockets, threads and timeouts, so this client hands
each call to the sandbox's API dispatch (``Api.answer``) directly. It sends the
very fields ``HttpClient`` posts (``redcapfs.client.params``), spools uploads
through the server's own spool with the file name PHP would read
(``redcapfs.redcapnames``), and reads every answer with ``HttpClient``'s own
rules (``redcapfs.client.responses``): what it says, the HTTP sandbox says.
No retries (there is no transport to fail) and no faults (use the HTTP sandbox).

Building one (cheap: a SQLite store in a directory, a few milliseconds)::

    from redcapfs.sandbox.inprocess import InProcessClient

    # inline tables (see sandbox.build.build_project); metadata rows need only some keys
    client = InProcessClient.build(
        tmp_path / "redcap",
        metadata=[{"field_name": "record_id", "form_name": "main", "field_type": "text"},
                  {"field_name": "doc", "form_name": "main", "field_type": "file"}],
        records=[{"record_id": "1"}],
        files={("1", None, "doc", 1): ("a.pdf", b"%PDF")},
        rights="full",            # or "export" / "none"; locked=["1"] locks records
    )
    # or a ProjectDef, a project XML file or a JSON project directory:
    client = InProcessClient.from_project(project_def_or_path, tmp_path / "redcap")

    other = client.with_token(username="colleague")   # a second user on the same project
    other.import_file("1", "doc", "/tmp/x.pdf", "x.pdf")   # a "remote" change the first one sees

``client.calls`` counts calls by ``(content, action)`` (action ``export`` for
structure reads, ``("file", "info")`` for :meth:`file_info`); ``client.store``
is the sandbox store, to check results independently of the client.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from redcapfs import errors as E
from redcapfs.client.base import FileInfo, chunked
from redcapfs.client.contenttype import parse_content_type
from redcapfs.client.params import api_form, export_records_params, import_records_params, slot_params, upload_mime
from redcapfs.client.responses import (
    PEEK_MIMES,
    CallContext,
    download_head_check,
    error_for,
    file_info_answer,
    json_answer,
    means_empty,
    rows_answer,
    text_answer,
    write_answer,
)
from redcapfs.redcapnames import received_filename

from .api import Api, ApiRequest, Upload
from .bodies import UploadSpool, discard_upload
from .build import build_project
from .config import SandboxConfig, TokenGrant, random_token
from .loaders import load_project
from .project import ProjectDef
from .responses import ApiResponse
from .server import open_project_store, prepare
from .store import Store

CHUNK = 1 << 20


class InProcessClient:
    """A ``RedcapClient`` over a sandbox store, without HTTP. Thread-safe (the store locks)."""

    def __init__(self, api: Api, token: str, *, owned_dir: Path | None = None,
                 fileinfo_params: Sequence[str] = ("fileinfo", "filesize")) -> None:
        self.api = api
        self.__token = token
        self.fileinfo_params = tuple(fileinfo_params)
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._calls_lock = threading.Lock()
        self._owned_dir = owned_dir
        self._record_id_field: str | None = None

    # ------------------------------------------------------------ building

    @classmethod
    def from_project(cls, project: ProjectDef | str | Path, data_dir: str | Path | None = None, *,
                     rights: str = "full", username: str = "sandbox_api",
                     config: SandboxConfig | None = None) -> InProcessClient:
        """A client on a store in ``data_dir`` (a private temp dir, removed by :meth:`close`, if ``None``).

        ``project`` is a ``ProjectDef`` or a path the loaders read; a ``data_dir``
        that already holds a project keeps it. ``config`` sets the server's
        switches (legacy answers, upload limit, fileinfo, ``locks``…); its tokens
        are replaced by one token with ``rights`` for ``username``.
        """
        if not isinstance(project, ProjectDef):
            with tempfile.TemporaryDirectory(prefix="redcapfs-load-") as workdir:
                return cls.from_project(load_project(project, workdir), data_dir, rights=rights,
                                        username=username, config=config)
        store, owned = open_project_store(project, data_dir)
        config = config or SandboxConfig()
        token = random_token()
        config.tokens = [TokenGrant(token, rights, username)]
        prepare(store, config)
        return cls(Api(store, config), token, owned_dir=owned)

    @classmethod
    def build(cls, data_dir: str | Path, *, rights: str = "full", username: str = "sandbox_api",
              config: SandboxConfig | None = None, **tables: Any) -> InProcessClient:
        """A client on a project built from inline tables (``sandbox.build.build_project``'s keywords).

        ``data_dir`` holds the store and the files' source copies; it is the
        caller's (e.g. a pytest ``tmp_path`` subdirectory).
        """
        data_dir = Path(data_dir)
        project = build_project(data_dir / "source", **tables)
        return cls.from_project(project, data_dir / "store", rights=rights, username=username, config=config)

    def with_token(self, rights: str = "full", username: str = "other_user") -> InProcessClient:
        """Another user's client on the same project (its own token and call counts)."""
        token = random_token()
        self.api.config.tokens.append(TokenGrant(token, rights, username))
        return InProcessClient(self.api, token, fileinfo_params=self.fileinfo_params)

    @property
    def store(self) -> Store:
        return self.api.store

    def __repr__(self) -> str:
        return f"InProcessClient(data_dir={str(self.store.data_dir)!r}, token='***')"

    def close(self) -> None:
        """Remove a private data directory (the store of a caller's directory stays open for others)."""
        if self._owned_dir is not None:
            self.store.close()
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    # ----------------------------------------------------------- one call

    def _call(self, ctx: CallContext, params: dict[str, Any], upload: Upload | None = None,
              count_as: str | None = None) -> ApiResponse:
        """Run one call; a 200 answer is returned (the caller closes it), anything else raises."""
        with self._calls_lock:
            self.calls[(ctx.content, count_as or ctx.action or "export")] += 1
        req = ApiRequest({}, upload)
        for key, value in api_form(self.__token, ctx.content, params):
            req.params.setdefault(key, []).append(value)
        resp = self.api.answer(req)
        if resp.status != 200:
            resp.close()
            raise error_for(resp.status, resp.body, resp.content_type, ctx)
        return resp

    def _json(self, ctx: CallContext, params: dict[str, Any]) -> Any:
        resp = self._call(ctx, params)
        return json_answer(ctx, resp.body, resp.content_type)

    def _rows(self, ctx: CallContext, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return rows_answer(ctx, self._json(ctx, params or {}))

    def _text(self, ctx: CallContext) -> str:
        resp = self._call(ctx, {})
        return text_answer(ctx, resp.body, resp.content_type)

    # ------------------------------------------------------------ structure

    def project_info(self) -> dict[str, Any]:
        data = self._json(CallContext("project"), {})
        if not isinstance(data, dict):
            raise E.ProtocolError("project info is not an object", content="project")
        return data

    def version(self) -> str:
        return self._text(CallContext("version"))

    def metadata(self) -> list[dict[str, Any]]:
        rows = self._rows(CallContext("metadata"))
        if rows:
            self._record_id_field = rows[0].get("field_name") or self._record_id_field
        return rows

    def arms(self) -> list[dict[str, Any]]:
        return self._maybe_empty("arm")

    def events(self) -> list[dict[str, Any]]:
        return self._maybe_empty("event")

    def form_event_mapping(self) -> list[dict[str, Any]]:
        return self._maybe_empty("formEventMapping")

    def repeating_forms_events(self) -> list[dict[str, Any]]:
        return self._maybe_empty("repeatingFormsEvents")

    def instruments(self) -> list[dict[str, Any]]:
        return self._rows(CallContext("instrument"))

    def export_users(self) -> list[dict[str, Any]]:
        return self._rows(CallContext("user", "export"))

    def _maybe_empty(self, content: str) -> list[dict[str, Any]]:
        """REDCap's 400 for "there are none" means ``[]``, as ``HttpClient`` reads it."""
        try:
            return self._rows(CallContext(content))
        except E.BadRequest as exc:
            if means_empty(content, exc):
                return []
            raise

    # -------------------------------------------------------------- records

    def export_records(
        self,
        records: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        events: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Flat rows, batched as ``HttpClient`` batches them (record IDs first)."""
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
        if self._record_id_field is None:
            self.metadata()
        id_field = self._record_id_field or ""
        rows = self._export_records(None, [id_field], events)
        return list(dict.fromkeys(str(row[id_field]) for row in rows if id_field in row))

    def _export_records(self, records: Sequence[str] | None, fields: Sequence[str] | None,
                        events: Sequence[str] | None) -> list[dict[str, Any]]:
        return self._rows(CallContext("record", "export"), export_records_params(records, fields, events))

    def import_records(self, rows: Sequence[dict[str, Any]], overwrite: bool = False,
                       return_content: str = "count", *, force_auto_number: bool = False) -> Any:
        """REDCap's answer (``{"count": N}``, a list of ids, or ``None`` for ``nothing``)."""
        ctx = CallContext("record", "import")
        resp = self._call(ctx, import_records_params(rows, overwrite, return_content, force_auto_number))
        if return_content == "nothing":
            write_answer(ctx, resp.body)
            return None
        return json_answer(ctx, resp.body, resp.content_type)

    def generate_next_record_name(self) -> str:
        return self._text(CallContext("generateNextRecordName"))

    def export_logging(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._rows(CallContext("log", "export", record=filters.get("record")), params)

    def export_log(self, begin_time: str, end_time: str | None = None, record: str | None = None,
                   logtype: str | None = None) -> list[dict[str, Any]]:
        """``content=log`` from ``begin_time`` (``YYYY-MM-DD HH:MM``, server time) on: the change feed's one call."""
        return self.export_logging(beginTime=begin_time, endTime=end_time, record=record, logtype=logtype)

    # ---------------------------------------------------------------- files

    def export_file(self, record: str, field: str, out: BinaryIO, event: str | None = None,
                    repeat_instance: int | None = None) -> FileInfo:
        """Copy the file into ``out`` in chunks; a short copy raises ``TransportError`` as over HTTP."""
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        resp = self._call(ctx, slot_params(ctx))
        ctype = parse_content_type(resp.content_type)
        try:
            written = self._copy_body(ctx, resp, out, peek=ctype.name is None and ctype.mime in PEEK_MIMES)
        finally:
            resp.close()
        if written < resp.size:
            raise E.TransportError(f"download ended after {written} of {resp.size} bytes", **ctx.kwargs(200))
        return FileInfo(ctype.name, written, ctype.mime or None)

    @staticmethod
    def _copy_body(ctx: CallContext, resp: ApiResponse, out: BinaryIO, peek: bool) -> int:
        if resp.stream is None:
            if peek:
                download_head_check(ctx, resp.body, resp.content_type)
            out.write(resp.body)
            return len(resp.body)
        written = 0
        while written < resp.size:
            chunk = resp.stream.read(min(CHUNK, resp.size - written))
            if not chunk:
                break
            if peek and written == 0:
                download_head_check(ctx, chunk, resp.content_type)
            out.write(chunk)
            written += len(chunk)
        return written

    def file_info(self, record: str, field: str, event: str | None = None,
                  repeat_instance: int | None = None) -> FileInfo | None:
        """Name and size through the ``fileinfo`` flag; ``None`` when the server sends the file instead."""
        ctx = CallContext("file", "export", record, field, event, repeat_instance)
        params = slot_params(ctx)
        params.update({name: "1" for name in self.fileinfo_params})
        resp = self._call(ctx, params, count_as="info")
        try:
            ctype = parse_content_type(resp.content_type)
            if ctype.name is not None or ctype.mime != "application/json":
                return None
            return file_info_answer(ctx, resp.body)
        finally:
            resp.close()

    def import_file(self, record: str, field: str, path: str, filename: str, event: str | None = None,
                    repeat_instance: int | None = None) -> None:
        """Spool ``path`` as the server spools a multipart part, then import it (``filename`` as PHP reads it)."""
        ctx = CallContext("file", "import", record, field, event, repeat_instance)
        upload = self._spool(path, filename)
        try:
            resp = self._call(ctx, slot_params(ctx), upload)
            write_answer(ctx, resp.body)
        finally:
            discard_upload(upload)

    def _spool(self, path: str, filename: str) -> Upload | None:
        spool = UploadSpool(self.store, self.api.config.max_upload_mb * 1024 * 1024)
        spool.begin(received_filename(filename), upload_mime(filename))
        try:
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    spool.write(chunk)
        except BaseException:
            spool.discard()
            raise
        return spool.finish()

    # ------------------------------------------------------ File Repository

    def repo_list(self, folder_id: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"action": "list"} | ({"folder_id": folder_id} if folder_id is not None else {})
        return self._rows(CallContext("fileRepository", "list"), params)

    def repo_export(self, doc_id: int, out: BinaryIO) -> FileInfo:
        ctx = CallContext("fileRepository", "export", record=f"doc {doc_id}")
        resp = self._call(ctx, {"action": "export", "doc_id": doc_id})
        ctype = parse_content_type(resp.content_type)
        try:
            written = self._copy_body(ctx, resp, out, peek=False)
        finally:
            resp.close()
        return FileInfo(ctype.name, written, ctype.mime or None)

    def repo_import(self, path: str, filename: str, folder_id: int | None = None) -> None:
        ctx = CallContext("fileRepository", "import")
        params: dict[str, Any] = {"action": "import"} | ({"folder_id": folder_id} if folder_id is not None else {})
        upload = self._spool(path, filename)
        try:
            write_answer(ctx, self._call(ctx, params, upload).body)
        finally:
            discard_upload(upload)

    def repo_delete(self, doc_id: int) -> None:
        ctx = CallContext("fileRepository", "delete")
        write_answer(ctx, self._call(ctx, {"action": "delete", "doc_id": doc_id}).body)

    def repo_create_folder(self, name: str, parent: int | None = None) -> int:
        params: dict[str, Any] = {"action": "createFolder", "name": name}
        if parent is not None:
            params["folder_id"] = parent
        return int(self._rows(CallContext("fileRepository", "createFolder"), params)[0]["folder_id"])

    def delete_file(self, record: str, field: str, event: str | None = None,
                    repeat_instance: int | None = None) -> None:
        ctx = CallContext("file", "delete", record, field, event, repeat_instance)
        resp = self._call(ctx, slot_params(ctx))
        write_answer(ctx, resp.body)
