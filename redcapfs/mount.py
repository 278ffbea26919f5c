"""``redcapfs mount``: checks, then the FUSE loop in this process (foreground) or a detached child.

The jobs live in their own modules: options.py (``-o`` parsing and checks),
mountpoint.py (the mountpoint, dead mounts), session.py (building client,
shape, caches, spool and tree), daemon.py (background start, ready pipe,
systemd, pid file), unmount.py, binding.py (which libfuse). This module runs
them in order and makes sure every refusal reaches the user: in the parent
as a message on stderr, in the detached child through the ready pipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from redcapfs import binding, status
from redcapfs.credentials import CredentialError, read_token_from_fd
from redcapfs.daemon import StatusNotifier, pidfile, ready, report, start_background
from redcapfs.fusecheck import fuse_problem
from redcapfs.locations import UnsafeDirectoryError, normalize_url, project_dir, state_root
from redcapfs.mountlog import PrivateLogHandler, mount_log_path, open_private
from redcapfs.mountpoint import check_mountpoint, recover
from redcapfs.options import MountError, MountOptions, build_parser, check_url, parse_options, parse_size
from redcapfs.profiles import Profile, choose, remember
from redcapfs.progresslog import ProgressLogger
from redcapfs.remote import RemoteRefused, check_remote, plain_http_notice
from redcapfs.session import Session, TokenRefused, open_session
from redcapfs.statefiles import write_pid
from redcapfs.status import write_private_json
from redcapfs.tokensource import token_for
from redcapfs.unmount import unmount_main

__all__ = ["MountError", "build_parser", "check_mountpoint", "main", "parse_options", "parse_size",
           "unmount_main"]

log = logging.getLogger("redcapfs")

# The exit status of a mount whose token REDCap refused (or that could not read its token): a restart cannot
# fix it, so the systemd units stop instead of restarting (RestartPreventExitStatus=77; docs/TROUBLESHOOTING.md).
EXIT_TOKEN = 77


def main(argv: list[str]) -> int:
    """``redcapfs mount``."""
    args = build_parser().parse_intermixed_args(argv)
    try:
        profile = _choose(args)
        opts, mountpoint, notice = _checks(args)
        token_file = args.token_file or opts.token_file
        token = read_token_from_fd(args.token_fd) if args.token_fd is not None else token_for(profile, token_file)
    except (MountError, CredentialError) as exc:
        return _fail(str(exc), args.ready_fd, EXIT_TOKEN if isinstance(exc, CredentialError) else 1)
    if notice:
        print(f"redcapfs mount: {notice}", file=sys.stderr)
    if args.foreground or args.ready_fd is not None:
        return run_foreground(args, opts, mountpoint, token)
    return start_background(argv, token, log_hint(args, mountpoint))


def _choose(args: argparse.Namespace) -> Profile | None:
    """URL, profile name, default profile or REDCAP_API_URL (profiles.py); a profile's options come first."""
    choice = choose(args.source)
    args.url = choice.url
    args.profile = choice.profile.name if choice.profile else None
    if choice.profile is not None:
        args.options = [*choice.profile.options, *args.options]
    return choice.profile


def _checks(args: argparse.Namespace) -> tuple[MountOptions, Path, str]:
    """Everything that can be refused without the token or the server, in the order a user fixes them."""
    opts = parse_options(args.options)
    notices = _long_flags(args, opts)
    check_url(args.url)
    try:
        check_remote(args.url, opts.ca, opts.insecure_http)  # before the token is read or anything contacted
    except RemoteRefused as exc:
        raise MountError(str(exc)) from None
    notice = "; ".join(filter(None, [plain_http_notice(args.url) if opts.insecure_http else "",
                                     recover(args.mountpoint)]))
    mountpoint = check_mountpoint(args.mountpoint)
    problem = fuse_problem(allow_other=opts.allow_other)  # the libfuse of binding.py included
    if problem:
        raise MountError(f"cannot mount FUSE here: {problem}")
    try:
        state_root()  # after the FUSE checks: a refused mount leaves no state behind
    except UnsafeDirectoryError as exc:
        raise MountError(f"the state folder is unsafe: {exc}") from None
    return opts, mountpoint, "; ".join(filter(None, [*notices, notice]))


