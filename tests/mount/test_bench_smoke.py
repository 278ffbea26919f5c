"""Smoke test of the bench: ``bash scripts/bench --quick --json`` runs end to end and reports every figure.

It checks the shape of what the bench prints (the JSON schema docs/PERFORMANCE.md documents), that every
figure has finite numbers and call counts, and a few call counts that are facts rather than speeds (one
curl is one API call; a local reference makes none; a cold read exports the file). It asserts nothing
about speed: the bench measures, the other tests check behaviour.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mounthelp import REPO, mounted_paths

pytestmark = pytest.mark.timeout(400)

FIGURE_KEYS = {"name", "what", "unit", "median", "min", "max", "samples", "reference", "ratio", "api_calls", "goal",
               "met", "params"}
# Figures whose goal is checked (``met`` is true or false, never null); whether it is met is not asserted.
CHECKED = {"cp_out_cold_4MiB_lat0", "cp_out_cold_4MiB_lat50ms", "cp_out_warm_4MiB", "cp_in_4MiB", "cp_r_out_10x5KB",
           "cp_r_out_known_10x5KB", "cp_r_in_10x5KB", "cp_r_out_parallel4_10x5KB", "cp_r_in_parallel4_10x5KB",
           "find_300_records", "mount_peak_rss_8MiB_each_way", "remount_10files", "ls_lR_remount_10files"}
UNITS = {"s", "ms", "MiB", "MiB/s"}
# One figure of every group, in the quick run's sizes (benchlib/config.py: Config.quick_run).
EXPECTED = {"sandbox_call_keepalive", "curl_upload_4MiB_expect_100", "cp_out_cold_4MiB_lat0",
            "cp_out_cold_4MiB_lat50ms", "cp_out_warm_4MiB", "cp_in_4MiB", "client_upload_4MiB",
            "cp_in_4MiB_vs_passthrough", "mount_peak_rss_8MiB_each_way", "cp_r_out_10x5KB", "cp_r_out_known_10x5KB",
            "ls_lR_fresh_10x5KB", "cp_r_out_parallel4_10x5KB", "cp_r_in_10x5KB", "cp_r_in_parallel4_10x5KB",
            "pycap_read_10x5KB", "pycap_write_10x5KB", "find_300_records", "find_local_300_records",
            "ls_lR_first_10files", "remount_10files", "ls_lR_remount_10files", "cp_r_out_remount_10files"}
FIO = {"fio_read_1MiB", "fio_write_1MiB", "fio_read_1MiB_passthrough", "fio_write_1MiB_passthrough"}


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_summary(where: str, block: dict[str, Any]) -> None:
    for key in ("median", "min", "max"):
        assert finite(block[key]), f"{where}: {key} is {block[key]!r}"
    assert block["min"] <= block["median"] <= block["max"], f"{where}: {block}"
    assert block["samples"] and all(finite(v) for v in block["samples"]), f"{where}: samples {block['samples']}"


def check_figure(fig: dict[str, Any], earlier: set[str]) -> None:
    name = fig["name"]
    assert set(fig) == FIGURE_KEYS, f"{name}: keys {sorted(fig)}"
    assert fig["unit"] in UNITS, f"{name}: unit {fig['unit']!r}"
    check_summary(name, fig)
    calls = fig["api_calls"]
    check_summary(f"{name} api_calls", calls)
    assert all(isinstance(c, int) and c >= 0 for c in calls["samples"]), f"{name}: calls {calls['samples']}"
    assert len(calls["samples"]) == len(fig["samples"]), name
    assert fig["met"] in (True, False, None), f"{name}: met {fig['met']!r}"
    if name in CHECKED:
        assert isinstance(fig["met"], bool), f"{name}: its goal was not checked"
    if fig["reference"] is None:
        assert fig["ratio"] is None, name
    else:
        assert fig["reference"] in earlier, f"{name}: reference {fig['reference']!r} is not an earlier figure"
        check_summary(f"{name} ratio", fig["ratio"])
        assert fig["ratio"]["means"] in ("time", "speedup"), name
        assert len(fig["ratio"]["samples"]) == len(fig["samples"]), name


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    work = tmp_path / "work"
    r = subprocess.run(["bash", str(REPO / "scripts" / "bench"), "--quick", "--json", "--work-dir", str(work)],
                       capture_output=True, text=True, timeout=380, cwd=str(REPO), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"bench exited {r.returncode}\nstderr:\n{r.stderr[-6000:]}\nstdout:\n{r.stdout[-3000:]}"
    report = json.loads(r.stdout)
    assert report["schema"] == "redcapfs-bench/1"
    assert report["errors"] == []
    for key in ("cores", "python", "kernel", "mount_binding", "passthrough_binding", "loadavg_start"):
        assert report["machine"].get(key), f"machine.{key} missing"
    assert report["config"]["quick"] is True

    names: set[str] = set()
    for fig in report["figures"]:
        assert fig["name"] not in names, f"{fig['name']} reported twice"
        check_figure(fig, names)
        names.add(fig["name"])
    skipped = {s["name"] for s in report["skipped"]}
    floor = {"find_floor_300_records", "find_300_records_vs_floor"}
    assert floor <= names or "find_floor_300_records" in skipped, "the C floor is neither measured nor skipped"
    one_cpu = {"find_one_cpu_300_records"} | ({"find_floor_one_cpu_300_records", "find_one_cpu_300_records_vs_floor"}
                                              if "find_floor_300_records" in names else set())
    assert one_cpu <= names or "find_one_cpu_300_records" in skipped, "no one-CPU finds, none skipped"
    want = EXPECTED | (FIO if shutil.which("fio") else set())
    assert want <= names, f"missing figures: {sorted(want - names)}"

    by_name = {f["name"]: f for f in report["figures"]}
    goals = report["goals"]
    checked = [f for f in report["figures"] if f["met"] is not None]
    assert goals["checked"] == len(checked) and goals["met"] + len(goals["missed"]) == goals["checked"], goals
    assert set(goals["missed"]) == {f["name"] for f in checked if not f["met"]}, goals
    assert by_name["curl_download_4MiB_lat0"]["api_calls"]["samples"] == [1, 1]
    assert set(by_name["passthrough_read_4MiB"]["api_calls"]["samples"]) == {0}
    assert set(by_name["find_local_300_records"]["api_calls"]["samples"]) == {0}
    if "find_floor_300_records" in by_name:  # a local FUSE filesystem: no API call
        assert set(by_name["find_floor_300_records"]["api_calls"]["samples"]) == {0}
    if "find_one_cpu_300_records" in by_name:  # the same fresh mount, pinned: the records index is read at mount
        assert by_name["find_one_cpu_300_records"]["params"]["one_cpu"] is True
        assert max(by_name["find_one_cpu_300_records"]["api_calls"]["samples"]) <= 2
    assert min(by_name["cp_out_cold_4MiB_lat0"]["api_calls"]["samples"]) >= 1
    assert min(by_name["cp_r_out_10x5KB"]["api_calls"]["samples"]) >= 10  # at least one export per file

    assert not work.exists(), "the bench left its work folder behind"
    left = [p for p in mounted_paths() if p.startswith(str(tmp_path))]
    assert not left, f"the bench left mounts behind: {left}"
