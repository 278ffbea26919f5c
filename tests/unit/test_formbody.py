"""The Import File body: byte for byte what requests-toolbelt's MultipartEncoder sends, without its copies."""

from __future__ import annotations

from pathlib import Path

import pytest
from requests_toolbelt import MultipartEncoder

from redcapfs.client.formbody import BLOCK, FileForm

FIELDS = [("token", "A" * 32), ("content", "file"), ("action", "import"), ("record", "1 0"), ("field", "doc")]
NAMES = ["a.pdf", "Ünïcode;x.pdf", 'a"b.txt', "O'Brien\\'s &amp; co.txt", "sp ace=%41.bin", "tab\there.txt"]


def body_of(form: FileForm) -> bytes:
    pieces = []
    while piece := form.read(BLOCK):
        pieces.append(bytes(piece))
    return b"".join(pieces)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 2 * BLOCK + 17])
def test_the_body_is_the_encoders_byte_for_byte(tmp_path: Path, name: str, size: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    with open(path, "rb") as fh:
        expected = MultipartEncoder(fields=[*FIELDS, ("file", (name, fh, "application/pdf"))],
                                    boundary="b0und").to_string()
    sent: list[int] = []
    with open(path, "rb") as fh:
        form = FileForm(FIELDS, "file", name, fh, size, "application/pdf", on_sent=sent.append, boundary="b0und")
        assert len(form) == len(expected)
        assert body_of(form) == expected
    assert form.content_type == "multipart/form-data; boundary=b0und"
    assert sent == sorted(sent) and (sent[-1] if sent else 0) == size


def test_a_file_that_shrinks_while_it_is_sent_is_an_error_not_a_short_body(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    with open(path, "rb") as fh:
        form = FileForm(FIELDS, "file", "f.bin", fh, 200, "application/octet-stream")
        with pytest.raises(OSError, match="changed size"):
            body_of(form)
