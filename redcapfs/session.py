"""The one place that builds a mount's parts: client, project shape, caches, spool and tree.

``open_session`` makes the calls that tell a wrong token, a wrong URL, a dead
server and a token without export rights apart, so each is refused with its own
message before anything is mounted. Folders left by dead mounts are swept here
too: content caches (``cache-<pid>``) hold clinical files and must not outlive
the mount that downloaded them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from redcapfs import errors as E
from redcapfs.attrs import AttrStore
from redcapfs.cache import ContentCache
from redcapfs.client.http import HttpClient
from redcapfs.client.trust import innermost_reason
from redcapfs.fs.emptygrace import EMPTY_GRACE
from redcapfs.locations import UnsafeDirectoryError, private_dir, project_dir
from redcapfs.manifest import Manifest
from redcapfs.options import MountError, MountOptions
from redcapfs.remote import Remote, RemoteRefused, open_remote
from redcapfs.shape import ProjectShape
from redcapfs.spool import Spool, pid_alive
from redcapfs.tempnames import TempNames
from redcapfs.trash import Trash
from redcapfs.tree import Tree, TreeOptions

log = logging.getLogger("redcapfs")

_CACHE_DIR = re.compile(r"cache-(\d+)")


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
    feed_notice: str = ""  # why the change feed is off, said once at mount ("" when it is on or not asked for)
    remote: Remote | None = None  # the trust and proxy behind ``client`` (logged, and in `redcapfs status`)

    def close(self) -> None:
        try:
            self.tree.shutdown()
        finally:
            if not self.keep_cache:
                self.cache.wipe()
            self.attrs.close()
            self.tree.manifest.close()
            self.client.close()


def _owner(tree_opts: TreeOptions, opts: MountOptions) -> None:
    """-o uid, gid, umask (redcapfs/mount8.py): who the files seem to belong to, and their modes."""
    if opts.uid is not None:
        tree_opts.uid = opts.uid
    if opts.gid is not None:
        tree_opts.gid = opts.gid
    if opts.umask is not None:
        tree_opts.umask = opts.umask


class TokenRefused(MountError):
    """REDCap refused the token: restarting the mount cannot help (exit status 77, see mount.EXIT_TOKEN)."""


def connect(url: str, token: str, opts: MountOptions) -> tuple[Remote, dict]:
    """One call (project info) tells a wrong token, a wrong URL, a TLS failure and a dead server apart."""
    try:
        remote = open_remote(url, token, ca=opts.ca, insecure_http=opts.insecure_http, timeout=(10, opts.timeout),
                             rate_limit=opts.rate, burst=opts.burst, retries=2, retry_deadline=30,
                             call_budget=opts.timeout)
    except RemoteRefused as exc:
        raise MountError(str(exc)) from None
    try:
        return remote, remote.client.project_info()
    except BaseException as exc:
        remote.client.close()
        if isinstance(exc, E.BadToken):
            raise TokenRefused(remote.refusal(exc)) from None
        if isinstance(exc, E.RedcapError):
            raise MountError(remote.refusal(exc)) from None
        raise


def tls_cause(message: str) -> str:
    """The innermost reason of a TLS failure, once (kept for callers of the old name)."""
    return innermost_reason(message)


def load_shape(client: HttpClient, info: dict) -> ProjectShape:
    """The structure calls, made once per mount.

    Arms, events and their forms are asked only of a longitudinal project (``from_api`` reads them only
    then), and the repeating setup only when the project info does not say there is none: a classic
    project's mount costs four calls fewer (issue 11: a remount in at most six calls).
    """
    longitudinal = str(info.get("is_longitudinal", 0)).strip().lower() in ("1", "true", "yes", "y")
    repeating = str(info.get("has_repeating_instruments_or_events", 1)).strip().lower() not in ("0", "false", "no")
    return ProjectShape.from_api(info, client.metadata(),
                                 client.arms() if longitudinal else [],
                                 client.events() if longitudinal else [],
                                 client.form_event_mapping() if longitudinal else [],
                                 client.repeating_forms_events() if repeating else [])


def open_session(url: str, token: str, opts: MountOptions) -> Session:
    """Connect, read the project's structure, open the local stores; every refusal is a MountError."""
    remote, info = connect(url, token, opts)
    client = remote.client
    try:
        session = _build(client, info, url, opts)
        session.remote = remote
        return session
    except E.RedcapError as exc:
        client.close()
        raise MountError(f"reading the project failed: {exc}") from None
    except UnsafeDirectoryError as exc:
        client.close()
        raise MountError(str(exc)) from None
    except BaseException:
        client.close()
        raise


