"""The transfers being timed: coreutils ``cp``, ``curl``, ``fio``, PyCap and redcapfs's own HttpClient.

The token never appears in an argv: curl reads it from a 0600 file (``-d @FILE`` and ``-F 'token=<FILE'``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import DROP_CACHES, MIB, Config, can_drop_caches
from .procs import Sandbox
from .stats import Sample, timed


def cp(*args: str | Path) -> None:
    """coreutils cp: the tool users copy with (its buffer sizes, not Python's)."""
    subprocess.run(["cp", *map(str, args)], check=True)


def run_parallel(argvs: Sequence[Sequence[str | Path]]) -> None:
    """Start every command at once, wait for all; any failure is an error."""
    procs = [subprocess.Popen([str(a) for a in argv]) for argv in argvs]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"parallel commands failed with {codes}")


class Curl:
    """curl against one sandbox, with the token in a private file."""

    def __init__(self, sb: Sandbox, work: Path) -> None:
        self.url = sb.url
        self.tls = ["--cacert", sb.ca] if sb.ca else []
        self.form_token = work / f"{sb.name}-token.form"
        self.raw_token = work / f"{sb.name}-token.raw"
        for path, text in ((self.form_token, f"token={sb.token}"), (self.raw_token, sb.token)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)

    def download(self, record: str, field: str, out: Path) -> None:
        """Export File straight to disk (``curl -o``)."""
        subprocess.run(["curl", "-sS", "--fail", *self.tls, "-o", str(out), "-d", f"@{self.form_token}",
                        "-d", "content=file", "-d", "action=export", "-d", f"record={record}",
                        "-d", f"field={field}", "-d", "returnFormat=json", self.url], check=True)

    def upload(self, record: str, field: str, path: Path, expect: bool = False) -> None:
        """Import File as a multipart form (``curl -F``); without ``expect`` curl sends ``Expect:`` empty."""
        argv = ["curl", "-sS", "--fail", *self.tls, "-o", "/dev/null", "-F", f"token=<{self.raw_token}",
                "-F", "content=file", "-F", "action=import", "-F", f"record={record}", "-F", f"field={field}",
                "-F", "returnFormat=json", "-F", f"file=@{path};filename={path.name}"]
        if not expect:
            argv += ["-H", "Expect:"]
        subprocess.run([*argv, self.url], check=True)


def fio(job: str, filename: Path, rw: str, size: int, bs: int) -> dict[str, Any]:
    """One sequential fio job (sync engine, one thread, no preallocation), as mountpoint-s3 shapes theirs.

    Returns the bandwidth in MiB/s and the job's size and block size. A write job creates its file, fsyncs
    before close (``fsync_on_close``: the upload is counted) and removes it afterwards (``unlink``), as
    mountpoint-s3's write job does; without the unlink the next job's open, which does not truncate, would
    first fetch the old file.
    """
    argv = ["fio", f"--name={job}", f"--filename={filename}", f"--rw={rw}", f"--size={size}", f"--bs={bs}",
            "--ioengine=sync", "--numjobs=1", "--fallocate=none", "--output-format=json"]
    if rw == "write":
        argv += ["--create_on_open=1", "--fsync_on_close=1", "--unlink=1"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fio {rw} of {filename} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    out = proc.stdout
    data = json.loads(out[out.index("{"):])
    side = data["jobs"][0]["read" if rw == "read" else "write"]
    return {"mib_s": side["bw_bytes"] / (1 << 20), "runtime_ms": side["runtime"], "io_bytes": side["io_bytes"]}


def fio_version() -> str | None:
    try:
        return subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


class PyCap:
    """PyCap (the usual Python client) in a plain sequential loop: the many-small-files reference."""

    def __init__(self, sb: Sandbox) -> None:
        from redcap import Project

        self.project = Project(sb.url, sb.token)

    def download_all(self, field: str, out: Path) -> int:
        """List records (one records export), then export each file of ``field``; returns files written."""
        rows = self.project.export_records(fields=["record_id", field])
        n = 0
        for row in rows:
            if row.get(field):
                content, _headers = self.project.export_file(record=row["record_id"], field=field)
                (out / f"{row['record_id']}-{row[field]}").write_bytes(content)
                n += 1
        return n

    def upload_all(self, items: Sequence[tuple[str, str, Path]]) -> None:
        """Import each ``(record, field, path)``, one call each."""
        for record, field, path in items:
            with open(path, "rb") as fh:
                self.project.import_file(record=record, field=field, file_name=path.name, file_object=fh)


def http_client(sb: Sandbox) -> Any:
    """redcapfs's own HttpClient, unthrottled: the project's direct call."""
    from redcapfs.client.http import HttpClient

    return HttpClient(sb.url, sb.token, rate_limit=None)


def measure(sb: Sandbox | None, fn: Any) -> Sample:
    """Time ``fn`` and count the API calls ``sb`` logged meanwhile (0 for a local reference)."""
    if sb is None:
        return Sample(timed(fn), 0)
    mark = sb.mark()
    seconds = timed(fn)
    return Sample(seconds, len(sb.calls_since(mark)))


def settle() -> None:
    """Flush dirty pages between samples, so one sample's writeback does not land in the next one's time."""
    os.sync()


def stored_files(*sandboxes: Sandbox) -> list[Path]:
    """The sandboxes' databases and the files they were seeded with (before any rep uploads more)."""
    found: list[Path] = []
    for sb in sandboxes:
        found += sorted(p for p in sb.data.rglob("*") if p.is_file())
    return found


def fresh_memory(cfg: Config, *warm: Path) -> None:
    """Before a rep: write back and drop the clean page cache (root only), then read ``warm`` into it again.

    On the 2-core VM this bench is run on, every process slowed down once a few GB of page cache had
    built up during a run: after three reps of 256 MiB copies in and out, a passthrough ``cp`` took
    1.3-1.4 s instead of 0.22 s, its daemon's CPU time rose fourfold with it, and the direct references
    swung as much. Dropping the page cache before each rep gave steady reps (an interleaved A/B, 7 reps
    each way). The files a rep reads (its sources, the sandbox's stored copies, the local ``find`` tree:
    files are read whole, folders walked by ``find``) are read again first, untimed, so what is timed starts from
    the page cache it always did. ``--no-drop-caches`` leaves the cache alone; so does a run that is not root.
    """
    if not cfg.drop_caches or not can_drop_caches():
        return
    os.sync()
    with open(DROP_CACHES, "w", encoding="ascii") as fh:
        fh.write("1")
    for path in warm:
        if path.is_dir():  # what the timed `find` will read: its own walk, untimed
            subprocess.run(["find", str(path)], check=True, stdout=subprocess.DEVNULL)
            continue
        with open(path, "rb", buffering=0) as fh:
            while fh.read(MIB):
                pass
