"""``--request-log``: one JSON object per API call, appended and flushed. Never the token.

Tests and the benchmark count calls from this file, so what each entry says is
part of the interface (docs/sandbox.md, "Request log").
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from .api import ApiRequest

#: The params copied into an entry (as sent, or null).
LOGGED_PARAMS = ("content", "action", "record", "field", "event", "repeat_instance")


class RequestLog:
    """Appends entries to ``path`` (nothing when ``None``); one lock keeps lines whole."""

    def __init__(self, path: str | None) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115  (open for the run)

    def write(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(entry, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def new_entry() -> dict[str, Any]:
    """The entry of a call that has just arrived: nothing known but the time."""
    entry: dict[str, Any] = {"time": time.time()}
    entry.update(dict.fromkeys(LOGGED_PARAMS))
    entry.update({"status": None, "bytes": 0})
    return entry


def describe(entry: dict[str, Any], req: ApiRequest) -> None:
    """Copy the call's identifying params into its entry (never the token)."""
    for key in LOGGED_PARAMS:
        entry[key] = req.get(key)
    if req.has("fileinfo") or req.has("filesize"):
        entry["fileinfo"] = True
