"""REDCap's log times are the server's local time: ``ServerClock`` learns the server's offset (issue 11).

Pure checks of the rules in redcapfs/fs/logrows.py; the real-mount test with the sandbox in another zone
is tests/mount/test_change_feed.py::test_log_times_in_another_zone_than_the_mounts.
"""

from __future__ import annotations

import calendar
import time

from redcapfs.fs.logrows import MAX_OFFSET, ServerClock

NOW = calendar.timegm((2026, 12, 1, 13, 0, 20, 0, 0, 0))  # 13:00:20 UTC


def stamp(moment: float, offset: int) -> str:
    """The row REDCap writes at ``moment`` on a server ``offset`` seconds east of UTC."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(moment + offset))


def test_a_row_new_since_the_previous_poll_confirms_the_servers_offset() -> None:
    for offset in (0, 5 * 3600 + 45 * 60, -8 * 3600, 14 * 3600, -12 * 3600, 3600 * 9 + 1800):
        clock = ServerClock(0)
        row = stamp(NOW - 10, offset)
        assert clock.learn(row, NOW - 31, NOW)  # changed: now confirmed
        assert (clock.offset, clock.confirmed) == (offset, True)
        assert clock.stamp_ns(row) == (NOW - 10 - (NOW - 10) % 60) * 1_000_000_000
        assert clock.minute(NOW) == stamp(NOW, offset)


def test_clocks_a_minute_apart_still_give_the_offset_but_a_wide_window_teaches_nothing() -> None:
    clock = ServerClock(0)
    assert clock.learn(stamp(NOW + 90, 3600), NOW - 30, NOW)  # the server's clock is 90 s ahead
    assert clock.offset == 3600
    wide = ServerClock(0)
    assert not wide.learn(stamp(NOW, 3600), NOW - 600, NOW)  # ten minutes between polls: ambiguous
    assert not wide.confirmed and wide.offset == 0


def test_the_guess_is_raised_by_a_row_that_looks_newer_than_now() -> None:
    clock = ServerClock(0)
    assert clock.bound([stamp(NOW - 5, 5 * 3600 + 45 * 60)], NOW)  # a recent row from a server east of here
    assert clock.offset == 5 * 3600 + 45 * 60 and not clock.confirmed
    assert not clock.bound([stamp(NOW - 3600, 0)], NOW)  # an old row never lowers it
    confirmed = ServerClock(-3600, confirmed=True)
    assert not confirmed.bound([stamp(NOW, 7200)], NOW) and confirmed.offset == -3600


def test_our_own_row_is_near_our_call_only_in_the_servers_time() -> None:
    clock = ServerClock(3 * 3600, confirmed=True)
    assert clock.near(stamp(NOW + 5, 3 * 3600), NOW, NOW + 10)
    assert clock.near(stamp(NOW + 300, 3 * 3600), NOW, NOW + 320)  # a long upload is logged when it ends
    assert not clock.near(stamp(NOW, 0), NOW, NOW + 10)  # three hours off: someone else's row
    unsure = ServerClock(0)
    assert unsure.near(stamp(NOW, 3 * 3600), NOW, NOW + 10)  # unconfirmed: the slot decides, not the time
    assert not unsure.near(stamp(NOW - 2 * MAX_OFFSET, 0), NOW, NOW + 10)
    assert unsure.latest_minute(NOW) == stamp(NOW, MAX_OFFSET)