def _long_flags(args: argparse.Namespace, opts: MountOptions) -> list[str]:
    """--read-only, --allow-other, -o debug; the umask=077 default of allow_other, said at mount."""
    opts.read_only = opts.read_only or args.read_only
    opts.allow_other = opts.allow_other or args.allow_other
    args.debug = args.debug or opts.debug
    if opts.allow_other and opts.umask is None:
        opts.umask = 0o077
        return ["allow_other without umask: using umask=077 (files 0600, folders 0700) so that other "
                "local users cannot read them; give -o umask=022 to let them"]
    return []


def _fail(message: str, ready_fd: int | None = None, code: int = 1) -> int:
    if ready_fd is not None:
        report(ready_fd, message)
    print(f"redcapfs mount: {message}", file=sys.stderr)
    return code


def setup_logging(args: argparse.Namespace, log_path: Path | None) -> None:
    """The mount's log: its own file (rotatable), or stderr in the foreground, or the journal under systemd."""
    level = logging.DEBUG if args.debug else getattr(logging, (args.log_level or "info").upper())
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if log_path is not None:
        handler: logging.Handler = PrivateLogHandler(log_path)
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            fmt = "%(levelname)s %(name)s: %(message)s"  # the journal adds the time
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "fuse", "mfusepy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _log_path(args: argparse.Namespace, mountpoint: Path | None = None) -> Path | None:
    """``--log-file``, else none (stderr, journal) in the foreground or under systemd, else one file per mount."""
    if args.log_file:
        return Path(args.log_file)
    if args.foreground or os.environ.get("JOURNAL_STREAM"):
        return None
    return mount_log_path(mountpoint if mountpoint is not None else Path(args.mountpoint))


def log_hint(args: argparse.Namespace, mountpoint: Path) -> str:
    """Where the background mount logs, in words, for "see its log" messages."""
    path = _log_path(args, mountpoint)
    return f"see its log {path}" if path is not None else "see its log (journalctl)"


def _settle(args: argparse.Namespace, opts: MountOptions, mountpoint: Path, session: Session,
            notice: str, writers: list[status.StatusWriter], notifier: StatusNotifier,
            progress: ProgressLogger) -> None:
    """Once the kernel has the answer to init: raise the readahead, start the status file, report ready.

    libfuse's init runs before the kernel takes its answer, so this runs in a
    thread started there (binding.after_init waits for the kernel). The
    readahead is raised before "ready", so that the first file opened already
    reads in 1 MiB requests; the status file comes before "ready" too, so
    `status` sees the mount once `mount` returns.
    """
    try:
        log.info("%s", binding.after_init(str(mountpoint)))
    except OSError as exc:
        log.warning("readahead not tuned: %s", exc)
    try:
        writers.append(status.start_writer(
            mountpoint=mountpoint, url=args.url, info=session.info, options=asdict(opts),
            options_given=args.options, stats=session.client.stats, cache_dir=session.cache.root,
            log_file=_log_path(args, mountpoint),
            extra={**(session.remote.status_facts() if session.remote else {}), "change_feed": session.tree.feed.mode,
                   "profile": args.profile}))
    except Exception:
        log.exception("the status file could not be started")
    ready(args.ready_fd, notice)
    progress.start()  # long uploads (a cp held at close) and downloads, named in the log every 10 s
    notifier.start()  # STATUS= lines for systemctl status, from the status file just started


