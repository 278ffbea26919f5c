"""``python -m redcapfs.sandbox`` / ``redcapfs sandbox``: run a REDCap-compatible API server.

Prints ``url=…``, one ``token=…`` per token and ``ready`` (flushed) once it
accepts connections, so scripts and the test fixture can wait for it; then
serves until SIGTERM or SIGINT. With ``--tls`` it serves https with a throwaway
CA made in its data folder and prints ``ca=PATH`` (the bundle clients trust)
before ``ready``; ``--cert FILE --key FILE`` serves a given certificate instead.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import ssl
import sys
import tempfile
import threading
from pathlib import Path

from .config import NO_CHUNKED, SandboxConfig, parse_token
from .faults import FaultSet, FaultSpecError
from .loaders import load_project
from .server import SandboxServer
from .store import Store
from .tls import make_certificates, server_context

log = logging.getLogger("redcapfs.sandbox")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="redcapfs sandbox",
        description="Serve a REDCap-compatible API (the parts redcapfs uses) for testing.",
    )
    p.add_argument("project", nargs="?", help="project to load (project XML or JSON dir); default: the bundled demo")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument("--token", action="append", default=[], metavar="T[:full|export|none[:USER]]",
                   help="API token (32 hex chars) with its rights; repeatable; default: one generated full token")
    p.add_argument("--data-dir", help="keep state here (reused across restarts); default: a private temp dir")
    p.add_argument("--latency", type=float, default=0.0, metavar="MS", help="delay every API call")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC", help="inject failures (repeatable)")
    p.add_argument("--hang-seconds", type=float, default=120.0, help="how long do=hang waits (default 120)")
    p.add_argument("--request-log", metavar="FILE", help="append one JSON line per API call")
    p.add_argument("--redcap-version", default="14.5.2", help="answer of content=version")
    p.add_argument("--legacy-document-values", action="store_true",
                   help='record export shows "[document]" for file fields (older servers)')
    p.add_argument("--legacy-messages", action="store_true",
                   help="older message variants (record 'R' in single quotes)")
    p.add_argument("--no-charset", action="store_true", help="no ';charset=UTF-8' after name=\"…\" on file export")
    p.add_argument("--max-upload-mb", type=int, default=32, help="file upload size limit (default 32)")
    p.add_argument("--lock", action="append", default=[], metavar="RECORD", help="lock a record (repeatable)")
    p.add_argument("--no-fileinfo", action="store_true", help="ignore the undocumented fileinfo param")
    p.add_argument("--fileinfo-param", default="fileinfo", help="name of that param (older servers: filesize)")
    p.add_argument("--no-chunked", nargs="?", const="nofile", choices=NO_CHUNKED, metavar="nofile|empty|411",
                   help="play a proxy that does not pass chunked request bodies on: the file part is lost (nofile, "
                        "the default: 400 No valid file was uploaded), the whole body is (empty: no token, 403), or "
                        "it answers 411 Length Required unread")
    p.add_argument("--analysis-cleanup", action="store_true", help="project in Analysis/Cleanup: writes refused")
    p.add_argument("--tls", action="store_true",
                   help="serve https with a new CA and a certificate for 127.0.0.1/localhost (prints ca=PATH)")
    p.add_argument("--cert", metavar="FILE", help="serve https with this certificate chain (PEM; needs --key)")
    p.add_argument("--key", metavar="FILE", help="the private key of --cert (PEM)")
    p.add_argument("--log-level", default="WARNING", help="logging level on stderr (default WARNING)")
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    return SandboxConfig(
        tokens=[parse_token(t) for t in args.token],
        redcap_version=args.redcap_version,
        legacy_document_values=args.legacy_document_values,
        legacy_messages=args.legacy_messages,
        charset_suffix=not args.no_charset,
        max_upload_mb=args.max_upload_mb,
        locks=list(args.lock),
        fileinfo=not args.no_fileinfo,
        fileinfo_param=args.fileinfo_param,
        analysis_cleanup=args.analysis_cleanup,
        no_chunked=args.no_chunked,
        latency_ms=args.latency,
        hang_seconds=args.hang_seconds,
        request_log=args.request_log,
    )


def open_store(data_dir: Path, project: str | None) -> Store:
    """The store in ``data_dir``; a fresh one is filled from ``project`` (via the loaders)."""
    store = Store.open(data_dir)
    if store.initialised:
        if project:
            log.warning("data dir %s already holds a project: %s is ignored", data_dir, project)
        return store
    workdir = Path(tempfile.mkdtemp(prefix="load-", dir=str(data_dir)))
    try:
        store.initialise(load_project(project, str(workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return store


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        faults = FaultSet.parse(args.fault)
    except (ValueError, FaultSpecError) as exc:
        print(f"redcapfs sandbox: {exc}", file=sys.stderr)
        return 2
    owned: Path | None = None
    if args.data_dir:
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        owned = data_dir = Path(tempfile.mkdtemp(prefix="redcapfs-sandbox-"))  # mode 0700
    try:
        return serve(data_dir, args, config, faults)
    finally:
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


def serve(data_dir: Path, args: argparse.Namespace, config: SandboxConfig, faults: FaultSet) -> int:
    try:
        store = open_store(data_dir, args.project)
    except Exception as exc:  # loader errors: say what, not a traceback
        log.debug("loading failed", exc_info=True)
        print(f"redcapfs sandbox: cannot load the project: {exc}", file=sys.stderr)
        return 1
    try:
        context, ca = tls_setup(data_dir, args)
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"redcapfs sandbox: cannot set up TLS: {exc}", file=sys.stderr)
        store.close()
        return 1
    try:
        server = SandboxServer(store, config, faults, host=args.host, port=args.port, ssl_context=context)
    except OSError as exc:
        print(f"redcapfs sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        store.close()
        return 1

    def on_signal(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lines = [f"url={server.url}"] + [f"token={t}" for t in server.tokens]
    lines += [f"ca={ca}"] if ca else []
    lines.append("ready")
    print("\n".join(lines), flush=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
    return 0


def tls_setup(data_dir: Path, args: argparse.Namespace) -> tuple[ssl.SSLContext | None, Path | None]:
    """The server context for ``--tls`` or ``--cert/--key`` (None: plain http), and the CA file to print."""
    if bool(args.cert) != bool(args.key):
        raise ValueError("--cert and --key go together")
    if args.cert:
        return server_context(Path(args.cert), Path(args.key)), None
    if not args.tls:
        return None, None
    files = make_certificates(data_dir / "tls")  # a fresh CA each start: nothing outlives the test
    return server_context(files.cert, files.key), files.ca
