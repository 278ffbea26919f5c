"""`find` over a large project against `find` over the same tree on local disk.

The project is classic, ``find_records`` records with ten file fields and a file in every hundredth
record, so the tree is records x (1 + 10) directories plus the files (110,101 entries for 10,000 records,
the shape issue 12 measured). The local copy is built from the same
definition (directories and empty files) and its entry count is checked against the mount's. Each rep
mounts afresh (the mount reads the records index while it starts, untimed) and times its first `find`;
the mount keeps its default records TTL, so a find that outlasts it shows the extra exports in its calls.

Each rep also times `find` over ``scripts/fusefloor.c`` serving the same tree (``floor.py``): a C
filesystem on libfuse3's low-level API that answers from arithmetic, the least any FUSE filesystem pays
here. The mount's ratio to it is redcapfs's own share; the floor's ratio to the local tree is FUSE's.

Where the machine has more than one CPU, each rep also times the floor and a fresh mount with the
daemon's threads and the ``find`` on one CPU (``onecpu.py``; before the others in every other rep): the
share of the round trips that is the machine waking idle CPUs. The goal is on the figure taken as a user
runs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from . import floor, onecpu
from .config import Config
from .procs import Mount, Sandbox
from .projects import Project, Slot, write_project
from .stats import Figure, Goal, Sample
from .tools import fresh_memory, measure, stored_files

OPTIONS = "rate=off"
FIELDS = ["doc", *(f"field{i}" for i in range(2, 11))]


def _project(cfg: Config, work: Path) -> tuple[Project, Path]:
    tiny = work / "tiny.txt"
    tiny.write_bytes(b"bench\n")
    records = [str(i) for i in range(1, cfg.find_records + 1)]
    files = [Slot(r, "doc", f"doc-{r}.txt", tiny) for r in records[::100]]
    proj = Project("bench: find", records, FIELDS, files)
    return proj, write_project(proj, work / "project")


def _local_tree(proj: Project, root: Path) -> Path:
    """The mount's layout on local disk: RECORD/FIELD/ for every field, each stored file (empty), and the
    (empty) File Repository folder ``.repository`` the mount lists at its top."""
    (root / ".repository").mkdir(parents=True)
    for rec in proj.records:
        for field in proj.file_fields:
            (root / rec / field).mkdir(parents=True)
    for slot in proj.files:
        (root / slot.record / slot.field / slot.name).touch()
    return root


def _find(root: Path, where: int | None = None) -> int:
    """`find ROOT` (on CPU ``where`` when given); returns how many entries it printed."""
    out = subprocess.run(["find", str(root)], check=True, capture_output=True,
                         preexec_fn=onecpu.child_on(where)).stdout
    return out.count(b"\n")


def run(cfg: Config) -> list[Figure]:
    work = cfg.work / "find"
    work.mkdir()
    proj, pdir = _project(cfg, work)
    local = _local_tree(proj, work / "local")
    exe, why = floor.build(work)
    if exe is None:
        cfg.skipped.append({"name": f"find_floor_{cfg.find_records}_records", "why": why})
    sb = Sandbox(work, "find", pdir, 0)
    entries: dict[str, int] = {}
    series: dict[str, list[Sample]] = {"local": [], "floor": [], "mount": [], "floor1": [], "mount1": []}
    where = onecpu.cpu()
    if where is None:
        cfg.skipped.append({"name": f"find_one_cpu_{cfg.find_records}_records", "why": "this machine has one CPU"})
    try:
        for rep in range(cfg.small_reps):
            fresh_memory(cfg, local, *stored_files(sb))
            series["local"].append(measure(None, lambda: entries.__setitem__("local", _find(local))))
            for pinned in _order(rep, where):
                suffix = "" if pinned is None else "1"
                if exe is not None:
                    with floor.Floor(exe, work / f"floor{rep}{suffix}", cfg.find_records, 100, proj.file_fields,
                                     work / f"floor{rep}{suffix}.log") as fl:
                        series["floor" + suffix].append(_walk(None, fl.proc.pid, fl.mp, pinned, entries, "floor"))
                with Mount(sb, work, OPTIONS) as m:
                    series["mount" + suffix].append(_walk(sb, m.pid, m.mp, pinned, entries, "mount"))
    finally:
        sb.stop()
    for other in ("mount", "floor"):
        if other in entries and entries["local"] != entries[other]:
            raise RuntimeError(f"find: the local tree has {entries['local']} entries, the {other} {entries[other]}")
    return _figures(cfg, entries["mount"], series)


def _order(rep: int, where: int | None) -> tuple[int | None, ...]:
    """The passes of a rep: as a user runs it (None), then on CPU ``where``; every other rep the other way
    round, so neither pass always finds the machine in the state the other one left."""
    if where is None:
        return (None,)
    return (None, where) if rep % 2 == 0 else (where, None)


def _walk(sb: Sandbox | None, pid: int | None, mp: Path, where: int | None, entries: dict[str, int],
          what: str) -> Sample:
    """One timed `find` of a mount whose daemon is ``pid``; with ``where``, daemon and `find` on that CPU."""
    if where is not None:
        if pid is None:
            raise RuntimeError(f"find: the {what}'s daemon pid is not known, so it cannot be pinned")
        onecpu.pin(pid, where)

    def walk() -> None:
        found = _find(mp, where)
        if entries.setdefault(what, found) != found:
            raise RuntimeError(f"find: the {what} listed {found} entries, {entries[what]} before")
    return measure(sb, walk)


def _figures(cfg: Config, entries: int, series: dict[str, list[Sample]]) -> list[Figure]:
    n = cfg.find_records
    p = {"records": n, "entries": entries, "latency_ms": 0, "records_ttl": "default"}
    ref = Figure(f"find_local_{n}_records", "find over the same tree on local disk", "s", series["local"], params=p)
    figures = [ref]
    fl = None
    if series["floor"]:
        fl = Figure(f"find_floor_{n}_records", "find over scripts/fusefloor.c (C, libfuse3 low-level) serving "
                    "the same tree: FUSE's floor", "s", series["floor"], ref, params=p)
        figures.append(fl)
    mount = Figure(f"find_{n}_records", "find over a fresh mount", "s", series["mount"], ref, goal="<= 3", params=p,
                   check=Goal(ratio_max=3))
    figures.append(mount)
    if fl is not None:
        figures.append(Figure(f"find_{n}_records_vs_floor", "the same finds against the floor's in the same rep",
                              "s", series["mount"], fl, params=p))
    if not series["mount1"]:
        return figures
    p1 = {**p, "one_cpu": True}
    fl1 = None
    if series["floor1"]:
        fl1 = Figure(f"find_floor_one_cpu_{n}_records", "the floor again, its threads and the find on one CPU",
                     "s", series["floor1"], ref, params=p1)
        figures.append(fl1)
    figures.append(Figure(f"find_one_cpu_{n}_records", "a fresh mount again, its threads and the find on one CPU",
                          "s", series["mount1"], ref, params=p1))
    if fl1 is not None:
        figures.append(Figure(f"find_one_cpu_{n}_records_vs_floor", "the same, against the floor on one CPU",
                              "s", series["mount1"], fl1, params=p1))
    return figures
