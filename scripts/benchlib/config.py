"""What one bench run measures: sizes, counts, repetitions, latencies (full run and ``--quick``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
GROUPS = ("sandbox", "big", "rss", "small", "find", "feed", "feed-scale")


@dataclass
class Config:
    """Everything a figure module needs to know about the run."""

    work: Path
    reps: int = 5  # large-file figures
    small_reps: int = 3  # many-small-files and find figures: each rep costs about a minute at 50 ms a call
    big_bytes: int = 256 * MIB
    rss_bytes: int = 1024 * MIB
    files: int = 200
    file_bytes: int = 50_000
    parallel: int = 8
    find_records: int = 10_000
    latency_ms: float = 50.0  # the "slow server" latency of the cold-read and small-file figures
    fio_bs: tuple[int, ...] = (256 * 1024, MIB)
    quick: bool = False
    drop_caches: bool = True  # before each large-file and find rep, where the bench may (root): tools.fresh_memory
    skipped: list[dict[str, str]] = field(default_factory=list)  # figures a group could not take: {name, why}

    @classmethod
    def quick_run(cls, work: Path) -> Config:
        """Tiny sizes, few files, two reps: every figure, in well under a minute (the suite's smoke test)."""
        return cls(work, reps=2, small_reps=1, big_bytes=4 * MIB, rss_bytes=8 * MIB, files=10, file_bytes=5_000,
                   parallel=4, find_records=300, fio_bs=(MIB,), quick=True)

    def describe(self) -> dict[str, object]:
        return {"reps": self.reps, "small_reps": self.small_reps, "big_bytes": self.big_bytes,
                "rss_bytes": self.rss_bytes, "files": self.files, "file_bytes": self.file_bytes,
                "parallel": self.parallel, "find_records": self.find_records, "latency_ms": self.latency_ms,
                "fio_block_sizes": list(self.fio_bs), "quick": self.quick,
                "drop_caches": self.drop_caches and can_drop_caches()}


def can_drop_caches() -> bool:
    """Whether this process may write /proc/sys/vm/drop_caches (root on Linux)."""
    return os.access(DROP_CACHES, os.W_OK)


DROP_CACHES = "/proc/sys/vm/drop_caches"


def size_label(n: int) -> str:
    """``268435456`` -> ``256MiB``; ``50000`` -> ``50KB`` (names of figures)."""
    if n % MIB == 0:
        return f"{n // MIB}MiB" if n < 1024 * MIB else f"{n // (1024 * MIB)}GiB"
    if n % 1024 == 0:
        return f"{n // 1024}KiB"
    return f"{n // 1000}KB" if n % 1000 == 0 else f"{n}B"
