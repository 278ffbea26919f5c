"""``-o slot_check``: whether the change feed vouches for the records index before an upload or delete.

With ``recent`` (the default) a slot the index shows empty is taken as empty
when a log poll began at most ``RECENT`` seconds ago; when none did, one is
made right then and the change waits for it. One poll covers every slot, so
all the uploads of those seconds share it. From ``AHEAD`` of that age on the
next poll starts in the background, so a steady stream of uploads (``cp -r``)
never waits for one. A failed poll is not tried again for ``RECENT`` seconds:
the change asks REDCap instead (fs/uploader.py), and the log is not hammered.

``feed`` trusts the feed's last regular poll (ChangeFeed.fresh), ``always``
never trusts the index. What each costs and risks: docs/SEMANTICS.md, "What
the slot holds before an upload or delete".

Lock: ``_lock`` guards ``_ahead`` (a leaf). Polls themselves are one at a
time under the feed's ``_poll_lock``, held across their exports, never here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from redcapfs import errors as E
from redcapfs.fs.feed import ChangeFeed

log = logging.getLogger(__name__)

RECENT = 2.0  # seconds: a poll begun this long ago vouches for the index before a change
AHEAD = 0.7  # from this share of RECENT on, the next poll starts in the background


class RecentPolls:
    """The ``fresh`` callable the Uploader gets with ``slot_check=recent``."""

    def __init__(self, feed: ChangeFeed, within: float = RECENT) -> None:
        self.feed = feed
        self.within = within
        self._failed = -within  # monotonic time of the last failed poll made for a change
        self._lock = threading.Lock()
        self._ahead: threading.Thread | None = None

    def __call__(self) -> bool:
        """Whether the index may answer for an empty slot now; polls (and waits) when no poll is recent."""
        feed, within = self.feed, self.within
        if feed.mode != "log":
            return False
        if feed.began_within(within * AHEAD):
            return True
        if feed.began_within(within):
            self._poll_ahead()
            return True
        if time.monotonic() - self._failed < within:
            return False
        try:
            feed.poll_unless_within(within)
        except E.RedcapError as exc:
            self._failed = time.monotonic()
            log.debug("the poll before a change failed (the slot is asked instead): %s", exc)
            return False
        return feed.began_within(within)

    def _poll_ahead(self) -> None:
        with self._lock:
            if self._ahead is not None and self._ahead.is_alive():
                return
            self._ahead = threading.Thread(target=self._ahead_run, name="change-feed-ahead", daemon=True)
            self._ahead.start()

    def _ahead_run(self) -> None:
        try:
            self.feed.poll_unless_within(self.within * AHEAD)
        except E.RedcapError as exc:  # the next change polls itself, or asks
            log.debug("a poll ahead of the next change failed: %s", exc)


def vouch_for(feed: ChangeFeed, slot_check: str) -> Callable[[], bool] | None:
    """The Uploader's ``fresh`` for ``-o slot_check``: None asks REDCap before every change (``always``)."""
    if slot_check == "feed":
        return feed.fresh
    if slot_check == "recent":
        return RecentPolls(feed)
    return None