def run_foreground(args: argparse.Namespace, opts: MountOptions, mountpoint: Path, token: str) -> int:
    """Check, mount, serve until unmounted, clean up.

    Until the mount is ready every failure, expected or not, is sent to the
    waiting command: a detached child has no terminal, and a traceback in an
    empty log helps nobody.
    """
    try:
        log_path = _log_path(args, mountpoint)
        setup_logging(args, log_path)
        if log_path is not None:
            _stderr_to(log_path)  # libfuse prints its reasons on stderr, which a background child has closed
        fuse_class = binding.fuse_class()
        from redcapfs.fuse_ops import RedcapOperations

        pid_path = pidfile(mountpoint)
        session = open_session(args.url, token, opts)
    except (MountError, binding.BindingError, UnsafeDirectoryError) as exc:
        log.error("mount refused: %s", exc)
        return _fail(str(exc), args.ready_fd, EXIT_TOKEN if isinstance(exc, TokenRefused) else 1)
    except Exception as exc:
        log.exception("mount failed")
        return _fail(f"the mount failed: {type(exc).__name__}: {exc}", args.ready_fd)
    del token
    if args.profile:
        remember(args.profile, args.url, session.tree.project_id)
    note_project(args.url, session)
    ops = RedcapOperations(session.tree, direct_writes=opts.direct_writes)
    notes = [session.feed_notice] if session.feed_notice else []
    if session.unsent:
        notes.append(f"note: {session.unsent} file(s) written through an earlier mount never reached REDCap; "
                     "see `redcapfs unsent`")
    notice = " ".join(notes)
    writers: list[status.StatusWriter] = []
    notifier = StatusNotifier(lambda: status.read_private_json(status.status_path(mountpoint)))
    progress = ProgressLogger(session.client.stats)
    ops.on_init = lambda: threading.Thread(
        target=_settle, name="ready", daemon=True,
        args=(args, opts, mountpoint, session, notice, writers, notifier, progress)).start()
    try:
        write_pid(pid_path, os.getpid())  # 0600, never through a symlink
    except OSError as exc:
        session.close()
        log.error("mount refused: %s", exc)
        return _fail(str(exc), args.ready_fd)
    log.info("mounting %s at %s (libfuse%d)", args.url, mountpoint, binding.major())
    try:
        fuse_class(ops, str(mountpoint), **binding.mount_options(
            read_only=opts.read_only, allow_other=opts.allow_other, attr_timeout=opts.attr_timeout,
            entry_timeout=opts.entry_timeout, fsname=_fsname(args.url, opts, session),
            flags=tuple(opts.kernel_flags)))
    except RuntimeError as exc:
        log.error("FUSE failed: %s", exc)
        where = f"see {log_path}" if log_path is not None else "libfuse's message is above"
        cause = fuse_problem(allow_other=opts.allow_other) or f"libfuse failed ({exc}); {where}"
        return _fail(f"FUSE could not mount {mountpoint}: {cause}", args.ready_fd)
    finally:
        progress.stop()
        notifier.stop()
        session.close()
        pid_path.unlink(missing_ok=True)
        for writer in writers:
            writer.stop()
        log.info("unmounted %s", mountpoint)
    return 0


def note_project(url: str, session: Session) -> None:
    """``about.json`` in the project's state folder, so `redcapfs clean` can say whose folder it is."""
    try:
        folder = project_dir(url, session.tree.project_id)
        write_private_json(folder / "about.json", {"url": normalize_url(url), "project_id": session.tree.project_id,
                                                   "title": str(session.info.get("project_title", ""))})
    except (OSError, UnsafeDirectoryError) as exc:
        log.warning("could not note the project in its state folder: %s", exc)


def _fsname(url: str, opts: MountOptions, session: Session) -> str:
    """What df and mount show in the source column: -o fsname, else redcapfs:HOST/PROJECT_ID."""
    from redcapfs.mount8 import default_fsname

    return opts.fsname or default_fsname(url, session.tree.project_id)


def _stderr_to(path: Path) -> None:
    try:
        fd = open_private(path)
    except OSError as exc:
        log.warning("could not send stderr to %s: %s", path, exc.strerror)
        return
    os.dup2(fd, 2)
    os.close(fd)
