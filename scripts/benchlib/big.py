"""Large files: cold and warm `cp` out, `cp` in, fio, against curl, HttpClient and the passthrough.

One repetition runs every transfer once, each reference just before the figure it is compared with, on
a sandbox with no added latency; then the cold read is repeated against a sandbox with ``latency_ms`` per
call. A cold read uses a mount made for it (nothing cached by the daemon or the kernel); the warm read
is the same mount's second `cp`, served from the daemon's content cache through FUSE.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Config, size_label
from .procs import Mount, Passthrough, Sandbox, cpu_seconds
from .projects import Project, Slot, random_file, write_project
from .stats import Figure, Goal, Sample
from .tools import Curl, cp, fio, fresh_memory, http_client, measure, settle, stored_files

OPTIONS = "rate=off"  # limiter lifted: curl, HttpClient and PyCap have none either
WRITERS = ("wcurl", "wclient", "wmount", "wcurlt", "wmountt")  # uploads go into empty slots: WRITER + rep


def _project(cfg: Config, work: Path, big: Path) -> Path:
    writers = [f"{w}{k}" for k in range(1, cfg.reps + 1) for w in WRITERS]
    proj = Project("bench: large files", ["big", "wfio", *writers], ["doc", "scan"],
                   [Slot("big", "doc", "big.bin", big)])
    return write_project(proj, work / "project")


class BigRun:
    """Samples of one group, keyed by figure name, appended rep by rep."""

    def __init__(self, cfg: Config, work: Path, big: Path, pt: Passthrough) -> None:
        self.cfg, self.work, self.big, self.pt = cfg, work, big, pt
        self.out = work / "out.bin"
        self.samples: dict[str, list[Sample]] = {}
        self.warm: list[Path] = [big]  # what a rep reads (tools.fresh_memory): the source, the seeded copies

    def fresh(self) -> None:
        """Each upload sample starts from the same page cache: one rep writes some 2 GB, and on this VM
        writing into pages not used for a while grows dear as it goes (tools.fresh_memory). Dirty pages are
        flushed first in every case (a run that may not drop the cache still gets that)."""
        settle()
        fresh_memory(self.cfg, *self.warm)

    def add(self, name: str, sample: Sample) -> None:
        self.samples.setdefault(name, []).append(sample)

    def add_cpu(self, name: str, pid: int | None, fn: Callable[[], None]) -> None:
        """Run ``fn``, and keep the CPU seconds process ``pid`` spent meanwhile as ``name_cpu`` (if pid)."""
        before = cpu_seconds(pid) if pid is not None else 0.0
        fn()
        if pid is not None:
            self.add(f"{name}_cpu", Sample(cpu_seconds(pid) - before, 0))

    def _copy_out(self, sb: Sandbox | None, src: Path, name: str, check: bool, pid: int | None = None) -> None:
        settle()
        self.add_cpu(name, pid, lambda: self.add(name, measure(sb, lambda: cp(src, self.out))))
        if check and not filecmp.cmp(src if sb is None else self.big, self.out, shallow=False):
            raise RuntimeError(f"{name}: the copy differs from the stored file")
        self.out.unlink()

    def rep_transfers(self, sb: Sandbox, curl: Curl, client: object, rep: int) -> None:
        """curl out, cold and warm `cp` out, passthrough out; curl -F, HttpClient, `cp` in, passthrough in.

        Uploads go into slots that are empty until this rep (records ``wcurlN``, ``wclientN``, ``wmountN``):
        every sample is a new file, none replaces the previous rep's.
        """
        first = rep == 1
        settle()
        self.add("curl_download", measure(sb, lambda: curl.download("big", "doc", self.out)))
        self.out.unlink()
        with Mount(sb, self.work, OPTIONS) as m:
            os.listdir(m.mp)  # the records index, untimed: the figure is the file's transfer
            src = m.mp / "big" / "doc" / "big.bin"
            self._copy_out(sb, src, "cp_out_cold", first, m.pid)
            self._copy_out(sb, src, "cp_out_warm", first, m.pid)
            self._copy_out(None, self.pt.mp / "big.bin", "passthrough_read", first, self.pt.proc.pid)
            self.fresh()
            self.add_cpu("sandbox_curl_upload", sb.proc.pid, lambda: self.add("curl_upload", measure(
                sb, lambda: curl.upload(f"wcurl{rep}", "scan", self.big))))
            self.fresh()
            self.add("client_upload", measure(sb, lambda: client.import_file(  # type: ignore[attr-defined]
                f"wclient{rep}", "scan", str(self.big), "big.bin")))
            self.fresh()
            self.add_cpu("sandbox_cp_in", sb.proc.pid, lambda: self.add_cpu("cp_in", m.pid, lambda: self.add(
                "cp_in", measure(sb, lambda: cp(self.big, m.mp / f"wmount{rep}" / "scan" / "big.bin")))))
            self.fresh()
            self.add("passthrough_write", measure(None, lambda: cp(self.big, self.pt.mp / "w.bin")))
            (self.pt.mp / "w.bin").unlink()
            self.add("mount_peak_rss", Sample(m.peak_rss_mib(), 0))

    def rep_fio(self, sb: Sandbox) -> None:
        """Per block size: fio read on the passthrough, then on a fresh mount; the same for a write."""
        size = self.cfg.big_bytes
        for bs in self.cfg.fio_bs:
            tag = size_label(bs)
            settle()
            res = fio("read", self.pt.mp / "big.bin", "read", size, bs)
            self.add(f"fio_read_{tag}_passthrough", Sample(res["mib_s"], 0))
            with Mount(sb, self.work, OPTIONS) as m:
                os.listdir(m.mp)
                mark = sb.mark()
                res = fio("read", m.mp / "big" / "doc" / "big.bin", "read", size, bs)
                self.add(f"fio_read_{tag}", Sample(res["mib_s"], len(sb.calls_since(mark))))
                settle()
                res = fio("write", self.pt.mp / "fio.bin", "write", size, bs)
                self.add(f"fio_write_{tag}_passthrough", Sample(res["mib_s"], 0))
                settle()
                mark = sb.mark()
                res = fio("write", m.mp / "wfio" / "scan" / "fio.bin", "write", size, bs)
                self.add(f"fio_write_{tag}", Sample(res["mib_s"], len(sb.calls_since(mark))))

    def rep_https(self, sb: Sandbox, curl: Curl, rep: int) -> None:
        """The same transfers over https (the sandbox's own CA, ``-o ca=``): curl out, cold cp out, curl -F, cp in."""
        settle()
        self.add("curl_download_https", measure(sb, lambda: curl.download("big", "doc", self.out)))
        self.out.unlink()
        with Mount(sb, self.work, OPTIONS) as m:
            os.listdir(m.mp)
            self._copy_out(sb, m.mp / "big" / "doc" / "big.bin", "cp_out_cold_https", rep == 1)
            self.fresh()
            self.add("curl_upload_https", measure(sb, lambda: curl.upload(f"wcurlt{rep}", "scan", self.big)))
            self.fresh()
            self.add("cp_in_https", measure(sb, lambda: cp(self.big, m.mp / f"wmountt{rep}" / "scan" / "big.bin")))

    def rep_latency(self, sb: Sandbox, curl: Curl) -> None:
        """At ``latency_ms`` per call: curl out, then a cold `cp` out."""
        settle()
        self.add("curl_download_slow", measure(sb, lambda: curl.download("big", "doc", self.out)))
        self.out.unlink()
        with Mount(sb, self.work, OPTIONS) as m:
            os.listdir(m.mp)
            self._copy_out(sb, m.mp / "big" / "doc" / "big.bin", "cp_out_cold_slow", False)


def run(cfg: Config) -> list[Figure]:
    """The large-file figures (see the module docstring)."""
    work = cfg.work / "big"
    work.mkdir()
    big = random_file(work / "big.bin", cfg.big_bytes)
    pdir = _project(cfg, work, big)
    (work / "pt-src").mkdir()
    os.link(big, work / "pt-src" / "big.bin")
    pt = Passthrough(work / "pt-src", work / "pt", work / "passthrough.log")
    run = BigRun(cfg, work, big, pt)
    try:
        sb = Sandbox(work, "big-lat0", pdir, 0)
        try:
            slow = Sandbox(work, "big-slow", pdir, cfg.latency_ms)
            tls = Sandbox(work, "big-https", pdir, 0, tls=True)
            try:
                curl, slow_curl, tls_curl, client = Curl(sb, work), Curl(slow, work), Curl(tls, work), http_client(sb)
                run.warm += stored_files(sb, slow, tls)
                for rep in range(1, cfg.reps + 1):
                    run.fresh()
                    run.rep_transfers(sb, curl, client, rep)
                    run.fresh()
                    run.rep_https(tls, tls_curl, rep)
                    run.fresh()
                    run.rep_fio(sb)
                    run.fresh()
                    run.rep_latency(slow, slow_curl)
                client.close()
            finally:
                tls.stop()
                slow.stop()
        finally:
            sb.stop()
    finally:
        pt.stop()
    return figures(cfg, run.samples)


def figures(cfg: Config, s: dict[str, list[Sample]]) -> list[Figure]:
    """Name, describe and pair the samples."""
    L, lat = size_label(cfg.big_bytes), f"lat{cfg.latency_ms:g}ms"
    p = {"bytes": cfg.big_bytes, "latency_ms": 0}
    ps = {"bytes": cfg.big_bytes, "latency_ms": cfg.latency_ms}
    curl = Figure(f"curl_download_{L}_lat0", "curl -o to disk (Export File)", "s", s["curl_download"], params=p)
    pt_read = Figure(f"passthrough_read_{L}", "cp out of the passthrough (same binding, local file)", "s",
                     s["passthrough_read"], params=p)
    cup = Figure(f"curl_upload_{L}", "curl -F -H 'Expect:' (Import File)", "s", s["curl_upload"], params=p)
    pt_write = Figure(f"passthrough_write_{L}", "cp into the passthrough", "s", s["passthrough_write"], params=p)
    cold = Figure(f"cp_out_cold_{L}_lat0", "cp out of a fresh mount", "s", s["cp_out_cold"], curl, goal="<= 1.2",
                  params=p, check=Goal(ratio_max=1.2))
    cp_in = Figure(f"cp_in_{L}", "cp into the mount, open to close (upload at close)", "s", s["cp_in"], cup,
                   goal="<= 1.3", params=p, check=Goal(ratio_max=1.3))
    client = Figure(f"client_upload_{L}", "redcapfs HttpClient.import_file called directly", "s",
                    s["client_upload"], cup, params=p)
    slow_curl = Figure(f"curl_download_{L}_{lat}", "curl -o to disk", "s", s["curl_download_slow"], params=ps)
    out = [curl, cold, slow_curl,
           Figure(f"cp_out_cold_{L}_{lat}", "cp out of a fresh mount", "s", s["cp_out_cold_slow"], slow_curl,
                  goal="<= 1.1", params=ps, check=Goal(ratio_max=1.1)),
           pt_read,
           Figure(f"cp_out_warm_{L}", "second cp out of the same mount (daemon's cache)", "s", s["cp_out_warm"],
                  pt_read, goal="<= 1.0", params=p, check=Goal(ratio_max=1.0)),
           cup, client, cp_in,
           Figure(f"cp_in_{L}_vs_client", "cp in, against the direct HttpClient call", "s", s["cp_in"],
                  client, params=p),
           pt_write,
           Figure(f"passthrough_write_{L}_vs_curl", "cp into the passthrough (no network at all) against curl -F: "
                  "what the binding's write alone costs, under cp in's goal", "s", s["passthrough_write"], cup,
                  params=p),
           Figure(f"cp_in_{L}_vs_passthrough", "cp in, against cp into the passthrough", "s", s["cp_in"],
                  pt_write, params=p),
           *https_figures(L, s, p, cold, cp_in),
           *cpu_figures(L, s, p, paired=not cfg.quick),
           Figure(f"mount_peak_rss_{L}", f"mount daemon VmHWM after {L} out twice and in once", "MiB",
                  s["mount_peak_rss"], params=p)]
    for bs in cfg.fio_bs:
        tag = size_label(bs)
        fp = {"bytes": cfg.big_bytes, "block_size": bs, "ioengine": "sync", "numjobs": 1, "latency_ms": 0}
        for rw, what in (("read", "fio sequential read, fresh mount"),
                         ("write", "fio sequential write, fsync_on_close (the upload counts)")):
            ref = Figure(f"fio_{rw}_{tag}_passthrough", f"fio sequential {rw} on the passthrough", "MiB/s",
                         s[f"fio_{rw}_{tag}_passthrough"], params=fp)
            out += [ref, Figure(f"fio_{rw}_{tag}", what, "MiB/s", s[f"fio_{rw}_{tag}"], ref, params=fp)]
    return out


def cpu_figures(L: str, s: dict[str, list[Sample]], p: dict[str, Any], paired: bool) -> list[Figure]:
    """CPU seconds of the daemon, the passthrough and the sandbox per transfer (steadier than times on a busy box).

    Not paired in ``--quick``: a few MiB cost less than a clock tick, and a ratio of zeros is no number.
    """
    pt = Figure(f"passthrough_cpu_read_{L}", "CPU seconds of the passthrough process during its cp out", "s",
                s["passthrough_read_cpu"], params=p)
    sb_curl = Figure(f"sandbox_cpu_curl_upload_{L}", "CPU seconds of the sandbox receiving curl -F", "s",
                     s["sandbox_curl_upload_cpu"], params=p)
    return [pt,
            Figure(f"mount_cpu_warm_read_{L}", "CPU seconds of the mount daemon during the warm cp out", "s",
                   s["cp_out_warm_cpu"], pt if paired else None, params=p),
            Figure(f"mount_cpu_cold_read_{L}", "CPU seconds of the mount daemon during the cold cp out (download "
                   "and serving)", "s", s["cp_out_cold_cpu"], pt if paired else None, params=p),
            Figure(f"mount_cpu_cp_in_{L}", "CPU seconds of the mount daemon during cp in (spool and upload)", "s",
                   s["cp_in_cpu"], params=p),
            sb_curl,
            Figure(f"sandbox_cpu_cp_in_{L}", "CPU seconds of the sandbox receiving the mount's upload", "s",
                   s["sandbox_cp_in_cpu"], sb_curl if paired else None, params=p)]


def https_figures(L: str, s: dict[str, list[Sample]], p: dict[str, Any], cold: Figure,
                  cp_in: Figure) -> list[Figure]:
    """The https column: each transfer against curl over https, and against the same transfer over http."""
    tp = {**p, "tls": True}
    curl = Figure(f"curl_download_{L}_https", "curl -o over https", "s", s["curl_download_https"], params=tp)
    cup = Figure(f"curl_upload_{L}_https", "curl -F over https", "s", s["curl_upload_https"], params=tp)
    cold_t = Figure(f"cp_out_cold_{L}_https", "cp out of a fresh mount over https", "s", s["cp_out_cold_https"],
                    curl, params=tp)
    in_t = Figure(f"cp_in_{L}_https", "cp into the mount over https", "s", s["cp_in_https"], cup, params=tp)
    return [curl, cold_t, cup, in_t,
            Figure(f"cp_out_cold_{L}_https_vs_http", "cold cp out: https against http (TLS's cost)", "s",
                   s["cp_out_cold_https"], cold, params=tp),
            Figure(f"cp_in_{L}_https_vs_http", "cp in: https against http (TLS's cost)", "s", s["cp_in_https"],
                   cp_in, params=tp)]
