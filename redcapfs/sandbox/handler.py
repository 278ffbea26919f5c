"""One HTTP connection of the sandbox: ``POST /api/`` runs the API, every other method gets 501.

Hand-written on ``http.server`` rather than a WSGI stack because the faults need
socket-level control (answer half a body and then reset the connection, stop
reading an upload midway) and because file bytes must flow between socket and
disk in chunks: downloads leave through ``socket.sendfile`` from an open handle.
What a fault means is decided in ``faulting``; bodies are read by ``bodies``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, Protocol
from urllib.parse import parse_qs, urlsplit

from werkzeug.http import parse_options_header

from . import faulting
from .api import Api, ApiRequest
from .bodies import BodyReader, MultipartBody, UploadSpool, discard_upload, read_form
from .config import SandboxConfig
from .faults import Fault, FaultSet
from .requestlog import RequestLog, describe, new_entry
from .responses import ApiError, ApiResponse, error_response
from .store import Store

log = logging.getLogger(__name__)

SERVER_NAME = "redcapfs-sandbox"


class Abort(Exception):
    """The connection was deliberately dropped or closed without an answer."""


class Sandbox(Protocol):
    """What a connection needs of the running sandbox (``server.SandboxServer``)."""

    store: Store
    config: SandboxConfig
    api: Api
    faults: FaultSet
    request_log: RequestLog
    stopping: threading.Event


MODULE_KEYS = ("type", "prefix", "page")  # an external module's call: ``/api/?type=module&prefix=P&page=X``


def _module_page(req: ApiRequest, raw_path: str) -> None:
    """An external module's page names itself in the query string (api/locking.py); the body has the rest."""
    query = parse_qs(urlsplit(raw_path).query, keep_blank_values=True)
    for key in MODULE_KEYS:
        if key in query and key not in req.params:
            req.params[key] = query[key]


HANDSHAKE_TIMEOUT = 10.0  # seconds a client may take over the TLS handshake


