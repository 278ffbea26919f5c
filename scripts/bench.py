"""redcapfs bench: the mount against curl, PyCap, its own HTTP client and a FUSE passthrough, in one run.

Everything runs on 127.0.0.1: sandboxes (``python -m redcapfs sandbox``, ``--latency`` for a slow
server), real kernel mounts (``python -m redcapfs mount``), ``scripts/passthrough.py`` on the same binding.
Each comparison is interleaved (reference, figure, reference, figure, ...), repeated, and reported as the
median and range of the samples and of the ratios paired per repetition, with the API calls each sample
cost (from the sandbox's request log). Nothing here asserts a speed: docs/PERFORMANCE.md says what the
figures mean and what they are measured against.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # benchlib and passthrough
sys.path.insert(1, str(HERE.parent))  # redcapfs, for a checkout without an installed package

from benchlib import big, diag, feed, feedscale, find, machine, rss, small  # noqa: E402
from benchlib.config import GROUPS, Config  # noqa: E402
from benchlib.stats import SCHEMA, Figure, table  # noqa: E402
from benchlib.tools import fio_version  # noqa: E402

RUNNERS: dict[str, Callable[[Config], list[Figure]]] = {
    "sandbox": diag.run, "big": big.run, "rss": rss.run, "small": small.run, "find": find.run,
    "feed": feed.run, "feed-scale": feedscale.run}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, few files, 2 reps (under a minute)")
    p.add_argument("--reps", type=int, help="repetitions of the large-file and sandbox figures (default 5)")
    p.add_argument("--small-reps", type=int, help="repetitions of the small-file and find figures (default 3)")
    p.add_argument("--files", type=int, help="how many small files (default 200)")
    p.add_argument("--only", help=f"comma-separated groups to run, of: {', '.join(GROUPS)}")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    p.add_argument("--work-dir", help="where sandboxes, mounts and files go (default: a new folder in TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs of every mount and sandbox)")
    p.add_argument("--no-drop-caches", action="store_true",
                   help="leave the page cache alone between reps (by default root drops it; see benchlib/tools.py)")
    return p.parse_args(argv)


def config(args: argparse.Namespace, work: Path) -> Config:
    cfg = Config.quick_run(work) if args.quick else Config(work)
    for name in ("reps", "small_reps", "files"):
        if getattr(args, name) is not None:
            setattr(cfg, name, max(1, getattr(args, name)))
    cfg.drop_caches = not args.no_drop_caches
    return cfg


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def run_groups(cfg: Config, groups: list[str], report: dict[str, Any]) -> None:
    """Each group in turn; a failing group is reported and the others still run."""
    start = time.monotonic()
    for group in groups:
        say(f"{group} ... ({time.monotonic() - start:.0f} s so far)")
        t0 = time.monotonic()
        try:
            figures = RUNNERS[group](cfg)
        except Exception as exc:
            say(f"{group} failed: {exc}")
            report["errors"].append({"group": group, "error": f"{type(exc).__name__}: {exc}",
                                     "traceback": traceback.format_exc()})
            continue
        report["figures"] += [f.to_json() for f in figures]
        report["group_seconds"][group] = round(time.monotonic() - t0, 1)


def main(argv: list[str]) -> int:
    args = parse(argv)
    groups = args.only.split(",") if args.only else list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        print(f"scripts/bench: unknown group(s) {', '.join(unknown)}; groups are {', '.join(GROUPS)}",
              file=sys.stderr)
        return 2
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="redcapfs-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = config(args, work)
    report: dict[str, Any] = {"schema": SCHEMA, "command": ["scripts/bench", *argv], "machine": machine.describe(),
                              "config": cfg.describe(), "started": dt.datetime.now(dt.UTC).isoformat(
                                  timespec="seconds"), "figures": [], "skipped": [], "errors": [],
                              "group_seconds": {}}
    if fio_version() is None:
        cfg.fio_bs = ()
        report["skipped"].append({"name": "fio_*", "why": "fio is not installed (Debian package fio)"})
    if not args.json:
        print(machine.header(report["machine"]), flush=True)
    t0 = time.monotonic()
    try:
        run_groups(cfg, groups, report)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    report["skipped"] += cfg.skipped
    report["machine"]["loadavg_end"] = list(os.getloadavg())
    checked = [f for f in report["figures"] if f.get("met") is not None]
    report["goals"] = {"checked": len(checked), "met": sum(1 for f in checked if f["met"]),
                       "missed": [f["name"] for f in checked if not f["met"]]}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(table(report["figures"]))
        end = " ".join(f"{x:.2f}" for x in report["machine"]["loadavg_end"])
        print(f"took {report['elapsed_s']} s; load average at end {end}" + (f"; kept {work}" if args.keep else ""))
        for skip in report["skipped"]:
            print(f"skipped {skip['name']}: {skip['why']}")
        for err in report["errors"]:
            print(f"ERROR in {err['group']}: {err['error']}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
