"""The close's end of a streamed upload (fs/streaming.py): finish it, check it, or send the file the ordinary way.

What the close does with a stream, by what became of it:

* still healthy: the body is ended at the file's size and REDCap's answer
  awaited; a 200 is then checked with one file-info call (our name, our size);
* REDCap answered an error (before or after the end), or the check disagrees:
  the file is sent again with a Content-Length; if that works, streaming stops
  for the mount (a server behind a proxy that drops chunked bodies);
* cut off before its end (an abort, a lost connection): nothing can be stored,
  so the file is sent the ordinary way, and streaming stays on;
* sent whole and no answer came: an upload whose outcome is unknown, as for any
  upload (the bytes are kept as unsent; ``redcapfs retry`` looks first).

An IP ban is never answered with another call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from redcapfs.errors import EmptySlot, IpBanned, RedcapError, TransportError
from redcapfs.fs.rules import describe

if TYPE_CHECKING:
    from collections.abc import Callable

    from redcapfs.fs.streaming import Stream, StreamedUploads

log = logging.getLogger(__name__)


def answered(exc: BaseException | None) -> bool:
    """An error answer from the server (which may be a proxy's refusal of chunked bodies), not a lost connection."""
    return (isinstance(exc, RedcapError) and exc.status is not None
            and not isinstance(exc, (TransportError, IpBanned)))


def verify(client: Any, stream: Stream, size: int) -> tuple[str | None, bool]:
    """(why the slot does not hold what was streamed, whether that is certain); (None, True) when it does.

    A file of **another name** there raises instead: a colleague's upload just
    after ours, not a proxy's damage, and sending ours again would replace it
    with no copy kept. The bytes stay unsent (``redcapfs retry`` looks first).
    """
    slot = stream.slot
    try:
        info = client.file_info(slot.record, slot.field, event=slot.event, repeat_instance=slot.instance)
    except EmptySlot:
        return "REDCap accepted the chunked upload but the slot is empty", True
    except RedcapError as exc:
        return f"the check after the chunked upload failed ({exc})", False
    if info is None:
        return "the server has no file-info call to check a chunked upload with", True
    if info.name and info.name != stream.name:
        raise RedcapError(f"after the chunked upload the slot holds {info.name!r}, not {stream.name!r}: someone "
                          "else's upload came after ours; not sending it again", content="file", action="import",
                          record=slot.record, field=slot.field, event=slot.event, instance=slot.instance)
    if info.size != size:
        return f"after the chunked upload the slot holds {info.size} bytes, not {size}", True
    return None, True


class Finish:
    """The last step of ``Uploader.upload`` for a streamed file (it replaces the ordinary Import File)."""

    def __init__(self, uploads: StreamedUploads, stream: Stream, name: str) -> None:
        self.uploads = uploads
        self.stream = stream
        self.name = name

    def __call__(self, ordinary: Callable[[], None], size: int) -> None:
        """End the body at ``size`` bytes and wait for REDCap; fall back to ``ordinary`` where that is safe."""
        stream, uploads = self.stream, self.uploads
        if not stream.healthy(size):
            stream.abort("the file did not end where it was streamed to")
            error = stream.wait()
            if isinstance(error, IpBanned):
                raise error
            if answered(error):  # the server refused it before the end (a proxy's 411, ...)
                uploads.resent(stream, ordinary, f"REDCap answered the chunked upload: {error}", turn_off=True)
            else:
                ordinary()  # aborted, or the connection failed: nothing can be stored, send it as always
            return
        stream.end_body(size)
        error = stream.wait()
        if error is None:
            why, certain = verify(uploads.client, stream, size)
            if why is None:
                uploads.streamed()
                log.info("%s: streamed upload of %d bytes confirmed", describe(stream.slot, stream.name), size)
                return
            uploads.resent(stream, ordinary, why, turn_off=certain)
            return
        if isinstance(error, IpBanned):
            raise error
        if answered(error):
            uploads.resent(stream, ordinary, f"REDCap answered the chunked upload: {error}", turn_off=True)
            return
        if not stream.body_done:
            ordinary()  # cut off before its end: nothing stored
            return
        if isinstance(error, RedcapError):
            raise error  # sent whole, no answer: like any upload whose answer was lost (retry looks first)
        raise TransportError(f"the streamed upload failed: {error}")

    def close(self) -> None:
        """After the upload, whatever it did: a stream not finished stops mid-body."""
        self.stream.abort("the upload ended another way")