class SandboxHTTPServer(ThreadingHTTPServer):
    """Plain http, or https when given a server-side ``ssl_context``.

    The TLS handshake runs in the connection's own thread (``finish_request``),
    never in the accept loop: a client that connects and then says nothing (or
    speaks plain http to the https port) must not stall everyone else.
    """

    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.sandbox = sandbox
        self.ssl_context = ssl_context
        super().__init__(address, SandboxHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = self._handshake(request)
        except (OSError, ssl.SSLError) as exc:  # wrong CA on the client, plain http, a port scan: not ours
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            SandboxHandler(tls, client_address, self)
        finally:
            tls.close()

    def _handshake(self, request: socket.socket) -> ssl.SSLSocket:
        assert self.ssl_context is not None
        tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.settimeout(HANDSHAKE_TIMEOUT)
            tls.do_handshake()
            tls.settimeout(None)
        except BaseException:
            tls.close()
            raise
        return tls


class SandboxHandler(BaseHTTPRequestHandler):
    """One connection; ``do_POST`` on ``/api/`` is the API."""

    protocol_version = "HTTP/1.1"
    # An answer leaves in a few writes (head, body, its last byte after logging): with Nagle's algorithm each
    # later write waits for the client's delayed ACK, 40 ms per small call on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = SERVER_NAME
    timeout = 600  # idle keep-alive connections
    server: SandboxHTTPServer

    # ---------------------------------------------------------------- plumbing

    @property
    def sandbox(self) -> Sandbox:
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

    def _reset_connection(self) -> NoReturn:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed proxy or server would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        raise Abort("reset")

    def _close_silently(self) -> NoReturn:
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
        entry = new_entry()
        self._logged = False
        self._chunked_reader: BodyReader | None = None
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
            reader = self._chunked_reader
            if reader is not None:
                entry["largest_chunk"] = reader.largest_chunk
            self.sandbox.request_log.write(entry)

    def _not_implemented(self) -> None:
        self.close_connection = True
        self._send_simple(501, "Not Implemented: the REDCap API accepts POST only")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_implemented

    # -------------------------------------------------------------------- API

    def _serve_api(self, entry: dict[str, Any]) -> None:
        try:
            req, fault, decided = self._read_request(entry)
        except ApiError as err:  # unreadable body: answer and drop the connection
            self.close_connection = True
            self._answer(error_response(err.status, err.message, "xml"), None, entry)
            return
        _module_page(req, self.path)
        describe(entry, req)
        if not decided:
            fault = self.sandbox.faults.choose(faulting.call_selectors(req.params))
        if fault is not None:
            entry["fault"] = fault.do
        try:
            if self.sandbox.config.latency_ms:
                time.sleep(self.sandbox.config.latency_ms / 1000.0)
            if fault is not None and faulting.fails_early(fault):
                self._early_fault(fault, req, entry)
                return
            if faulting.breaks_write(fault, req):
                self._faulted_write(fault)
            self._answer(self.sandbox.api.answer(req), fault, entry)
        finally:
            discard_upload(req.upload)

    def _read_request(self, entry: dict[str, Any]) -> tuple[ApiRequest, Fault | None, bool]:
        reader = self._body_reader()
        if reader.chunked:
            entry["chunked"] = True
            self._chunked_reader = reader  # its largest chunk goes into the log line (_log)
        dropped = self.sandbox.config.no_chunked if reader.chunked else None  # --no-chunked: a proxy's loss
        if dropped == "411":
            self._length_required(reader, entry)
        if dropped == "empty":  # PHP got no body at all: no token, no params
            reader.drain()
            return ApiRequest(), None, False
        content_type, options = parse_options_header(self.headers.get("Content-Type"))
        if content_type != "multipart/form-data":
            return read_form(reader), None, False
        spool = UploadSpool(self.sandbox.store, self.sandbox.config.max_upload_mb * 1024 * 1024)
        body = MultipartBody(reader, options.get("boundary", ""), spool,
                             lambda params: self.sandbox.faults.choose(faulting.call_selectors(params)),
                             self._reset_connection, entry)
        req, fault, decided = body.read()
        if dropped == "nofile":  # the fields reached PHP, the file part did not
            discard_upload(req.upload)
            req.upload = None
        return req, fault, decided

    def _length_required(self, reader: BodyReader, entry: dict[str, Any]) -> NoReturn:
        """A proxy that wants a Content-Length: 411 at once, the body read and thrown away, the connection closed."""
        self.close_connection = True
        entry["status"] = 411
        self._log(entry)
        self._send_simple(411, "Length Required")
        self.wfile.flush()
        try:
            reader.drain()  # a lingering close, as proxies do: the client still gets the answer
        except (OSError, ValueError):
            pass
        raise Abort("411")

    def _early_fault(self, fault: Fault, req: ApiRequest, entry: dict[str, Any]) -> None:
        if fault.do == "hang":
            seconds = faulting.hang_seconds(fault, self.sandbox.config)
            log.info("fault: hanging %.1fs", seconds)
            self.sandbox.stopping.wait(seconds)
            self._close_silently()
        self._answer(faulting.early_answer(fault, req, str(self.client_address[0])), None, entry)

    def _faulted_write(self, fault: Fault | None) -> NoReturn:
        """drop/truncate on a write: the call fails without changing state and without an answer."""
        log.info("fault: %s on a write call, no answer", fault.do if fault else "?")
        if faulting.resets(fault):
            self._reset_connection()
        self._close_silently()

    # ----------------------------------------------------------------- answer

    def _answer(self, resp: ApiResponse, fault: Fault | None, entry: dict[str, Any]) -> None:
        """Send ``resp``; with drop/truncate only part of the body (honest Content-Length)."""
        limit = faulting.cut_at(fault, resp.size)
        try:
            entry["status"] = resp.status
            if limit is None:
                self._send_logging_first(resp, entry)
            else:
                self._send_head(resp.status, resp.content_type, resp.size)
                sent = self._send_body(resp, 0, limit)
                if entry["bytes"] == 0 or resp.stream is not None:
                    entry["bytes"] = sent
        finally:
            resp.close()
        if limit is not None:
            if faulting.resets(fault):
                self._reset_connection()
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
        if isinstance(self.connection, ssl.SSLSocket):
            return _send_tls(self.connection, resp.stream, start, end)
        return int(self.connection.sendfile(resp.stream, start, end - start))


TLS_BLOCK = 1 << 20


def _send_tls(conn: ssl.SSLSocket, stream: Any, start: int, end: int) -> int:
    """sendfile for TLS: the kernel cannot encrypt, and socket.sendfile's fallback sends 8 KiB at a time."""
    stream.seek(start)
    sent = 0
    while sent < end - start:
        block = stream.read(min(TLS_BLOCK, end - start - sent))
        if not block:
            break
        conn.sendall(block)
        sent += len(block)
    return sent


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
