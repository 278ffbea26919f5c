"""Uploads that overlap the writes: a large new file's Import File starts while it is still being written.

Without this, ``cp`` of a large file into the mount spools every byte and then
uploads them all at close, so it takes the spool write plus the whole upload.
Here a file written from offset 0 in order (a real name created here, or an
existing one opened with O_TRUNC), by one writer, starts its Import File in a
background thread once ``stream_upload`` bytes (``-o stream_upload``, 8 MiB
by default) are written. The body goes out chunked
(``client/chunkedform.py``), fed from the spool file as the writes arrive.
The writes keep going to the spool exactly as before: the spool is what an
unsent file, ``redcapfs retry`` and crash recovery rely on.

What happens when:

* Before the first byte: the slot check of the create (or the open), the
  rights probe, and the change feed's conflict rule as far as it is known
  (``SlotModel.version``). Nothing else is needed yet: REDCap cannot store a
  file before its request is complete, so a stream cut off before its end
  changes nothing on the server.
* At the flush (the ``close``), ``Uploader.upload`` does everything it does
  before any upload (the conflict check, the trash keeping the version it
  replaces, the change feed told of our own upload, ``mark_sending``) and
  then calls ``Finish`` (``fs/streamend.py``) instead of the ordinary Import File: the
  last bytes, the closing boundary and the zero chunk go out, and the close
  waits for REDCap's answer. Errors reach ``close()`` as before.
* The trash's and the change feed's steps run at the end on purpose: a
  colleague's upload into the slot during a long write is exactly what the
  trash must keep, and the feed matches our log row by time.

Anything that breaks the pattern aborts the stream: a write anywhere but at the
end, ftruncate, a second writer, a rename or unlink of the file while open,
the last close without a flush. The body's iterator then raises
:class:`StreamAborted`, the connection is closed mid-body (no closing
boundary, no zero chunk: the server stores nothing) and the close uploads the
file the ordinary way. A crash or ``kill -9`` mid-stream leaves what a crash
mid-write left before: the spool entry (never marked final, nothing attempted),
and nothing on the server.

Some servers do not take chunked request bodies (PHP-FPM behind some Apache
setups gets an empty body, some proxies answer 411). So after a streamed
upload one file-info call checks that the slot holds our name and exact size.
If REDCap answered an error, or the check disagrees, the file is sent again the
ordinary way (Content-Length) from the spool; if that one succeeds, the stream
was the problem and streaming stops for the rest of the mount (logged once;
``redcapfs status --json`` says so under ``stream_upload``).

Locking model. A stream's ``_cond`` guards its counters only (bytes written
in order, the final size, why it was aborted, whether its body ended); it is
a leaf, taken while the writer holds ``LocalFile.lock`` (lock order: the
file's lock, then this) and by the stream's own thread, which never takes the
file's lock. No lock is held across the network or the disk: the thread
reads the spool with ``os.preadv`` (1 MiB blocks into one reused buffer, its own descriptor) with no
lock held, and checks under ``_cond`` after each read that the stream was not
aborted meanwhile. A writer marks the stream aborted before its bytes change,
so a block that may hold changed bytes is never sent. A :class:`Watch` is
changed by its writer under ``LocalFile.lock``; only its move to broken (which
an unlink or a second writer makes without that lock) and the stream set on it
are also taken under ``StreamedUploads._lock``, so a stream is never started on
a broken watch and never missed by an abort. That lock also guards the set of
running streams and the mount's on/off state (a leaf); at most
``MAX_STREAMS`` run at once (a semaphore, never waited on), since each holds
one of the client's pooled connections for as long as its file is written.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redcapfs.fs.localfiles import FileState, LocalFile
from redcapfs.fs.rules import describe
from redcapfs.fs.slots import SlotModel
from redcapfs.fs.streamend import Finish

log = logging.getLogger(__name__)

STREAM_UPLOAD = 8 << 20  # the mount's default threshold (-o stream_upload)
BLOCK = 1 << 20  # bytes read from the spool at a time
WAKE = 4 << 20  # the sender wakes once this much more is written (or the file ends): fewer thread switches
MAX_STREAMS = 4  # at once: each holds a pooled connection for as long as its file is written (pool: 16)
Ordinary = Callable[[], None]  # the ordinary Import File of the file from the spool (Uploader)


class StreamAborted(Exception):
    """Raised inside the request body: the connection closes mid-body and the server stores nothing.

    Not an ``OSError``: urllib3 swallows some of those while sending a body.
    """


@dataclass
class Watch:
    """A writer's in-order writes so far (``LocalFile.stream``), and its stream once started."""

    end: int = 0  # bytes written in order from offset 0
    broken: str | None = None  # why this file will not stream (any more)
    stream: Stream | None = field(default=None, repr=False)


