"""What the mount asks REDCap for, counted in the sandbox's request log, and how it stops when banned.

- 8 ``cp`` at once into empty slots cost one import-rights probe and one Import
  File each, and at most the trash's file-info question per slot: no download.
- ``-o rate=,burst=`` show in ``redcapfs status --json`` (``rate`` key).
- Once REDCap answers with its ban page (the sandbox's ``--fault do=ban``), the
  mount makes no further call, fails operations that need one with EIO, logs the
  ban once and ``redcapfs status`` shows it.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mounthelp import REPO, settle

WRITERS = 8


def empty_project(root: Path, records: int) -> Path:
    """A classic JSON project: ``records`` records, one file field ``doc``, no files stored."""
    (root / "files").mkdir(parents=True)
    (root / "project.json").write_text(json.dumps({"project_id": 77, "project_title": "calls"}))
    (root / "metadata.json").write_text(json.dumps([
        {"field_name": "record_id", "form_name": "main", "field_type": "text"},
        {"field_name": "doc", "form_name": "main", "field_type": "file"}]))
    (root / "records.json").write_text(json.dumps([{"record_id": str(i)} for i in range(1, records + 1)]))
    (root / "files" / "manifest.json").write_text("[]")
    return root


def status_of(m: Any) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "redcapfs", "status", "--json"], capture_output=True, text=True,
                            env=m.env, cwd=str(REPO), timeout=60)
    assert result.returncode == 0, result.stderr
    docs = [d for d in json.loads(result.stdout) if d["mountpoint"] == str(m.path)]
    assert len(docs) == 1, docs
    return docs[0]


def test_parallel_writers_send_one_rights_probe_and_nothing_but_their_imports(
        sandbox: Any, mount: Any, tmp_path: Path) -> None:
    sb = sandbox(project=empty_project(tmp_path / "proj", WRITERS))
    m = mount(sb, "poll=0")  # no change feed: only the writers' calls reach the log
    sources = []
    for i in range(1, WRITERS + 1):
        src = tmp_path / f"scan-{i}.bin"
        src.write_bytes(os.urandom(20_000 + i))
        sources.append(src)
    before = len(sb.calls())
    procs = [subprocess.Popen(["cp", str(src), str(m.path / str(i) / "doc" / src.name)])
             for i, src in enumerate(sources, 1)]
    assert [p.wait(120) for p in procs] == [0] * WRITERS
    settle(lambda: len(sb.calls()))
    new = sb.calls()[before:]
    probes = [c for c in new if c["content"] == "record"]
    imports = [c for c in new if c["content"] == "file" and c["action"] == "import"]
    assert len(probes) == 1, probes
    assert sorted(c["record"] for c in imports) == sorted(str(i) for i in range(1, WRITERS + 1))
    # Before an upload the trash asks the slot what it holds now (issue 10: a colleague's upload the index
    # does not show yet is what a replace would destroy): one file-info call, never a download, into an
    # empty slot. Nothing else.
    asks = [c for c in new if c["content"] == "file" and c["action"] == "export"]
    assert all(c.get("fileinfo") for c in asks) and len(asks) <= WRITERS, asks
    assert len(new) == 1 + WRITERS + len(asks), new
    for i, src in enumerate(sources, 1):
        assert (m.path / str(i) / "doc" / src.name).read_bytes() == src.read_bytes()


def test_rate_and_burst_show_in_status(sandbox: Any, mount: Any) -> None:
    sb = sandbox()
    m = mount(sb, "rate=4,burst=30")
    rate = status_of(m)["rate"]
    assert rate["limit"] == 4 and rate["burst"] == 30
    assert status_of(m)["banned"] is None


def test_a_ban_stops_every_call_and_fails_with_eio(sandbox: Any, mount: Any) -> None:
    sb = sandbox("--fault", "content=file,action=export,nth=1,do=ban")
    m = mount(sb)
    consent = m.path / "1001" / "screening_arm_1" / "consent_form" / "consent_1001.pdf"
    mri = m.path / "1003" / "baseline_arm_1" / "mri_upload" / "mri_02.png"
    with pytest.raises(OSError) as first:
        consent.read_bytes()
    assert first.value.errno == errno.EIO
    calls = settle(lambda: len(sb.calls()))
    for path in (consent, mri):
        with pytest.raises(OSError) as again:
            path.read_bytes()
        assert again.value.errno == errno.EIO
    with pytest.raises(OSError) as write:
        (m.path / "1001" / "baseline_arm_1" / "radiology_report" / "new.txt").write_bytes(b"x")
    assert write.value.errno == errno.EIO
    assert len(sb.calls()) == calls  # nothing asked once the ban was seen
    assert [c for c in sb.calls() if c.get("fault") == "ban"] == [sb.calls()[-1]]
    banned = status_of(m)["banned"]
    assert banned is not None and "has been banned due to suspected abuse" in banned["message"]
    text = subprocess.run([sys.executable, "-m", "redcapfs", "status"], capture_output=True, text=True,
                          env=m.env, cwd=str(REPO), timeout=60).stdout
    assert "BANNED" in text
    assert m.log.count("has banned this machine's IP address") == 1, m.log


def test_a_records_ttl_expiring_during_listings_never_runs_two_exports_at_once(sandbox: Any, mount: Any) -> None:
    """Past the TTL the listing is served as it was while one refresh runs; the next waits for it to end."""
    latency = 0.4
    sb = sandbox("--latency", str(int(latency * 1000)))
    m = mount(sb, "records_ttl=0.05", "poll=0")
    walkers = [subprocess.Popen(["find", str(m.path)], stdout=subprocess.DEVNULL) for _ in range(4)]
    for _ in range(3):
        assert subprocess.run(["ls", "-R", str(m.path)], capture_output=True).returncode == 0
    assert [w.wait(120) for w in walkers] == [0] * 4
    settle(lambda: len(sb.calls()))
    exports = sorted(c["time"] for c in sb.calls() if c["content"] == "record" and c["action"] in (None, "export")
                     and c.get("status") == 200)
    assert len(exports) >= 2  # the listings outlasted the TTL: refreshes did happen
    # each export is answered `latency` after it arrives: one arriving sooner after the last overlapped it
    gaps = [b - a for a, b in itertools.pairwise(exports)]
    assert min(gaps) >= latency * 0.95, gaps
