"""The sandbox's own costs, so that figures can be read net of them.

* A small call (``content=version``) on a kept-alive connection against the same call on a new
  connection each time. A server that writes an answer in several small pieces without TCP_NODELAY
  waits for the client's delayed ACK (40 ms on Linux) before the last piece: every call after a
  connection's first pays it, for the mount and for PyCap alike.
* ``curl -F`` with curl's own ``Expect: 100-continue`` against the same upload with ``Expect:`` empty:
  a server that never answers ``100 Continue`` makes curl wait (1 s) before it sends the body.
"""

from __future__ import annotations

import http.client
import statistics
import time
from urllib.parse import urlencode, urlsplit

from .config import MIB, Config, size_label
from .procs import Sandbox
from .projects import Project, random_file, write_project
from .stats import Figure, Sample
from .tools import Curl, measure

CALLS = 10
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _call_ms(sb: Sandbox, keepalive: bool) -> Sample:
    """Median milliseconds of ``CALLS`` small calls, on one connection (after its first call) or new ones."""
    parts = urlsplit(sb.url)
    body = urlencode({"token": sb.token, "content": "version"}).encode()
    times = []
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    for i in range(CALLS + (1 if keepalive else 0)):
        if not keepalive:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        start = time.perf_counter()
        conn.request("POST", parts.path, body, FORM)
        conn.getresponse().read()
        if i or not keepalive:  # a kept-alive connection's first call is a new connection's call
            times.append((time.perf_counter() - start) * 1000)
        if not keepalive:
            conn.close()
    conn.close()
    return Sample(statistics.median(times), CALLS)


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "sandbox"
    work.mkdir()
    upload = random_file(work / "upload.bin", 4 * MIB)
    sb = Sandbox(work, "diag", write_project(Project("bench: sandbox", ["1"], ["doc"]), work / "project"), 0)
    samples: dict[str, list[Sample]] = {k: [] for k in ("new", "keep", "noexpect", "expect")}
    try:
        curl = Curl(sb, work)
        for _ in range(cfg.reps):
            samples["new"].append(_call_ms(sb, keepalive=False))
            samples["keep"].append(_call_ms(sb, keepalive=True))
            samples["noexpect"].append(measure(sb, lambda: curl.upload("1", "doc", upload, expect=False)))
            samples["expect"].append(measure(sb, lambda: curl.upload("1", "doc", upload, expect=True)))
    finally:
        sb.stop()
    L = size_label(upload.stat().st_size)
    p = {"calls_per_sample": CALLS, "latency_ms": 0, "call": "content=version"}
    new = Figure("sandbox_call_new_connection", "small call, a new connection each", "ms", samples["new"], params=p)
    noexp = Figure(f"curl_upload_{L}_no_expect", "curl -F -H 'Expect:'", "s", samples["noexpect"],
                   params={"bytes": upload.stat().st_size})
    return [new,
            Figure("sandbox_call_keepalive", "small call on a kept-alive connection", "ms", samples["keep"], new,
                   goal="~ 1 (no stall)", params=p),
            noexp,
            Figure(f"curl_upload_{L}_expect_100", "curl -F with curl's Expect: 100-continue", "s",
                   samples["expect"], noexp, goal="~ 1 (100 Continue answered)",
                   params={"bytes": upload.stat().st_size})]

