"""``redcapfs mount`` and ``redcapfs unmount``: checks, background start, the FUSE loop, cleanup.

The command returns once the mount is ready. It re-runs itself as a detached
child (``--foreground`` plus two inherited pipes): one carries the token (never
argv or the environment of a long-lived process), the other carries back
"ready" or the error message, so every refusal (wrong token, not a REDCap API,
unreachable server, busy mountpoint) is printed by the command the user typed,
with a non-zero exit.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from redcapfs import errors as E
from redcapfs import status
from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.client.http import HttpClient
from redcapfs.credentials import CredentialError, read_token, read_token_from_fd
from redcapfs.fusecheck import fuse_problem
from redcapfs.locations import private_dir, project_dir, state_root, state_root_path
from redcapfs.shape import ProjectShape
from redcapfs.spool import Spool
from redcapfs.tempnames import TempNames
from redcapfs.tree import Tree, TreeOptions

log = logging.getLogger("redcapfs")

READY = "ready"
START_TIMEOUT = 300.0


class MountError(Exception):
    """A refusal, with the message the user sees."""


# ------------------------------------------------------------------ options


@dataclass
class MountOptions:
    """The ``-o`` options (mount(8) style)."""

    read_only: bool = False
    allow_other: bool = False
    cache_size: int = 2 << 30
    records_ttl: float = 15.0
    content_ttl: float = 300.0
    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    rate: float = 5.0
    timeout: float = 120.0
    batch: int = 0
    arm: int | None = None
    keep_cache: bool = False
    temp_names: str | None = None
    ca: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1048576``."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS and not text[-1:].isdigit() else ""
    number = text[: len(text) - len(unit)]
    return int(float(number) * _SIZE_UNITS[unit])


def parse_options(values: list[str]) -> MountOptions:
    """Parse ``-o a,b=c`` strings; unknown options are an error (a typo must not be ignored)."""
    opts = MountOptions()
    setters: dict[str, Callable[[str], None]] = {
        "cache_size": lambda v: setattr(opts, "cache_size", parse_size(v)),
        "records_ttl": lambda v: setattr(opts, "records_ttl", float(v)),
        "content_ttl": lambda v: setattr(opts, "content_ttl", float(v)),
        "attr_timeout": lambda v: setattr(opts, "attr_timeout", float(v)),
        "entry_timeout": lambda v: setattr(opts, "entry_timeout", float(v)),
        "rate": lambda v: setattr(opts, "rate", float(v)),
        "timeout": lambda v: setattr(opts, "timeout", float(v)),
        "batch": lambda v: setattr(opts, "batch", int(v)),
        "arm": lambda v: setattr(opts, "arm", int(v)),
        "temp_names": lambda v: setattr(opts, "temp_names", _checked_temp_names(v)),
        "ca": lambda v: setattr(opts, "ca", v),
    }
    flags = {"ro": "read_only", "allow_other": "allow_other", "keep_cache": "keep_cache"}
    for value in values:
        for item in filter(None, value.split(",")):
            key, _, arg = item.partition("=")
            if key in flags and not arg:
                setattr(opts, flags[key], True)
            elif key == "rw" and not arg:
                opts.read_only = False
            elif key in setters and arg:
                try:
                    setters[key](arg)
                except ValueError as exc:
                    raise MountError(f"bad value for -o {key}: {arg!r} ({exc})") from None
            else:
                raise MountError(f"unknown mount option {item!r} (see `redcapfs mount --help`)")
    return opts


def _checked_temp_names(value: str) -> str:
    """Parse now, so a bad list is refused before anything is mounted."""
    TempNames.from_option(value)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redcapfs mount",
        description="Mount a REDCap project's files. The token comes from REDCAP_API_TOKEN, "
                    "--token-file (mode 0600) or a hidden prompt; never from an argument.",
        epilog="-o options: ro, allow_other, cache_size=2G, records_ttl=15, content_ttl=300, attr_timeout=1, "
               "entry_timeout=1, rate=5 (requests/s), timeout=120 (s), batch=N (records per export; 0 = one "
               "export), arm=N (arm of records made by mkdir), keep_cache, temp_names=SPEC (docs/temp-names.md), "
               "ca=PATH (CA bundle). See docs/SEMANTICS.md.")
    parser.add_argument("url", help="the API URL, e.g. https://redcap.example.edu/api/")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS")
    parser.add_argument("--token-file", help="file holding the token (must not be group/world readable)")
    parser.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("--debug", action="store_true", help="log debug detail (never the token)")
    parser.add_argument("--log-file", help="log here (default: stderr in the foreground, "
                                           "the journal under systemd, else STATE/mount.log)")
    parser.add_argument("--token-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return parser


# ------------------------------------------------------------------ entry points


def main(argv: list[str]) -> int:
    """``redcapfs mount``."""
    args = build_parser().parse_args(argv)
    try:
        opts = parse_options(args.options)
        mountpoint = check_mountpoint(args.mountpoint)
        problem = fuse_problem(allow_other=opts.allow_other)
        if problem:
            raise MountError(f"cannot mount FUSE here: {problem}")
        if args.token_fd is not None:
            token = read_token_from_fd(args.token_fd)
        else:
            token = read_token(args.token_file)
    except (MountError, CredentialError) as exc:
        return _fail(str(exc), args.ready_fd)
    if args.foreground or args.ready_fd is not None:
        return run_foreground(args, opts, mountpoint, token)
    return start_background(argv, mountpoint, token)


def _fail(message: str, ready_fd: int | None = None) -> int:
    if ready_fd is not None:
        _report(ready_fd, message)
    print(f"redcapfs mount: {message}", file=sys.stderr)
    return 1


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, (message.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        os.close(fd)
    except OSError:
        pass


def check_mountpoint(path: str) -> Path:
    """An existing, empty directory that is not already a mount."""
    mp = Path(path).expanduser()
    try:
        mp.stat()
    except PermissionError:
        raise MountError(f"mountpoint {path} cannot be reached: Permission denied on a folder above it") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(f"mountpoint {path} is a dead mount (its process ended): "
                             f"run `redcapfs unmount {path}` first") from None
        if not isinstance(exc, FileNotFoundError):
            raise MountError(f"mountpoint {path}: {exc.strerror}") from None
    if not mp.exists():
        raise MountError(f"mountpoint {path} does not exist")
    if not mp.is_dir():
        raise MountError(f"mountpoint {path} is not a directory")
    if os.path.ismount(mp):
        raise MountError(f"mountpoint {path} is busy: something is already mounted there")
    try:
        if any(mp.iterdir()):
            raise MountError(f"mountpoint {path} is not empty")
    except PermissionError:
        raise MountError(f"mountpoint {path} cannot be read") from None
    return mp.resolve()


def start_background(argv: list[str], mountpoint: Path, token: str) -> int:
    """Start the detached child and wait for its "ready" or its error."""
    token_r, token_w = os.pipe()
    ready_r, ready_w = os.pipe()
    child_argv = [sys.executable, "-m", "redcapfs", "mount", *argv,
                  "--token-fd", str(token_r), "--ready-fd", str(ready_w)]
    env = {k: v for k, v in os.environ.items() if k != "REDCAP_API_TOKEN"}  # the pipe carries it
    proc = subprocess.Popen(child_argv, pass_fds=(token_r, ready_w), stdin=subprocess.DEVNULL, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(token_r)
    os.close(ready_w)
    try:
        os.write(token_w, (token + "\n").encode())
    except BrokenPipeError:  # the child already exited; its message (or exit code) says why
        pass
    finally:
        os.close(token_w)
    message = _wait_ready(ready_r, proc)
    if message.startswith(READY):
        notice = message[len(READY):].strip()
        if notice:
            print(f"redcapfs mount: {notice}", file=sys.stderr)
        return 0
    print(f"redcapfs mount: {message}", file=sys.stderr)
    return 1


def _wait_ready(fd: int, proc: subprocess.Popen) -> str:
    """The child's one-line answer; a child that dies or never answers is reported, not waited for forever."""
    data = b""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while b"\n" not in data and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break  # the child closed its end: answered or died
                data += chunk
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace").strip()
    if text:
        return text
    try:
        code = proc.wait(10)  # the pipe closed: the child is exiting
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        return f"the mount process gave no answer within {START_TIMEOUT:.0f} s; see its log"
    return f"the mount process exited ({code}) before the mount was ready; see its log"


