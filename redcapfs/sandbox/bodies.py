"""Request bodies: form posts into memory, multipart uploads onto disk in chunks.

File bytes never sit whole in memory: the ``file`` part goes through werkzeug's
sans-IO multipart decoder into a spool file in the store's ``tmp/``. The part's
file name is read from its raw Content-Disposition the way PHP reads it
(``redcapfs.redcapnames.php_filename_param``), not the way werkzeug decodes it,
because REDCap runs on PHP and the stored name depends on the difference.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn
from urllib.parse import parse_qs

from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData, State

from ..redcapnames import php_filename_param
from . import faulting
from .api import ApiRequest, Upload
from .faults import Fault
from .requestlog import describe
from .responses import ApiError
from .store import Store

CHUNK = 256 * 1024
MAX_FORM_BYTES = 512 * 1024 * 1024  # urlencoded bodies (record imports) are held in memory
MAX_FIELD_BYTES = 64 * 1024 * 1024
FILE_PART = "\0file"  # marks the data of the one ``file`` part (no form field can be named so)
# What may follow ``--boundary`` while it is not yet known whether it closes a part ("--", or blanks and a line break).
UNDECIDED = re.compile(rb"(?:-|[^\S\r\n]*\r?)")


class BodyReader:
    """Reads a request body by Content-Length or chunked transfer coding, counting bytes."""

    def __init__(self, rfile: io.BufferedIOBase | BinaryIO, length: int | None, chunked: bool) -> None:
        self.rfile = rfile
        self.remaining = length if length is not None else 0
        self.length = length
        self.chunked = chunked
        self.consumed = 0
        self._chunk_left = 0
        self._done = not chunked and not self.remaining
        self.largest_chunk = 0  # of a chunked body (the request log shows how a client framed it)

    def read(self, size: int = CHUNK) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end of the body."""
        if self._done:
            return b""
        data = self._read_chunked(size) if self.chunked else self._read_plain(size)
        self.consumed += len(data)
        return data

    def _read_plain(self, size: int) -> bytes:
        data = self.rfile.read(min(size, self.remaining))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self.remaining -= len(data)
        self._done = self.remaining == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line:  # not the last chunk: the client went away (or gave up) mid-body
                raise ConnectionError("client closed the connection mid-body")
            self._chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
            self.largest_chunk = max(self.largest_chunk, self._chunk_left)
            if self._chunk_left == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
        data = self.rfile.read(min(size, self._chunk_left))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self.rfile.readline(16)  # CRLF after the chunk
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def read_form(reader: BodyReader) -> ApiRequest:
    """An urlencoded body (limited to ``MAX_FORM_BYTES``: a record import is held in memory)."""
    if reader.length is not None and reader.length > MAX_FORM_BYTES:
        raise ApiError(413, "The request body is over the sandbox's limit for form posts")
    parts = []
    while True:
        chunk = reader.read(CHUNK)
        if not chunk:
            break
        parts.append(chunk)
        if reader.consumed > MAX_FORM_BYTES:
            raise ConnectionError("form body over the sandbox's limit")
    text = b"".join(parts).decode("utf-8", "replace")
    return ApiRequest(parse_qs(text, keep_blank_values=True))


class UploadSpool:
    """The ``file`` part on its way to disk; past the size limit the bytes are counted, not kept."""

    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.upload: Upload | None = None
        self.size = 0
        self._fh: BinaryIO | None = None

    def begin(self, filename: str, content_type: str) -> None:
        path = self.store.new_tmp_path()
        self._fh = open(path, "wb")  # noqa: SIM115  (written part by part, closed by finish/discard)
        self.upload = Upload(filename, content_type, path, 0)

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self._fh is None or self.upload is None:
            return
        if self.size > self.max_bytes:
            self.upload.too_large = True
            self.discard(keep_upload=True)
            return
        self._fh.write(data)

    def finish(self) -> Upload | None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.upload is not None:
            self.upload.size = self.size
        return self.upload

    def discard(self, keep_upload: bool = False) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.upload is not None and self.upload.path is not None:
            self.upload.path.unlink(missing_ok=True)
            self.upload.path = None
        if not keep_upload:
            self.upload = None


def discard_upload(upload: Upload | None) -> None:
    """Remove a spool file the API did not take into the store."""
    if upload is not None and upload.path is not None:
        upload.path.unlink(missing_ok=True)
        upload.path = None


