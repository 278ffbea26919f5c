"""The rate limiter's bursts stay inside REDCap's per-minute budget; a ban page stops every later call.

The limiter is driven by a fake clock (no timed assertion); the ban goes
through a real sandbox on 127.0.0.1 playing REDCap's ban (``--fault do=ban``)
and a real ``HttpClient``, checked against the sandbox's request log.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Any

import pytest

from redcapfs import errors as E
from redcapfs.client.http import HttpClient
from redcapfs.client.ratelimit import RateLimiter, max_burst
from redcapfs.client.responses import CallContext, error_for
from redcapfs.options import MountError, parse_options
from redcapfs.sandbox.faults import FaultSet, parse_fault

BAN_PAGE = b"Your IP address (10.1.2.3) has been banned due to suspected abuse."


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def greedy_calls(rate: float, burst: float | None, seconds: float, pause_at: float | None = None) -> list[float]:
    """Call times of a caller that asks again the moment it gets a slot (idle 100 s at ``pause_at``)."""
    clock = FakeClock()
    bucket = RateLimiter(rate, burst, clock=clock, sleep=clock.sleep)
    times: list[float] = []
    paused = False
    while clock.now < seconds:
        if pause_at is not None and not paused and clock.now >= pause_at:
            clock.now += 100.0  # the bucket fills up again: the worst case for the next minute
            paused = True
        bucket.acquire()
        times.append(clock.now)
    return times


def most_in_a_minute(times: list[float]) -> int:
    window: deque[float] = deque()
    worst = 0
    for t in times:
        window.append(t)
        while window[0] <= t - 60.0:
            window.popleft()
        worst = max(worst, len(window))
    return worst


@pytest.mark.parametrize(("rate", "burst"), [(5.0, None), (5.0, 1), (5.0, 60), (5.0, 150), (10.0, 300),
                                             (0.5, None), (200.0, None)])
def test_no_minute_holds_more_than_rate_times_sixty(rate: float, burst: float | None) -> None:
    times = greedy_calls(rate, burst, 400.0, pause_at=170.0)
    assert most_in_a_minute(times) <= rate * 60


def test_a_burst_goes_at_once_then_the_refill_pays_for_it() -> None:
    clock = FakeClock()
    bucket = RateLimiter(5.0, 60, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(60)] == [0.0] * 60
    assert bucket.acquire() == pytest.approx(1 / 4.0)  # 5/s less the burst spread over its minute


def test_burst_option_is_checked_against_the_rate() -> None:
    assert parse_options(["burst=60"]).burst == 60
    assert parse_options(["rate=2,burst=60"]).burst == 60
    assert parse_options([]).burst is None
    for bad, why in (("burst=0", "whole number"), ("burst=x", "not a number"), ("burst=2.5", "not a number"),
                     ("burst=151", "at most 150"), ("rate=off,burst=10", "needs a rate limit"),
                     ("rate=1,burst=31", "at most 30")):
        with pytest.raises(MountError, match=why):
            parse_options([bad])
    assert max_burst(5.0) == 150


def test_the_ban_page_is_its_own_error_and_eio() -> None:
    exc = error_for(429, BAN_PAGE, "text/html; charset=UTF-8", CallContext("file", "export", record="7"))
    assert isinstance(exc, E.IpBanned) and exc.message == BAN_PAGE.decode()
    assert "administrator" in str(exc) and "10.1.2.3" in str(exc)
    assert E.errno_for(exc) == errno.EIO
    other = error_for(429, b"slow down", "text/plain", CallContext("record"))
    assert not isinstance(other, E.IpBanned)


def test_a_ban_fault_bans_every_later_call_whatever_it_selects() -> None:
    faults = FaultSet([parse_fault("content=file,nth=2,do=ban")])
    version = {"content": "version"}
    assert faults.choose(version) is None
    assert faults.choose({"content": "file"}) is None
    assert faults.choose({"content": "file"}) is not None  # the second file call
    assert faults.choose(version) is not None and faults.choose({"content": "record"}) is not None


def test_after_a_ban_the_client_makes_no_call(sandbox: Any) -> None:
    sb = sandbox("--fault", "content=version,nth=1,do=ban")
    with HttpClient(sb.url, sb.token, rate_limit=None, retries=3, backoff=0.01) as client:
        with pytest.raises(E.IpBanned) as first:
            client.version()
        assert not isinstance(first.value, E.StillBanned) and first.value.status == 429
        assert "has been banned due to suspected abuse" in first.value.message
        for call in (client.version, client.project_info, client.export_records):
            with pytest.raises(E.StillBanned):
                call()
        banned = client.stats.snapshot()["banned"]
    calls = sb.calls(at_least=1)
    assert [c["status"] for c in calls] == [429]  # one call: no retry, nothing after it
    assert banned is not None and "banned" in banned["message"]
