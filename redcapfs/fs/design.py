"""The project's design read again while mounted: on the change feed's word, or every ``metadata_ttl``.

A designer adds a field, an event or an arm, or makes a form repeating, while
people work (docs/SEMANTICS.md, "When the project's design changes"). The six
structure exports run first, with no lock held; then every piece of the tree
that keeps a ``shape`` gets the new one, the path model is rebuilt, and the
records index is dropped, so the next access waits for a records export made
with the new design.

Locks: none of its own. The timer thread only sleeps on an Event between
reloads; a reload's assignments are single attribute stores.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from redcapfs.client.base import RedcapClient
from redcapfs.paths import PathModel
from redcapfs.shape import ProjectShape

log = logging.getLogger(__name__)


class DesignReload:
    """Reads the design and hands it to the pieces that keep one (``parts``)."""

    def __init__(self, client: RedcapClient, parts: Callable[[], Iterable[object]],
                 on_model: Callable[[PathModel], None], invalidate: Callable[[], None]) -> None:
        self.client = client
        self.parts = parts  # every object with a ``shape`` attribute to replace
        self.on_model = on_model
        self.invalidate = invalidate
        self._stop = threading.Event()

    def reload(self) -> None:
        """Read the design now (the log showed a design change, or the timer ran out)."""
        c = self.client
        shape = ProjectShape.from_api(c.project_info(), c.metadata(), c.arms(), c.events(),
                                      c.form_event_mapping(), c.repeating_forms_events())
        model = PathModel(shape)
        for part in self.parts():
            part.shape = shape  # type: ignore[attr-defined]
        self.on_model(model)
        self.invalidate()
        log.info("the project's design was read again")

    def every(self, seconds: float) -> None:
        """Without the change feed: read the design again every ``seconds`` (``-o metadata_ttl``)."""
        threading.Thread(target=self._loop, args=(seconds,), name="design-reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.reload()
            except Exception as exc:  # keep the design we have; try again next time
                log.warning("reading the project's design again failed: %s", exc)
