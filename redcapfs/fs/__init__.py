"""The pieces behind :class:`redcapfs.tree.Tree`, one kind of state each (tree.py has the map of them).

Locking model
-------------
The rule: **no shared lock is held across a network call, an fsync or a
download.** I/O happens first, with no lock; then a lock is taken for the
in-memory check-and-update, which re-checks what the I/O saw (a create's
slot-empty check, ``Writing.check_slot``). No lock is ever re-entered.

Locks, in the order they may be nested (a lock is only taken while holding
ones above it):

1. ``LocalFile.lock`` (per file): its bytes and its state. Held across that
   file's pwrite/ftruncate/copy and across its own upload (the upload reads
   those bytes). Only handles of that very file wait on it. Never taken while
   holding any lock below.
2. ``LocalFiles._lock`` (the registry): writers and temporary files per slot,
   handle counts. Dict updates and the in-memory slot re-check only.
3. ``SlotModel._lock``: sizes, resolved names, origins, hidden slots (the
   ``TTLCache`` tables, which are not thread-safe alone). A leaf for data.
4. ``RecordCache._lock``: the records index and our pending changes; a leaf
   (code inside ``with records.view()`` calls nothing).
5. Leaves of their own modules: ``Handles._lock`` (fh table), ``ChangeFeed._lock``
   (our pending uploads), ``SizePrefetch._lock``, ``Manifest._lock`` (its SQLite),
   ``LocalFile._state_lock``, ``ServerContent._lock`` (the size-lock table),
   ``ContentCache._lock`` and ``Flight``'s condition, ``DropBehind._lock``
   (dropbehind.py: a download's offsets; taken after ``Flight``'s condition is
   released, never with it), ``AttrStore._lock``
   (its one SQLite connection; writes do not fsync, ``synchronous=NORMAL``),
   ``ListingChanges._lock`` (fs/changes.py: two counters, taken at the start
   and end of a change, never held across it), and in the FUSE layer
   dirfill.py's ``_listings_lock`` (listings kept and made ahead).

Per-file locks that are held across I/O, each waited on only by callers
wanting that same file: a file's ``LocalFile.lock`` over its upload, a
``ServerContent`` size lock over one file's file-info or download (single
flight), and the content cache's flights. ``RecordCache._refresh_lock`` is
held across the records export by the background refresher (or the very first
load, when there is nothing to show); every other caller keeps reading the
current index, and only a slot-empty check waits for a refresh past the TTL.
``ChangeFeed._poll_lock`` makes polls one at a time and is held across the
poll's logging export and its filtered records export (by the poller thread,
or at mount); nobody else waits on it.
"""
