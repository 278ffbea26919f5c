"""The manifest and the change feed (issue 11): `ls -lR` cold and after a remount, `cp -r` out, an empty poll.

The project is classic, ``files`` records with one small file each, at the "slow server" latency. The
mount runs at ``rate=20`` (so sizes asked ahead show: the first `ls -lR` should take about files / rate,
not files x latency) with ``poll=1``. Calls are counted without the change feed's own polls (one
logging export a second); the calls each poll of the unchanged project costs are in the figures'
``calls_per_empty_poll`` parameter (1 expected).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from .config import Config
from .procs import Mount, Sandbox
from .projects import Project, Slot, write_project
from .stats import Figure, Goal, Sample, timed

RATE = 20
OPTIONS = f"rate={RATE},poll=1"


def _project(cfg: Config, work: Path) -> Path:
    body = work / "file.txt"
    body.write_bytes(b"bench\n" * 100)
    records = [str(i) for i in range(1, cfg.files + 1)]
    return write_project(Project("bench: feed", records, ["doc"], [Slot(r, "doc", f"doc-{r}.txt", body)
                                                                   for r in records]), work / "project")


def _not_polls(rows: list[dict[str, Any]]) -> int:
    return sum(1 for row in rows if row.get("content") != "log")


def _timed(sb: Sandbox, argv: list[str]) -> Sample:
    mark = sb.mark()
    seconds = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
    return Sample(seconds, _not_polls(sb.calls_since(mark)))


def _rep(sb: Sandbox, work: Path, n: int, s: dict[str, list[Sample]]) -> None:
    state = work / f"feed-state{n}"
    with Mount(sb, work, OPTIONS, state=state) as m:
        s["ls_lR_first"].append(_timed(sb, ["ls", "-lR", str(m.mp)]))
    mark = sb.mark()
    began = time.perf_counter()
    with Mount(sb, work, OPTIONS, state=state) as m:
        s["remount"].append(Sample(time.perf_counter() - began, len(sb.calls_since(mark))))
        s["ls_lR_remount"].append(_timed(sb, ["ls", "-lR", str(m.mp)]))
        mark = sb.mark()
        time.sleep(3.5)  # three or so polls of an unchanged project (a wait, not a measurement)
        rows = sb.calls_since(mark)
        polls = sum(1 for row in rows if row.get("content") == "log")
        s["poll_empty"].append(Sample(len(rows) / polls if polls else -1.0, len(rows)))
        s["cp_r_out_remount"].append(_timed(sb, ["cp", "-r", str(m.mp), str(work / f"out{n}")]))


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "feed"
    work.mkdir()
    sb = Sandbox(work, "feed", _project(cfg, work), cfg.latency_ms)
    s: dict[str, list[Sample]] = {k: [] for k in ("ls_lR_first", "remount", "ls_lR_remount", "poll_empty",
                                                    "cp_r_out_remount")}
    try:
        for n in range(cfg.small_reps):
            _rep(sb, work, n, s)
    finally:
        sb.stop()
    ideal = (cfg.files + 1) / RATE
    p = {"files": cfg.files, "latency_ms": cfg.latency_ms, "rate": RATE, "files_over_rate_s": round(ideal, 2),
         "calls_per_empty_poll": [round(x.value, 2) for x in s["poll_empty"]]}
    tag = f"{cfg.files}files"
    return [
        Figure(f"ls_lR_first_{tag}", "ls -lR of a first mount (sizes asked ahead)", "s", s["ls_lR_first"],
               goal=f"<= 1.2 x files / rate = {1.2 * ideal:.1f} s, calls <= files + 6", params=p,
               check=Goal(value_max=1.2 * ideal, calls_max=cfg.files + 6)),
        Figure(f"remount_{tag}", "a remount: structure, records, one logging export", "s", s["remount"],
               goal="calls <= 8", params=p, check=Goal(calls_max=8)),
        Figure(f"ls_lR_remount_{tag}", "ls -lR after a remount (manifest trusted)", "s", s["ls_lR_remount"],
               goal="calls <= 1 (.repository's listing; no file-info call)", params=p, check=Goal(calls_max=1)),
        Figure(f"cp_r_out_remount_{tag}", "cp -r out after a remount", "s", s["cp_r_out_remount"],
               goal="calls <= files + 6", params=p, check=Goal(calls_max=cfg.files + 6)),
    ]
