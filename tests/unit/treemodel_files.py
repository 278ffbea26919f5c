"""Opening, writing, closing and truncating in the reference model (see treemodel.py)."""

from __future__ import annotations

import errno

from treemodel_state import BAD_NAMES, Copy, Handle, ModelState, SlotT, allow, is_temp, slot_dir


class FileRules(ModelState):
    """What create, open, read, write, close and truncate must do (docs/SEMANTICS.md, Writing)."""

    # ------------------------------------------------------------ opening and creating
    def create(self, slot: SlotT, name: str, fh: int | None, observed: int | None) -> None:
        """O_CREAT of a name the slot does not list."""
        what = f"create {slot_dir(slot)}/{name}"
        if not self.slot_exists(slot):
            return allow(observed, errno.ENOENT, what=what)
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        if is_temp(name):
            allow(observed, None, what=what)
            copy = self.new_copy(slot, name, temp=True)
            self.temps.setdefault(slot, {})[name] = copy
        else:
            if name in BAD_NAMES:
                return allow(observed, errno.EINVAL, what=what)
            if any(n != name for n in self.real_names(slot)):
                return allow(observed, errno.EEXIST, what=what)
            allow(observed, None, what=what)
            copy = self.new_copy(slot, name, temp=False)
            copy.dirty = True  # even an empty new file is uploaded
            self.writers.setdefault(slot, {}).setdefault(name, []).append(copy)
        assert fh is not None
        self.add_handle(fh, Handle(True, copy))

    def open_write(self, slot: SlotT, name: str, truncate: bool, fh: int | None, observed: int | None) -> None:
        """Open an existing file for writing: a new private copy (a temporary file is itself)."""
        what = f"open {slot_dir(slot)}/{name} for writing"
        node = self.node(slot, name)
        if node is None:
            return allow(observed, errno.ENOENT, what=what)
        if node.copy is not None and node.copy.temp:
            allow(observed, None, what=what)
            if truncate:
                node.copy.content[:] = b""
            assert fh is not None
            return self.add_handle(fh, Handle(True, node.copy))
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        start = b""
        if not truncate:
            if node.copy is not None:
                start = bytes(node.copy.content)
            else:
                got = self.content(slot, name)
                if got is None:  # gone from the server since the last listing
                    return allow(observed, errno.ENOENT, what=what)
                start = got
        allow(observed, None, what=what)
        copy = self.new_copy(slot, name, temp=False)
        copy.content[:] = start
        copy.dirty = truncate
        self.writers.setdefault(slot, {}).setdefault(name, []).append(copy)
        assert fh is not None
        self.add_handle(fh, Handle(True, copy))

    def open_read(self, slot: SlotT, name: str) -> tuple[int | None, Handle | None]:
        """What a reader gets: a copy's live bytes, or one whole server version (or ENOENT if gone)."""
        node = self.node(slot, name)
        if node is None:
            return errno.ENOENT, None
        if node.copy is not None:
            return None, Handle(False, node.copy)
        got = self.content(slot, name)
        if got is None:
            return errno.ENOENT, None
        return None, Handle(False, None, got)

    def expected_bytes(self, handle: Handle) -> bytes:
        if handle.copy is not None:
            return bytes(handle.copy.content)
        assert handle.version is not None
        return handle.version

    # ------------------------------------------------------------ writing through a handle
    def write(self, handle: Handle, data: bytes, offset: int) -> None:
        copy = handle.copy
        assert copy is not None
        content = copy.content
        if data and offset > len(content):  # pwrite of nothing does not extend the file
            content.extend(b"\0" * (offset - len(content)))
        if data:
            content[offset:offset + len(data)] = data
        copy.dirty = copy.wrote = True
        copy.changed_after_rename = copy.renamed_onto

    def ftruncate(self, copy: Copy, length: int) -> None:
        content = copy.content
        if length < len(content):
            del content[length:]
        else:
            content.extend(b"\0" * (length - len(content)))
        copy.dirty = copy.wrote = True
        copy.changed_after_rename = copy.renamed_onto

    def flush(self, handle: Handle, observed: int | None, what: str) -> None:
        """Every close: upload a copy that was written to and not yet sent; the rest succeeds."""
        copy = handle.copy
        if copy is None or not handle.writable or copy.temp or copy.unlinked:
            return allow(observed, None, what=what)
        if copy.dirty and copy.wrote:
            self.upload(copy, copy.slot, copy.name, observed, what)
            if observed is None:
                copy.dirty = False
        else:
            allow(observed, None, what=what)

    def release(self, fh: int) -> None:
        """The last close of a copy: clean copies go; one never sent stays as unsent, never lost."""
        handle = self.handles.pop(fh)
        copy = handle.copy
        if copy is None:
            return
        copy.refs -= 1
        if copy.refs > 0 or (copy.temp and not copy.unlinked):
            return
        if not copy.temp and not copy.unlinked and copy.dirty and not copy.wrote:
            # Only created or truncated: sent now; a refusal cannot reach close() any more.
            self.upload(copy, copy.slot, copy.name, errno.EROFS if copy.slot[0] in self.locked else None,
                        what="upload at release")
            if copy.slot[0] not in self.locked:
                copy.dirty = False
        if not copy.temp:
            self.forget_writer(copy)
        if copy.temp or not copy.dirty or copy.unlinked:
            copy.state = "gone"
        else:
            copy.state = "unsent"
            self.kept.append(copy)

    def truncate_path(self, slot: SlotT, name: str, length: int, observed: int | None) -> None:
        """truncate(2) without an open file: a temp file changes locally, a real one is uploaded at once."""
        what = f"truncate {slot_dir(slot)}/{name} to {length}"
        node = self.node(slot, name)
        if node is None:
            return allow(observed, errno.ENOENT, what=what)
        if node.copy is not None and node.copy.temp:
            allow(observed, None, what=what)
            content = node.copy.content
            del content[length:]
            content.extend(b"\0" * (length - len(content)))
            return None
        if self.may_write_in(slot):
            return allow(observed, errno.EPERM, what=what)
        start = b""
        if length != 0:
            if node.copy is not None:
                start = bytes(node.copy.content)
            else:
                got = self.content(slot, name)
                if got is None:
                    return allow(observed, errno.ENOENT, what=what)
                start = got
        copy = self.new_copy(slot, name, temp=False)
        copy.content[:] = start
        self.ftruncate(copy, length)
        self.upload(copy, slot, name, observed, what)
        if observed is None:
            copy.dirty = False
            copy.state = "gone"
        else:
            copy.state = "unsent"
            self.kept.append(copy)
        return None