# ------------------------------------------------------------------ the mount process


def setup_logging(args: argparse.Namespace, log_path: Path | None) -> None:
    level = logging.DEBUG if args.debug else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handler: logging.Handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            fmt = "%(levelname)s %(name)s: %(message)s"  # the journal adds the time
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "fuse"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _log_path(args: argparse.Namespace) -> Path | None:
    if args.log_file:
        return Path(args.log_file)
    if args.foreground or os.environ.get("JOURNAL_STREAM"):
        return None
    return state_root() / "mount.log"


@dataclass
class Session:
    """Everything one mount owns, closed in order at the end."""

    client: HttpClient
    tree: Tree
    cache: ContentCache
    attrs: AttrStore
    keep_cache: bool
    unsent: int = 0
    info: dict = field(default_factory=dict)  # project info (title, id) for `redcapfs status`

    def close(self) -> None:
        try:
            self.tree.shutdown()
        finally:
            if not self.keep_cache:
                self.cache.wipe()
            self.attrs.close()
            self.client.close()


def connect(url: str, token: str, opts: MountOptions) -> tuple[HttpClient, dict]:
    """One call (project info) tells a wrong token, a wrong URL and a dead server apart."""
    verify: bool | str = opts.ca or True
    client = HttpClient(url, token, timeout=(10, opts.timeout), verify=verify,
                        rate_limit=opts.rate if opts.rate > 0 else None, retries=2, retry_deadline=30)
    try:
        return client, client.project_info()
    except E.BadToken as exc:
        raise MountError(f"the API token was refused by {url}: {exc.message}") from None
    except E.NoRights as exc:
        raise MountError(f"the API token has no rights here: {exc.message}") from None
    except E.TLSError as exc:
        raise MountError(f"TLS failure talking to {url}: {exc.message} (use -o ca=PATH for a private CA)") from None
    except E.ProtocolError as exc:
        raise MountError(f"{url} is not a REDCap API (did you mean the URL ending in /api/?): {exc.message}") \
            from None
    except (E.TransportError, E.RequestTimeout) as exc:
        raise MountError(f"cannot connect to {url}: {exc.message}") from None
    except E.RedcapError as exc:
        if exc.status in (301, 302, 400, 404, 405, 501):
            raise MountError(f"{url} is not a REDCap API (HTTP {exc.status}: {exc.message}); "
                             "the URL usually ends in /api/") from None
        raise MountError(f"{url} answered with an error: {exc}") from None


