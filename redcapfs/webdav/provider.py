"""WsgiDAV resources over a ``Tree``: each DAV method is the Tree call the mount would make.

PROPFIND is ``getattr``/``readdir``, GET is ``open``/``read``, PUT is
``create``/``write`` and the upload at its end (streams.py), DELETE of a file
is ``unlink``, MKCOL ``mkdir``, MOVE ``rename``, PROPPATCH of a modification
time ``utimens``. Nothing here decides what an operation means; refusals come
from the Tree and become statuses in one table (statuses.py).

Two choices are the share's own, because a DAV request can ask for more than
one syscall would:

* DELETE of a collection is one ``rmdir``, never the recursive delete WsgiDAV
  would otherwise do file by file: a folder dragged to the bin in Explorer
  must not delete every file of a record in REDCap. Only an empty local
  instance goes; anything else is refused as ``rmdir`` is on the mount.
* Dead properties are refused (403): REDCap has nowhere to keep them. The
  Win32 attributes Explorer sets after a copy are accepted and, except for
  the modification time, ignored (as ``chown`` is on the mount).
* In ``.repository`` (the File Repository) REDCap's API can add documents and
  folders and delete documents, nothing else. So COPY of a file is an import
  of its bytes (over an existing file: the mount's overwrite, the old document
  kept in the trash), COPY of a folder makes the folder and copies its files,
  and MOVE of a file is a COPY and then a DELETE of the source: RFC 4918
  defines MOVE as exactly that, the delete comes only after REDCap has the
  copy, and the deleted document is kept in the local trash as every delete
  is. Folders cannot be deleted, renamed or moved (403), nor can a file
  replace a folder (that would need the folder deleted).
"""

from __future__ import annotations

import email.utils
import logging
import posixpath
import stat
from typing import Any

from wsgidav.dav_error import HTTP_CONFLICT, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from redcapfs.errors import NotPermitted
from redcapfs.fs.repotree import is_repo_path
from redcapfs.tempnames import TempNames
from redcapfs.tree import Stat, Tree
from redcapfs.webdav.statuses import dav_error, status_for
from redcapfs.webdav.streams import Placeholders, Reader, Writer

log = logging.getLogger(__name__)

_TIME_PROPS = ("{DAV:}getlastmodified", "{urn:schemas-microsoft-com:}Win32LastModifiedTime")
_IGNORED_PROPS = ("{urn:schemas-microsoft-com:}Win32CreationTime", "{urn:schemas-microsoft-com:}Win32LastAccessTime",
                  "{urn:schemas-microsoft-com:}Win32FileAttributes")


def _norm(path: str) -> str:
    path = "/" + path.strip("/")
    return path


def parse_time(value: Any) -> int:
    """An HTTP date (``Tue, 01 Dec 2026 10:00:00 GMT``) or epoch seconds, as nanoseconds."""
    text = str(value).strip()
    if text.isdigit():
        return int(text) * 1_000_000_000
    parsed = email.utils.parsedate_to_datetime(text)
    return int(parsed.timestamp()) * 1_000_000_000


class TreeProvider(DAVProvider):
    """The share: one Tree, the same one a mount of this project would use."""

    def __init__(self, tree: Tree, temp_names: TempNames, read_only: bool = False) -> None:
        super().__init__()
        self.tree = tree
        self.temp_names = temp_names
        self.read_only = read_only
        self.placeholders = Placeholders()

    def is_readonly(self) -> bool:
        return self.read_only

    def get_resource_inst(self, path: str, environ: dict) -> Any:
        path = _norm(path)
        try:
            st = self.tree.getattr(path)
        except Exception as exc:
            if status_for(exc) != 404:
                raise dav_error(exc) from None
            when = self.placeholders.mtime_ns(path)
            return None if when is None else FileResource(path, environ, Stat(False, 0, stat.S_IFREG | 0o644,
                                                                               when, 0, 0), placeholder=True)
        if st.is_dir:
            return FolderResource(path, environ, st)
        return FileResource(path, environ, st)


