"""A/B of the large-file read path: two redcapfs trees against the same sandboxes, interleaved.

Each rep runs, for side A then side B (the order alternates rep by rep): curl to disk, a cold `cp` out
of a fresh mount of that side's tree, a warm `cp` (the same mount's second copy), `cp` out of the
passthrough; then, against a sandbox adding ``--latency`` ms a call, curl and a cold `cp` out. It prints
per side the medians (min-max) of the times, of the daemon's user and system CPU seconds, and of the
paired ratios. A side's mount runs ``python -m redcapfs`` with that tree as its working folder, so the
tree's ``redcapfs`` package is the one imported; the sandboxes and the passthrough are this checkout's.

Usage: python scripts/ab_read.py --a DIR --b DIR [--reps 5] [--mib 256] [--latency 50] [--json FILE]
(``git archive main redcapfs | tar -x -C DIR`` makes a tree of main.) REDCAPFS_FUSE=2 runs both sides
and the passthrough on libfuse2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import procs  # noqa: E402
from benchlib.procs import Mount, Passthrough, Sandbox  # noqa: E402
from benchlib.projects import Project, Slot, random_file, write_project  # noqa: E402
from benchlib.stats import timed  # noqa: E402
from benchlib.tools import Curl, cp, settle  # noqa: E402

Rows = dict[str, list[float]]


def cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def copy_timed(rows: Rows, name: str, pid: int, src: Path, out: Path, size: int) -> None:
    """`cp src out`, timed, with the CPU ``pid`` spent meanwhile; the copy must be whole."""
    settle()
    u0, s0 = cpu(pid)
    rows.setdefault(name, []).append(timed(lambda: cp(src, out)))
    u1, s1 = cpu(pid)
    rows.setdefault(f"{name}_user", []).append(u1 - u0)
    rows.setdefault(f"{name}_sys", []).append(s1 - s0)
    if out.stat().st_size != size:
        raise RuntimeError(f"{name}: {out.stat().st_size} bytes copied of {size}")
    out.unlink()


def mount_reads(rows: Rows, sb: Sandbox, work: Path, tree: Path, out: Path, size: int, prefix: str,
                warm: bool) -> None:
    """A fresh mount of ``tree``: the cold `cp` out, and the warm one if asked."""
    procs.REPO = tree
    with Mount(sb, work, "rate=off") as m:
        os.listdir(m.mp)  # the records index, untimed
        assert m.pid is not None
        src = m.mp / "big" / "doc" / "big.bin"
        copy_timed(rows, f"{prefix}cold", m.pid, src, out, size)
        if warm:
            copy_timed(rows, "warm", m.pid, src, out, size)


def curl_timed(rows: Rows, name: str, curl: Curl, out: Path) -> None:
    settle()
    rows.setdefault(name, []).append(timed(lambda: curl.download("big", "doc", out)))
    out.unlink()


def rep(rows: Rows, tree: Path, env: dict[str, object]) -> None:
    """One rep of one side (see the module docstring)."""
    work, out, size = env["work"], env["out"], env["size"]
    assert isinstance(work, Path) and isinstance(out, Path) and isinstance(size, int)
    sb, slow, pt = env["sb"], env["slow"], env["pt"]
    assert isinstance(sb, Sandbox) and isinstance(slow, Sandbox) and isinstance(pt, Passthrough)
    curl_timed(rows, "curl", Curl(sb, work), out)
    mount_reads(rows, sb, work, tree, out, size, "", True)
    copy_timed(rows, "pt", pt.proc.pid, pt.mp / "big.bin", out, size)
    curl_timed(rows, "curl_slow", Curl(slow, work), out)
    mount_reads(rows, slow, work, tree, out, size, "slow_", False)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--a", required=True, help="the tree of side A (a folder holding redcapfs/)")
    p.add_argument("--b", required=True, help="the tree of side B")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--mib", type=int, default=256)
    p.add_argument("--latency", type=float, default=50)
    p.add_argument("--json", help="also write every sample to this file")
    args = p.parse_args()
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    work = Path(tempfile.mkdtemp(prefix="ab-read-"))
    rows: dict[str, Rows] = {"A": {}, "B": {}}
    loads = [os.getloadavg()[0]]
    try:
        big = random_file(work / "big.bin", args.mib << 20)
        pdir = write_project(Project("ab", ["big"], ["doc"], [Slot("big", "doc", "big.bin", big)]),
                             work / "project")
        (work / "pt-src").mkdir()
        os.link(big, work / "pt-src" / "big.bin")
        pt = Passthrough(work / "pt-src", work / "pt", work / "pt.log")
        sb = Sandbox(work, "lat0", pdir, 0)
        slow = Sandbox(work, "slow", pdir, args.latency)
        env: dict[str, object] = {"work": work, "out": work / "out.bin", "size": args.mib << 20, "sb": sb,
                                  "slow": slow, "pt": pt}
        try:
            for n in range(args.reps):
                for side in ("AB" if n % 2 == 0 else "BA"):
                    rep(rows[side], trees[side], env)
                loads.append(os.getloadavg()[0])
                print(f"rep {n + 1} of {args.reps} done, load {loads[-1]:.2f}", file=sys.stderr, flush=True)
        finally:
            slow.stop()
            sb.stop()
            pt.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(rows, loads)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "loads": loads, "trees": {k: str(v) for k, v in
                                                                                        trees.items()}}))


def report(rows: dict[str, Rows], loads: list[float]) -> None:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"

    print(f"load average (1 min) at the start and after each rep: {' '.join(f'{x:.2f}' for x in loads)}")
    for side, r in rows.items():
        ratios = {
            "cold/curl": [a / b for a, b in zip(r["cold"], r["curl"], strict=True)],
            "slow_cold/curl_slow": [a / b for a, b in zip(r["slow_cold"], r["curl_slow"], strict=True)],
            "warm/pt": [a / b for a, b in zip(r["warm"], r["pt"], strict=True)],
            "cold_cpu": [a + b for a, b in zip(r["cold_user"], r["cold_sys"], strict=True)],
            "warm_cpu": [a + b for a, b in zip(r["warm_user"], r["warm_sys"], strict=True)],
            "pt_cpu": [a + b for a, b in zip(r["pt_user"], r["pt_sys"], strict=True)],
        }
        print(f"side {side}")
        for key, values in {**r, **ratios}.items():
            print(f"  {key:20s} {med(values)}")


if __name__ == "__main__":
    main()
