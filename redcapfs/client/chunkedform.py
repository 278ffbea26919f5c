"""Import File with a body whose length is not known yet: sent chunked while the file is still being written.

A file written through the mount can be uploaded while it is written
(``fs/streaming.py``): its bytes are handed over as they reach the spool,
so the final length is unknown when the request starts and the body goes out
with ``Transfer-Encoding: chunked`` (requests does that for a body that is an
iterator without a length). The framing is the ordinary upload's
(``formbody.form_frame``: the same form fields, file part and closing
boundary), only the length is missing.

Ending the body early is the point of the design: if the pieces' iterator
raises (the writer broke the in-order pattern, the file was unlinked), the
exception leaves urllib3 mid-body, which closes the connection without the
closing boundary and without the zero-length last chunk, so the server sees an
incomplete request and stores nothing. The exception is re-raised to the
caller unchanged (it is no ``OSError``, which urllib3 would swallow).

Some servers do not accept chunked request bodies (PHP-FPM behind some Apache
setups gets an empty body); ``fs/streaming.py`` checks the result and sends the
file again with a Content-Length when the answer or the slot disagrees.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .formbody import form_frame
from .params import slot_params, upload_mime
from .responses import CallContext
from .transport import Transport

# Bytes per chunk where urllib3 frames the pieces (through a proxy: see directsend.py). urllib3 copies each
# chunk into its framing with the GIL held; a result of 128 KiB or more is a fresh mmap every time (glibc),
# which made that copy cost 0.1 s of CPU per 256 MiB, against 0.012 s below it. Where the form sends a
# piece itself, it sends it in slices of this size: the socket's timeout (urllib3 sends the body under the
# connect timeout) bounds each ``sendall`` whole, so a slow uplink needs only PIECE, not 1 MiB, per timeout.
PIECE = 120 << 10


class ChunkedFileForm:
    """One multipart/form-data body: ``fields``, then the file part filled from ``pieces`` as they come.

    On one of the client's own connections (``connection``, set by directsend.py while it sends this
    body) each piece is one chunk, framed here and sent ``PIECE`` at a time; otherwise urllib3 frames
    each ``PIECE`` as a chunk of its own.
    """

    sends_itself = True  # directsend.py lends it the connection

    def __init__(self, fields: Sequence[tuple[str, str]], name: str, filename: str, mime: str,
                 pieces: Iterable[bytes | memoryview], on_sent: Callable[[int], None] | None = None,
                 boundary: str | None = None, on_end: Callable[[int], None] | None = None) -> None:
        self.boundary = boundary or uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._head, self._tail = form_frame(self.boundary, fields, name, filename, mime)
        self._pieces = pieces
        self._on_sent = on_sent
        self._on_end = on_end  # told the file's size when its last byte was handed over
        self.file_bytes = 0  # of the file handed over so far
        self.connection: Any = None  # the urllib3 connection sending this body, where it lends itself

    def __iter__(self) -> Iterator[bytes | memoryview]:
        """The head, every non-empty piece, the tail: urllib3 sends each as one chunk."""
        yield self._head
        for piece in self._pieces:
            if not len(piece):
                continue  # an empty chunk would end the body
            self.file_bytes += len(piece)
            slices = [piece[at:at + PIECE] for at in range(0, len(piece), PIECE)]
            sock = getattr(self.connection, "sock", None)
            if sock is None:
                yield from slices  # urllib3 frames each as a chunk
            else:
                sock.sendall(b"%x\r\n" % len(piece))  # one chunk, sent a slice per sendall (each its own timeout)
                for part in slices:
                    sock.sendall(part)
                sock.sendall(b"\r\n")
                yield b""  # sent: urllib3 skips an empty chunk
            if self._on_sent is not None:
                self._on_sent(self.file_bytes)
        if self._on_end is not None:
            self._on_end(self.file_bytes)
        yield self._tail


class ChunkedUploads(Transport):
    """The chunked Import File, as a method of the client (``HttpClient`` inherits it)."""

    def import_file_stream(self, record: str, field: str, filename: str, pieces: Iterable[bytes | memoryview],
                           event: str | None = None, repeat_instance: int | None = None) -> None:
        """Upload the bytes ``pieces`` yields as ``filename``; never retried (not idempotent).

        Blocks until REDCap answers, which is after ``pieces`` ends. An
        exception raised by ``pieces`` aborts the request mid-body and comes out
        of this call as it was raised.
        """
        ctx = CallContext("file", "import", record, field, event, repeat_instance)
        fields = self._with_content(ctx, slot_params(ctx))
        # "writing" while the file is still written (`redcapfs unmount` waits for uploads, not for writers)
        transfer = self.stats.start_transfer("writing", record=record, event=event, field=field,
                                             instance=repeat_instance, name=filename, total=None)

        def ended(size: int) -> None:
            transfer.kind, transfer.total = "upload", size

        ok = False
        try:
            transfer.begin_attempt()
            form = ChunkedFileForm(fields, "file", filename, upload_mime(filename), pieces, on_sent=transfer.advance,
                                   on_end=ended)
            self._once(ctx, None, body=form, headers={"Content-Type": form.content_type})
            ok = True
        finally:
            self.stats.end_transfer(transfer, ok)