class MultipartBody:
    """Streams one multipart body: fields into memory, the ``file`` part onto disk.

    The fault for the call is chosen when the file part starts (params usually
    come first), so ``drop`` can abort the upload midway as a broken network
    would: ``abort`` (which must raise) is called once enough of the body is in.
    """

    def __init__(self, reader: BodyReader, boundary: str, spool: UploadSpool,
                 choose: Callable[[dict[str, list[str]]], Fault | None], abort: Callable[[], NoReturn],
                 entry: dict[str, Any]) -> None:
        self.reader = reader
        self.decoder = MultipartDecoder(boundary.encode("latin-1"))
        self.spool = spool
        self.choose = choose
        self.abort = abort
        self.entry = entry
        self.req = ApiRequest()
        self.fault: Fault | None = None
        self.decided = False
        self._drop_at: int | None = None
        self._part: str | None = None
        self._buf = bytearray()
        self._marker = b"--" + self.decoder.boundary
        self._ended = False  # the whole body is in the decoder

    def read(self) -> tuple[ApiRequest, Fault | None, bool]:
        """The request, the fault chosen at the file part (if one came) and whether one was chosen."""
        try:
            self._events()
        except ValueError as exc:  # malformed multipart
            self.spool.discard()
            raise ApiError(400, f"There was a problem with the uploaded file ({exc})") from None
        except BaseException:  # a client gone mid-body: logged with the params that did arrive
            self.spool.discard()
            describe(self.entry, self.req)
            raise
        self.req.upload = self.spool.finish()
        self.entry["bytes"] = self.spool.size
        return self.req, self.fault, self.decided

    def _events(self) -> None:
        while True:
            if self._undecided():
                self._feed()
                continue
            event = self.decoder.next_event()
            if isinstance(event, NeedData):
                self._feed()
            elif isinstance(event, (Field, File)) and self._is_file_part(event):
                self._begin_file(event)
            elif isinstance(event, (Field, File)):
                self._part, self._buf = (event.name if isinstance(event, Field) else None), bytearray()
            elif isinstance(event, Data):
                self._data(event)
            elif isinstance(event, Epilogue):
                return

    def _undecided(self) -> bool:
        """Whether the decoder's buffer ends in ``--boundary`` and too few of the bytes after it.

        werkzeug's decoder (3.1.9) then takes the line break before the
        delimiter for data: a body that arrives in small pieces (chunked
        transfer coding) got a stray ``\\r`` at the end of a form value (a
        record ``1001\\r`` does not exist: HTTP 400) or of the file. So it is
        given more of the body first, as long as there is more.
        """
        if self._ended or self.decoder.state not in (State.DATA, State.DATA_START):
            return False
        buf = self.decoder.buffer
        at = buf.rfind(self._marker)
        return at >= 0 and UNDECIDED.fullmatch(buf, at + len(self._marker)) is not None

    def _feed(self) -> None:
        chunk = self._next_chunk()
        self._ended = not chunk
        self.decoder.receive_data(chunk if chunk else None)

    def _next_chunk(self) -> bytes:
        """The next piece of the body (``b""`` at its end); a ``drop`` fault aborts here."""
        if self._drop_at is not None and self.reader.consumed >= self._drop_at:
            self.entry["bytes"] = self.spool.size
            self.abort()
        return self.reader.read(CHUNK)

    def _stream_file(self) -> None:
        """The file part's bytes straight to the spool, until a delimiter may be near; then the decoder again.

        werkzeug's decoder copies and searches its whole buffer about five
        times for every chunk (as much CPU as the rest of an upload). Called
        while the decoder is inside the file part's data: bytes before any
        ``--boundary`` cannot be part of a delimiter, except a line break
        just before it, so they go to the spool here as they arrive; from two
        bytes before the first ``--boundary`` on, the decoder decides (a real
        delimiter, or data that only looks like one) exactly as before.
        """
        marker = b"--" + self.decoder.boundary
        keep = len(marker) + 1  # a line break and all but the marker's last byte may end a piece
        tail = bytes(self.decoder.buffer)
        self.decoder.buffer.clear()
        while True:
            at = tail.find(marker)
            if at >= 0:
                self.spool.write(tail[:max(0, at - 2)])
                self.decoder.buffer.extend(tail[max(0, at - 2):])
                return
            if len(tail) > CHUNK:  # many small pieces (chunked transfer coding): never copy a growing tail
                self.spool.write(memoryview(tail)[:-keep])
                tail = tail[-keep:]
            chunk = self._next_chunk()
            if not chunk or len(chunk) < 2 * keep or (tail + chunk[:keep]).find(marker) >= 0 \
                    or chunk.find(marker) >= 0:
                if not chunk:  # the body ended inside the file part: the decoder reports it
                    self.decoder.buffer.extend(tail)
                    self._ended = True
                    self.decoder.receive_data(None)
                    return
                tail += chunk  # a delimiter may be in here (or the piece is small): one copy
                continue
            self.spool.write(tail)
            self.spool.write(memoryview(chunk)[:-keep])
            tail = chunk[-keep:]

    def _is_file_part(self, event: Field | File) -> bool:
        """The first part named ``file`` that has a file name as PHP reads it (werkzeug may disagree)."""
        if event.name != "file" or self.spool.upload is not None:
            return False
        return php_filename_param(event.headers.get("Content-Disposition", "")) is not None

    def _begin_file(self, event: Field | File) -> None:
        self._part = FILE_PART
        filename = php_filename_param(event.headers.get("Content-Disposition", "")) or ""
        self.spool.begin(filename, event.headers.get("Content-Type", ""))
        self.fault, self.decided = self.choose(self.req.params), True
        if self.fault is not None and self.fault.do == "drop":
            self.entry["fault"] = "drop"
            describe(self.entry, self.req)
            self._drop_at = faulting.upload_drop_at(self.fault, self.reader.length, CHUNK)

    def _data(self, event: Data) -> None:
        if self._part == FILE_PART:
            self.spool.write(event.data)
            if event.more_data:
                self._stream_file()
            return
        if self._part is None:
            return  # another file part: ignored
        if len(self._buf) + len(event.data) > MAX_FIELD_BYTES:
            raise ValueError("form field too large")
        self._buf.extend(event.data)
        if not event.more_data:
            self.req.params.setdefault(self._part, []).append(bytes(self._buf).decode("utf-8", "replace"))