class _TimesMixin:
    """Modification times through PROPPATCH, as ``touch`` sets them on the mount."""

    path: str
    provider: TreeProvider
    st: Stat

    def get_last_modified(self) -> float:
        return self.st.mtime_ns / 1e9

    def get_creation_date(self) -> float:
        return self.st.mtime_ns / 1e9

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        when = parse_time(time_stamp)
        if dry_run:
            return True
        if self.provider.placeholders.mtime_ns(dest_path) is not None:
            self.provider.placeholders.set_mtime(dest_path, when)
            return True
        try:
            self.provider.tree.utimens(dest_path, when)
        except Exception as exc:
            raise dav_error(exc) from None
        return True

    def set_property_value(self, name: str, value: Any, *, dry_run: bool = False) -> bool:
        if name in _TIME_PROPS and value is not None:
            try:
                return self.set_last_modified(self.path, value.text, dry_run=dry_run)
            except (TypeError, ValueError):
                raise DAVError(HTTP_CONFLICT, context_info=f"not a time: {value.text!r}") from None
        if name in _IGNORED_PROPS:
            return True
        raise DAVError(HTTP_FORBIDDEN, context_info="REDCap keeps no properties")


class FolderResource(_TimesMixin, DAVCollection):
    """A directory of the tree: the root, a record, an event, a field, an instance."""

    def __init__(self, path: str, environ: dict, st: Stat) -> None:
        super().__init__(path, environ)
        self.st = st

    def get_display_name(self) -> str:
        return posixpath.basename(self.path)

    def get_member_names(self) -> list[str]:
        try:
            entries = [name for name, _ in self.provider.tree.readdir(self.path)]
        except Exception as exc:
            raise dav_error(exc) from None
        extra = [n for n in self.provider.placeholders.names_in(self.path) if n not in entries]
        return entries + extra

    def get_used_bytes(self) -> int | None:
        return None

    def get_available_bytes(self) -> int | None:
        vfs = self.provider.tree.statfs()
        return int(vfs["f_bavail"] * vfs["f_frsize"])

    def create_empty_resource(self, name: str) -> FileResource:
        """A PUT of a new name, or a LOCK of an unmapped URL: checked now, stored only when bytes come."""
        path = posixpath.join(self.path, name)
        tree = self.provider.tree
        try:
            fh = tree.create(path, 0o644)  # the slot rules, with nothing written
            if self.provider.temp_names.is_temp(name):
                tree.release(fh)  # a side file: it stays, local, as on the mount
                return FileResource(path, self.environ, tree.getattr(path))
            tree.unlink(path)  # a new, never uploaded file: local only
            tree.release(fh)
        except Exception as exc:
            raise dav_error(exc) from None
        self.provider.placeholders.add(path)
        when = self.provider.placeholders.mtime_ns(path) or 0
        res = FileResource(path, self.environ, Stat(False, 0, stat.S_IFREG | 0o644, when, 0, 0), placeholder=True)
        res.made_here = True
        return res

    def create_collection(self, name: str) -> None:
        try:
            self.provider.tree.mkdir(posixpath.join(self.path, name), 0o755)
        except Exception as exc:
            raise dav_error(exc) from None

    def handle_delete(self) -> bool:
        try:
            self.provider.tree.rmdir(self.path)
        except Exception as exc:
            raise dav_error(exc) from None
        self.remove_all_locks(recursive=True)
        return True

    def handle_move(self, dest_path: str) -> bool:
        try:
            self.provider.tree.rename(self.path, _norm(dest_path))
        except Exception as exc:
            raise dav_error(exc) from None
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """A folder of a COPY: made at the destination (File Repository only; its files follow one by one)."""
        dest = _norm(dest_path)
        if is_move or not (is_repo_path(self.path) and is_repo_path(dest)):
            raise DAVError(HTTP_FORBIDDEN, context_info="folders can be copied within .repository only, "
                                                        "and never moved or renamed (REDCap's API cannot)")
        if self.provider.get_resource_inst(dest, self.environ) is None:
            self.create_collection_at(dest)

    def create_collection_at(self, path: str) -> None:
        try:
            self.provider.tree.mkdir(path, 0o755)
        except Exception as exc:
            raise dav_error(exc) from None

    def support_recursive_delete(self) -> bool:
        return False

    def support_recursive_move(self, dest_path: str) -> bool:
        return False


