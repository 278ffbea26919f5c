"""Model-based test of ``Tree``: random operation sequences against a reference model.

In the spirit of mountpoint-s3's reference-model tests: Hypothesis drives the
tree (through the public methods fuse_ops.py calls) and the small model in
``treemodel.py`` with the same create, write, truncate, rename (temporary names
of rsync and vim included), unlink, mkdir/rmdir, open/read, flush/release,
records refreshes and a colleague's uploads and deletes made through the API
directly. After every step the invariants below must hold:

* the server holds exactly what the model says (each close that succeeded put
  exactly the bytes written there; a refused one left them in the spool as
  unsent, checked entry by entry with their bytes);
* every listing equals the model's, and a slot lists one real file (EEXIST
  otherwise); no temporary name ever reaches the server;
* a read returns bytes of one whole version (a server version fixed at open, or
  the live copy of a file being written), never mixed or short bytes;
* nothing leaks: every spool entry is a live copy or an expected unsent one,
  also across a remount (unmount closes everything, temporary files go).

Refreshes of the records index come when the test moves the index's clock
(``RecordsClock``), so a run never depends on the machine's speed.

Runs bounded and derandomized in the suite; ``REDCAPFS_MODEL_EXAMPLES=2000``
(and ``REDCAPFS_MODEL_STEPS``) make a longer run. Known bugs of today's tree are
kept out of the random runs by ``KNOWN_BUGS`` guards and pinned as strict xfail
reproductions in test_tree_model_bugs.py.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from treemodel import (
    REAL_NAMES,
    REMOTE_NAMES,
    Handle,
    Model,
    ModelError,
    SlotT,
    is_temp,
    slot_dir,
)
from treemodel_project import (
    ALL_RECORDS,
    FILES,
    INSTANCES,
    LOCKED,
    NAMES,
    RECORDS,
    SLOTS,
    RecordsClock,
    make_client,
    make_tree,
    outcome,
    server_file,
    server_rows,
)

# Sequences that hit a known bug of today's tree (test_tree_model_bugs.py): kept out of the random runs.
KNOWN_BUGS = {
    "write-after-rename": False,  # writes through a temp file's handle after renaming it onto the real name vanish
    "stale-unlink": False,  # rm of a name a colleague replaced (or of its backup copy) deletes the colleague's file
    "fstat-of-old-version": False,  # fstat of a reader of a replaced or deleted version reports the new file
    "stale-read": False,  # opening a name a colleague replaced serves the colleague's file under the old name
    "stale-rename": False,  # rename of a name a colleague replaced or deleted
}



# ------------------------------------------------------------------ the state machine

MAX_HANDLES = 4
slots = st.sampled_from(SLOTS)
names = st.sampled_from(NAMES)
payloads = st.binary(min_size=0, max_size=24)


class TreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="treemodel-"))
        self.clock = RecordsClock()
        self.client = make_client()
        self.mounts = 1
        self.tree, self.spool = make_tree(self.client, self.root, self.mounts)
        self.model = Model(RECORDS, LOCKED, FILES, {("1", "att", 1)})
        self.uploads = 0

    def teardown(self) -> None:
        try:
            self.tree.shutdown()
        finally:
            self.clock.restore()
            self.client.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def pick_file(self, data: st.DataObject) -> tuple[SlotT, str]:
        """Mostly a file the model lists (else most paths are just ENOENT), sometimes any name."""
        listed = [(s, n.name) for s in SLOTS if self.model.slot_exists(s) for n in self.model.nodes(s)]
        pick_listed = data.draw(st.integers(0, 5), label="listed?") > 0
        if listed and pick_listed:
            return data.draw(st.sampled_from(listed), label="file")
        return data.draw(slots, label="slot"), data.draw(names, label="name")

    def path(self, slot: SlotT, name: str) -> str:
        return f"{slot_dir(slot)}/{name}"

    def pick_handle(self, data: st.DataObject, writable: bool | None = None) -> tuple[int, Handle]:
        handles = sorted(fh for fh, h in self.model.handles.items() if writable is None or h.writable == writable)
        fh = data.draw(st.sampled_from(handles), label="fh")
        return fh, self.model.handles[fh]

    def has_handles(self, writable: bool | None = None) -> bool:
        return any(writable is None or h.writable == writable for h in self.model.handles.values())

    # ------------------------------------------------------------ creating and opening
    @precondition(lambda self: len(self.model.handles) < MAX_HANDLES)
    @rule(slot=slots, name=names)
    def create(self, slot: SlotT, name: str) -> None:
        if self.model.slot_exists(slot) and name in self.model.listing(slot):
            return  # the kernel calls open, not create, for a name it found
        self.do_create(slot, name)

    def do_create(self, slot: SlotT, name: str) -> int | None:
        fh, code = outcome(self.tree.create, self.path(slot, name), 0o100644)
        self.model.create(slot, name, fh, code)
        return fh if code is None else None

    @precondition(lambda self: len(self.model.handles) < MAX_HANDLES)
    @rule(data=st.data(), truncate=st.booleans())
    def open_for_writing(self, data: st.DataObject, truncate: bool) -> None:
        slot, name = self.pick_file(data)
        if not truncate and self.serves_other(slot, name):
            return
        flags = os.O_WRONLY | (os.O_TRUNC if truncate else 0)
        fh, code = outcome(self.tree.open, self.path(slot, name), flags)
        self.model.open_write(slot, name, truncate, fh, code)

    @precondition(lambda self: len(self.model.handles) < MAX_HANDLES)
    @rule(data=st.data())
    def open_and_read(self, data: st.DataObject) -> None:
        """A reader's first read covers the file: the version it reads is fixed from here on."""
        slot, name = self.pick_file(data)
        if self.serves_other(slot, name):
            return
        expected_code, handle = self.model.open_read(slot, name)
        fh, code = outcome(self.tree.open, self.path(slot, name), os.O_RDONLY)
        if code is None:
            got, code = outcome(self.tree.read, fh, 1 << 16, 0)
            if code is not None or handle is None:
                self.tree.release(fh)
        if code != expected_code:
            raise ModelError(f"open/read {self.path(slot, name)}: errno {code}, expected {expected_code}")
        if handle is None:
            return
        want = self.model.expected_bytes(handle)
        assert got == want, f"first read of {self.path(slot, name)}: {got!r}, expected the whole {want!r}"
        handle.path = self.path(slot, name)
        self.model.add_handle(fh, handle)

    # ------------------------------------------------------------ through a handle
    @precondition(lambda self: self.has_handles(writable=True))
    @rule(data=st.data(), payload=payloads, gap=st.integers(0, 3))
    def write(self, data: st.DataObject, payload: bytes, gap: int) -> None:
        fh, handle = self.pick_handle(data, writable=True)
        assert handle.copy is not None
        if KNOWN_BUGS["write-after-rename"] and handle.copy.renamed_onto:
            return
        offset = data.draw(st.integers(0, len(handle.copy.content) + gap), label="offset")
        self.do_write(fh, payload, offset)

    def do_write(self, fh: int, payload: bytes, offset: int) -> None:
        written, code = outcome(self.tree.write, fh, payload, offset)
        assert code is None and written == len(payload), f"write: {written}, errno {code}"
        self.model.write(self.model.handles[fh], payload, offset)

    @precondition(lambda self: self.has_handles(writable=True))
    @rule(data=st.data(), length=st.integers(0, 30))
    def ftruncate(self, data: st.DataObject, length: int) -> None:
        fh, handle = self.pick_handle(data, writable=True)
        assert handle.copy is not None
        if KNOWN_BUGS["write-after-rename"] and handle.copy.renamed_onto:
            return
        _, code = outcome(self.tree.truncate, "/ignored", length, fh)
        assert code is None, f"ftruncate: errno {code}"
        self.model.ftruncate(handle.copy, length)

    @precondition(lambda self: self.has_handles())
    @rule(data=st.data(), offset=st.integers(0, 40), size=st.integers(1, 40))
    def read(self, data: st.DataObject, offset: int, size: int) -> None:
        fh, handle = self.pick_handle(data)
        got, code = outcome(self.tree.read, fh, size, offset)
        want = self.model.expected_bytes(handle)[offset:offset + size]
        assert code is None and got == want, f"read({size}, {offset}): {got!r} errno {code}, expected {want!r}"
        if handle.copy is None and KNOWN_BUGS["fstat-of-old-version"]:
            return
        st_, code = outcome(self.tree.getattr, handle.path, fh)
        whole = len(self.model.expected_bytes(handle))
        assert code is None and st_.size == whole, f"fstat of a reader: {st_} errno {code}, it reads {whole} bytes"

    @precondition(lambda self: self.has_handles())
    @rule(data=st.data())
    def fsync(self, data: st.DataObject) -> None:
        fh, handle = self.pick_handle(data)
        sends = self.sends(handle)
        _, code = outcome(self.tree.fsync, fh)
        self.model.flush(handle, code, what="fsync")
        self.check_committed(handle, sends, code)

    @precondition(lambda self: self.has_handles())
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        """close(2): flush, then the last release (the kernel's order)."""
        fh, _ = self.pick_handle(data)
        self.do_close(fh)

    def do_close(self, fh: int) -> int | None:
        handle = self.model.handles[fh]
        sends = self.sends(handle)
        _, code = outcome(self.tree.flush, fh)
        self.model.flush(handle, code, what="close")
        self.check_committed(handle, sends, code)
        self.tree.release(fh)
        self.model.release(fh)
        return code

    @staticmethod
    def sends(handle: Handle) -> bool:
        """Whether this close must upload: a written copy of a real file, changed since its last upload."""
        copy = handle.copy
        if copy is not None and copy.changed_after_rename:
            return True  # as on any filesystem, the handle follows the file onto its new name
        return (copy is not None and handle.writable and not copy.temp and not copy.unlinked
                and copy.dirty and copy.wrote)

    def check_committed(self, handle: Handle, sent: bool, code: int | None) -> None:
        """After a close that uploads: the server has exactly these bytes, or the spool keeps them as unsent."""
        copy = handle.copy
        if not sent or copy is None:
            return
        if code is None:
            held = server_file(self.client, copy.slot)
            assert held == (copy.name, bytes(copy.content)), f"after a close without error the server holds {held!r}"
            return
        unsent = [e for e in self.spool.unsent() if e.data_path.read_bytes() == bytes(copy.content)]
        assert unsent, f"close failed (errno {code}) and the bytes are not kept as unsent"

    # ------------------------------------------------------------ by path
    @rule(data=st.data(), length=st.integers(0, 12))
    def truncate(self, data: st.DataObject, length: int) -> None:
        slot, name = self.pick_file(data)
        if length and self.serves_other(slot, name):
            return
        _, code = outcome(self.tree.truncate, self.path(slot, name), length, None)
        self.model.truncate_path(slot, name, length, code)

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        slot, name = self.pick_file(data)
        self.do_unlink(slot, name)

    def do_unlink(self, slot: SlotT, name: str) -> None:
        node = self.model.node(slot, name)
        if KNOWN_BUGS["stale-unlink"] and node is not None and self.deletes_stale(slot, node):
            return
        _, code = outcome(self.tree.unlink, self.path(slot, name))
        self.model.unlink(slot, name, code)

    @rule(data=st.data(), other=slots, same_slot=st.integers(0, 3), dname=names)
    def rename(self, data: st.DataObject, other: SlotT, same_slot: int, dname: str) -> None:
        src, sname = self.pick_file(data)
        self.do_rename(src, sname, src if same_slot else other, dname)

    def do_rename(self, src: SlotT, sname: str, dst: SlotT, dname: str) -> int | None:
        node = self.model.node(src, sname)
        if (KNOWN_BUGS["stale-rename"] and node is not None and node.copy is None and node.on_server
                and self.stale(src, sname)):
            return errno.ESTALE
        _, code = outcome(self.tree.rename, self.path(src, sname), self.path(dst, dname))
        self.model.rename(src, sname, dst, dname, code)
        return code

    # ------------------------------------------------------------ whole saves, as tools make them
    @precondition(lambda self: len(self.model.handles) < MAX_HANDLES)
    @rule(data=st.data(), name=st.sampled_from(REAL_NAMES), payload=payloads, keep_open=st.booleans())
    def rsync_save(self, data: st.DataObject, name: str, payload: bytes, keep_open: bool) -> None:
        """rsync: write .NAME.XXXXXX, rename it onto NAME (some tools close only after the rename)."""
        slot = self.pick_slot(data)
        temp = f".{name}.Ab12Cd"
        if not self.model.slot_exists(slot) or temp in self.model.listing(slot):
            return
        fh = self.do_create(slot, temp)
        if fh is None:
            return
        self.do_write(fh, payload, 0)
        if not keep_open:
            self.do_close(fh)
        self.do_rename(slot, temp, slot, name)

    @precondition(lambda self: len(self.model.handles) < MAX_HANDLES)
    @rule(data=st.data(), payload=payloads)
    def vim_save(self, data: st.DataObject, payload: bytes) -> None:
        """vim's save: probe with 4913, rename NAME to NAME~, write a new NAME, drop NAME~ if that worked."""
        slot = self.pick_slot(data)
        if not self.model.slot_exists(slot):
            return
        real = [n for n in self.model.listing(slot) if not is_temp(n)]
        listed = self.model.listing(slot)
        if len(real) != 1 or "4913" in listed or real[0] + "~" in listed:
            return
        name = real[0]
        probe = self.do_create(slot, "4913")
        if probe is not None:
            self.do_close(probe)
            self.do_unlink(slot, "4913")
        if self.do_rename(slot, name, slot, name + "~") is not None:
            return
        fh = self.do_create(slot, name)
        if fh is None:
            return
        self.do_write(fh, payload, 0)
        if self.do_close(fh) is None:
            self.do_unlink(slot, name + "~")

    def deletes_stale(self, slot: SlotT, node: Any) -> bool:
        """Whether this unlink is a Delete File of a name the slot no longer holds."""
        if node.on_server:
            return self.stale(slot, node.name)
        hidden = self.model.shadowed.get(slot)
        copy = node.copy
        if copy is not None and copy.temp and hidden is not None and copy.origin == (slot, hidden):
            return slot in self.model.server and self.stale(slot, hidden)  # `mv f f~; rm f~`
        return False

    def serves_other(self, slot: SlotT, name: str) -> bool:
        """Whether reading this name would download a different file a colleague put in the slot."""
        node = self.model.node(slot, name)
        if not KNOWN_BUGS["stale-read"] or node is None or node.copy is not None or not node.on_server:
            return False
        held = self.model.server.get(slot)
        return (slot, name) not in self.model.cache and held is not None and held[0] != name

    def stale(self, slot: SlotT, name: str) -> bool:
        """The listing's server name is not what the slot holds now (a colleague changed it)."""
        held = self.model.server.get(slot)
        return held is None or held[0] != name

    @rule(slot=slots)
    def stat_files(self, slot: SlotT) -> None:
        """Sizes before any read: a copy's own, or the server version's (fileinfo or the cached copy)."""
        if not self.model.slot_exists(slot):
            return
        for node in self.model.nodes(slot):
            st_, code = outcome(self.tree.getattr, self.path(slot, node.name), None)
            want = len(node.copy.content) if node.copy is not None else self.model.size(slot, node.name)
            if want is None:
                assert code == errno.ENOENT, f"stat of a file gone from the server: errno {code}"
            else:
                assert code is None and st_.size == want, f"stat {self.path(slot, node.name)}: {st_} {code}"

    # ------------------------------------------------------------ directories
    @rule(record=st.sampled_from(ALL_RECORDS))
    def mkdir_record(self, record: str) -> None:
        _, code = outcome(self.tree.mkdir, f"/{record}", 0o755)
        self.model.mkdir_record(record, code)

    @rule(record=st.sampled_from(ALL_RECORDS), instance=st.sampled_from(INSTANCES))
    def mkdir_instance(self, record: str, instance: int) -> None:
        _, code = outcome(self.tree.mkdir, f"/{record}/att/{instance}", 0o755)
        self.model.mkdir_instance(record, "att", instance, code)

    @rule(record=st.sampled_from(ALL_RECORDS), instance=st.sampled_from(INSTANCES))
    def rmdir_instance(self, record: str, instance: int) -> None:
        _, code = outcome(self.tree.rmdir, f"/{record}/att/{instance}")
        if self.model.rmdir_instance(record, "att", instance, code):
            self.settle_refresh()  # forgetting a local instance rereads the index at the next lookup

    @rule()
    def remount(self) -> None:
        """Unmount (open files closed, temporary files gone, unsent bytes kept) and mount again."""
        self.tree.shutdown()
        self.model.unmount()
        self.mounts += 1
        self.tree, self.spool = make_tree(self.client, self.root, self.mounts)
        self.settle_refresh()

    # ------------------------------------------------------------ the server, and a colleague
    @rule()
    def refresh(self) -> None:
        self.settle_refresh()

    def settle_refresh(self) -> None:
        """Time passes beyond records_ttl: the next lookup rereads the index."""
        self.clock.advance()
        self.tree.readdir("/")  # past the TTL a listing starts a background refresh and answers at once...
        with self.tree.records.fresh():  # ...so wait for that refresh before comparing
            pass
        self.model.refresh(*server_rows(self.client))

    def pick_slot(self, data: st.DataObject) -> SlotT:
        """Mostly a slot that lists something, so a colleague's change meets ours."""
        busy = [s for s in SLOTS if self.model.slot_exists(s) and self.model.nodes(s)]
        pick_busy = data.draw(st.integers(0, 3), label="busy?") > 0
        if busy and pick_busy:
            return data.draw(st.sampled_from(busy), label="slot")
        return data.draw(slots, label="slot")

    @rule(data=st.data(), name=st.sampled_from(REMOTE_NAMES), payload=payloads)
    def colleague_uploads(self, data: st.DataObject, name: str, payload: bytes) -> None:
        slot = self.pick_slot(data)
        if slot[0] in LOCKED or slot[1] == "sig" or slot[0] not in self.model.records:
            return
        path = self.root / "colleague.bin"
        path.write_bytes(payload)
        self.client.import_file(slot[0], slot[1], str(path), name, repeat_instance=slot[2])
        self.model.remote_upload(slot, name, payload)

    @rule(data=st.data())
    def colleague_deletes(self, data: st.DataObject) -> None:
        slot = self.pick_slot(data)
        if slot[0] in LOCKED or slot not in self.model.server:
            return
        self.client.delete_file(slot[0], slot[1], repeat_instance=slot[2])
        self.model.remote_delete(slot)

    # ------------------------------------------------------------ invariants
    @invariant()
    def listings_equal_the_model(self) -> None:
        model = self.model
        assert sorted(n for n, _ in self.tree.readdir("/")) == sorted([".repository", *model.records])
        for record in ALL_RECORDS:
            if record not in model.records:
                continue
            instances = {i for r, _, i in model.instances | model.local_instances if r == record}
            assert sorted(int(n) for n, _ in self.tree.readdir(f"/{record}/att")) == sorted(instances)
        ahead = {record: self.tree.listings_below(f"/{record}") for record in ALL_RECORDS}  # fs/listings.py
        for record in ALL_RECORDS:
            assert "att" not in ahead[record]  # a repeating field's folder lists instances: never made ahead
            assert ahead[record] == {} or record in model.records
        for slot in SLOTS:
            if not model.slot_exists(slot):
                continue
            listed = sorted(n for n, _ in self.tree.readdir(slot_dir(slot)))
            assert listed == model.listing(slot), f"{slot_dir(slot)} lists {listed}, model {model.listing(slot)}"
            made = ahead[slot[0]].get(slot[1])
            if made is not None:  # what the record's listing made ahead for this folder is what it lists
                assert sorted(n for n, _, _ in made) == listed, f"{slot_dir(slot)} made ahead {made}"
            real = [n for n in listed if not is_temp(n)]
            assert len(real) <= 1 or model.may_list_two_files(slot), f"{slot_dir(slot)} lists {real}"

    @invariant()
    def server_holds_the_model(self) -> None:
        _, _, stored = server_rows(self.client)
        want = {slot: name for slot, (name, _) in self.model.server.items()}
        assert stored == want, f"server names {stored}, model {want}"
        assert not [n for n in stored.values() if is_temp(n)], "a temporary name reached the server"
        for slot, held in self.model.server.items():
            assert server_file(self.client, slot) == held, f"server bytes of {slot_dir(slot)}"

    @invariant()
    def spool_holds_exactly_the_live_and_unsent_copies(self) -> None:
        rows = []
        for entry in self.spool.entries():
            state = "unsent" if entry.state == "unsent" else entry.state
            target = None
            if state == "unsent":
                t = entry.target
                target = ((t.record, t.field, t.instance), t.name)
            rows.append((state, target, entry.data_path.read_bytes()))
        assert sorted(rows, key=repr) == self.model.spool_expected()


def machine_settings() -> settings:
    examples = int(os.environ.get("REDCAPFS_MODEL_EXAMPLES", "300"))
    steps = int(os.environ.get("REDCAPFS_MODEL_STEPS", "50"))
    return settings(max_examples=examples, stateful_step_count=steps, derandomize=True, database=None,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


TreeMachine.TestCase.settings = machine_settings()
# A longer run (REDCAPFS_MODEL_EXAMPLES) gets a pytest-timeout that grows with it.
_budget = machine_settings().max_examples * machine_settings().stateful_step_count * 0.02
TreeMachine.TestCase.pytestmark = [pytest.mark.timeout(max(120, int(_budget)))]  # type: ignore[attr-defined]
test_tree_model = TreeMachine.TestCase
