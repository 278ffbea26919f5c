"""Many small files at ``latency_ms`` a call: `cp -r` out and in against a sequential PyCap loop, and
``parallel`` concurrent `cp` against one.

Every mount is fresh, so no size or content is known to it at the start of the timed command; the "known"
variant first runs an untimed `ls -lR` (itself a figure: the calls a first listing with sizes costs).
Timed regions include listing the records (PyCap's records export, the mount's root `readdir`), since
neither side can copy without it. Written files land in slots that are empty at the start of the rep:
each rep and each variant has its own file field, so no sample replaces another's file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .config import Config, size_label
from .procs import Mount, Sandbox
from .projects import Project, Slot, small_files, write_project
from .stats import Figure, Goal, Sample
from .tools import PyCap, measure, run_parallel

OPTIONS = "rate=off"  # the rate limit lifted: PyCap has none (at the default 5/s it binds, see PERFORMANCE.md)


def _records(n: int) -> list[str]:
    return [f"r{i:04d}" for i in range(1, n + 1)]


def _groups(items: list[str], n: int) -> list[list[str]]:
    return [items[i::n] for i in range(n) if items[i::n]]


class SmallRun:
    """The two sandboxes (read project, write project), the source files, and the samples so far."""

    def __init__(self, cfg: Config, work: Path) -> None:
        self.cfg, self.work = cfg, work
        self.records = _records(cfg.files)
        self.sources = small_files(work / "sources", cfg.files, cfg.file_bytes)
        slots = [Slot(r, "doc", s.name, s) for r, s in zip(self.records, self.sources, strict=True)]
        read_proj = Project("bench: small files (read)", self.records, ["doc"], slots)
        fields = [f"{kind}{k}" for k in range(1, cfg.small_reps + 1) for kind in ("p", "s", "q")]
        write_proj = Project("bench: small files (write)", self.records, fields)
        self.rsb = Sandbox(work, "small-read", write_project(read_proj, work / "read-project"), cfg.latency_ms)
        try:
            self.wsb = Sandbox(work, "small-write", write_project(write_proj, work / "write-project"),
                               cfg.latency_ms)
        except BaseException:
            self.rsb.stop()
            raise
        self.samples: dict[str, list[Sample]] = {}

    def add(self, name: str, sample: Sample) -> None:
        self.samples.setdefault(name, []).append(sample)

    def stop(self) -> None:
        self.rsb.stop()
        self.wsb.stop()

    def _out(self) -> Path:
        out = self.work / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return out

    def _mounted(self, sb: Sandbox, name: str, timed: Callable[[Path, Path], None],
                 before: Callable[[Path], None] | None = None) -> None:
        """A fresh mount; ``before`` (untimed, e.g. `ls -lR`), then ``timed(mountpoint, out)``."""
        with Mount(sb, self.work, OPTIONS) as m:
            if before is not None:
                before(m.mp)
            out = self._out()
            self.add(name, measure(sb, lambda: timed(m.mp, out)))

    def rep_read(self, pycap: PyCap) -> None:
        out = self._out()
        self.add("pycap_read", measure(self.rsb, lambda: pycap.download_all("doc", out)))
        self._mounted(self.rsb, "cp_r_out_cold", _copy_out)
        self._mounted(self.rsb, "cp_r_out_parallel", lambda mp, out: _copy_out(mp, out, self.cfg.parallel))

        def ls(mp: Path) -> None:
            self.add("ls_lR_fresh", measure(self.rsb, lambda: subprocess.run(
                ["ls", "-lR", str(mp)], check=True, stdout=subprocess.DEVNULL)))

        self._mounted(self.rsb, "cp_r_out_known", _copy_out, before=ls)

    def rep_write(self, pycap: PyCap, k: int) -> None:
        items = [(r, f"p{k}", s) for r, s in zip(self.records, self.sources, strict=True)]
        self.add("pycap_write", measure(self.wsb, lambda: pycap.upload_all(items)))
        seq = self._tree(f"s{k}", [self.records])[0]
        self._mounted(self.wsb, "cp_r_in", lambda mp, out: _copy_in([seq], mp))
        par = self._tree(f"q{k}", _groups(self.records, self.cfg.parallel))
        self._mounted(self.wsb, "cp_r_in_parallel", lambda mp, out: _copy_in(par, mp))

    def _tree(self, field: str, groups: list[list[str]]) -> list[Path]:
        """Source trees ``RECORD/FIELD/NAME`` (hard links to the sources), one per group of records."""
        source_of = dict(zip(self.records, self.sources, strict=True))
        roots = []
        for i, group in enumerate(groups):
            root = self.work / f"src-{field}-{i}"
            for rec in group:
                (root / rec / field).mkdir(parents=True)
                os.link(source_of[rec], root / rec / field / source_of[rec].name)
            roots.append(root)
        return roots


def _copy_out(mp: Path, out: Path, parallel: int = 1) -> None:
    """List the records, then `cp -r` them out: one cp, or ``parallel`` cps each with a share of them."""
    names = sorted(os.listdir(mp))
    run_parallel([["cp", "-r", *(mp / n for n in group), out] for group in _groups(names, parallel)])


def _copy_in(roots: list[Path], mp: Path) -> None:
    """`cp -r ROOT/. MOUNTPOINT/` for each source tree, all at once."""
    run_parallel([["cp", "-r", f"{root}/.", f"{mp}/"] for root in roots])


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "small"
    work.mkdir()
    run = SmallRun(cfg, work)
    try:
        rpy, wpy = PyCap(run.rsb), PyCap(run.wsb)
        for k in range(1, cfg.small_reps + 1):
            run.rep_read(rpy)
            run.rep_write(wpy, k)
    finally:
        run.stop()
    return figures(cfg, run.samples)


def figures(cfg: Config, s: dict[str, list[Sample]]) -> list[Figure]:
    n, size = cfg.files, size_label(cfg.file_bytes)
    tag = f"{n}x{size}"
    p = {"files": n, "file_bytes": cfg.file_bytes, "latency_ms": cfg.latency_ms, "rate": "unlimited"}
    pp = {**p, "parallel": cfg.parallel}
    fast = 0.75 * cfg.parallel  # issue 12: 8 parallel copies at least 6 times as fast as one
    pyr = Figure(f"pycap_read_{tag}", "PyCap: records export, then export_file per file", "s", s["pycap_read"],
                 params=p)
    pyw = Figure(f"pycap_write_{tag}", "PyCap: import_file per file", "s", s["pycap_write"], params=p)
    cold = Figure(f"cp_r_out_{tag}", "cp -r out of a fresh mount (sizes not known)", "s", s["cp_r_out_cold"],
                  pyr, goal="<= 2.1, calls <= 2 x files + 6", params=p, check=Goal(ratio_max=2.1, calls_max=2 * n + 6))
    cp_in = Figure(f"cp_r_in_{tag}", "cp -r into a fresh mount", "s", s["cp_r_in"], pyw, goal="<= 1.1", params=p,
                   check=Goal(ratio_max=1.1))
    return [
        pyr, cold,
        Figure(f"ls_lR_fresh_{tag}", "ls -lR of a fresh mount (untimed step before the next figure)", "s",
               s["ls_lR_fresh"], params=p),
        Figure(f"cp_r_out_known_{tag}", "cp -r out after ls -lR (sizes known)", "s", s["cp_r_out_known"], pyr,
               goal="<= 1.1, calls <= files + 6", params=p, check=Goal(ratio_max=1.1, calls_max=n + 6)),
        Figure(f"cp_r_out_parallel{cfg.parallel}_{tag}", f"{cfg.parallel} cp -r at once, fresh mount", "s",
               s["cp_r_out_parallel"], cold, means="speedup", goal=f">= {fast:g}", params=pp,
               check=Goal(ratio_min=fast)),
        pyw, cp_in,
        Figure(f"cp_r_in_parallel{cfg.parallel}_{tag}", f"{cfg.parallel} cp -r in at once, fresh mount", "s",
               s["cp_r_in_parallel"], cp_in, means="speedup", goal=f">= {fast:g}", params=pp,
               check=Goal(ratio_min=fast)),
    ]
