"""The body of an Import File: form fields, then the file read from disk block by block.

requests-toolbelt's ``MultipartEncoder`` copies every byte of the file into
its own buffer and out again (about 35 ms of CPU per 256 MiB on the dev
machine, over half of what reading the file costs). This body sends the same
bytes (the framing and headers are rendered by urllib3's ``RequestField`` as
the encoder renders them; tests compare the two) with the file read into one
reused buffer. ``__len__`` gives requests the Content-Length, so the body is
never sent chunked (PHP behind some servers needs the length).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator, Sequence

from urllib3.fields import RequestField

BLOCK = 1 << 20  # what the adapter asks for per read (transport.CHUNK)


def _part_head(boundary: str, field: RequestField, mime: str | None = None) -> bytes:
    field.make_multipart(content_type=mime)
    return f"--{boundary}\r\n".encode() + field.render_headers().encode("utf-8")


def form_frame(boundary: str, fields: Sequence[tuple[str, str]], name: str, filename: str,
               mime: str) -> tuple[bytes, bytes]:
    """(every byte before the file's, every byte after it) of a form whose last part is the file."""
    head = b"".join(_part_head(boundary, RequestField(name=k, data=v)) + v.encode("utf-8") + b"\r\n"
                    for k, v in fields)
    head += _part_head(boundary, RequestField(name=name, data=b"", filename=filename), mime)
    return head, f"\r\n--{boundary}--\r\n".encode()


class FileForm:
    """One multipart/form-data body: ``fields`` (name, value), then ``fh`` as the file part named ``name``."""

    def __init__(self, fields: Sequence[tuple[str, str]], name: str, filename: str, fh: io.BufferedReader, size: int,
                 mime: str, on_sent: Callable[[int], None] | None = None, boundary: str | None = None) -> None:
        self.boundary = boundary or uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._head, self._tail = form_frame(self.boundary, fields, name, filename, mime)
        self._fh, self._size, self._on_sent = fh, size, on_sent
        self._buf = bytearray(BLOCK)
        self._stage = 0  # 0 head, 1 file, 2 tail, 3 done
        self.file_bytes = 0  # of the file sent so far

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:  # requests streams a body that is iterable and has a length
        while block := self.read(BLOCK):
            yield bytes(block)

    def read(self, size: int = -1) -> bytes | memoryview:
        """The next piece: the head, then the file in blocks of up to ``size``, then the tail; ``b""`` at the end.

        A file block is a view of the reused buffer, valid until the next read
        (urllib3 sends each piece before it reads the next).
        """
        if self._stage == 0:
            self._stage = 1
            return self._head
        if self._stage == 1:
            want = min(size if 0 < size < BLOCK else BLOCK, self._size - self.file_bytes)
            view = memoryview(self._buf)[:want]
            n = self._fh.readinto(view) if want else 0
            if n:
                self.file_bytes += n
                if self._on_sent is not None:
                    self._on_sent(self.file_bytes)
                return view[:n]
            if self.file_bytes != self._size:
                raise OSError(f"the file changed size while it was sent ({self.file_bytes} of {self._size} bytes)")
            self._stage = 2
        if self._stage == 2:
            self._stage = 3
            return self._tail
        return b""
