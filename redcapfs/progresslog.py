"""Log lines for long transfers: a ``cp`` that seems stuck at close is a large upload still going.

The kernel holds ``close(2)`` until the upload is done (flush is where the
bytes go to REDCap), so a user sees a frozen ``cp``. Every ``INTERVAL``
seconds this names each transfer that has been running that long, with its
bytes done, in the mount's log; ``redcapfs status`` shows the same numbers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from redcapfs.client.stats import ClientStats

log = logging.getLogger("redcapfs.progress")

INTERVAL = 10.0


def _human(n: int | None) -> str:
    from redcapfs.status_cli import human

    return human(n)


def describe(t: dict[str, Any]) -> str:
    """``upload 1001/baseline_arm_1/report/scan.pdf: 30.0 MiB of 100.0 MiB (30%) after 12 s``."""
    slot = "/".join(str(p) for p in (t.get("record"), t.get("event"), t.get("field"), t.get("instance"),
                                     t.get("name")) if p not in (None, ""))
    done, total = int(t.get("bytes_done") or 0), t.get("bytes_total")
    share = f" ({100 * done // total}%)" if total else ""
    of = f" of {_human(total)}" if total is not None else ""
    return f"{t.get('kind')} {slot}: {_human(done)}{of}{share} after {float(t.get('seconds') or 0):.0f} s"


class ProgressLogger:
    """A daemon thread logging transfers older than ``interval`` seconds, once per interval."""

    def __init__(self, stats: ClientStats, interval: float = INTERVAL) -> None:
        self.stats = stats
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redcapfs-progress", daemon=True)

    def start(self) -> ProgressLogger:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> int:
        """Log the long transfers now; how many there were."""
        long = [t for t in self.stats.snapshot()["in_flight"] if float(t.get("seconds") or 0) >= self.interval]
        for transfer in long:
            log.info("in flight: %s", describe(transfer))
        return len(long)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a log line must never take the mount down
                log.debug("progress logging failed", exc_info=True)
