"""The change feed at issue 11's scale: 2,000 records with three files each (6,000 files), 50 ms a call.

One run (the figures are call counts and one ratio, each checked against the issue and printed):

1. a first mount (no manifest): ``ls -lR``, calls <= files + 6 and time <= 1.2 x files / rate;
2. a remount: its own calls, then ``ls -lR``, ``find``, ``stat`` and ``rsync -a --dry-run``: <= 6 calls in all
   with no file-info call and no file-content export;
3. the mount left alone for a few polls: a poll of the unchanged project costs exactly 1 call;
4. a second user ("a colleague", another token) replaces one file through the API with another name, size
   and bytes: the mount shows them, and the log's mtime, within one poll interval;
5. ``cp -r`` out of the remount (sizes known, content not): calls <= files + 6.

Calls are counted from the sandbox's request log without the feed's own polls (``content=log``) except
where the polls are the figure. The mount runs at ``rate=RATE`` (the limiter paces sizes asked ahead:
the first ``ls -lR`` should take about files / rate) and ``poll=POLL``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import Config
from .procs import Mount, Sandbox
from .projects import Project, Slot, write_project
from .stats import Figure, Goal, Sample, timed

RATE = 50
POLL = 5  # seconds; 2 in --quick
FIELDS = ("doc1", "doc2", "doc3")
ALICE = "A1" * 16
BOB = "B2" * 16  # the colleague: another user of the project, writing through the API


def _records(cfg: Config) -> int:
    return 10 if cfg.quick else 2000


def _project(cfg: Config, work: Path) -> Path:
    bodies = []
    for i, _ in enumerate(FIELDS):
        body = work / f"body{i}.txt"
        body.write_bytes(f"bench {i}\n".encode() * (50 + 20 * i))
        bodies.append(body)
    records = [str(i) for i in range(1, _records(cfg) + 1)]
    files = [Slot(r, f, f"{f}-{r}.txt", bodies[k]) for r in records for k, f in enumerate(FIELDS)]
    return write_project(Project("bench: feed at scale", records, list(FIELDS), files), work / "project")


def _kinds(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Calls by kind: every call, polls, file-info calls, file-content exports, the rest."""
    polls = sum(1 for r in rows if r.get("content") == "log")
    info = sum(1 for r in rows if r.get("content") == "file" and r.get("fileinfo"))
    content = sum(1 for r in rows if r.get("content") == "file" and r.get("action") == "export"
                  and not r.get("fileinfo"))
    return {"all": len(rows), "polls": polls, "fileinfo": info, "content": content,
            "not_polls": len(rows) - polls}


def _run_tool(sb: Sandbox, argv: list[str]) -> tuple[float, dict[str, int]]:
    mark = sb.mark()
    seconds = timed(lambda: subprocess.run(argv, check=True, capture_output=True))
    return seconds, _kinds(sb.calls_since(mark))


def _colleague_replace(sb: Sandbox, m: Mount, work: Path, poll: int) -> dict[str, Any]:
    """Bob replaces record 1's doc1 through the API; how long until the mount shows it, and what it shows."""
    from redcapfs.client.http import HttpClient

    new = work / "colleague.txt"
    new.write_bytes(os.urandom(4321))
    folder = m.mp / "1" / "doc1"
    client = HttpClient(sb.url, BOB, rate_limit=None)
    try:
        done = time.time()
        client.import_file("1", "doc1", str(new), "from-colleague.txt")
        done = (done + time.time()) / 2
    finally:
        client.close()
    began = time.monotonic()
    seen = -1.0
    while time.monotonic() - began < 4 * poll:
        if (folder / "from-colleague.txt").exists():
            seen = time.monotonic() - began
            break
        time.sleep(0.2)
    path = folder / "from-colleague.txt"
    ok_bytes = seen >= 0 and hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(new.read_bytes()).digest()
    st = path.stat() if seen >= 0 else None
    return {"seen_after_s": round(seen, 2), "poll_s": poll,
            "name": seen >= 0, "size": st is not None and st.st_size == new.stat().st_size,
            "mtime_off_s": round(st.st_mtime - done, 1) if st is not None else None,
            "bytes": ok_bytes, "old_name_gone": not (folder / "doc1-1.txt").exists()}