def load_shape(client: HttpClient, info: dict) -> ProjectShape:
    """The structure calls, made once per mount."""
    return ProjectShape.from_api(info, client.metadata(), client.arms(), client.events(),
                                 client.form_event_mapping(), client.repeating_forms_events())


def open_session(url: str, token: str, opts: MountOptions) -> Session:
    client, info = connect(url, token, opts)
    try:
        shape = load_shape(client, info)
        project_id = str(info.get("project_id", ""))
        folder = project_dir(url, project_id)
        spool = Spool(folder / "spool")
        unsent = _report_unsent(spool)
        cache_root = folder / ("cache" if opts.keep_cache else f"cache-{os.getpid()}")
        cache = ContentCache(private_dir(cache_root), opts.cache_size, opts.content_ttl)
        attrs = AttrStore(folder / "attrs.sqlite")
        tree_opts = TreeOptions(read_only=opts.read_only, records_ttl=opts.records_ttl,
                                content_ttl=opts.content_ttl, batch=opts.batch, arm=opts.arm,
                                temp_names=TempNames.from_option(opts.temp_names))
        if opts.arm is not None and opts.arm not in shape.arms():
            raise MountError(f"-o arm={opts.arm}: the project has arms {shape.arms()}")
        tree = Tree(client, shape, cache=cache, attrs=attrs, spool=spool, url=url, project_id=project_id,
                    options=tree_opts)
        with tree.records.view():  # fail now (e.g. no export rights), not at the first `ls`
            pass
        return Session(client, tree, cache, attrs, opts.keep_cache, unsent, info)
    except E.RedcapError as exc:
        client.close()
        raise MountError(f"reading the project failed: {exc}") from None
    except BaseException:
        client.close()
        raise


def _report_unsent(spool: Spool) -> int:
    dropped = spool.drop_dead_temps()
    if dropped:
        log.info("removed %d temporary files left by an earlier mount", dropped)
    unsent = spool.unsent()
    if unsent:
        log.warning("%d file(s) written through an earlier mount never reached REDCap; "
                    "list them with `redcapfs unsent`, send them with `redcapfs retry`", len(unsent))
    return len(unsent)


