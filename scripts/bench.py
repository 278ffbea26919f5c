"""redcapfs benchmark: the mount against direct API calls, in the same run, on a local sandbox.

Numbers are ratios (time through the mount / time of the same transfer done
directly with the API client) and API-call counts from the sandbox's request
log, so they mean the same on a fast or a slow machine. Nothing here is an
assertion: the test suite checks behaviour, this script measures it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from redcapfs.client.http import HttpClient  # noqa: E402
from redcapfs.sandbox.project import ProjectDef, StoredFile  # noqa: E402
from redcapfs.sandbox.store import Store  # noqa: E402


def meta(name: str, form: str, ftype: str = "text") -> dict[str, Any]:
    keys = ["section_header", "field_label", "select_choices_or_calculations", "field_note",
            "text_validation_type_or_show_slider_number", "text_validation_min", "text_validation_max",
            "identifier", "branching_logic", "required_field", "custom_alignment", "question_number",
            "matrix_group_name", "matrix_ranking", "field_annotation"]
    row = {k: "" for k in keys}
    row.update(field_name=name, form_name=form, field_type=ftype, field_label=name)
    return row


def project(records: int, with_files: int, big: Path, small: Path) -> ProjectDef:
    """A classic project: ``records`` records, ``with_files`` of them with a small file, record "big" with ``big``."""
    metadata = [meta("record_id", "main"), meta("doc", "main", "file"), meta("scan", "main", "file")]
    rows = [{"record_id": str(i)} for i in range(1, records + 1)] + [{"record_id": "big"}]
    files = [StoredFile(str(i), "doc", f"doc-{i}.txt", str(small)) for i in range(1, with_files + 1)]
    files.append(StoredFile("big", "doc", "big.bin", str(big)))
    info = {"project_id": 900, "project_title": "bench", "is_longitudinal": 0,
            "has_repeating_instruments_or_events": 0}
    instruments = [{"instrument_name": "main", "instrument_label": "Main"}]
    return ProjectDef(info, metadata, instruments, [], [], [], [], rows, files)


class Sandbox:
    def __init__(self, work: Path, name: str, pd: ProjectDef, latency_ms: int) -> None:
        self.data = work / f"{name}-data"
        self.log = work / f"{name}-requests.jsonl"
        store = Store.open(self.data)
        store.initialise(pd)
        store.close()
        argv = [sys.executable, "-m", "redcapfs", "sandbox", "--host", "127.0.0.1", "--port", "0",
                "--data-dir", str(self.data), "--request-log", str(self.log), "--latency", str(latency_ms),
                "--max-upload-mb", "100000"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     cwd=str(REPO))
        self.url = self.token = ""
        for line in self.proc.stdout:  # type: ignore[union-attr]
            line = line.strip()
            if line.startswith("url="):
                self.url = line[4:]
            elif line.startswith("token="):
                self.token = line[6:]
            elif line == "ready":
                break

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Mount:
    def __init__(self, sb: Sandbox, mp: Path, state: Path, options: str) -> None:
        self.mp = mp
        mp.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, REDCAP_API_TOKEN=sb.token, REDCAPFS_STATE_DIR=str(state))
        subprocess.run([sys.executable, "-m", "redcapfs", "mount", sb.url, str(mp), "-o", options,
                        "--log-file", str(state / "bench-mount.log")], env=env, check=True, cwd=str(REPO))
        pidfiles = list((state / "mounts").glob("*.pid"))
        self.pid = int(max(pidfiles, key=lambda p: p.stat().st_mtime).read_text())

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def unmount(self) -> None:
        subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(self.mp)], check=False)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cp(src: Path, dst: Path) -> None:
    """The way users copy: coreutils cp (its buffer sizes, not Python's)."""
    subprocess.run(["cp", str(src), str(dst)], check=True)


def count(sb: Sandbox, since: int, **match: Any) -> int:
    return sum(1 for row in sb.calls()[since:] if all(row.get(k) == v for k, v in match.items()))


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    big = work / "big.bin"
    with open(big, "wb") as fh:
        chunk = os.urandom(1 << 20)
        for _ in range(args.size_mb):
            fh.write(chunk)
    small = work / "small.txt"
    small.write_bytes(b"small file\n" * 100)
    results: dict[str, Any] = {"size_mb": args.size_mb, "records": args.records, "latency_ms": args.latency_ms}
    opts = "rate=1000,records_ttl=2,poll=0"  # TTL mode: find below pays for a fresh records export

    sb = Sandbox(work, "big", project(args.records, 50, big, small), args.latency_ms)
    try:
        client = HttpClient(sb.url, sb.token, rate_limit=None)
        def direct_download() -> None:
            with open(work / "direct.bin", "wb") as fh:
                client.export_file("big", "doc", fh)

        direct_get = timed(direct_download)
        direct_put = timed(lambda: client.import_file("1", "scan", str(big), "direct.bin"))
        n = len(sb.calls())
        mount = Mount(sb, work / "mnt", work / "state", opts)
        try:
            results["mount_calls"] = len(sb.calls()) - n
            time.sleep(2.2)  # let the records index expire: find then pays for a fresh one
            n = len(sb.calls())
            find_time = timed(lambda: subprocess.run(["find", str(mount.mp)], capture_output=True, check=True))
            results["find_calls"] = len(sb.calls()) - n
            results["find_downloads"] = count(sb, n, content="file", action="export")
            results["find_seconds"] = round(find_time, 3)
            n = len(sb.calls())
            cold = timed(lambda: cp(mount.mp / "big" / "doc" / "big.bin", work / "via-mount.bin"))
            results["read_cold_calls"] = len(sb.calls()) - n
            n = len(sb.calls())
            warm = timed(lambda: cp(mount.mp / "big" / "doc" / "big.bin", work / "via-mount2.bin"))
            results["read_warm_calls"] = len(sb.calls()) - n
            results["read_cold_ratio"] = round(cold / direct_get, 2)
            results["read_warm_ratio"] = round(warm / direct_get, 2)
            results["read_bytes_identical"] = (work / "via-mount.bin").read_bytes() == big.read_bytes()
            n = len(sb.calls())
            put = timed(lambda: cp(big, mount.mp / "2" / "scan" / "via-mount.bin"))
            results["write_calls"] = len(sb.calls()) - n
            results["write_ratio"] = round(put / direct_put, 2)
            mb = args.size_mb
            results["read_cold_mb_s"] = round(mb / cold, 1)
            results["read_warm_mb_s"] = round(mb / warm, 1)
            results["write_mb_s"] = round(mb / put, 1)
            results["direct_get_seconds"] = round(direct_get, 3)
            results["direct_put_seconds"] = round(direct_put, 3)
            results["mount_peak_rss_mib"] = round(mount.peak_rss_mib(), 1)
        finally:
            mount.unmount()
        client.close()
    finally:
        sb.stop()

    sb50 = Sandbox(work, "small", project(50, 50, small, small), args.latency_ms)
    try:
        mount = Mount(sb50, work / "mnt50", work / "state50", opts)
        try:
            time.sleep(2.2)
            n = len(sb50.calls())
            subprocess.run(["find", str(mount.mp)], capture_output=True, check=True)
            results["find_calls_50_records"] = len(sb50.calls()) - n
        finally:
            mount.unmount()
    finally:
        sb50.stop()
    results.update(feed_bench(args, work, small))
    return results


def feed_bench(args: argparse.Namespace, work: Path, small: Path) -> dict[str, Any]:
    """The manifest and the change feed: `ls -lR` before and after a remount, `cp -r` out, an empty poll."""
    files, rate = args.feed_files, args.feed_rate
    out: dict[str, Any] = {"feed_files": files, "feed_rate": rate}
    sb = Sandbox(work, "feed", project(files, files, small, small), args.latency_ms)
    opts = f"rate={rate},poll=1"
    try:
        mount = Mount(sb, work / "mntfeed", work / "statefeed", opts)
        try:
            n = len(sb.calls())
            first = timed(lambda: subprocess.run(["ls", "-lR", str(mount.mp)], capture_output=True, check=True))
            out["first_ls_lR_calls"] = len(sb.calls()) - n - count(sb, n, content="log")  # polls aside
            out["first_ls_lR_seconds"] = round(first, 2)
            out["first_ls_lR_time_per_files_over_rate"] = round(first / ((files + 1) / rate), 2)
        finally:
            mount.unmount()
        n = len(sb.calls())
        mount = Mount(sb, work / "mntfeed", work / "statefeed", opts)
        try:
            out["remount_calls"] = len(sb.calls()) - n
            n = len(sb.calls())
            subprocess.run(["ls", "-lR", str(mount.mp)], capture_output=True, check=True)
            out["remount_ls_lR_calls"] = len(sb.calls()) - n - count(sb, n, content="log")
            out["remount_ls_lR_file_calls"] = count(sb, n, content="file")
            n = len(sb.calls())
            time.sleep(3.5)  # a few polls of an unchanged project (a wait, not a measurement)
            polls = count(sb, n, content="log")
            out["empty_poll_calls_each"] = round((len(sb.calls()) - n) / polls, 2) if polls else None
            n = len(sb.calls())
            subprocess.run(["cp", "-r", str(mount.mp), str(work / "copy-out")], check=True)
            out["cp_r_out_after_remount_calls"] = len(sb.calls()) - n - count(sb, n, content="log")
            out["cp_r_out_downloads"] = count(sb, n, content="file", action="export")
        finally:
            mount.unmount()
    finally:
        sb.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=0, help="sandbox latency per request")
    parser.add_argument("--feed-files", type=int, default=600, help="files in the manifest/change-feed part")
    parser.add_argument("--feed-rate", type=float, default=50, help="-o rate for the manifest/change-feed part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="redcapfs-bench-"))
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(map(len, results))
        for key, value in results.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
