"""The mount daemon's peak memory while it moves ``rss_bytes`` in and ``rss_bytes`` out.

Read from ``VmHWM`` in ``/proc/PID/status`` of the daemon (its high-water mark since it started), after a
`cp` in and a `cp` out on one mount. Memory is not noisy the way time is, so one sample is taken.
"""

from __future__ import annotations

from .config import Config, size_label
from .procs import Mount, Sandbox
from .projects import Project, Slot, random_file, write_project
from .stats import Figure, Goal, Sample
from .tools import cp, settle

OPTIONS = "rate=off"


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "rss"
    work.mkdir()
    data = random_file(work / "rss.bin", cfg.rss_bytes)
    proj = Project("bench: memory", ["out", "in"], ["doc"], [Slot("out", "doc", "rss.bin", data)])
    sb = Sandbox(work, "rss", write_project(proj, work / "project"), 0)
    try:
        with Mount(sb, work, OPTIONS) as m:
            mark = sb.mark()
            settle()
            cp(data, m.mp / "in" / "doc" / "rss.bin")
            out = work / "out.bin"
            cp(m.mp / "out" / "doc" / "rss.bin", out)
            out.unlink()
            sample = Sample(m.peak_rss_mib(), len(sb.calls_since(mark)))
    finally:
        sb.stop()
    L = size_label(cfg.rss_bytes)
    return [Figure(f"mount_peak_rss_{L}_each_way", f"mount daemon VmHWM after cp {L} in and {L} out", "MiB",
                   [sample], goal="<= 120", params={"bytes": cfg.rss_bytes}, check=Goal(value_max=120))]
