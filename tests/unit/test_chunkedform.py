"""The chunked Import File body (client/chunkedform.py): the ordinary body's bytes, sent as they come.

The framing is compared byte for byte with ``FileForm`` (itself compared with
requests-toolbelt's encoder in test_formbody.py); the upload goes to the real
sandbox over HTTP and is read back with PyCap; the request log says how it
travelled.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from redcapfs import errors as E
from redcapfs.client import HttpClient
from redcapfs.client.chunkedform import PIECE, ChunkedFileForm
from redcapfs.client.formbody import BLOCK, FileForm
from redcapfs.fs.streaming import StreamAborted

redcap = pytest.importorskip("redcap")

FIELDS = [("token", "A" * 32), ("content", "file"), ("action", "import"), ("record", "1 0"), ("field", "doc")]
SLOT = {"record": "1001", "field": "consent_form", "event": "screening_arm_1"}  # the bundled demo project


@pytest.mark.parametrize("name", ["a.pdf", "Ünïcode;x.pdf", 'a"b.txt', "sp ace=%41.bin"])
@pytest.mark.parametrize("size", [0, 1, BLOCK, 2 * BLOCK + 17])
def test_the_chunked_body_is_the_ordinary_body_byte_for_byte(tmp_path: Path, name: str, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        form = FileForm(FIELDS, "file", name, fh, size, "application/pdf", boundary="b0und")
        expected = b"".join(bytes(p) for p in form)
    pieces = [data[i:i + 1000] for i in range(0, size, 1000)] + [b""]  # an empty piece is never a chunk
    sent: list[int] = []
    chunked = ChunkedFileForm(FIELDS, "file", name, "application/pdf", iter(pieces), on_sent=sent.append,
                              boundary="b0und")
    body = list(chunked)
    assert b"".join(bytes(p) for p in body) == expected
    assert all(len(p) for p in body)
    assert chunked.content_type == "multipart/form-data; boundary=b0und"
    assert (sent[-1] if sent else 0) == size == chunked.file_bytes


def blocks(data: bytes, step: int) -> Iterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i:i + step]


def stored(sb) -> bytes | None:
    try:
        return redcap.Project(sb.url, sb.token).export_file(**SLOT)[0]
    except redcap.RedcapError:
        return None


def test_import_file_stream_sends_chunked_and_the_server_stores_the_bytes(sandbox) -> None:
    sb = sandbox()
    data = os.urandom(3 * BLOCK + 5)
    with HttpClient(sb.url, sb.token, rate_limit=None) as client:
        client.import_file_stream(SLOT["record"], SLOT["field"], "scan.bin", blocks(data, 300_000),
                                  event=SLOT["event"])
        assert client.stats.snapshot()["transfers"]["upload"] == {"count": 1, "bytes": len(data)}
    assert stored(sb) == data
    (call,) = sb.calls(at_least=1, content="file", action="import")
    assert (call.get("chunked"), call["status"], call["bytes"]) == (True, 200, len(data))


def test_an_abort_inside_the_body_closes_the_connection_mid_body_and_nothing_is_stored(sandbox) -> None:
    """No closing boundary and no zero chunk: the server sees an incomplete request."""
    sb = sandbox()
    before = stored(sb)

    def pieces() -> Iterator[bytes]:
        yield os.urandom(BLOCK)
        yield os.urandom(BLOCK)
        raise StreamAborted("the writer went back")

    with HttpClient(sb.url, sb.token, rate_limit=None) as client:
        with pytest.raises(StreamAborted, match="the writer went back"):
            client.import_file_stream(SLOT["record"], SLOT["field"], "scan.bin", pieces(), event=SLOT["event"])
        client.version()  # the pool is usable afterwards (the broken connection was dropped)
    assert stored(sb) == before
    (call,) = sb.calls(at_least=1, content="file", action="import")
    assert call.get("chunked") is True and call["status"] is None, call


def test_a_refusal_of_the_chunked_body_is_an_answer_with_its_status(sandbox) -> None:
    sb = sandbox("--no-chunked")
    with HttpClient(sb.url, sb.token, rate_limit=None) as client, pytest.raises(E.RedcapError) as info:
        client.import_file_stream(SLOT["record"], SLOT["field"], "scan.bin", blocks(b"x" * BLOCK, 4096),
                                  event=SLOT["event"])
    assert info.value.status == 400 and "No valid file was uploaded" in info.value.message


def test_on_the_clients_own_connection_each_piece_is_one_chunk(sandbox) -> None:
    """The form frames and sends its pieces itself (client/directsend.py): a 1 MiB piece is a 1 MiB chunk."""
    sb = sandbox()
    data = os.urandom(3 * BLOCK + 5)
    with HttpClient(sb.url, sb.token, rate_limit=None) as client:
        client.import_file_stream(SLOT["record"], SLOT["field"], "scan.bin", blocks(data, BLOCK),
                                  event=SLOT["event"])
    assert stored(sb) == data
    (call,) = sb.calls(at_least=1, content="file", action="import")
    assert call["largest_chunk"] == BLOCK, call


class RelayProxy:
    """A plain-HTTP forward proxy on 127.0.0.1: each request's absolute URL becomes a path, then bytes flow."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        rfile = client.makefile("rb")
        line = rfile.readline()
        method, url, version = line.split(b" ", 2)
        path = b"/" + url.split(b"/", 3)[3]  # http://host:port/api/ -> /api/
        self.requests += 1
        upstream.sendall(b" ".join([method, path, version]))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        while True:
            data = rfile.read1(1 << 16)
            if not data:
                break
            upstream.sendall(data)
        upstream.shutdown(socket.SHUT_WR)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        while data := src.recv(1 << 16):
            dst.sendall(data)
        dst.close()

    def close(self) -> None:
        self.server.close()


def test_through_a_proxy_urllib3_frames_the_pieces_and_the_bytes_arrive(sandbox, monkeypatch) -> None:
    """Through a proxy the form hands urllib3 its pieces (its pool classes, not ours), 120 KiB a chunk."""
    sb = sandbox()
    port = int(sb.url.rsplit(":", 1)[1].split("/")[0])
    proxy = RelayProxy(port)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "")
    data = os.urandom(2 * BLOCK + 7)
    try:
        with HttpClient(sb.url, sb.token, rate_limit=None) as client:
            client.import_file_stream(SLOT["record"], SLOT["field"], "scan.bin", blocks(data, BLOCK),
                                      event=SLOT["event"])
    finally:
        proxy.close()
    assert proxy.requests >= 1
    assert stored(sb) == data
    (call,) = sb.calls(at_least=1, content="file", action="import")
    assert call.get("chunked") is True and call["largest_chunk"] == PIECE, call
