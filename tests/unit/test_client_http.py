"""``HttpClient`` against the real sandbox server (a subprocess on 127.0.0.1).

Each test seeds a data dir with a small known project (``tests/sandbox_projects``)
and starts the sandbox on it; the request log (``sb.calls()``) is how the tests
see what actually went over the wire (retries, aborted downloads, rate).
"""

from __future__ import annotations

import http.server
import io
import logging
import os
import resource
import socket
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import classic_project, longitudinal_project, seed

from redcapfs import errors as E
from redcapfs.client import FileInfo, HttpClient
from redcapfs.client.http import RateLimiter, RetryPolicy
from redcapfs.redcapnames import stored_name

FULL = "A" * 32
EXPORT = "B" * 32
WRONG = "F" * 32
BASE = "baseline_arm_1"


@pytest.fixture
def start(sandbox, tmp_path):
    """Start a sandbox on a seeded data dir: ``start()`` longitudinal, ``start(classic=True)``."""

    def go(*args: str, classic: bool = False, name: str = "sb"):
        build = classic_project if classic else longitudinal_project
        seed(tmp_path / f"{name}-data", build(tmp_path / f"{name}-src"))
        return sandbox("--token", FULL, "--token", f"{EXPORT}:export", *args, name=name)

    return go


@pytest.fixture
def clients():
    """Factory for clients with fast retries and no rate limit; all closed at the end."""
    made: list[HttpClient] = []

    def make(sb_or_url: Any, token: str = FULL, **kw: Any) -> HttpClient:
        url = sb_or_url if isinstance(sb_or_url, str) else sb_or_url.url
        kw.setdefault("rate_limit", None)
        kw.setdefault("backoff", 0.05)
        kw.setdefault("max_backoff", 0.2)
        client = HttpClient(url, token, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def wait_for(cond: Any, seconds: float) -> bool:
    """Poll ``cond`` (the sandbox logs a call when it ends, e.g. after a hang)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


class Unseekable(io.RawIOBase):
    """A pipe-like sink: write only, cannot be rewound."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.data += bytes(b)
        return len(b)


class CountingSink(Unseekable):
    """Counts bytes without keeping them (large downloads)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def write(self, b: Any) -> int:
        self.count += len(b)
        return len(b)


# ------------------------------------------------------------------ the calls


def test_structure_longitudinal(start, clients):
    sb = start()
    c = clients(sb)
    info = c.project_info()
    assert info["project_title"] == "Sandbox longitudinal" and info["is_longitudinal"] == 1
    assert c.version().count(".") >= 1
    meta = c.metadata()
    assert meta[0]["field_name"] == "record_id" and c.record_id_field() == "record_id"
    assert [a["arm_num"] for a in c.arms()] == [1, 2]
    assert [e["unique_event_name"] for e in c.events()] == ["baseline_arm_1", "followup_arm_1", "baseline_arm_2"]
    assert len(c.form_event_mapping()) == 4
    assert {(r["event_name"], r["form_name"]) for r in c.repeating_forms_events()} == {
        ("baseline_arm_1", "adverse_events"), ("followup_arm_1", "")}
    assert [i["instrument_name"] for i in c.instruments()] == ["demographics", "visit", "adverse_events"]
    sent = sb.calls()
    assert {r["content"] for r in sent} >= {"project", "version", "metadata", "arm", "event", "formEventMapping",
                                            "repeatingFormsEvents", "instrument"}


def test_structure_classic_answers_empty_lists(start, clients):
    sb = start(classic=True)
    c = clients(sb)
    assert c.project_info()["is_longitudinal"] == 0
    assert c.arms() == [] and c.events() == [] and c.form_event_mapping() == []
    assert c.repeating_forms_events() == [{"form_name": "attachments", "custom_form_label": ""}]
    assert [r["status"] for r in sb.calls(content="arm")] == [400]  # the documented 400, not retried


def test_export_records_filters_and_batches(start, clients):
    sb = start()
    c = clients(sb)
    rows = c.export_records()
    assert [r["record_id"] for r in rows][:4] == ["1", "1", "1", "1"]
    assert {r["record_id"] for r in rows} == {"1", "2", "3", "9"}
    for size in (1, 2, 3, 100):
        assert c.export_records(batch_size=size) == rows
    only = c.export_records(records=["2", "3"], fields=["name"])
    assert [r["record_id"] for r in only] == ["2", "3"] and all("visit_date" not in r for r in only)
    assert c.export_records(records=["2", "3"], fields=["name"], batch_size=1) == only
    ev = c.export_records(events=["followup_arm_1"])
    assert {r["redcap_event_name"] for r in ev} == {"followup_arm_1"}
    assert c.export_records(events=["followup_arm_1"], batch_size=1) == ev
    assert c.export_records(records=[]) == []
    # indexed arrays on the wire: the batched run asked for one record per call
    assert any(r["content"] == "record" for r in sb.calls())


def test_file_fields_show_names_and_legacy_document(start, clients):
    sb = start()
    rows = clients(sb).export_records(records=["1"], events=[BASE])
    base = next(r for r in rows if not r.get("redcap_repeat_instrument"))
    assert base["consent_file"] == "consent.pdf"
    sb.stop()
    legacy = start("--legacy-document-values", name="legacy")
    rows = clients(legacy).export_records(records=["1"], events=[BASE])
    assert next(r for r in rows if not r.get("redcap_repeat_instrument"))["consent_file"] == "[document]"


def test_import_records_and_next_name(start, clients):
    sb = start()
    c = clients(sb)
    nxt = c.generate_next_record_name()
    assert nxt.isdigit()
    assert c.import_records([{"record_id": nxt, "redcap_event_name": BASE, "name": "Dora"}]) == {"count": 1}
    assert c.import_records([{"record_id": nxt, "redcap_event_name": BASE}], return_content="ids") == [nxt]
    assert c.export_records(records=[nxt])[0]["name"] == "Dora"


NAMES = ["plain.txt", 'a;b".pdf', "café €.txt", "semi;colon.bin", "no extension"]


@pytest.mark.parametrize("name", NAMES)
def test_file_round_trip_keeps_odd_names(start, clients, tmp_path, name):
    sb = start()
    c = clients(sb)
    data = os.urandom(3000) + name.encode()
    c.import_file("2", "consent_file", write(tmp_path, "up", data), name, event=BASE)
    out = io.BytesIO()
    info = c.export_file("2", "consent_file", out, event=BASE)
    assert out.getvalue() == data
    stored = stored_name(name)  # a '"' arrives as %22: PHP does not decode it (redcapnames)
    assert info.name == stored and info.size == len(data)
    assert c.file_info("2", "consent_file", event=BASE) == FileInfo(stored, len(data), None)
    c.delete_file("2", "consent_file", event=BASE)
    with pytest.raises(E.EmptySlot):
        c.export_file("2", "consent_file", io.BytesIO(), event=BASE)


def test_repeat_instances_and_upload_replaces(start, clients, tmp_path):
    sb = start()
    c = clients(sb)
    out = io.BytesIO()
    assert c.export_file("1", "ae_doc", out, event=BASE, repeat_instance=2).name == "ae2.txt"
    assert out.getvalue() == b"second adverse event\n"
    c.import_file("1", "ae_doc", write(tmp_path, "n", b"new"), "ae3.txt", event=BASE, repeat_instance=3)
    c.import_file("1", "ae_doc", write(tmp_path, "m", b"newer"), "ae3b.txt", event=BASE, repeat_instance=3)
    out = io.BytesIO()
    assert c.export_file("1", "ae_doc", out, event=BASE, repeat_instance=3).name == "ae3b.txt"
    assert out.getvalue() == b"newer"


def test_export_logging(start, clients, tmp_path):
    sb = start()
    c = clients(sb)
    c.import_file("2", "consent_file", write(tmp_path, "x", b"x"), "x.txt", event=BASE)
    rows = c.export_logging(record="2")
    assert rows and all(r["record"] == "2" for r in rows)
    assert {"timestamp", "username", "action", "details", "record"} <= set(rows[0])


# --------------------------------------------------------------------- errors


def error_cases(tmp_path: Path) -> list[tuple[str, Any, type, str, dict]]:
    """(label, call(client_full, client_export), error class, message fragment, context)."""
    small = write(tmp_path, "small.txt", b"small")
    big = write(tmp_path, "big.bin", b"\0" * (1024 * 1024 + 10))
    out = io.BytesIO()
    return [
        ("export-only token writes", lambda f, x: x.import_file("2", "consent_file", small, "s.txt", event=BASE),
         E.NoRights, "You do not have API Import/Update privileges", {"record": "2", "action": "import"}),
        ("empty slot", lambda f, x: f.export_file("2", "consent_file", out, event=BASE),
         E.EmptySlot, "There is no file to download for this record", {"record": "2", "event": BASE}),
        ("empty slot delete", lambda f, x: f.delete_file("2", "consent_file", event=BASE),
         E.EmptySlot, "There is no file to delete for this record", {"action": "delete"}),
        ("not a file field", lambda f, x: f.export_file("1", "name", out, event=BASE),
         E.NotAFileField, "The field 'name' does not exist or is not a 'file' field", {"field": "name"}),
        ("bad event", lambda f, x: f.export_file("1", "consent_file", out, event="nope_arm_1"),
         E.InvalidEvent, "invalid event", {"event": "nope_arm_1"}),
        ("record missing in event", lambda f, x: f.export_file("77", "consent_file", out, event=BASE),
         E.NoSuchRecord, 'The record "77" does not exist', {"record": "77"}),
        ("missing record on import", lambda f, x: f.import_file("77", "consent_file", small, "s.txt", event=BASE),
         E.NoSuchRecord, "It must exist to upload a file", {"record": "77", "action": "import"}),
        ("signature import", lambda f, x: f.import_file("1", "signature", small, "s.png", event=BASE),
         E.SignatureField, "is a signature field", {"field": "signature"}),
        ("too large", lambda f, x: f.import_file("2", "consent_file", big, "big.bin", event=BASE),
         E.TooLarge, "exceeded the maximum file size limit of 1 MB", {"record": "2"}),
        ("locked record", lambda f, x: f.import_file("9", "consent_file", small, "s.txt", event=BASE),
         E.Locked, 'record "9" is locked', {"record": "9"}),
        ("locked delete", lambda f, x: f.delete_file("9", "consent_file", event=BASE),
         E.Locked, "is locked", {"record": "9", "action": "delete"}),
    ]


def test_every_typed_error_keeps_message_and_context(start, clients, tmp_path):
    sb = start("--max-upload-mb", "1", "--lock", "9")
    full, export = clients(sb), clients(sb, EXPORT)
    for label, call, cls, fragment, ctx in error_cases(tmp_path):
        with pytest.raises(cls) as info:
            call(full, export)
        exc = info.value
        assert type(exc) is cls, label
        assert fragment in exc.message, label
        assert exc.content == "file" and exc.status in (400, 403), label
        for key, value in ctx.items():
            assert getattr(exc, key) == value, label
        assert FULL not in str(exc) and EXPORT not in str(exc)


def test_wrong_token_is_bad_token(start, clients):
    sb = start()
    with pytest.raises(E.BadToken) as info:
        clients(sb, WRONG).metadata()
    assert info.value.message == "You do not have permissions to use the API" and info.value.status == 403
    assert len(sb.calls(content="metadata")) == 1  # 403 is not retried


def test_token_shape_is_checked():
    for bad in ("", "abc def", "A" * 32 + "\n"):
        with pytest.raises(ValueError) as info:
            HttpClient("http://127.0.0.1:1/api/", bad)
        assert bad.strip() == "" or bad.strip() not in str(info.value)
    with pytest.raises(ValueError):
        HttpClient("ftp://example.org/api/", FULL)


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    """A web server that is not REDCap: HTML on /, 404 elsewhere."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 200 if self.path == "/" else 404
        body = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body>hi</body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def html_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_wrong_url_html_page_is_protocol_error(html_server, clients):
    with pytest.raises(E.ProtocolError) as info:
        clients(html_server + "/").metadata()
    assert "does not answer like a REDCap API (HTTP 200, text/html)" in info.value.message
    with pytest.raises(E.ProtocolError) as info:
        clients(html_server + "/redcap/api/").version()
    assert "does not answer like a REDCap API (HTTP 404, text/html)" in info.value.message
    with pytest.raises(E.ProtocolError):
        clients(html_server + "/").export_file("1", "f", io.BytesIO())


def test_sandbox_wrong_path_is_protocol_error(start, clients):
    sb = start()
    with pytest.raises(E.ProtocolError) as info:
        clients(sb.url.replace("/api/", "/apx/")).project_info()
    assert "HTTP 404" in info.value.message


def test_closed_port_is_transport_error(clients):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = clients(f"http://127.0.0.1:{port}/api/", retries=2)
    started = time.monotonic()
    with pytest.raises(E.TransportError) as info:
        c.version()
    assert type(info.value) is E.TransportError and info.value.content == "version"
    assert time.monotonic() - started < 5
    assert FULL not in str(info.value)


def test_tls_to_plain_http_is_tls_error(start, clients):
    sb = start()
    with pytest.raises(E.TLSError):
        clients(sb.url.replace("http://", "https://")).version()


# -------------------------------------------------------------------- retries


def test_retry_after_503_succeeds(start, clients):
    sb = start("--fault", "content=metadata,nth=1,do=503")
    assert clients(sb).metadata()[0]["field_name"] == "record_id"
    assert [r["status"] for r in sb.calls(content="metadata")] == [503, 200]


def test_hang_ends_in_request_timeout_after_bounded_retries(start, clients):
    sb = start("--fault", "content=metadata,do=hang,seconds=5")
    c = clients(sb, timeout=(2, 1), retries=2)
    started = time.monotonic()
    with pytest.raises(E.RequestTimeout):
        c.metadata()
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 6  # three attempts of ~1 s each plus short backoffs
    assert wait_for(lambda: len(sb.calls(content="metadata")) == 3, 10)  # logged when each hang ends


def test_retry_deadline_bounds_total_time(start, clients):
    sb = start("--fault", "content=metadata,do=503")
    c = clients(sb, retries=50, backoff=0.2, max_backoff=0.4, retry_deadline=1.0)
    started = time.monotonic()
    with pytest.raises(E.ServerError) as info:
        c.metadata()
    assert info.value.status == 503 and time.monotonic() - started < 2.0
    assert 2 <= len(sb.calls(content="metadata")) < 20


# Far more than loopback socket buffers hold: a TCP RST (do=drop) discards data the client has not read
# yet, so only a body this large guarantees that some bytes reached ``out`` before the break.
BIG = 32 * 1024 * 1024


def broken_sandbox(start, clients, tmp_path, fault: str) -> tuple[Any, HttpClient, bytes]:
    """A sandbox whose first file export breaks after 5/6 of the body, and a BIG file in record 2."""
    sb = start("--fault", f"content=file,action=export,nth=1,do={fault},after={BIG - BIG // 6}")
    c = clients(sb)
    data = os.urandom(BIG)
    c.import_file("2", "consent_file", write(tmp_path, "big", data), "big.bin", event=BASE)
    return sb, c, data


@pytest.mark.parametrize("fault", ["drop", "truncate"])
def test_broken_download_unseekable_raises(start, clients, tmp_path, fault):
    sb, c, data = broken_sandbox(start, clients, tmp_path, fault)
    out = Unseekable()
    with pytest.raises(E.TransportError) as info:
        c.export_file("2", "consent_file", out, event=BASE)
    assert info.value.record == "2" and info.value.field == "consent_file"
    assert 0 < len(out.data) < BIG and data.startswith(bytes(out.data))
    assert len(sb.calls(content="file", action="export")) == 1


@pytest.mark.parametrize("fault", ["drop", "truncate"])
def test_broken_download_seekable_is_restarted(start, clients, tmp_path, fault):
    sb, c, data = broken_sandbox(start, clients, tmp_path, fault)
    with open(tmp_path / "out", "w+b") as out:
        info = c.export_file("2", "consent_file", out, event=BASE)
        out.seek(0)
        assert out.read() == data  # the partial first attempt was truncated away
    assert info == FileInfo("big.bin", BIG, "application/octet-stream")
    assert len(sb.calls(content="file", action="export")) == 2


@pytest.mark.parametrize("fault", ["drop", "truncate"])
def test_break_before_any_byte_is_retried_even_unseekable(start, clients, fault):
    """The body broke before its first byte: restarting is safe for any output."""
    sb = start("--fault", f"content=file,action=export,nth=1,do={fault},after=0")
    out = Unseekable()
    info = clients(sb).export_file("1", "consent_file", out, event=BASE)
    assert bytes(out.data) == b"%PDF-1.4 consent" and info.size == 16
    assert len(sb.calls(content="file")) == 2


@pytest.mark.parametrize("call", ["import", "delete"])
def test_writes_are_never_retried(start, clients, tmp_path, call):
    sb = start("--fault", f"content=file,action={call},do=500")
    c = clients(sb)
    with pytest.raises(E.ServerError) as info:
        if call == "import":
            c.import_file("2", "consent_file", write(tmp_path, "x", b"x"), "x.txt", event=BASE)
        else:
            c.delete_file("1", "consent_file", event=BASE)
    assert info.value.status == 500 and info.value.action == call
    assert len(sb.calls(content="file", action=call)) == 1


def test_record_import_and_next_name_are_never_retried(start, clients):
    sb = start("--fault", "content=record,do=503", "--fault", "content=generateNextRecordName,do=503")
    c = clients(sb)
    with pytest.raises(E.ServerError):
        c.import_records([{"record_id": "5", "redcap_event_name": BASE}])
    with pytest.raises(E.ServerError):
        c.generate_next_record_name()
    assert len(sb.calls(content="record")) == 1 and len(sb.calls(content="generateNextRecordName")) == 1


def test_retries_are_logged_without_token(start, clients, caplog):
    sb = start("--fault", "content=metadata,nth=1,do=503")
    with caplog.at_level(logging.WARNING, logger="redcapfs.client.http"):
        clients(sb).metadata()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "metadata" in warnings[0].getMessage()


def test_retry_policy_full_jitter_bounds():
    policy = RetryPolicy(retries=4, backoff=0.5, max_backoff=8, deadline=60)
    for attempt in range(10):
        for _ in range(50):
            assert 0 <= policy.delay(attempt) <= min(8, 0.5 * 2**attempt)


# ----------------------------------------------------------------- fileinfo


def test_fileinfo_fast_path(start, clients):
    sb = start()
    c = clients(sb)
    assert c.file_info("1", "consent_file", event=BASE) == FileInfo("consent.pdf", 16, None)
    assert c.fileinfo_supported is True
    with pytest.raises(E.EmptySlot):
        c.file_info("2", "consent_file", event=BASE)
    assert all(r.get("fileinfo") for r in sb.calls(content="file"))
    assert not [r for r in sb.calls(content="log")]


def test_no_fileinfo_falls_back_without_reading_the_file(start, clients, tmp_path):
    sb = start("--no-fileinfo", "--max-upload-mb", "200")
    c = clients(sb)
    size = 64 * 1024 * 1024
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(size)
    c.import_file("2", "consent_file", str(big), "big.bin", event=BASE)
    assert c.file_info("2", "consent_file", event=BASE) is None
    assert c.fileinfo_supported is False
    assert c.file_info("1", "consent_file", event=BASE) is None  # remembered: no second try
    assert wait_for(lambda: len(sb.calls(content="file", action="export")) == 1, 5)
    exports = sb.calls(content="file", action="export")
    print(f"abandoned download: {exports[0]['bytes']} of {size} bytes sent")
    assert exports[0]["bytes"] < size // 2  # the download was abandoned, not read through


# -------------------------------------------------------------- big files


def test_large_file_streams_both_ways_in_bounded_memory(start, clients, tmp_path):
    size = 300 * 1024 * 1024
    sb = start("--max-upload-mb", "400")
    c = clients(sb, timeout=(10, 120))
    src = tmp_path / "sparse.bin"
    with open(src, "wb") as fh:
        fh.seek(size - 5)
        fh.write(b"tail!")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        c.import_file("2", "consent_file", str(src), "sparse.bin", event=BASE)
        sink = CountingSink()
        info = c.export_file("2", "consent_file", sink, event=BASE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert info.size == size and sink.count == size and info.name == "sparse.bin"
    print(f"300 MB round trip: tracemalloc peak {peak / 2**20:.1f} MiB, ru_maxrss growth {rss_growth / 2**20:.1f} MiB")
    assert peak < 32 * 1024 * 1024, peak
    assert rss_growth < 64 * 1024 * 1024, rss_growth
    assert sb.calls(content="file", action="import")[0]["bytes"] >= size


# ---------------------------------------------------------- rate and threads


def test_rate_limit_bounds_requests_per_second(start, clients):
    sb = start()
    c = clients(sb, rate_limit=10.0)
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: c.version(), range(30)))
    elapsed = time.monotonic() - started
    assert elapsed >= (30 - 10) / 10 * 0.9  # burst of 10, then 10 per second
    times = sorted(r["time"] for r in sb.calls(content="version"))
    worst = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    assert worst <= 10 + 10 + 1  # loose: one burst plus one second's refill