class FileResource(_TimesMixin, DAVNonCollection):
    """A file in a slot (or a placeholder only this share shows)."""

    def __init__(self, path: str, environ: dict, st: Stat, placeholder: bool = False) -> None:
        super().__init__(path, environ)
        self.st = st
        self.placeholder = placeholder
        self.made_here = False
        self._writer: Writer | None = None

    def get_display_name(self) -> str:
        return posixpath.basename(self.path)

    def get_content_length(self) -> int:
        return self.st.size

    def get_etag(self) -> str:
        return f"{self.st.size:x}-{self.st.mtime_ns:x}"

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> Any:
        if self.placeholder:
            import io

            return io.BytesIO(b"")
        return Reader(self.provider.tree, self.path)

    def begin_write(self, *, content_type: str | None = None) -> Writer:
        self._writer = Writer(self.provider.tree, self.provider.temp_names, self.provider.placeholders, self.path,
                              exists=not self.placeholder, made_placeholder=self.made_here)
        return self._writer

    def end_write(self, *, with_errors: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and with_errors:
            writer.abort()

    def delete(self) -> None:
        if self.placeholder:
            self.provider.placeholders.discard(self.path)
        else:
            try:
                self.provider.tree.unlink(self.path)
            except Exception as exc:
                raise dav_error(exc) from None
        self.remove_all_locks(recursive=False)

    def handle_move(self, dest_path: str) -> bool:
        dest = _norm(dest_path)
        if self.placeholder:
            return self._move_placeholder(dest)
        try:
            self.provider.tree.rename(self.path, dest)
        except NotPermitted:
            if not (is_repo_path(self.path) and is_repo_path(dest)):
                raise dav_error(NotPermitted("not allowed", self.path)) from None
            return self._move_document(dest)
        except Exception as exc:
            raise dav_error(exc) from None
        self.provider.placeholders.discard(dest)
        return True

    def support_recursive_move(self, dest_path: str) -> bool:
        return False  # WsgiDAV's default asserts a collection; a file's MOVE is copy_move_single, then delete

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        """A COPY (or a File Repository MOVE) to a new name, or a file of a folder being copied.

        For a MOVE, WsgiDAV deletes the source after this returned (the copy is in REDCap).
        """
        self._copy_bytes(_norm(dest_path))

    def _move_document(self, dest: str) -> bool:
        """MOVE in the File Repository: the copy is imported first, then the source deleted (kept in the trash).

        To a new name WsgiDAV does the two steps (``copy_move_single``, then ``delete``) and answers 201.
        """
        if self.provider.get_resource_inst(dest, self.environ) is None:
            return False
        self._copy_bytes(dest)
        self.delete()
        log.info("MOVE %s -> %s: imported as a new document, then the source deleted", self.path, dest)
        return True

    def _move_placeholder(self, dest: str) -> bool:
        if self.provider.get_resource_inst(dest, self.environ) is not None:
            raise DAVError(HTTP_CONFLICT, context_info="an empty file never replaces one in REDCap")
        self.provider.placeholders.discard(self.path)
        self.provider.placeholders.add(dest)
        return True

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """Over an existing file: the bytes read and written onto it, as ``cp`` on the mount does (the mount's
        overwrite rule, never a delete first). To a new name WsgiDAV calls ``copy_move_single`` (and says 201)."""
        dest = _norm(dest_path)
        if self.provider.get_resource_inst(dest, self.environ) is None:
            return False
        self._copy_bytes(dest)
        return True

    def _copy_bytes(self, dest: str) -> None:
        parent = self.provider.get_resource_inst(posixpath.dirname(dest), self.environ)
        target = self.provider.get_resource_inst(dest, self.environ)
        if target is not None and target.is_collection:
            raise DAVError(HTTP_FORBIDDEN, context_info="a file cannot replace a folder: REDCap's API cannot "
                                                        "delete folders")
        if target is None:
            target = parent.create_empty_resource(posixpath.basename(dest))
        source = self.get_content()
        writer = target.begin_write()
        try:
            while chunk := source.read(1 << 20):
                writer.write(chunk)
            writer.close()
        except BaseException:
            target.end_write(with_errors=True)
            raise
        finally:
            source.close()
        target.end_write(with_errors=False)
