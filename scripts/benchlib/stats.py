"""Figures: samples, their median and range, ratios paired per repetition, JSON and the printed table.

A ratio is taken within each repetition (this rep's figure over this rep's reference, both measured back to
back) and the median of those ratios is reported, never the ratio of two medians: a burst of load from
another process then spoils one pair, not the comparison. ``means`` says which way a ratio reads:

* ``time``: how many times as long as the reference (above 1 is slower). For a bandwidth it is the
  reference's bandwidth over the figure's, so it still reads as a time.
* ``speedup``: the reference's time over the figure's (above 1 is faster), e.g. parallel against sequential.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "redcapfs-bench/1"
BANDWIDTH_UNITS = {"MiB/s"}


@dataclass
class Sample:
    """One measurement: its value in the figure's unit and the API calls it cost."""

    value: float
    calls: int = 0


@dataclass(frozen=True)
class Goal:
    """Issue 12's goal for a figure, checkable: bounds on the median ratio, the median value, the calls.

    ``calls_max`` holds for every sample (call counts are exact, not noisy).
    The text form (``Figure.goal``) is what the table prints; this is what
    decides the ``met`` column.
    """

    ratio_max: float | None = None
    ratio_min: float | None = None  # a speed-up
    value_max: float | None = None
    calls_max: int | None = None

    def met(self, fig: Figure) -> bool | None:
        """True or False, or None when a bound has nothing to check against (no samples, a nan ratio)."""
        checks: list[bool | None] = []
        ratio = summary(fig.ratios())["median"]
        value = summary(fig.values())["median"]
        if self.ratio_max is not None:
            checks.append(None if ratio is None else ratio <= self.ratio_max)
        if self.ratio_min is not None:
            checks.append(None if ratio is None else ratio >= self.ratio_min)
        if self.value_max is not None:
            checks.append(None if value is None else value <= self.value_max)
        if self.calls_max is not None:
            checks.append(bool(fig.samples) and max(x.calls for x in fig.samples) <= self.calls_max)
        if not checks or any(c is None for c in checks):
            return None
        return all(checks)


@dataclass
class Figure:
    """A named series of samples, optionally paired with a reference series of the same length."""

    name: str
    what: str
    unit: str
    samples: list[Sample]
    reference: Figure | None = None
    means: str = "time"
    goal: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    check: Goal | None = None  # the goal in checkable form: the JSON's and the table's ``met``

    def values(self) -> list[float]:
        return [s.value for s in self.samples]

    def ratios(self) -> list[float]:
        """This figure against its reference, pair by pair (see the module docstring)."""
        if self.reference is None:
            return []
        pairs = zip(self.values(), self.reference.values(), strict=False)
        return [_ratio(a, b, self.unit, self.means) for a, b in pairs]

    def to_json(self) -> dict[str, Any]:
        ratios = self.ratios()
        calls = [float(s.calls) for s in self.samples]
        return {
            "name": self.name,
            "what": self.what,
            "unit": self.unit,
            **summary(self.values()),
            "samples": [round(v, 6) for v in self.values()],
            "reference": self.reference.name if self.reference else None,
            "ratio": {**summary(ratios), "samples": [None if math.isnan(r) else round(r, 4) for r in ratios],
                      "means": self.means}
            if self.reference else None,
            "api_calls": {**summary(calls), "samples": [s.calls for s in self.samples]},
            "goal": self.goal,
            "met": self.check.met(self) if self.check else None,
            "params": self.params,
        }


def _ratio(value: float, ref: float, unit: str, means: str) -> float:
    """One pair's ratio; ``nan`` when a side is zero or missing."""
    if not value or not ref or math.isnan(value) or math.isnan(ref):
        return float("nan")
    as_time = ref / value if unit in BANDWIDTH_UNITS else value / ref
    return as_time if means == "time" else 1.0 / as_time


def summary(values: list[float]) -> dict[str, float | None]:
    """Median, min and max (``None`` for an empty series)."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean)}


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` took (a monotonic clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(reps: int, steps: list[Callable[[], Sample]]) -> list[list[Sample]]:
    """Run ``steps`` in order, ``reps`` times (A B A B ...); returns one sample list per step."""
    out: list[list[Sample]] = [[] for _ in steps]
    for _ in range(reps):
        for i, step in enumerate(steps):
            out[i].append(step())
    return out


# ------------------------------------------------------------------ output


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


def table(figures: list[dict[str, Any]]) -> str:
    """The figures as a fixed-width table: value, range, ratio against the reference, calls, goal."""
    head = ("figure", "median", "min-max", "unit", "ratio", "ratio min-max", "vs", "calls", "goal", "met")
    rows = [head]
    for f in figures:
        r = f["ratio"] or {}
        calls = f["api_calls"]
        call_text = f"{calls['median']:g}" if calls["min"] == calls["max"] else \
            f"{calls['median']:g} ({calls['min']:g}-{calls['max']:g})"
        rows.append((
            f["name"], _num(f["median"], f["unit"]), f"{_num(f['min'], f['unit'])}-{_num(f['max'], f['unit'])}",
            f["unit"], _num(r.get("median")) + ("x" if r and r.get("means") == "speedup" else ""),
            f"{_num(r.get('min'))}-{_num(r.get('max'))}" if r else "", f["reference"] or "",
            call_text, f["goal"] or "", {True: "yes", False: "NO", None: ""}[f.get("met")]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    goals = [f for f in figures if f.get("met") is not None]
    missed = [f["name"] for f in goals if not f["met"]]
    lines.append(f"goals: {len(goals) - len(missed)} of {len(goals)} met" + (f"; missed: {', '.join(missed)}"
                                                                            if missed else ""))
    return "\n".join(lines)