def _build(client: HttpClient, info: dict, url: str, opts: MountOptions) -> Session:
    shape = load_shape(client, info)
    if opts.arm is not None and opts.arm not in shape.arms():
        raise MountError(f"-o arm={opts.arm}: the project has arms {shape.arms()}")
    project_id = str(info.get("project_id", ""))
    folder = project_dir(url, project_id)
    sweep_dead_caches(folder.parent)
    spool = Spool(folder / "spool")
    unsent = _report_unsent(spool)
    cache_root = folder / ("cache" if opts.keep_cache else f"cache-{os.getpid()}")
    cache = ContentCache(private_dir(cache_root), opts.cache_size, opts.content_ttl)
    attrs = AttrStore(folder / "attrs.sqlite")
    manifest = Manifest(folder / "manifest.sqlite")
    tree_opts = TreeOptions(read_only=opts.read_only, records_ttl=opts.records_ttl,
                            content_ttl=opts.content_ttl, poll=opts.poll, poll_idle=opts.poll_idle,
                            metadata_ttl=opts.metadata_ttl, slot_check=opts.slot_check,
                            sizes_ahead=8 if opts.rate is None else max(1, min(8, int(opts.rate))),
                            batch=opts.batch, arm=opts.arm, timeout=opts.timeout,
                            temp_names=TempNames.from_option(opts.temp_names), empty_grace=EMPTY_GRACE,
                            stream_upload=opts.stream_upload)
    trash = Trash(folder / "trash", opts.trash)
    trash.expire()  # versions past trash_days go at every mount, not only when something new is kept
    _owner(tree_opts, opts)
    tree = Tree(client, shape, cache=cache, attrs=attrs, spool=spool, url=url, project_id=project_id,
                options=tree_opts, trash=trash, manifest=manifest)
    notice = tree.start_feed()  # the log before the index on a first mount; the gap since the last one after
    with tree.records.view():  # fail now (e.g. no export rights), not at the first `ls`
        pass
    return Session(client, tree, cache, attrs, opts.keep_cache, unsent, info=info, feed_notice=notice)


def _owner_alive(pid: int) -> bool:
    """A live redcapfs process: a pid reused by another program does not keep a cache alive."""
    if pid == os.getpid():
        return True
    if not pid_alive(pid, None):
        return False
    import psutil  # portable: /proc on Linux, sysctl on macOS and the BSDs

    try:
        return any("redcapfs" in part for part in psutil.Process(pid).cmdline())
    except psutil.AccessDenied:
        return True  # it runs and hides its command line: do not delete what it may be using
    except psutil.Error:
        return False


def _dead_caches(project: Path) -> list[Path]:
    try:
        children = list(project.iterdir())
    except OSError:
        return []
    return [child for child in children
            if (match := _CACHE_DIR.fullmatch(child.name)) and not child.is_symlink() and child.is_dir()
            and not _owner_alive(int(match.group(1)))]


def sweep_dead_caches(root: Path) -> int:
    """Remove ``cache-<pid>`` folders of mounts that died (kill -9, crash), partial downloads included.

    Every project folder under the state root is swept, not only the one being
    mounted: a dead mount of another project left clinical files too.
    """
    removed = 0
    try:
        projects = [p for p in root.iterdir() if not p.is_symlink() and p.is_dir()]
    except OSError:
        return 0
    for project in projects:
        for folder in _dead_caches(project):
            shutil.rmtree(folder, ignore_errors=True)
            removed += not folder.exists()
    if removed:
        log.info("removed %d content cache folder(s) left by mounts that died", removed)
    return removed


def _report_unsent(spool: Spool) -> int:
    dropped = spool.drop_dead_temps()
    if dropped:
        log.info("removed %d temporary files left by an earlier mount", dropped)
    unsent = spool.unsent()
    if unsent:
        log.warning("%d file(s) written through an earlier mount never reached REDCap; "
                    "list them with `redcapfs unsent`, send them with `redcapfs retry`", len(unsent))
    return len(unsent)
