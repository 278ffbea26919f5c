"""The File Repository as the top-level folder ``.repository``: folders as directories, documents as files.

What the API gives (``content=fileRepository``, docs/SEMANTICS.md "The File
Repository"): ``list`` of one folder (folder ids and names, document ids and
names, no sizes, no times), ``export``/``import``/``delete`` of one document,
``createFolder``. So:

* a listing is one call per folder, kept ``records_ttl`` seconds;
* a size costs a download of the whole document (each one an entry in the
  audit log): nothing cheaper exists in the API (``list`` has names and ids
  only, there is no file-info call for documents). A document never changes
  under its id (an import is always a new document), so a size learned once
  (download or our own upload) is kept in the manifest (``manifest.py``) and
  trusted across mounts: a remount's ``ls -l`` or ``rsync`` downloads nothing
  again; the bytes stay in the content cache for the mount's life;
* REDCap allows two documents of one name in a folder: the oldest (lowest
  ``doc_id``) keeps the name, each later one is shown as ``NAME [doc ID].EXT``
  (also when a folder has the name);
* folder delete, rename and move are not in the API: EPERM.

Folders the token may not see (role or DAG restricted) are not in its
listings, so they are not shown. ``.repository`` is listed in the root when
the token may use the File Repository (one ``list`` call, asked once, at the
first listing of the root); ``find`` and directory ``stat`` cost ``list``
calls only, never a download. Without the File Repository right the first
listing is refused: ``.repository`` is then absent (ENOENT), with one log
line. Writes are in :mod:`redcapfs.fs.repowrite`.

Locking: ``_lock`` guards the listing and size tables only; no call is made
while holding it (a leaf, like ``SlotModel._lock``).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass

from redcapfs import names
from redcapfs.cache import ContentCache, Entry, cache_key
from redcapfs.client.base import RedcapClient
from redcapfs.errors import (
    AlreadyExists,
    BadToken,
    IsADirectory,
    NoRights,
    NotADirectory,
    NotFound,
    NotPermitted,
    RedcapError,
)
from redcapfs.fs import rules
from redcapfs.fs.base import Stat, TreeOptions
from redcapfs.manifest import Manifest

log = logging.getLogger(__name__)

ROOT_NAME = ".repository"
ROOT_PATH = "/" + ROOT_NAME


@dataclass(frozen=True)
class Item:
    """One listed folder (``doc_id`` None) or document; ``folder_id`` None is the top level."""

    component: str
    name: str
    folder_id: int | None
    doc_id: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.doc_id is None


TOP = Item("", "", None)


def duplicate_name(name: str, doc_id: int) -> str:
    """``report.pdf`` -> ``report [doc 7].pdf``: a later document of a name already shown."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} [doc {doc_id}]"
    return f"{stem} [doc {doc_id}].{ext}"


def is_repo_path(path: str | None) -> bool:
    """Whether ``path`` is in the File Repository (None: an operation by handle on a file with no path left)."""
    return path is not None and (path == ROOT_PATH or path.startswith(ROOT_PATH + "/"))


def components(path: str) -> list[str]:
    """The components below ``.repository`` ([] for the folder itself)."""
    return [c for c in path[len(ROOT_PATH):].split("/") if c]


def build_listing(rows: list[dict]) -> dict[str, Item]:
    """Component -> item for one folder's ``list`` answer; duplicates get :func:`duplicate_name`."""
    out: dict[str, Item] = {}
    folders = [r for r in rows if str(r.get("folder_id") or "").isdigit() and not str(r.get("doc_id") or "")]
    docs = sorted((r for r in rows if str(r.get("doc_id") or "").isdigit()), key=lambda r: int(r["doc_id"]))
    for row in folders:
        name = str(row.get("name") or "")
        out.setdefault(names.encode(name), Item(names.encode(name), name, int(row["folder_id"])))
    for row in docs:
        name, doc_id = str(row.get("name") or ""), int(row["doc_id"])
        component = names.encode(name)
        if component in out:
            component = names.encode(duplicate_name(name, doc_id))
        out[component] = Item(component, name, None, doc_id)
    return out


