"""``redcapfs serve webdav URL``: the project as a WebDAV share for Explorer, Finder, davfs2 and rclone.

The session (client, shape, caches, spool, tree) is built by session.py, the
same builder the mount uses, from the same ``-o`` options; the share is a
WsgiDAV application over that Tree (provider.py), served by cheroot. It prints
``url=``, ``user=``, ``password=`` and ``ready`` on their own lines, then serves
until SIGINT or SIGTERM, when it stops taking requests, lets the requests in
flight (uploads) finish, and closes the session as an unmount does.

Security: it listens on 127.0.0.1 unless told otherwise, and an address
beyond loopback needs TLS (``--cert``/``--key``): without it the share's
password (Basic) or at least every file's bytes (Digest) would cross the
network readable by anyone on the way. Digest is always offered (Windows'
client refuses Basic over plain http); Basic only over TLS.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from redcapfs.credentials import CredentialError
from redcapfs.locations import UnsafeDirectoryError
from redcapfs.options import MountError, MountOptions, check_url, parse_options
from redcapfs.profiles import choose
from redcapfs.remote import RemoteRefused, check_remote
from redcapfs.session import Session, open_session
from redcapfs.tempnames import TempNames
from redcapfs.tokensource import token_for
from redcapfs.webdav.credential import USER, CredentialFileError, load_or_make, password_file

log = logging.getLogger("redcapfs")

DEFAULT_ADDR = "127.0.0.1:8808"
SHUTDOWN_TIMEOUT = 600.0  # seconds the server waits for uploads in flight at SIGTERM


class ServeError(Exception):
    """A refusal, with the message the user sees."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redcapfs serve webdav",
        description="Serve a REDCap project's files as a WebDAV share (Explorer's Map network drive, Finder's "
                    "Connect to Server, davfs2, rclone), with the mount's semantics. URL|PROFILE and the token "
                    "as for `redcapfs mount`: --token-file or -o token_file, else the profile's token source, else "
                    "REDCAP_API_TOKEN, else a prompt; the share has its own random password.",
        epilog="-o options as for `redcapfs mount` (ro, cache_size, records_ttl, content_ttl, rate, timeout, "
               "batch, arm, keep_cache, temp_names, ca). See `redcapfs docs webdav`.")
    parser.add_argument("source", nargs="?", metavar="URL|PROFILE",
                        help="the API URL (e.g. https://redcap.example.edu/api/) or a profile of "
                             "`redcapfs profiles`; without it: the default profile, else REDCAP_API_URL")
    parser.add_argument("--addr", default=DEFAULT_ADDR, help=f"HOST:PORT to listen on (default {DEFAULT_ADDR}; "
                                                              "port 0 picks a free one)")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS")
    parser.add_argument("--token-file", help="file holding the token (must not be group/world readable)")
    parser.add_argument("--cert", help="TLS certificate (PEM); needed beyond 127.0.0.1")
    parser.add_argument("--key", help="TLS private key (PEM)")
    parser.add_argument("--new-password", action="store_true", help="make a new share password")
    parser.add_argument("--debug", action="store_true", help="log every request (never the token or password)")
    parser.add_argument("--log-file", help="log here instead of stderr")
    return parser