def run_foreground(args: argparse.Namespace, opts: MountOptions, mountpoint: Path, token: str) -> int:
    """Check, mount, serve until unmounted, clean up."""
    from fuse import FUSE

    from redcapfs.fuse_ops import RedcapOperations

    log_path = _log_path(args)
    setup_logging(args, log_path)
    if log_path is not None:
        _stderr_to(log_path)  # libfuse prints its reasons on stderr, which a background child has closed
    try:
        session = open_session(args.url, token, opts)
    except MountError as exc:
        log.error("mount refused: %s", exc)
        return _fail(str(exc), args.ready_fd)
    del token
    ops = RedcapOperations(session.tree)
    notice = (f"note: {session.unsent} file(s) written through an earlier mount never reached REDCap; "
              "see `redcapfs unsent`") if session.unsent else ""
    writer: list[status.StatusWriter] = []

    def on_init() -> None:  # the status file comes before "ready": `status` sees the mount once `mount` returns
        writer.append(status.start_writer(
            mountpoint=mountpoint, url=args.url, info=session.info, options=asdict(opts),
            options_given=args.options, stats=session.client.stats, cache_dir=session.cache.root,
            log_file=_log_path(args)))
        _ready(args.ready_fd, notice)

    ops.on_init = on_init
    pidfile = _pidfile(mountpoint)
    pidfile.write_text(str(os.getpid()))
    log.info("mounting %s at %s", args.url, mountpoint)
    # hard_remove: libfuse would otherwise rename a file unlinked while open to
    # .fuse_hiddenNNN, which in a one-file slot is a second, refused name
    # (vim deletes its open swap file). atomic_o_trunc: O_TRUNC arrives with the
    # open instead of a separate truncate that would upload an empty file.
    try:
        FUSE(ops, str(mountpoint), foreground=True, nothreads=False, ro=opts.read_only,
             allow_other=opts.allow_other, default_permissions=True, atomic_o_trunc=True, hard_remove=True,
             big_writes=True, max_write=1 << 20, attr_timeout=opts.attr_timeout,
             entry_timeout=opts.entry_timeout, fsname="redcapfs", subtype="redcapfs")
    except RuntimeError as exc:
        log.error("FUSE failed: %s", exc)
        where = f"see {log_path}" if log_path is not None else "libfuse's message is above"
        cause = fuse_problem(allow_other=opts.allow_other) or f"libfuse failed ({exc}); {where}"
        return _fail(f"FUSE could not mount {mountpoint}: {cause}", args.ready_fd)
    finally:
        session.close()
        pidfile.unlink(missing_ok=True)
        for w in writer:
            w.stop()
        log.info("unmounted %s", mountpoint)
    return 0


def _stderr_to(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("could not send stderr to %s: %s", path, exc.strerror)
        return
    os.dup2(fd, 2)
    os.close(fd)


def _ready(fd: int | None, notice: str = "") -> None:
    log.info("mount ready")
    if fd is not None:
        _report(fd, f"{READY} {notice}".strip())
    _notify_systemd()


def _notify_systemd() -> None:
    """``Type=notify`` units (systemd/redcapfs@.service) start once the mount is usable."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", address)
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)


def _pidfile(mountpoint: Path, create: bool = True) -> Path:
    """Where the mount at ``mountpoint`` keeps its pid; only a mount creates the folder, never a lookup."""
    digest = hashlib.sha256(str(mountpoint).encode()).hexdigest()[:16]
    if not create:
        return state_root_path() / "mounts" / f"{digest}.pid"
    return private_dir(state_root() / "mounts") / f"{digest}.pid"


# ------------------------------------------------------------------ unmount


def unmount_main(argv: list[str]) -> int:
    """``redcapfs unmount MOUNTPOINT``: unmount, then wait for the mount process to finish its cleanup."""
    parser = argparse.ArgumentParser(prog="redcapfs unmount")
    parser.add_argument("mountpoint")
    parser.add_argument("-z", "--lazy", action="store_true", help="detach even if busy")
    args = parser.parse_args(argv)
    mountpoint = Path(args.mountpoint).expanduser().resolve()
    if not os.path.ismount(mountpoint):
        print(f"redcapfs unmount: {args.mountpoint} is not mounted", file=sys.stderr)
        return 1
    pid = _read_pid(_pidfile(mountpoint, create=False))
    error = _fusermount(mountpoint, args.lazy)
    if error:
        print(f"redcapfs unmount: {error}", file=sys.stderr)
        return 1
    _wait_exit(pid, 60.0)
    return 0


def _fusermount(mountpoint: Path, lazy: bool) -> str | None:
    for tool in ("fusermount3", "fusermount"):
        if shutil.which(tool):
            cmd = [tool, "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
            break
    else:
        cmd = ["umount"] + (["-l"] if lazy else []) + [str(mountpoint)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return (result.stderr.strip() or f"{cmd[0]} failed") + (" (files open? try --lazy)" if not lazy else "")
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait_exit(pid: int | None, timeout: float) -> None:
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.05)
    log.warning("the mount process %d is still running", pid)