class Stream:
    """One streamed Import File: a thread sending the spool's bytes as they are written."""

    def __init__(self, client: Any, local: LocalFile, end: int, done: Callable[[Stream], None]) -> None:
        self.slot, self.name = local.slot, local.name
        self._client = client
        self._cond = threading.Condition(threading.Lock())
        self._end = end
        self._final: int | None = None
        self._why: str | None = None
        self._wake_at = 0  # the sender sleeps until _end reaches this
        self.body_done = False  # every byte handed to the connection: the server may have the file
        self.error: BaseException | None = None
        self._fd = os.open(local.entry.data_path, os.O_RDONLY)
        self._done = done
        self._thread = threading.Thread(target=self._run, name="stream-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def discard(self) -> None:
        """Never started after all (the pattern broke meanwhile)."""
        os.close(self._fd)

    def grow(self, end: int) -> None:
        """More bytes written in order (caller holds the file's lock)."""
        with self._cond:
            self._end = end
            if end >= self._wake_at:
                self._cond.notify_all()

    def abort(self, why: str) -> None:
        """Give up: the body's iterator raises at its next step.

        No effect once the close has ended the body (:meth:`end_body`): from
        then on it is an upload like any other, which an unlink does not stop.
        """
        with self._cond:
            if self._why is None and self._final is None:
                self._why = why
                self._cond.notify_all()

    def healthy(self, size: int) -> bool:
        """Whether the stream can still be finished as a file of ``size`` bytes."""
        with self._cond:
            return self._why is None and self.error is None and self._end == size and self._thread.is_alive()

    def end_body(self, size: int) -> None:
        """The file is complete at ``size`` bytes: send the rest and the closing boundary."""
        with self._cond:
            self._final = size
            self._cond.notify_all()

    def wait(self) -> BaseException | None:
        """REDCap's answer: None for a 200, else what the request raised."""
        self._thread.join()
        return self.error

    def _pieces(self) -> Iterator[memoryview]:
        """The file's bytes as they are written, read into one reused buffer.

        Each piece is a view of that buffer, valid until the next one is asked
        for: the form sends a piece (or urllib3 copies it into its framing) before
        it asks (a fresh 1 MiB object per read cost as much CPU as the send).
        """
        buf = memoryview(bytearray(BLOCK))
        sent = 0
        while True:
            with self._cond:
                if self._final is None and sent >= self._end:
                    self._wake_at = sent + WAKE
                while self._why is None and self._final is None and sent >= self._end:
                    self._cond.wait()
                if self._why is not None:
                    raise StreamAborted(self._why)
                if self._final is not None and sent >= self._final:
                    self.body_done = True
                    return
                want = min(BLOCK, self._end - sent)
            got = os.preadv(self._fd, [buf[:want]], sent)  # no lock: the bytes below _end are written and stay
            with self._cond:
                if self._why is not None:  # a writer changed bytes meanwhile: this block may hold them
                    raise StreamAborted(self._why)
            if got != want:
                raise StreamAborted(f"the spool file ended at {sent + got} bytes, not {sent + want}")
            yield buf[:want]  # sent before the next is asked for (client/chunkedform.py)
            sent += want

    def _run(self) -> None:
        try:
            self._client.import_file_stream(self.slot.record, self.slot.field, self.name, self._pieces(),
                                            event=self.slot.event, repeat_instance=self.slot.instance)
        except BaseException as exc:  # told to whoever finishes or drops the stream
            self.error = exc
            log.debug("%s: the streamed upload ended without success: %s", describe(self.slot, self.name), exc)
        finally:
            os.close(self._fd)
            self._done(self)


class StreamedUploads:
    """The mount's streamed uploads: watches new files' writes, starts their streams and finishes them."""

    def __init__(self, client: Any, slots: SlotModel, threshold: int) -> None:
        self.client = client
        self.slots = slots
        self.threshold = threshold if hasattr(client, "import_file_stream") else 0
        self._lock = threading.Lock()
        self._running: set[Stream] = set()
        self._slots = threading.BoundedSemaphore(MAX_STREAMS)
        self._off: str | None = None
        self._streamed = 0
        self._resent = 0
        self._publish()

    # ------------------------------------------------------------ watching the writes (caller holds local.lock)
    def watch(self, local: LocalFile) -> None:
        """A writer that starts empty (a new name, or O_TRUNC): it may stream once it is large enough."""
        if self.threshold > 0:
            local.stream = Watch()

    def before_write(self, local: LocalFile, offset: int) -> None:
        watch = local.stream
        if watch is not None and watch.broken is None and offset != watch.end:
            self._break(local, watch, f"a write at offset {offset}, not at the end ({watch.end})")

    def after_write(self, local: LocalFile, written: int) -> None:
        watch = local.stream
        if watch is None or watch.broken is not None:
            return
        watch.end += written
        if watch.stream is not None:
            watch.stream.grow(watch.end)
        elif watch.end >= self.threshold:
            self._start(local, watch)

    def broken(self, local: LocalFile, why: str) -> None:
        """The pattern is broken (ftruncate, a second writer, a rename, an unlink, a close): no stream."""
        watch = local.stream
        if watch is not None and watch.broken is None:
            self._break(local, watch, why)

    def _break(self, local: LocalFile, watch: Watch, why: str) -> None:
        with self._lock:  # against _start in the writer's thread: a stream is never set on a broken watch
            if watch.broken is not None:
                return
            watch.broken, stream = why, watch.stream
        if stream is not None:
            stream.abort(why)
            log.info("%s: streamed upload abandoned (%s); it is sent at close", describe(local.slot, local.name), why)

    def _start(self, local: LocalFile, watch: Watch) -> None:
        why = self._why_not(local)
        if why is not None:
            watch.broken = why
            log.debug("%s: not streamed: %s", describe(local.slot, local.name), why)
            return
        if not self._slots.acquire(blocking=False):
            return  # MAX_STREAMS are running: asked again at the next write
        try:
            stream = Stream(self.client, local, watch.end, self._ended)
        except OSError as exc:
            self._slots.release()
            watch.broken = f"the spool file cannot be read: {exc}"
            return
        with self._lock:
            started = watch.broken is None
            if started:
                watch.stream = stream
                self._running.add(stream)
        if not started:
            stream.discard()
            self._slots.release()
            return
        stream.start()
        log.info("%s: upload started while it is written (%d bytes so far)", describe(local.slot, local.name),
                 watch.end)

    def _why_not(self, local: LocalFile) -> str | None:
        if self._off is not None:
            return f"streaming is off: {self._off}"
        if local.state is not FileState.DIRTY or local.temp or local.fill is not None:
            return f"a {local.state.name} file"
        if self.slots.version(local.slot) > local.opened_version:
            return "someone else changed the slot after it was opened (the close decides)"
        if getattr(self.client, "fileinfo_supported", None) is False:
            return "the server has no file-info call to check a streamed upload with"
        return None

    def _ended(self, stream: Stream) -> None:
        with self._lock:
            self._running.discard(stream)
        self._slots.release()

    # ------------------------------------------------------------ the flush
    def take(self, local: LocalFile) -> Finish | None:
        """At a flush that sends (caller holds ``local.lock``): the stream to finish, if there is one.

        A flush ends the watch: after an upload the file is the server's
        version, and later writes are sent the ordinary way.
        """
        watch, local.stream = local.stream, None
        if watch is None:
            return None
        with self._lock:
            stream = watch.stream
        return None if stream is None else Finish(self, stream, local.name)

    def abort_all(self, why: str) -> None:
        """At unmount: every stream still running stops mid-body."""
        with self._lock:
            running = list(self._running)
        for stream in running:
            stream.abort(why)

    # ------------------------------------------------------------ outcomes
    def resent(self, stream: Stream, ordinary: Ordinary, why: str, turn_off: bool) -> None:
        """Send the file again the ordinary way; when that works and ``turn_off``, streaming stops."""
        log.warning("%s: %s; sending it again with a Content-Length", describe(stream.slot, stream.name), why)
        ordinary()
        with self._lock:
            self._resent += 1
            first = turn_off and self._off is None
            if first:
                self._off = why
        if first:
            log.warning("streamed uploads are off for the rest of this mount: %s (the ordinary upload worked)", why)
        self._publish()

    def streamed(self) -> None:
        with self._lock:
            self._streamed += 1
        self._publish()

    def _publish(self) -> None:
        stats = getattr(self.client, "stats", None)
        if stats is None or not hasattr(stats, "note"):
            return
        with self._lock:
            state = {"threshold": self.threshold or None, "on": self.threshold > 0 and self._off is None,
                     "off_reason": self._off, "streamed": self._streamed, "sent_again": self._resent}
        stats.note("stream_upload", state)
