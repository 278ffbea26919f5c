"""The name REDCap stores for an upload (``redcapfs.redcapnames``): PHP's steps, then REDCap's.

The order is the one in REDCap's ``Files::uploadFile`` (stripslashes, then
``html_entity_decode(…, ENT_QUOTES)``, then removing ``'``) after PHP's multipart
parser (no percent-decoding, path cut at the last ``/`` or ``\\``); sources in
docs/sandbox.md. The last test uploads through the real HTTP path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sandbox_projects import longitudinal_project, seed

from redcapfs.client import HttpClient
from redcapfs.redcapnames import (
    cleaned_name,
    php_basename,
    php_filename_param,
    php_html_entity_decode,
    php_stripslashes,
    received_filename,
    stored_name,
)

CASES = [
    ("plain.pdf", "plain.pdf"),
    ("a&#39;b.pdf", "ab.pdf"),  # entities are decoded before the quotes go
    ("O'Brien.pdf", "OBrien.pdf"),
    ("&#x27;x&#039;.txt", "x.txt"),
    ("R&D report.pdf", "R&D report.pdf"),  # no entity, nothing decoded
    ("Q&amp;A.pdf", "Q&A.pdf"),
    ("&amp;#39;.txt", "&#39;.txt"),  # decoded once only, so no quote appears
    ("&lt;b&gt;.pdf", "<b>.pdf"),
    ("caf&eacute;.txt", "café.txt"),
    ("&apos;s.txt", "&apos;s.txt"),  # not an HTML 4.01 entity
    ("&amp.txt", "&amp.txt"),  # PHP needs the ';' (Python's html.unescape does not)
    ("&copy2024.txt", "&copy2024.txt"),
    ("&#0;.txt", "&#0;.txt"),  # code points HTML 4.01 forbids stay encoded
    ("&#128;.txt", "&#128;.txt"),
    ("&#9;tab.txt", "\ttab.txt"),
    ("a&#47;b.pdf", "a/b.pdf"),  # the path was cut before decoding: a slash can survive
    ("a&#92;b.pdf", "a\\b.pdf"),
    ("dir\\a.pdf", "a.pdf"),  # PHP keeps what follows the last backslash
    ("a\\'b.pdf", "b.pdf"),
    ('say "hi".txt', "say %22hi%22.txt"),  # the encoder's %22 is never decoded by PHP
    ("line\nbreak.txt", "line%0Abreak.txt"),
    ("Zoë €;x.pdf", "Zoë €;x.pdf"),
    ("trailing\\", 'trailing"'),  # the backslash escapes the closing quote for PHP's parser
]


@pytest.mark.parametrize(("sent", "stored"), CASES)
def test_stored_name(sent: str, stored: str) -> None:
    assert stored_name(sent) == stored


def test_the_steps() -> None:
    assert php_basename("C:\\Users\\x/y\\report.pdf") == "report.pdf" and php_basename("a.pdf") == "a.pdf"
    assert php_stripslashes("a\\'b\\\\c\\0d\\") == "a'b\\c\x00d"
    assert php_html_entity_decode("&quot;&amp;&#65;&#x42;&nbsp;&bogus;") == '"&AB\xa0&bogus;'
    assert cleaned_name("it&#39;s &amp; o'k.txt") == "its & ok.txt"
    assert received_filename('a"b') == "a%22b" and received_filename("x\\\\y") == "x\\y"


def test_reading_the_header_as_php_does() -> None:
    assert php_filename_param('form-data; name="file"; filename="a;b.txt"') == "a;b.txt"
    assert php_filename_param('form-data; name="file"; filename="a\\"b\\\\c.txt"') == 'a"b\\c.txt'
    assert php_filename_param("form-data; name=file; filename=bare.txt") == "bare.txt"
    assert php_filename_param("form-data; filename='single.txt'") == "single.txt"
    assert php_filename_param('form-data; FILENAME="first"; filename="last"') == "last"
    assert php_filename_param("form-data; name=\"file\"; filename*=UTF-8''x.txt") is None
    assert php_filename_param('form-data; name="file"') is None


def test_the_sandbox_stores_what_the_mount_predicts(sandbox, tmp_path: Path) -> None:
    seed(tmp_path / "sb-data", longitudinal_project(tmp_path / "src"))
    sb = sandbox("--token", "A" * 32)
    client = HttpClient(sb.url, "A" * 32, rate_limit=None)
    src = tmp_path / "up"
    src.write_bytes(b"bytes")
    try:
        for sent, stored in CASES:
            if not stored or "/" in stored:
                continue
            client.import_file("2", "consent_file", str(src), sent, event="baseline_arm_1")
            info = client.file_info("2", "consent_file", event="baseline_arm_1")
            assert info is not None and info.name == stored, sent
    finally:
        client.close()
