"""``call_budget`` bounds a whole metadata call, retries included, and never a transfer that keeps moving.

A small HTTP server on 127.0.0.1 plays REDCap: it answers a file export by
trickling the body (each pause shorter than the read timeout, the whole longer
than the budget), and answers anything else only after a pause longer than the
budget. No timed assertion: the checks are which calls the server saw and what
each call returned.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import ClassVar

import pytest

from redcapfs import errors as E
from redcapfs.client.http import HttpClient

BUDGET = 1.0
CHUNKS = 8
PAUSE = 0.4  # between chunks: under the read timeout, and CHUNKS * PAUSE is well over BUDGET
STALL = 4.0  # a metadata answer comes only after this: over BUDGET


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        content, fileinfo = form.get("content", [""])[0], "fileinfo" in form
        self.seen.append("fileinfo" if fileinfo else content)
        if content == "file" and not fileinfo:
            self.send_response(200)
            self.send_header("Content-Type", 'text/plain; name="slow.txt"')
            self.send_header("Content-Length", str(CHUNKS))
            self.end_headers()
            for _ in range(CHUNKS):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(PAUSE)
            return
        time.sleep(STALL)
        body = b'{"error": "late"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def slow_server() -> Iterator[str]:
    _Slow.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    finally:
        server.shutdown()
        server.server_close()


def client(url: str) -> HttpClient:
    return HttpClient(url, "A" * 32, timeout=(BUDGET, BUDGET), rate_limit=None, retries=4, backoff=0.01,
                      retry_deadline=60, call_budget=BUDGET)


def test_a_transfer_that_keeps_moving_is_not_cut() -> None:
    with slow_server() as url, client(url) as c:
        out = BytesIO()
        info = c.export_file("1", "doc", out)
        assert out.getvalue() == b"x" * CHUNKS and info.name == "slow.txt"


def test_a_stalled_metadata_call_ends_after_one_bound_with_no_retry_left() -> None:
    with slow_server() as url, client(url) as c:
        with pytest.raises(E.RequestTimeout):
            c.project_info()
        # four retries were allowed, but the budget had no room for a second attempt
        assert _Slow.seen == ["project"]


def test_without_a_budget_the_same_call_is_retried() -> None:
    with slow_server() as url, HttpClient(url, "A" * 32, timeout=(BUDGET, BUDGET), rate_limit=None, retries=1,
                                          backoff=0.01, retry_deadline=60) as c:
        with pytest.raises(E.RequestTimeout):
            c.project_info()
        assert _Slow.seen == ["project", "project"]
