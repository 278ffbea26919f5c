"""Injected failures: ``--fault SPEC`` parsed and chosen per call.

A real REDCap server fails in a few recognisable ways (5xx pages, requests that
never answer, connections reset mid-download, bodies shorter than promised).
The client's retry and integrity logic is only tested if the sandbox can do
each of these on demand, on exactly the call a test picks.

SPEC grammar (comma-separated ``key=value``)::

    selectors: content=C action=A field=F record=R event=E   (all optional; equal match)
    which:     nth=N (the Nth matching call, 1-based, counted per spec)
               rate=P (fraction 0..1, RNG seeded by seed=S, default 0)
               neither: every matching call
    do:        500 | 503 | hang | drop | truncate | ban        (required)
    extras:    seconds=S (hang), after=BYTES (drop/truncate; default half the body)

``ban`` plays REDCap's page-hit limiter once it has banned the client's IP:
the call it fires on and every later call, whatever it asks, get HTTP 429 and
REDCap's one-line ban text (a real ban lasts until an administrator lifts it).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

ACTIONS = ("500", "503", "hang", "drop", "truncate", "ban")
SELECTORS = ("content", "action", "field", "record", "event")


class FaultSpecError(ValueError):
    """A ``--fault`` value that cannot be parsed."""


@dataclass
class Fault:
    """One ``--fault`` spec and its selection state (call counter, RNG)."""

    do: str
    select: dict[str, str] = field(default_factory=dict)
    nth: int | None = None
    rate: float | None = None
    seed: int = 0
    seconds: float | None = None
    after: int | None = None
    text: str = ""
    _count: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, call: Mapping[str, str | None]) -> bool:
        return all((call.get(k) or "") == v for k, v in self.select.items())

    def fires(self) -> bool:
        """Advance this spec's counter/RNG for one matching call; True if it fails this call."""
        self._count += 1
        if self.nth is not None:
            return self._count == self.nth
        if self.rate is not None:
            return self._rng.random() < self.rate
        return True


def parse_fault(spec: str) -> Fault:
    """Parse one SPEC (see module docstring); raises :class:`FaultSpecError`."""
    values: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"fault spec item {item!r} is not key=value")
        values[key.strip()] = value.strip()
    do = values.pop("do", "")
    if do not in ACTIONS:
        raise FaultSpecError(f"fault spec needs do= one of {', '.join(ACTIONS)} (got {do!r})")
    try:
        fault = Fault(
            do=do,
            select={k: values.pop(k) for k in SELECTORS if k in values},
            nth=int(values.pop("nth")) if "nth" in values else None,
            rate=float(values.pop("rate")) if "rate" in values else None,
            seed=int(values.pop("seed", "0")),
            seconds=float(values.pop("seconds")) if "seconds" in values else None,
            after=int(values.pop("after")) if "after" in values else None,
            text=spec,
        )
    except ValueError as exc:
        raise FaultSpecError(f"fault spec {spec!r}: {exc}") from None
    if values:
        raise FaultSpecError(f"fault spec {spec!r}: unknown keys {', '.join(sorted(values))}")
    if fault.nth is not None and fault.nth < 1:
        raise FaultSpecError("nth= counts from 1")
    return fault


class FaultSet:
    """All specs of a run. :meth:`choose` is called exactly once per API call."""

    def __init__(self, faults: list[Fault]) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._ban: Fault | None = None  # once a ban fired, every call is banned

    @classmethod
    def parse(cls, specs: list[str]) -> FaultSet:
        return cls([parse_fault(s) for s in specs])

    def choose(self, call: Mapping[str, str | None]) -> Fault | None:
        """The fault for this call, if any. Every matching spec counts the call."""
        chosen: Fault | None = None
        with self._lock:
            if self._ban is not None:
                return self._ban
            for fault in self.faults:
                if fault.matches(call) and fault.fires() and chosen is None:
                    chosen = fault
            if chosen is not None and chosen.do == "ban":
                self._ban = chosen
        return chosen
