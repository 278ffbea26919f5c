"""Small real servers for the https mount tests: a CONNECT proxy and a redirecting http server, on 127.0.0.1.

Both are written here on sockets and ``http.server`` so that the tests depend on
nothing but the standard library; each records what it saw, which is what the
tests assert on (the proxy saw the CONNECT; the redirector was asked).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

redcap = pytest.importorskip("redcap")


@dataclass
class Seen:
    """What a helper server was asked (request lines), in order."""

    lines: list[str] = field(default_factory=list)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _tunnel(client: socket.socket, seen: Seen) -> None:
    """One proxied connection: read ``CONNECT host:port``, dial it, answer 200, then relay both ways."""
    with client:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        seen.lines.append(line)
        method, target, _ = (line.split(" ") + ["", ""])[:3]
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not port.isdigit():
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            upstream.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(30)


@contextmanager
def connect_proxy() -> Iterator[tuple[str, Seen]]:
    """A CONNECT-only proxy on 127.0.0.1: ``(proxy URL, what it saw)``."""
    seen = Seen()
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_tunnel, args=(client, seen), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        listener.close()
        thread.join(5)


@contextmanager
def redirector(location: str, status: int) -> Iterator[tuple[str, Seen]]:
    """A plain http server on 127.0.0.1 answering every request with ``status`` to ``location``."""
    seen = Seen()

    class Redirect(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.lines.append(self.requestline)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/", seen
    finally:
        server.shutdown()
        server.server_close()


def pycap_file(sb: Any, record: str, field: str, event: str | None) -> tuple[str, bytes] | None:
    """(name, bytes) of a slot read by PyCap over https, trusting only the sandbox's CA; None when empty."""
    project = redcap.Project(sb.url, sb.token, verify_ssl=str(sb.ca))
    try:
        content, headers = project.export_file(record=record, field=field, event=event)
    except Exception as exc:  # PyCap raises RedcapError for an empty slot
        if "no file" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise
    return headers["name"], content
