"""Renames: what each kind means in a world where a slot holds one file and REDCap has no rename.

* temporary -> temporary: local only.
* temporary -> real name: the upload (how editors and rsync save).
* real -> temporary, same slot: an editor's backup (``mv f f~``). The server
  file is copied locally and hidden; the server is untouched. Unlinking the
  copy while the slot is still hidden deletes the server file.
* real -> real: upload under the new name (same slot: that replaces it), then
  delete the source.

The slot-empty checks do their I/O before any lock (``Writing.check_slot``).
"""

from __future__ import annotations

import errno

from redcapfs.errors import NotPermitted, RedcapError
from redcapfs.fs import rules
from redcapfs.fs.base import FileNode, TreeOptions
from redcapfs.fs.localfiles import FileState, LocalFile
from redcapfs.fs.namespace import Namespace
from redcapfs.fs.writing import Writing
from redcapfs.shape import Slot


class Renames:
    """The rename cases over the namespace and the write path."""

    def __init__(self, options: TreeOptions, ns: Namespace, writing: Writing) -> None:
        self.options = options
        self.ns = ns
        self.writing = writing
        self.local = writing.local
        self.content = writing.content
        self.uploader = writing.uploader
        self.slots = ns.slots

    def rename(self, old: str, new: str) -> None:
        src_ref = self.ns.resolve(old)
        if src_ref.kind != "file":
            raise NotPermitted("directories cannot be renamed", old)
        src = self.ns.file(src_ref, old)
        if src.local is not None:
            self.writing.streams.broken(src.local, "renamed while open")  # its upload must not go to the old name
        dst_ref = self.ns.resolve(new)
        if dst_ref.kind != "file":
            raise NotPermitted("a file can only be renamed into a slot directory", new)
        dst_slot = dst_ref.slot()
        dst_name = self.ns.existing_or_new_name(dst_ref, new)
        if dst_slot == src.slot and dst_name == src.name:
            return
        self.writing.require_writable(dst_slot, new)
        dst_temp = self.options.temp_names.is_temp(dst_name)
        if src.local is not None and src.local.temp:
            self._rename_temp(src.local, dst_slot, dst_name, dst_temp, new)
        elif dst_temp:
            self._rename_to_temp(src, dst_slot, dst_name, new)
        else:
            self._rename_real(src, dst_slot, dst_name, new)

    def _rename_temp(self, local: LocalFile, slot: Slot, name: str, to_temp: bool, path: str) -> None:
        """A temporary file moved: locally if the target is temporary too, else it is the upload."""
        if local.link_target is not None and not (to_temp and name.startswith(".#")):
            raise NotPermitted("an editor's lock link can only be renamed to another .# name", path)
        if to_temp:
            replaced = self.local.move_temp(local, slot, name)
            if replaced is not None:
                self.local.drop(replaced)
            return
        rules.check_upload_name(slot, name, path)
        self.writing.check_slot(slot, name, path, renaming=True)
        with local.lock:
            self.uploader.upload(local, slot, name)
            done = self.local.renamed_onto(local, slot, name)
            if not done:  # still open: now the real file's writer, not a temporary file
                local.entry.retarget(local.entry.target, temp=False)
        if done:
            local.close()
            local.entry.remove()

    def _rename_to_temp(self, src: FileNode, slot: Slot, name: str, path: str) -> None:
        """A real file renamed to a temporary name: a local copy; the server is untouched."""
        if slot != src.slot:
            raise OSError(errno.EXDEV, "a real file moves to a temporary name only within its slot")
        rules.require_closed(src, path)
        local = self.local.new(slot, name, FileState.TEMP)
        try:
            self.content.copy_into(src, local.fd)
        except BaseException:
            self.local.drop(local)
            raise
        attr = self.slots.attr(src.slot, src.name, local.size())
        local.mtime_ns, local.mode = attr.mtime_ns, attr.mode
        local.shadow_of = (src.slot, src.name)
        replaced = self.local.add_temp(local, replace=True)
        self.slots.hide(slot, src.name)
        if replaced is not None and replaced is not local:
            self.local.drop(replaced)

    def _rename_real(self, src: FileNode, slot: Slot, name: str, path: str) -> None:
        """Real to real: upload under the new name (same slot: that replaces it), then delete the source."""
        rules.require_closed(src, path)
        rules.check_upload_name(slot, name, path)
        self.writing.check_slot(slot, name, path, moving_from=src if slot == src.slot else None, renaming=True)
        self.uploader.verify(src.slot, src.name)  # the upload replaces the slot's file: it must still be src
        local = self.local.new(slot, name, FileState.NEW)  # never listed: the rename's private copy
        try:
            self.content.copy_into(src, local.fd)
            attr = self.slots.attr(src.slot, src.name, local.size())
            local.mtime_ns, local.mode = attr.mtime_ns, attr.mode
            with local.lock:
                self.uploader.upload(local, slot, name)
            local.close()
            local.entry.remove()
        except BaseException:
            local.close()
            if local.entry.attempted is None:  # never sent (the download failed): nothing to keep
                local.entry.remove()
            raise  # a refused upload stays unsent, as any refused save
        if slot == src.slot:
            self.slots.forget_content(src.slot, src.name)
            return
        try:
            self.uploader.delete(src.slot, src.name, keep=False)  # moved, not lost
        except RedcapError as exc:
            raise type(exc)(f"copied to the new place, but the original could not be deleted: {exc.message}",
                            status=exc.status, record=exc.record, field=exc.field) from exc
