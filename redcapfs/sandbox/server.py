"""The sandbox's HTTP layer: one POST endpoint, streaming bodies, injected faults, a request log.

Hand-written on ``http.server`` rather than a WSGI stack because the faults need
socket-level control (answer half a body and then reset the connection, stop
reading an upload midway) and because file bytes must flow between socket and
disk in chunks: uploads go through werkzeug's sans-IO multipart decoder into a
spool file, downloads leave through ``socket.sendfile`` from an open handle.

In-process use (tests, tools)::

    server = SandboxServer.from_project(project_def, data_dir=None, config=SandboxConfig())
    with server:                      # starts a background thread
        print(server.url, server.tokens)
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import struct
import tempfile
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from .api import Api, ApiRequest, Upload
from .config import SandboxConfig, TokenGrant
from .faults import Fault, FaultSet
from .project import ProjectDef
from .responses import ApiError, ApiResponse, error_response
from .store import Store

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
MAX_FORM_BYTES = 512 * 1024 * 1024  # urlencoded bodies (record imports) are held in memory
MAX_FIELD_BYTES = 64 * 1024 * 1024
SERVER_NAME = "redcapfs-sandbox"


class Abort(Exception):
    """The connection was deliberately dropped or closed without an answer."""


class BodyReader:
    """Reads a request body by Content-Length or chunked transfer coding, counting bytes."""

    def __init__(self, rfile: BinaryIO, length: int | None, chunked: bool) -> None:
        self.rfile = rfile
        self.remaining = length if length is not None else 0
        self.length = length
        self.chunked = chunked
        self.consumed = 0
        self._chunk_left = 0
        self._done = not chunked and not self.remaining

    def read(self, size: int = CHUNK) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        if self._done:
            return b""
        data = self._read_chunked(size) if self.chunked else self._read_plain(size)
        self.consumed += len(data)
        return data

    def _read_plain(self, size: int) -> bytes:
        data = self.rfile.read(min(size, self.remaining))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self.remaining -= len(data)
        self._done = self.remaining == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self.rfile.readline(1024).split(b";")[0].strip()
            self._chunk_left = int(line or b"0", 16)
            if self._chunk_left == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
        data = self.rfile.read(min(size, self._chunk_left))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self.rfile.readline(16)  # CRLF after the chunk
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class RequestLog:
    """``--request-log``: one JSON object per API call, appended and flushed. Never the token."""

    def __init__(self, path: str | None) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path else None

    def write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def is_write(req: ApiRequest) -> bool:
    """Calls that change state: a faulted one must leave the state as it was."""
    content, action = req.get("content"), req.get("action")
    if content == "file":
        return action in ("import", "delete")
    if content == "record":
        return action in ("import", "delete") or (action is None and req.has("data"))
    return False


def call_selectors(params: dict[str, list[str]]) -> dict[str, str | None]:
    """The request fields a ``--fault`` spec can select on."""
    return {k: (params.get(k) or [None])[0] for k in ("content", "action", "field", "record", "event")}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, SandboxHandler)


class SandboxServer:
    """A running (or ready to run) REDCap-compatible API server over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        config: SandboxConfig,
        faults: FaultSet | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.store = store
        self.config = config
        if not config.tokens:
            config.tokens = [TokenGrant(store.default_token())]
        for record in config.locks:
            store.set_locked(record)
        self.api = Api(store, config)
        self.faults = faults or FaultSet([])
        self.request_log = RequestLog(config.request_log)
        self.stopping = threading.Event()
        self.httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None
        self._owned_dir: Path | None = None

    @classmethod
    def from_project(
        cls,
        project: ProjectDef,
        data_dir: str | Path | None = None,
        config: SandboxConfig | None = None,
        faults: FaultSet | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> SandboxServer:
        """A server for ``project``; without ``data_dir`` a private temporary one, removed by :meth:`stop`."""
        owned = None
        if data_dir is None:
            owned = Path(tempfile.mkdtemp(prefix="redcapfs-sandbox-"))
            data_dir = owned
        store = Store.open(data_dir)
        if not store.initialised:
            store.initialise(project)
        server = cls(store, config or SandboxConfig(), faults, host, port)
        server._owned_dir = owned
        return server

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{self.port}/api/"

    @property
    def tokens(self) -> list[str]:
        return [g.token for g in self.config.tokens]

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread or a signal handler's thread)."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stop accepting; wakes hanging faults so they end promptly."""
        self.stopping.set()
        self.httpd.shutdown()

    def stop(self) -> None:
        """Shut down (if running), close everything, remove a private data directory."""
        self.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(10)
        self.httpd.server_close()
        self.request_log.close()
        self.store.close()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SandboxHandler(BaseHTTPRequestHandler):
    """One connection. ``do_POST`` on ``/api/`` is the API; every other method gets 501."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    timeout = 600  # idle keep-alive connections
    server: _HTTPServer

    # ---------------------------------------------------------------- plumbing

    @property
    def sandbox(self) -> SandboxServer:
        return self.server.sandbox

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _body_reader(self) -> BodyReader:
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = self.headers.get("Content-Length")
        return BodyReader(self.rfile, int(length) if length and length.isdigit() else None, chunked)

    def _send_head(self, status: int, content_type: str | None, length: int) -> None:
        """Status line and headers as raw bytes: file names in ``name="…"`` go out as UTF-8, like PHP."""
        lines = [f"HTTP/1.1 {status} {_reason(status)}", f"Date: {formatdate(usegmt=True)}",
                 f"Server: {SERVER_NAME}"]
        if content_type:
            lines.append("Content-Type: " + content_type.replace("\r", "").replace("\n", ""))
        lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))

    def _send_simple(self, status: int, text: str) -> None:
        body = text.encode()
        self._send_head(status, "text/html; charset=utf-8", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset_connection(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed proxy or server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        raise Abort("reset")

    def _close_silently(self) -> None:
        """Close without answering (a normal FIN)."""
        self.close_connection = True
        raise Abort("closed")

    # ---------------------------------------------------------------- methods

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != "/api/":
            self._body_reader().drain()
            self._send_simple(404, "Not Found")
            return
        entry: dict[str, Any] = {"time": time.time(), "content": None, "action": None, "record": None,
                                 "field": None, "event": None, "repeat_instance": None, "status": None,
                                 "bytes": 0}
        self._logged = False
        try:
            self._serve_api(entry)
        except Abort:
            pass
        except (ConnectionError, TimeoutError) as exc:
            log.info("client connection lost: %s", exc)
            self.close_connection = True
        finally:
            self._log(entry)

    def _log(self, entry: dict[str, Any]) -> None:
        """Write the call's request-log line once."""
        if not self._logged:
            self._logged = True
            self.sandbox.request_log.write(entry)

    def _not_implemented(self) -> None:
        self.close_connection = True
        self._send_simple(501, "Not Implemented: the REDCap API accepts POST only")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_implemented

    # -------------------------------------------------------------------- API

    def _serve_api(self, entry: dict[str, Any]) -> None:
        reader = self._body_reader()
        content_type, options = parse_options_header(self.headers.get("Content-Type"))
        try:
            if content_type == "multipart/form-data":
                req, fault, decided = self._read_multipart(reader, options.get("boundary", ""), entry)
            else:
                req, fault, decided = self._read_form(reader), None, False
        except ApiError as err:  # unreadable body: answer and drop the connection
            self.close_connection = True
            self._answer(error_response(err.status, err.message, "xml"), None, entry)
            return
        _describe(entry, req)
        if not decided:
            fault = self.sandbox.faults.choose(call_selectors(req.params))
        if fault is not None:
            entry["fault"] = fault.do
        try:
            if self.sandbox.config.latency_ms:
                time.sleep(self.sandbox.config.latency_ms / 1000.0)
            if fault is not None and fault.do in ("500", "503", "hang"):
                self._early_fault(fault, req, entry)
                return
            if fault is not None and is_write(req):
                self._faulted_write(fault)
            resp = self._execute(req)
            self._answer(resp, fault, entry)
        finally:
            _discard_upload(req.upload)

    def _execute(self, req: ApiRequest) -> ApiResponse:
        try:
            return self.sandbox.api.handle(req)
        except ApiError as err:
            return error_response(err.status, err.message, req.return_format)
        except Exception:  # a sandbox bug must look like a server error, not a hang
            log.exception("internal error in %s/%s", req.get("content"), req.get("action"))
            return error_response(500, "An internal error occurred in the sandbox", req.return_format)

    def _early_fault(self, fault: Fault, req: ApiRequest, entry: dict[str, Any]) -> None:
        if fault.do == "hang":
            seconds = fault.seconds if fault.seconds is not None else self.sandbox.config.hang_seconds
            log.info("fault: hanging %.1fs", seconds)
            self.sandbox.stopping.wait(seconds)
            self._close_silently()
        status = int(fault.do)
        message = "Internal server error" if status == 500 else "Service temporarily unavailable"
        resp = error_response(status, message, req.return_format)
        self._answer(resp, None, entry)

    def _faulted_write(self, fault: Fault) -> None:
        """drop/truncate on a write: the call fails without changing state and without an answer."""
        log.info("fault: %s on a write call, no answer", fault.do)
        if fault.do == "drop":
            self._reset_connection()
        self._close_silently()

    def _answer(self, resp: ApiResponse, fault: Fault | None, entry: dict[str, Any]) -> None:
        """Send ``resp``; with drop/truncate only part of the body (honest Content-Length)."""
        try:
            entry["status"] = resp.status
            total = resp.size
            limit = total
            if fault is not None and fault.do in ("drop", "truncate"):
                limit = min(total, fault.after if fault.after is not None else total // 2)
            complete = fault is None or fault.do not in ("drop", "truncate")
            if complete:
                self._send_logging_first(resp, entry)
            else:
                self._send_head(resp.status, resp.content_type, total)
                sent = self._send_body(resp, 0, limit)
                if entry["bytes"] == 0 or resp.stream is not None:
                    entry["bytes"] = sent
        finally:
            resp.close()
        if fault is not None and fault.do == "drop":
            self._reset_connection()
        if fault is not None and fault.do == "truncate":
            self._close_silently()

    def _send_logging_first(self, resp: ApiResponse, entry: dict[str, Any]) -> None:
        """A whole answer, logged before its last byte leaves.

        A client acts on an answer as soon as it has it (tests count calls right
        after); logging when the call ends would race with that. Everything but
        the last byte is sent first, so a client that vanished mid-body is still
        logged with the bytes it really got.
        """
        total = resp.size
        count_sent = entry["bytes"] == 0 or resp.stream is not None  # else: bytes received (an import)
        if total == 0:
            self._log(entry)
            self._send_head(resp.status, resp.content_type, 0)
            return
        self._send_head(resp.status, resp.content_type, total)
        sent = self._send_body(resp, 0, total - 1)  # a vanished client raises here: logged as sending 0
        if count_sent:
            entry["bytes"] = sent if sent < total - 1 else total
        if sent < total - 1:
            return
        self._log(entry)
        self._send_body(resp, total - 1, total)

    def _send_body(self, resp: ApiResponse, start: int, end: int) -> int:
        """Send bytes ``start``..``end`` of the body; return how many were sent."""
        if end <= start:
            return 0
        if resp.stream is None:
            self.wfile.write(resp.body[start:end])
            return end - start
        return int(self.connection.sendfile(resp.stream, start, end - start))

    # ----------------------------------------------------------- request body

    def _read_form(self, reader: BodyReader) -> ApiRequest:
        if reader.length is not None and reader.length > MAX_FORM_BYTES:
            raise ApiError(413, "The request body is over the sandbox's limit for form posts")
        parts = []
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            parts.append(chunk)
            if reader.consumed > MAX_FORM_BYTES:
                self.close_connection = True
                raise ConnectionError("form body over the sandbox's limit")
        text = b"".join(parts).decode("utf-8", "replace")
        return ApiRequest(parse_qs(text, keep_blank_values=True))

    def _read_multipart(
        self, reader: BodyReader, boundary: str, entry: dict[str, Any]
    ) -> tuple[ApiRequest, Fault | None, bool]:
        """Stream a multipart body: fields into memory, the ``file`` part onto disk.

        The fault decision is taken when the file part starts (params usually come
        first), so ``drop`` can abort the upload midway as a broken network would.
        """
        spool = _UploadSpool(self.sandbox.store, self.sandbox.config.max_upload_mb * 1024 * 1024)
        req = ApiRequest()
        fault: Fault | None = None
        decided = False
        drop_at: int | None = None
        decoder = MultipartDecoder(boundary.encode("latin-1"))
        part: str | None = None
        buf = bytearray()
        try:
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    if drop_at is not None and reader.consumed >= drop_at:
                        entry["bytes"] = spool.size
                        self._reset_connection()
                    chunk = reader.read(CHUNK)
                    decoder.receive_data(chunk if chunk else None)
                elif isinstance(event, File) and event.name == "file" and spool.upload is None:
                    part = "\0file"
                    spool.begin(event.filename, event.headers.get("Content-Type", ""))
                    fault, decided = self.sandbox.faults.choose(call_selectors(req.params)), True
                    if fault is not None and fault.do == "drop":
                        entry["fault"] = "drop"
                        _describe(entry, req)
                        total = reader.length if reader.length is not None else 2 * CHUNK
                        drop_at = fault.after if fault.after is not None else total // 2
                elif isinstance(event, (Field, File)):
                    part, buf = event.name if isinstance(event, Field) else None, bytearray()
                elif isinstance(event, Data):
                    self._part_data(part, event, buf, spool, req)
                elif isinstance(event, Epilogue):
                    break
        except ValueError as exc:  # malformed multipart
            spool.discard()
            raise ApiError(400, f"There was a problem with the uploaded file ({exc})") from None
        except BaseException:
            spool.discard()
            raise
        req.upload = spool.finish()
        entry["bytes"] = spool.size
        return req, fault, decided

    def _part_data(self, part: str | None, event: Data, buf: bytearray, spool: _UploadSpool,
                   req: ApiRequest) -> None:
        if part == "\0file":
            spool.write(event.data)
            return
        if part is None:
            return  # another file part: ignored
        if len(buf) + len(event.data) > MAX_FIELD_BYTES:
            raise ValueError("form field too large")
        buf.extend(event.data)
        if not event.more_data:
            req.params.setdefault(part, []).append(bytes(buf).decode("utf-8", "replace"))


class _UploadSpool:
    """The ``file`` part on its way to disk; past the size limit the bytes are counted, not kept."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.upload: Upload | None = None
        self.size = 0
        self._fh: BinaryIO | None = None

    def begin(self, filename: str, content_type: str) -> None:
        path = self.store.new_tmp_path()
        self._fh = open(path, "wb")
        self.upload = Upload(filename, content_type, path, 0)

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._fh is None or self.upload is None:
            return
        if self.size > self.max_bytes:
            self.upload.too_large = True
            self.discard(keep_upload=True)
            return
        self._fh.write(data)

    def finish(self) -> Upload | None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.upload is not None:
            self.upload.size = self.size
        return self.upload

    def discard(self, keep_upload: bool = False) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.upload is not None and self.upload.path is not None:
            self.upload.path.unlink(missing_ok=True)
            self.upload.path = None
        if not keep_upload:
            self.upload = None


def _discard_upload(upload: Upload | None) -> None:
    """Remove a spool file the API did not take into the store."""
    if upload is not None and upload.path is not None:
        upload.path.unlink(missing_ok=True)
        upload.path = None


def _describe(entry: dict[str, Any], req: ApiRequest) -> None:
    """Copy the call's identifying params into its request-log entry (never the token)."""
    for key in ("content", "action", "record", "field", "event", "repeat_instance"):
        entry[key] = req.get(key)
    if req.has("fileinfo") or req.has("filesize"):
        entry["fileinfo"] = True


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