def test_rate_limiter_token_bucket_with_fake_clock():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = RateLimiter(5.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        assert bucket.acquire() == 0.0
    # refilled at 5/s less the burst spread over its minute: no 60 s window holds more than 300 calls
    assert bucket.acquire() == pytest.approx(1 / (5 - 5 / 60))
    assert bucket.acquire() == pytest.approx(1 / (5 - 5 / 60))
    now[0] += 10
    assert bucket.acquire() == 0.0


def test_concurrent_downloads_share_one_client(start, clients):
    sb = start()
    c = clients(sb, pool_size=4)

    def one(_: int) -> bytes:
        out = io.BytesIO()
        c.export_file("1", "consent_file", out, event=BASE)
        return out.getvalue()

    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(one, range(40))) == {b"%PDF-1.4 consent"}


# ------------------------------------------------------------------- secrecy


def test_token_never_in_repr_logs_or_errors(start, clients, caplog, tmp_path):
    sb = start("--fault", "content=metadata,nth=1,do=503", "--max-upload-mb", "1")
    c = clients(sb)
    assert FULL not in repr(c) and FULL not in str(c)
    with caplog.at_level(logging.DEBUG):
        c.metadata()
        c.export_file("1", "consent_file", io.BytesIO(), event=BASE)
        c.file_info("1", "consent_file", event=BASE)
        c.import_file("2", "consent_file", write(tmp_path, "x", b"x"), "x.txt", event=BASE)
        errors = []
        for call in (lambda: c.export_file("2", "signature", io.BytesIO(), event=BASE),
                     lambda: clients(sb, WRONG).version(),
                     lambda: clients("http://127.0.0.1:9/api/", retries=0).version()):
            try:
                call()
            except E.RedcapError as exc:
                errors.append(exc)
    assert len(errors) == 3
    assert any("urllib3" in r.name for r in caplog.records)  # DEBUG really was on
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(caplog.text.splitlines())
    assert FULL not in text and WRONG not in text
    for exc in errors:
        assert FULL not in str(exc) and WRONG not in str(exc) and FULL not in repr(exc)
    assert all(FULL not in str(v) for v in vars(c).values())