def _empty_polls(sb: Sandbox, poll: int) -> tuple[float, int]:
    """Calls per poll of an unchanged project: every call while the mount is left alone, over its polls."""
    mark = sb.mark()
    time.sleep(3 * poll + 1)  # a wait for polls to happen, not a measurement
    k = _kinds(sb.calls_since(mark))
    return (k["all"] / k["polls"] if k["polls"] else -1.0), k["all"]


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "feed-scale"
    work.mkdir()
    files = _records(cfg) * len(FIELDS)
    sb = Sandbox(work, "feed-scale", _project(cfg, work), cfg.latency_ms,
                 extra=("--token", f"{ALICE}:full:alice", "--token", f"{BOB}:full:bob"))
    poll = 2 if cfg.quick else POLL
    options = f"rate={RATE},poll={poll}"
    state = work / "state"
    facts: dict[str, Any] = {}
    try:
        with Mount(sb, work, options, state=state) as m:
            first_s, first = _run_tool(sb, ["ls", "-lR", str(m.mp)])
        mark = sb.mark()
        began = time.perf_counter()
        with Mount(sb, work, options, state=state) as m:
            remount_s = time.perf_counter() - began
            remount = _kinds(sb.calls_since(mark))
            again_s, again = _run_tool(sb, ["ls", "-lR", str(m.mp)])
            _, walk = _run_tool(sb, ["find", str(m.mp)])
            _, one = _run_tool(sb, ["stat", str(m.mp / "1" / "doc2" / "doc2-1.txt")])
            rsync_s, rsync = _run_tool(sb, ["rsync", "-a", "--dry-run", f"{m.mp}/", str(work / "rsync-out")])
            per_poll, idle_calls = _empty_polls(sb, poll)
            facts["colleague"] = _colleague_replace(sb, m, work, poll)
            cp_s, cp = _run_tool(sb, ["cp", "-r", str(m.mp), str(work / "out")])
    finally:
        sb.stop()
    ideal = files / RATE
    after_remount = remount["all"] + again["not_polls"] + walk["not_polls"] + one["not_polls"] + rsync["not_polls"]
    no_content = first["content"] + again["content"] + walk["content"] + one["content"] + rsync["content"]
    col = facts["colleague"]
    checks = {
        "first_ls_lR_calls<=files+6": first["not_polls"] <= files + 6,
        "first_ls_lR_time<=1.2*files/rate": first_s <= 1.2 * ideal,
        "remount_and_ls_lR_calls<=6": after_remount <= 6,
        "remount_no_fileinfo": remount["fileinfo"] + again["fileinfo"] + rsync["fileinfo"] == 0,
        "cp_r_out_calls<=files+6": cp["not_polls"] <= files + 6,
        "colleague_seen_within_one_poll": 0 <= col["seen_after_s"] <= poll + 1,
        "colleague_name_size_bytes": bool(col["name"] and col["size"] and col["bytes"] and col["old_name_gone"]),
        "colleague_mtime_within_a_minute": col["mtime_off_s"] is not None and abs(col["mtime_off_s"]) <= 61,
        "empty_poll_costs_1_call": per_poll == 1.0,
        "no_content_export_for_ls_stat_find_rsync": no_content == 0,
    }
    p = {"files": files, "records": _records(cfg), "latency_ms": cfg.latency_ms, "rate": RATE, "poll_s": poll,
         "files_over_rate_s": round(ideal, 2), "remount_calls": remount, "ls_lR_remount_calls": again,
         "find_calls": walk, "stat_calls": one, "rsync_dry_run_calls": rsync, "calls_per_empty_poll": per_poll,
         "idle_calls": idle_calls, "colleague": col, "checks": checks, "all_checks_pass": all(checks.values())}
    for name, ok in checks.items():  # printed, not asserted: the bench measures
        print(f"bench: feed-scale {'pass' if ok else 'MISS'} {name}", file=sys.stderr, flush=True)
    tag = f"{files}files"
    return [
        Figure(f"scale_ls_lR_first_{tag}", "ls -lR of a first mount, 3 files per record", "s",
               [Sample(first_s, first["not_polls"])],
               goal=f"<= 1.2 x files / rate = {1.2 * ideal:.1f} s, calls <= files + 6", params=p,
               check=Goal(value_max=1.2 * ideal, calls_max=files + 6)),
        Figure(f"scale_remount_{tag}", "a remount (structure, records, one logging export)", "s",
               [Sample(remount_s, remount["all"])], goal="with the ls -lR after it: calls <= 6", params=p),
        Figure(f"scale_ls_lR_remount_{tag}", "ls -lR after the remount (manifest trusted)", "s",
               [Sample(again_s, again["not_polls"])], goal="no file-info call", params=p),
        Figure(f"scale_rsync_dry_run_remount_{tag}", "rsync -a --dry-run of the remount", "s",
               [Sample(rsync_s, rsync["not_polls"])], goal="no file-info call, no content export", params=p),
        Figure(f"scale_colleague_seen_{tag}", "a second user's replace through the API, until the mount shows it",
               "s", [Sample(max(col["seen_after_s"], 0.0), 0)], goal=f"<= one poll ({poll} s)", params=p,
               check=Goal(value_max=poll + 1)),
        Figure(f"scale_cp_r_out_remount_{tag}", "cp -r out of the remount (sizes known, content not)", "s",
               [Sample(cp_s, cp["not_polls"])], goal="calls <= files + 6", params=p,
               check=Goal(calls_max=files + 6)),
    ]
