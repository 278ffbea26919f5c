"""The policy of ``slot_check=recent`` (fs/recentpoll.py) against a feed whose clock the test moves.

The mount tests (tests/mount/test_slot_check.py) run it against the sandbox's
log; these pin the edges: when a poll is made and waited for, when it starts
in the background, and that a failed poll is not repeated at once.
"""

from __future__ import annotations

import threading
from typing import Any

from redcapfs import errors as E
from redcapfs.fs.recentpoll import AHEAD, RECENT, RecentPolls, vouch_for


class Feed:
    """What RecentPolls reads of a ChangeFeed: its mode, the age of its last poll, and a poll."""

    def __init__(self, age: float | None, fail: bool = False) -> None:
        self.mode = "log"
        self.age = age  # seconds since the last poll began; None: never polled
        self.fail = fail
        self.polls = 0
        self.polled = threading.Event()
        self.fresh = lambda: True

    def began_within(self, within: float) -> bool:
        return self.age is not None and self.age <= within

    def poll_unless_within(self, within: float) -> None:
        if self.began_within(within):
            return
        self.polls += 1
        self.polled.set()
        if self.fail:
            raise E.TransportError("the log export failed")
        self.age = 0.0


def recent(feed: Feed) -> RecentPolls:
    return RecentPolls(feed)  # type: ignore[arg-type]


def test_a_recent_poll_vouches_without_a_call() -> None:
    feed = Feed(age=RECENT * AHEAD / 2)
    assert recent(feed)() is True
    assert feed.polls == 0


def test_an_old_poll_makes_one_now_and_waits_for_it() -> None:
    feed = Feed(age=RECENT + 1)
    assert recent(feed)() is True
    assert feed.polls == 1 and feed.age == 0.0


def test_a_poll_near_its_end_vouches_and_starts_the_next_in_the_background() -> None:
    feed = Feed(age=RECENT * (1 + AHEAD) / 2)
    assert recent(feed)() is True
    assert feed.polled.wait(5)
    assert feed.polls == 1


def test_a_failed_poll_asks_instead_and_is_not_repeated_at_once() -> None:
    feed = Feed(age=RECENT + 1, fail=True)
    policy = recent(feed)
    assert policy() is False
    assert policy() is False
    assert feed.polls == 1


def test_without_the_log_nothing_is_vouched() -> None:
    feed = Feed(age=0.0)
    feed.mode = "ttl"
    assert recent(feed)() is False


def test_the_option_picks_the_policy() -> None:
    feed: Any = Feed(age=0.0)
    assert vouch_for(feed, "always") is None
    assert vouch_for(feed, "feed") is feed.fresh
    assert isinstance(vouch_for(feed, "recent"), RecentPolls)