# ------------------------------------------- answers the sandbox does not give


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next (status, content type, body, extra headers) of ``server.script``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, ctype, body, headers = self.server.script.pop(0)  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted():
    """``url, script = scripted``; append answers to ``script`` before each call."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    server.script = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/", server.script  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


XML = b'<?xml version="1.0" encoding="UTF-8" ?><hash><error>There is no file to download for this record</error></hash>'


def test_error_bodies_in_any_format(scripted, clients):
    url, script = scripted
    c = clients(url)
    script.append((400, "text/xml", XML, {}))
    with pytest.raises(E.EmptySlot):
        c.export_file("1", "f", io.BytesIO())
    script.append((400, "text/html; charset=utf-8", b"ERROR: invalid event", {}))
    with pytest.raises(E.InvalidEvent):
        c.delete_file("1", "f", event="x")
    script.append((200, "text/html; charset=utf-8", b"ERROR: The record \"3\" does not exist", {}))
    with pytest.raises(E.NoSuchRecord):
        c.metadata()
    script.append((200, "application/json", b'{"error": "invalid event"}', {}))
    with pytest.raises(E.InvalidEvent):
        c.project_info()


def test_unexpected_answers(scripted, clients):
    url, script = scripted
    c = clients(url)
    script.append((200, "text/plain", b"this is not json", {}))
    with pytest.raises(E.ProtocolError, match="not JSON"):
        c.metadata()
    script.append((302, "text/html", b"", {"Location": "https://redcap.example.org/api/"}))
    with pytest.raises(E.ProtocolError, match="redirects"):
        c.version()
    script.append((200, "text/html", b"<html><body>Please log in</body></html>", {}))
    with pytest.raises(E.ProtocolError):
        c.export_file("1", "f", io.BytesIO())
    script.append((400, "application/json", b'{"error": "This project has no repeating instruments or events"}', {}))
    assert c.repeating_forms_events() == []
    script.append((400, "application/json", b'{"error": "You cannot export arms for classic projects"}', {}))
    assert c.arms() == []


def test_fileinfo_older_filesize_key_and_nameless_file(scripted, clients):
    url, script = scripted
    c = clients(url)
    script.append((200, "application/json", b'{"filesize": "42", "name": "old.pdf"}', {}))
    assert c.file_info("1", "f") == FileInfo("old.pdf", 42, None)
    script.append((200, "application/octet-stream", b"raw bytes", {}))
    out = io.BytesIO()
    assert c.export_file("1", "f", out) == FileInfo(None, 9, "application/octet-stream")
