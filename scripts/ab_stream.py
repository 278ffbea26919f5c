"""A/B of streamed uploads: `cp` into a mount with ``stream_upload`` on and off, interleaved, with references.

Each rep, in turn: curl -F (-H 'Expect:'), `cp` into mount A (``stream_upload=off``: the upload at close,
main's path), `cp` into mount B (the default, streamed), `cp` into the FUSE passthrough. Times, paired
ratios and the daemons' CPU seconds (/proc/PID/stat) are printed as medians with their ranges. The order
within a rep rotates so neither mount always follows the other. 127.0.0.1 only; nothing is asserted.

    .venv/bin/python scripts/ab_stream.py [--reps 7] [--mib 256] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from benchlib.procs import Mount, Passthrough, Sandbox, cpu_seconds  # noqa: E402
from benchlib.projects import Project, random_file, write_project  # noqa: E402
from benchlib.stats import timed  # noqa: E402
from benchlib.tools import Curl, cp, settle  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--work")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ab-stream-"))
    big = random_file(work / "big.bin", args.mib << 20)
    records = [f"{w}{k}" for k in range(1, args.reps + 1) for w in ("c", "a", "b")]
    pdir = write_project(Project("ab: streamed uploads", records, ["scan"]), work / "project")
    (work / "pt-src").mkdir()
    pt = Passthrough(work / "pt-src", work / "pt", work / "passthrough.log")
    sb = Sandbox(work, "ab", pdir, 0)
    times: dict[str, list[float]] = {k: [] for k in ("curl", "off", "on", "pt")}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        curl = Curl(sb, work)
        with Mount(sb, work, "rate=off,stream_upload=off") as a, Mount(sb, work, "rate=off") as b:
            mounts = {"off": a, "on": b}
            for rep in range(1, args.reps + 1):
                steps: list[tuple[str, Callable[[], None]]] = [
                    ("curl", lambda r=rep: curl.upload(f"c{r}", "scan", big)),
                    ("off", lambda r=rep: cp(big, a.mp / f"a{r}" / "scan" / "big.bin")),
                    ("on", lambda r=rep: cp(big, b.mp / f"b{r}" / "scan" / "big.bin")),
                    ("pt", lambda: cp(big, pt.mp / "w.bin")),
                ]
                if rep % 2 == 0:
                    steps[1], steps[2] = steps[2], steps[1]
                for key, fn in steps:
                    settle()
                    pid = mounts[key].pid if key in mounts else None
                    before = cpu_seconds(pid) if pid else 0.0
                    times[key].append(timed(fn))
                    if pid:
                        cpu[key].append(cpu_seconds(pid) - before)
                (pt.mp / "w.bin").unlink()
                print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), flush=True)
    finally:
        sb.stop()
        pt.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report(times, cpu)
    return 0


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for key, label in (("curl", "curl -F"), ("off", "cp in, stream_upload=off"), ("on", "cp in, streamed"),
                       ("pt", "cp into the passthrough")):
        print(f"{label:28s} {span(times[key])} s")
    for key in ("off", "on"):
        print(f"  {key:4s} / curl -F        {span([x / y for x, y in zip(times[key], times['curl'], strict=True)])}")
        print(f"  {key:4s} / passthrough    {span([x / y for x, y in zip(times[key], times['pt'], strict=True)])}")
        print(f"  {key:4s} daemon CPU       {span(cpu[key])} s")
    print(f"  on / off               {span([x / y for x, y in zip(times['on'], times['off'], strict=True)])}")


if __name__ == "__main__":
    sys.exit(main())