def parse_addr(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (loopback)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ServeError(f"--addr {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8808")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(host: str, cert: str | None, key: str | None) -> bool:
    """Whether TLS is on; refuses a network address without it, and half a TLS setup."""
    if bool(cert) != bool(key):
        raise ServeError("--cert and --key go together")
    if cert and key:
        for path in (cert, key):
            if not Path(path).is_file():
                raise ServeError(f"{path} does not exist")
        return True
    if not is_loopback(host):
        raise ServeError(f"--addr {host} is reachable from the network: give --cert and --key so the share's "
                         "password and the project's files are not sent in the clear (TLS); plain http is "
                         "served on 127.0.0.1 only")
    return False


def main(argv: list[str]) -> int:
    """``redcapfs serve webdav``."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        host, port = parse_addr(args.addr)
        tls = check_tls(host, args.cert, args.key)
        choice = choose(args.source)  # profiles.py: as for `redcapfs mount`
        args.url = choice.url
        profile = choice.profile
        opts = parse_options([*(profile.options if profile else []), *args.options])
        check_url(args.url)
        check_remote(args.url, opts.ca, opts.insecure_http)  # plain http beyond loopback, CA file: before the token
        token = token_for(profile, args.token_file or opts.token_file)
        session = open_session(args.url, token, opts)
    except (ServeError, MountError, RemoteRefused, CredentialError, UnsafeDirectoryError) as exc:
        print(f"redcapfs serve webdav: {exc}", file=sys.stderr)
        return 1
    del token
    try:
        return _serve(args, session, host, port, tls, TempNames.from_option(opts.temp_names), opts)
    finally:
        session.close()


def _serve(args: argparse.Namespace, session: Session, host: str, port: int, tls: bool, temp_names: TempNames,
           opts: MountOptions) -> int:
    read_only = opts.read_only
    from redcapfs.webdav.app import make_server

    try:
        info = session.info or session.client.project_info()  # the builder's project info, asked once
        project_id = str(info.get("project_id", ""))
        password = load_or_make(password_file(args.url, project_id), renew=args.new_password)
        server = make_server(session.tree, temp_names, read_only, host, port, USER, password,
                             (args.cert, args.key) if tls else None)
        server.shutdown_timeout = SHUTDOWN_TIMEOUT
        server.prepare()  # binds: a taken port is refused here, before "ready"
    except (CredentialFileError, UnsafeDirectoryError, OSError) as exc:
        print(f"redcapfs serve webdav: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before "ready": a stop right after it is a clean stop
        signal.signal(sig, lambda *_: stop.set())
    bound_host, bound_port = server.bind_addr[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    share_url = f"{'https' if tls else 'http'}://{shown}:{bound_port}/"
    print(f"url={share_url}", flush=True)
    print(f"user={USER}", flush=True)
    print(f"password={password}", flush=True)
    writer = _status(args, session, opts, share_url)
    print("ready", flush=True)
    log.info("serving %s on %s:%d (%s)", args.url, bound_host, bound_port, "TLS" if tls else "plain http")
    try:
        _run_until(server, stop)
    finally:
        if writer is not None:
            writer.stop()  # a clean stop removes the status file, as an unmount does
    log.info("stopped")
    return 0


def _status(args: argparse.Namespace, session: Session, opts: MountOptions, share_url: str) -> Any:
    """The share's status file for ``redcapfs status`` (the mount's keys, ``mode: webdav``; never the password)."""
    from dataclasses import asdict

    from redcapfs import status

    try:
        return status.start_share_writer(
            share_url, url=args.url, info=session.info, options=asdict(opts),
            options_given=args.options, stats=session.client.stats, cache_dir=session.cache.root,
            log_file=Path(args.log_file) if args.log_file else None,
            extra={**(session.remote.status_facts() if session.remote else {}),
                   "change_feed": session.tree.feed.mode, "share_user": USER})
    except Exception:
        log.exception("the status file could not be started")
        return None


def _run_until(server: Any, stop: threading.Event) -> None:
    thread = threading.Thread(target=server.serve, name="webdav", daemon=True)
    thread.start()
    while not stop.wait(0.5) and thread.is_alive():
        pass
    log.info("stopping: finishing requests in flight")
    server.stop()  # stops accepting, waits up to shutdown_timeout for running requests (uploads)
    thread.join(SHUTDOWN_TIMEOUT)


def _setup_logging(args: argparse.Namespace) -> None:
    if args.log_file:
        fd = os.open(args.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handler: logging.Handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if args.debug else logging.INFO)
    for noisy in ("urllib3", "wsgidav", "cheroot"):
        logging.getLogger(noisy).setLevel(logging.INFO if args.debug else logging.WARNING)
