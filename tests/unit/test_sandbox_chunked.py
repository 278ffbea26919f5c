"""The sandbox and chunked request bodies: small pieces, a body cut short, and ``--no-chunked``.

Every upload goes to a real sandbox process over HTTP; what it stored is read
back with PyCap, what it answered from the request log.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

redcap = pytest.importorskip("redcap")

SLOT = {"record": "1001", "field": "consent_form", "event": "screening_arm_1"}  # the bundled demo project
BOUNDARY = "b0undary-7f3a"
NEAR = [b"--" + BOUNDARY.encode() + b"X", b"\r\n--" + BOUNDARY.encode() + b"-", b"\r", b"\r\n", b"\n--", b""]


def multipart(token: str, data: bytes, name: str = "x.bin") -> bytes:
    fields = {"token": token, "content": "file", "action": "import", **SLOT}
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return b"".join(parts) + head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def pieces(body: bytes, step: int) -> Iterator[bytes]:
    for i in range(0, len(body), step):
        yield body[i:i + step]


def post_chunked(url: str, body: bytes, step: int) -> requests.Response:
    """``requests`` sends a generator with Transfer-Encoding: chunked, one chunk per piece."""
    return requests.post(url, data=pieces(body, step), timeout=60,
                         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def stored(sb) -> bytes | None:
    try:
        return redcap.Project(sb.url, sb.token).export_file(**SLOT)[0]
    except redcap.RedcapError:
        return None


def test_a_multipart_body_in_small_chunks_is_stored_exactly(sandbox) -> None:
    """werkzeug's decoder used to take a delimiter's ``\\r`` for data when a piece ended just after the boundary:
    a form value got a trailing ``\\r`` (record ``1001\\r``: HTTP 400) or the file a byte too many."""
    sb = sandbox()
    blob = bytearray(random.Random(8).randbytes(3000))
    for i, piece in enumerate(NEAR):
        blob[400 * i + 100:400 * i + 100 + len(piece)] = piece
    for n, data in enumerate([bytes(blob), *NEAR, b"plain", bytes(blob) + b"\r\n--" + BOUNDARY.encode() + b"Z"]):
        body = multipart(sb.token, data, f"f{n}.bin")
        for step in [*range(1, 24), 31, 32, 33, 64, 100, 4099]:
            resp = post_chunked(sb.url, body, step)
            assert resp.status_code == 200, (n, step, resp.text)
            assert stored(sb) == data, (n, step)


def test_a_chunked_body_cut_short_stores_nothing(sandbox) -> None:
    """A client that closes the connection mid-body (no closing boundary, no last chunk) changes nothing."""
    sb = sandbox()
    before = stored(sb)
    body = multipart(sb.token, random.Random(1).randbytes(200_000))
    parts = urlsplit(sb.url)
    for cut in (len(body) // 2, len(body) - 3, len(body)):  # the last one lacks only the zero chunk
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
            head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTransfer-Encoding: chunked\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode()
            conn.sendall(head + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(body[:cut], 8192)))
            conn.shutdown(socket.SHUT_WR)
            conn.recv(1024)  # whatever it says (an error, or nothing): it must not have stored the file
    assert stored(sb) == before
    imports = sb.calls(at_least=3, content=None, action=None) + sb.calls(content="file", action="import")
    assert len(imports) == 3 and not [c for c in imports if c.get("status") == 200], imports


@pytest.mark.parametrize(("mode", "status", "message"), [
    ("nofile", 400, "No valid file was uploaded"),
    ("empty", 403, "You do not have permissions to use the API"),
    ("411", 411, "Length Required"),
])
def test_no_chunked_plays_a_proxy_that_drops_chunked_bodies(mode: str, status: int, message: str,
                                                            sandbox) -> None:
    sb = sandbox("--no-chunked", mode)
    before = stored(sb)
    body = multipart(sb.token, b"the bytes " * 50_000)
    resp = post_chunked(sb.url, body, 1 << 16)
    assert resp.status_code == status and message in resp.text, resp.text
    assert stored(sb) == before
    sent = requests.post(sb.url, data=body, timeout=60,  # with a Content-Length the same body goes through
                         headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert sent.status_code == 200, sent.text
    assert stored(sb) == b"the bytes " * 50_000
