"""A bounded chaos campaign through a real mount (issue 10, §9): nothing lost, nothing wrong served.

The sandbox fails a tenth of *all* calls (500, 503, drop, a short hang, truncate;
seeded) while files of random sizes are copied in with ``cp`` and read back with
``cat``. The promises checked:

* every ``cp`` that exited 0 is byte-exact on the server;
* every ``cp`` that failed is in ``redcapfs unsent --json``, byte-exact in its
  ``data_path``, and ``redcapfs retry`` delivers it once the faults stop;
* no ``cat`` that exited 0 returned wrong or short bytes.

The server is checked with PyCap through a second sandbox on the same
``--data-dir`` and port (spool entries record the URL) started without faults.
Defaults keep the run under a minute; ``REDCAPFS_CHAOS_FILES``,
``REDCAPFS_CHAOS_MAX_BYTES``, ``REDCAPFS_CHAOS_SEED`` and
``REDCAPFS_CHAOS_RATE`` (the total fault rate, split over the five kinds) make
a longer manual run.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_upload_failures import cli, unsent
from test_write import server_file

redcap = pytest.importorskip("redcap")

FILES = int(os.environ.get("REDCAPFS_CHAOS_FILES", "110"))
MAX_BYTES = int(os.environ.get("REDCAPFS_CHAOS_MAX_BYTES", str(3 << 20)))
SEED = int(os.environ.get("REDCAPFS_CHAOS_SEED", "7"))
RATE = float(os.environ.get("REDCAPFS_CHAOS_RATE", "0.1"))
KINDS = ("500", "503", "drop", "hang,seconds=3", "truncate")
EVENT = "baseline_arm_1"
UP_FIELD, DOWN_FIELD = "radiology_report", "mri_upload"  # both in the imaging form of that event
PARALLEL = 4


@dataclass
class Case:
    """One file of the campaign: its record, its bytes going in and the bytes seeded for reading."""

    record: str
    up: Path
    down: bytes


def sizes(rng: random.Random, n: int) -> list[int]:
    """Log-uniform sizes from 1 KB to MAX_BYTES, so small and large files both occur often."""
    low, high = math.log(1024), math.log(MAX_BYTES)
    return [int(math.exp(rng.uniform(low, high))) for _ in range(n)]


def make_cases(tmp_path: Path) -> list[Case]:
    rng = random.Random(SEED)
    src = tmp_path / "src"
    src.mkdir()
    cases = []
    for i, (size_up, size_down) in enumerate(zip(sizes(rng, FILES), sizes(rng, FILES), strict=True)):
        up = src / f"up{i:04d}.bin"
        up.write_bytes(rng.randbytes(size_up))
        cases.append(Case(f"c{i:04d}", up, rng.randbytes(size_down)))
    return cases


def seed_server(sb: Any, cases: list[Case], tmp_path: Path) -> None:
    """Create each case's record and store its read file with PyCap, before any fault."""
    project = redcap.Project(sb.url, sb.token)
    project.import_records([{"record_id": c.record, "redcap_event_name": EVENT} for c in cases])
    path = tmp_path / "seed.bin"
    for case in cases:
        path.write_bytes(case.down)
        with open(path, "rb") as fh:
            project.import_file(record=case.record, field=DOWN_FIELD, file_name=f"down-{case.record}.bin",
                                file_object=fh, event=EVENT)


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, timeout=120)


def warm(root: Path, cases: list[Case]) -> None:
    """List every slot folder once, so the campaign's cp and cat find their way without a records export."""
    for case in cases:
        for fld in (UP_FIELD, DOWN_FIELD):
            assert os.listdir(root / case.record / EVENT / fld) == ([] if fld == UP_FIELD else
                                                                     [f"down-{case.record}.bin"])


def fault_args(port: str) -> list[str]:
    args = ["--port", port]
    for n, kind in enumerate(KINDS):
        args += ["--fault", f"rate={RATE / len(KINDS)},seed={SEED + n},do={kind}"]
    return args


def test_chaos_campaign_loses_nothing_and_serves_nothing_wrong(sandbox, mount, tmp_path: Path) -> None:
    cases = make_cases(tmp_path)
    clean = sandbox(name="chaos")
    port = clean.url.rsplit(":", 1)[1].split("/")[0]
    seed_server(clean, cases, tmp_path)
    mnt = mount(clean, "timeout=2", "records_ttl=3600")  # mounted before the faults: a refused mount tests nothing
    warm(mnt.path, cases)
    clean.stop()

    faulty = sandbox(*fault_args(port), name="chaos")  # same port and data: the mount carries on against it
    assert faulty.url == clean.url
    with ThreadPoolExecutor(PARALLEL) as pool:
        cps = list(pool.map(lambda c: run(["cp", str(c.up), str(mnt.path / c.record / EVENT / UP_FIELD)]), cases))
        reads = list(pool.map(lambda c: run(["cat", str(mnt.path / c.record / EVENT / DOWN_FIELD
                                                         / f"down-{c.record}.bin")]), cases))
    wrong_reads = [c.record for c, r in zip(cases, reads, strict=True) if r.returncode == 0 and r.stdout != c.down]
    assert not wrong_reads, f"reads that exited 0 with wrong or short bytes: {wrong_reads}"
    mnt.unmount()
    faults = [row for row in faulty.calls() if row.get("fault")]
    faulty.stop()

    checker = sandbox("--port", port, name="chaos")
    failed = [c for c, r in zip(cases, cps, strict=True) if r.returncode != 0]
    for case, result in zip(cases, cps, strict=True):
        if result.returncode == 0:
            assert server_file(checker, case.record, UP_FIELD, EVENT) == (case.up.name, case.up.read_bytes()), \
                f"cp of {case.up.name} exited 0 but the server does not hold its bytes"
    entries = {(e["record"], e["name"]): e for e in unsent(mnt)}
    # cp that could not even create the file (the slot could not be looked at) wrote nothing: nothing to keep.
    refused = [c for c in failed if b"cannot create regular file" in cps[cases.index(c)].stderr]
    for case in refused:
        assert (case.record, case.up.name) not in entries
        assert server_file(checker, case.record, UP_FIELD, EVENT) is None
    failed = [c for c in failed if c not in refused]
    for case in failed:
        entry = entries.get((case.record, case.up.name))
        assert entry is not None, f"cp of {case.up.name} failed ({cps[cases.index(case)].stderr!r}) " \
                                  "and it is not in unsent"
        assert Path(entry["data_path"]).read_bytes() == case.up.read_bytes()
    assert len(entries) == len(failed), "unsent holds entries no failed cp explains"
    retry = cli(mnt, "retry")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    for case in failed:
        assert server_file(checker, case.record, UP_FIELD, EVENT) == (case.up.name, case.up.read_bytes())
    assert unsent(mnt) == []
    failed_reads = sum(r.returncode != 0 for r in reads)
    kinds = dict(Counter(row["fault"] for row in faults))
    total = sum(c.up.stat().st_size + len(c.down) for c in cases)
    print(f"\nchaos: {len(cases)} files each way, {total} bytes, {len(faults)} faults injected {kinds}, "
          f"{len(failed)} cp failed and were retried, "
          f"{len(refused)} refused at create, {failed_reads} reads failed cleanly")