class Repository:
    """Listings, lookups, sizes, reads, deletes and new folders of the File Repository."""

    def __init__(self, client: RedcapClient, cache: ContentCache, url: str, options: TreeOptions,
                 epoch_ns: int, manifest: Manifest | None = None) -> None:
        self.client = client
        self.manifest = manifest
        self.cache = cache
        self.url = url
        self.options = options
        self.epoch_ns = epoch_ns
        self._lock = threading.Lock()
        self._listings: dict[int | None, tuple[float, dict[str, Item]]] = {}
        self._parents: dict[int, int | None] = {}  # folder -> the folder it is listed in
        self._sizes: dict[int, int] = {}
        self._available: bool | None = None

    # ------------------------------------------------------------ listings
    def available(self) -> bool:
        """Whether this token may use the File Repository (asked once: the top-level listing)."""
        if self._available is None:
            try:
                self.listing(None)
                self._available = True
            except (NoRights, BadToken) as exc:
                log.info("the File Repository is not shown (.repository is absent): %s", exc)
                self._available = False
            except RedcapError as exc:  # the network or REDCap failed: asked again next time
                log.warning("the File Repository could not be listed (not shown this time): %s", exc)
                return False
        return self._available

    def listing(self, folder_id: int | None, fresh: bool = False) -> dict[str, Item]:
        with self._lock:
            known = self._listings.get(folder_id)
        if known is not None and not fresh and time.monotonic() - known[0] < self.options.records_ttl:
            return known[1]
        items = build_listing(self.client.repo_list(folder_id))
        with self._lock:
            self._listings[folder_id] = (time.monotonic(), items)
            for item in items.values():
                if item.is_dir and item.folder_id is not None:
                    self._parents[item.folder_id] = folder_id
        return items

    def forget(self, folder_id: int | None) -> None:
        """After our own change in ``folder_id``: the next lookup lists it again."""
        with self._lock:
            self._listings.pop(folder_id, None)

    def resolve(self, path: str) -> Item:
        """The item at ``path`` (TOP for ``.repository``); ENOENT when a component is not listed."""
        item = TOP
        for component in components(path):
            if not item.is_dir:
                raise NotADirectory("not a directory", path)
            found = self.listing(item.folder_id).get(component)
            if found is None:
                raise NotFound("not in the File Repository", path)
            item = found
        return item

    def parent_of(self, path: str) -> tuple[Item, str]:
        """The folder holding ``path`` and the last component."""
        parts = components(path)
        if not parts:
            raise NotPermitted("the File Repository folder itself cannot be changed", path)
        parent = self.resolve(ROOT_PATH + "/" + "/".join(parts[:-1]))
        if not parent.is_dir:
            raise NotADirectory("not a directory", path)
        return parent, parts[-1]

    def root_entry(self) -> list[tuple[str, bool]]:
        """``.repository`` for the root's listing, when this token may use the File Repository."""
        return [(ROOT_NAME, True)] if self.available() else []

    def readdir(self, path: str) -> list[tuple[str, bool]]:
        item = self.resolve(path)
        if not item.is_dir:
            raise NotADirectory("not a directory", path)
        return [(c, i.is_dir) for c, i in self.listing(item.folder_id).items()]

    # ------------------------------------------------------------ files
    def key(self, doc_id: int) -> str:
        return cache_key("repository", self.url, doc_id)

    def fetch(self, doc_id: int) -> Entry:
        """The whole document, downloaded once (the cache shares one download among readers)."""
        def download(out: object) -> None:
            info = self.client.repo_export(doc_id, out)  # type: ignore[arg-type]
            log.info("downloaded File Repository document %d (%d bytes)", doc_id, info.size or 0)
        entry = self.cache.fetch(self.key(doc_id), download)
        self.learned_size(doc_id, entry.size, "download")
        return entry

    def size(self, doc_id: int) -> int:
        """Known (this mount or the manifest), or learned by a download (the listing has no sizes)."""
        with self._lock:
            known = self._sizes.get(doc_id)
        if known is None and self.manifest is not None:
            known = self.manifest.repo_size(self.url, doc_id)
            if known is not None:
                with self._lock:
                    self._sizes[doc_id] = known
        return known if known is not None else self.fetch(doc_id).size

    def learned_size(self, doc_id: int, size: int, source: str) -> None:
        """A size from a download or our upload: for this mount and, in the manifest, for the next ones."""
        with self._lock:
            if self._sizes.get(doc_id) == size:
                return
            self._sizes[doc_id] = size
        if self.manifest is not None:
            self.manifest.put_repo_size(self.url, doc_id, size, source)

    def stat(self, path: str, writable: bool) -> Stat:
        item = self.resolve(path)
        if item.is_dir:
            mode = stat.S_IFDIR | (0o755 if writable else 0o555)
            return Stat(True, 0, mode, self.epoch_ns, self.options.uid, self.options.gid)
        assert item.doc_id is not None
        mode = stat.S_IFREG | (0o644 if writable else 0o444)
        return Stat(False, self.size(item.doc_id), mode, self.epoch_ns, self.options.uid, self.options.gid)

    def open_read(self, path: str) -> int:
        """An fd on the cached copy of the document at ``path``."""
        item = self.resolve(path)
        if item.doc_id is None:
            raise IsADirectory("is a directory", path)
        return os.open(self.fetch(item.doc_id).path, os.O_RDONLY)

    # ------------------------------------------------------------ changes
    def unlink(self, path: str) -> None:
        item = self.resolve(path)
        if item.doc_id is None:
            raise IsADirectory("is a directory", path)
        parent, _ = self.parent_of(path)
        try:
            self.client.repo_delete(item.doc_id)
        except RedcapError as exc:
            log.error("File Repository: delete of %r (doc %d) failed: %s", item.name, item.doc_id, exc)
            raise
        log.info("File Repository: deleted %r (doc %d)", item.name, item.doc_id)
        self.cache.invalidate(self.key(item.doc_id))
        self.forget(parent.folder_id)

    def mkdir(self, path: str) -> None:
        parent, component = self.parent_of(path)
        if component in self.listing(parent.folder_id, fresh=True):
            raise AlreadyExists("exists", path)
        name = rules.creatable(component, path, what="folder name")  # lists back as typed, or EINVAL
        try:
            folder_id = self.client.repo_create_folder(name, parent.folder_id)
        except RedcapError as exc:
            log.error("File Repository: creating folder %r failed: %s", name, exc)
            raise
        log.info("File Repository: created folder %r (folder %d)", name, folder_id)
        self.forget(parent.folder_id)

    @staticmethod
    def refuse(what: str, path: str) -> None:
        """Folder delete, rename and move: not in REDCap's API."""
        raise NotPermitted(f"the File Repository API cannot {what}; use REDCap's web page", path)
