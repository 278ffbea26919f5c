"""The file-name parser for REDCap's ``Content-Type: <mime>; name="…"`` header.

REDCap does not escape the name, so the table covers what naive parsers get
wrong: quotes and semicolons inside names, charset before or after, RFC 2231.
"""

from __future__ import annotations

import pytest

from redcapfs import errors as E
from redcapfs.client.contenttype import ContentType, filename_from_content_type, fix_mojibake, parse_content_type
from redcapfs.client.responses import CallContext, error_for, error_message

CASES = [
    # (header, mime, name, charset)
    ('application/pdf; name="a.pdf"', "application/pdf", "a.pdf", None),
    ('application/pdf; name="a.pdf";charset=UTF-8', "application/pdf", "a.pdf", "UTF-8"),
    ('application/pdf; name="a.pdf"; charset=UTF-8', "application/pdf", "a.pdf", "UTF-8"),
    ('text/plain; charset=UTF-8; name="a.pdf"', "text/plain", "a.pdf", "UTF-8"),
    ('text/plain;charset=utf-8;name="notes.txt"', "text/plain", "notes.txt", "utf-8"),
    ("text/plain; name=a.pdf", "text/plain", "a.pdf", None),
    ("text/plain; name=a.pdf;charset=UTF-8", "text/plain", "a.pdf", "UTF-8"),
    ('image/jpeg; name="mugshot-1.jpg"', "image/jpeg", "mugshot-1.jpg", None),
    ('Application/PDF; NAME="Upper.PDF"', "application/pdf", "Upper.PDF", None),
    # unescaped specials: the name runs to the last quote before an optional ;charset tail
    ('application/pdf; name="a;b".pdf"', "application/pdf", 'a;b".pdf', None),
    ('application/pdf; name="a;b".pdf";charset=UTF-8', "application/pdf", 'a;b".pdf', "UTF-8"),
    ('text/plain; name="say "hi".txt"', "text/plain", 'say "hi".txt', None),
    ('text/plain; name="report;v=2.txt";charset=UTF-8', "text/plain", "report;v=2.txt", "UTF-8"),
    ('text/plain; name="x; y="z"', "text/plain", 'x; y="z', None),
    ('text/plain; name="semi;colon;.txt"', "text/plain", "semi;colon;.txt", None),
    ('text/plain; name="trailing"; charset="UTF-8"', "text/plain", "trailing", "UTF-8"),
    ('text/plain; name="spaces in name .txt"', "text/plain", "spaces in name .txt", None),
    ('text/plain; name="a.txt"  ;  charset=UTF-8  ', "text/plain", "a.txt", "UTF-8"),
    # RFC 2231 / 5987
    ("application/pdf; name*=UTF-8''%C3%A9.pdf", "application/pdf", "é.pdf", None),
    ("application/pdf; name*=utf-8'en'%E2%82%AC%20rate.pdf", "application/pdf", "€ rate.pdf", None),
    ("application/pdf; name=\"fallback.pdf\"; name*=UTF-8''%C3%A9.pdf", "application/pdf", "é.pdf", None),
    ("application/pdf; name*=ISO-8859-1''caf%E9.pdf", "application/pdf", "café.pdf", None),
    # UTF-8 bytes that http.client decoded as Latin-1
    ('image/png; name="Ã©tude.png";charset=UTF-8', "image/png", "étude.png", "UTF-8"),
    ('image/png; name="café.png"', "image/png", "café.png", None),
    # no name
    ("application/pdf", "application/pdf", None, None),
    ("application/json; charset=utf-8", "application/json", None, "utf-8"),
    ('application/pdf; filename="not-this.pdf"', "application/pdf", None, None),
    ('application/pdf; name=""', "application/pdf", None, None),
    ("", "", None, None),
    (None, "", None, None),
    # cut header: no closing quote
    ('application/pdf; name="cut', "application/pdf", "cut", None),
]


@pytest.mark.parametrize("header,mime,name,charset", CASES)
def test_parse_content_type(header, mime, name, charset):
    assert parse_content_type(header) == ContentType(mime, name, charset)
    assert filename_from_content_type(header) == name


def test_fix_mojibake_leaves_real_latin1_alone():
    assert fix_mojibake("café") == "café"  # é alone is not valid UTF-8 when re-encoded
    assert fix_mojibake("Ã©") == "é"
    assert fix_mojibake("plain") == "plain"


ERROR_BODIES = [
    ('{"error": "There is no file to download for this record"}', "application/json",
     "There is no file to download for this record"),
    ('<?xml version="1.0" encoding="UTF-8" ?><hash><error>The record &quot;7&quot; does not exist</error></hash>',
     "text/xml", 'The record "7" does not exist'),
    ("ERROR: invalid event", "text/html; charset=utf-8", "invalid event"),
    ("<html><body>nope</body></html>", "text/html", None),
    ("[1, 2]", "application/json", None),
    ('{"count": 1}', "application/json", None),
]


@pytest.mark.parametrize("body,ctype,message", ERROR_BODIES)
def test_error_message_any_format(body, ctype, message):
    assert error_message(body.encode(), ctype) == message


CTX = CallContext("file", "export", "1", "f", "ev", 2)
CLASSIFY = [
    (403, "You do not have permissions to use the API", E.BadToken),
    (403, "You do not have API Import/Update privileges", E.NoRights),
    (400, 'The record "R" does not exist', E.NoSuchRecord),
    (400, "The record 'R' does not exist. It must exist to upload a file", E.NoSuchRecord),
    (400, "There is no file to download for this record", E.EmptySlot),
    (400, "There is no file to delete for this record", E.EmptySlot),
    (400, "The field 'x' does not exist or is not a 'file' field", E.NotAFileField),
    (400, "invalid event", E.InvalidEvent),
    (400, 'The uploaded file could not be saved because record "9" is locked.', E.Locked),
    (400, "The uploaded file exceeded the maximum file size limit of 1 MB for File Upload fields.", E.TooLarge),
    (400, "The field 'sig' is a signature field, which cannot be imported using the API", E.SignatureField),
    (400, "No valid file was uploaded", E.InvalidUpload),
    (400, "There was a problem with the uploaded file", E.InvalidUpload),
    (400, 'The value of the parameter "content" is not valid', E.BadRequest),
    (500, "boom", E.ServerError),
    (503, "busy", E.ServerError),
    (404, "Not Found", E.ProtocolError),
    (405, "Method Not Allowed", E.ProtocolError),
]


@pytest.mark.parametrize("status,message,cls", CLASSIFY)
def test_error_for_classifies_and_keeps_context(status, message, cls):
    exc = error_for(status, ("ERROR: " + message).encode(), "text/html", CTX)
    assert type(exc) is cls
    assert exc.status == status and exc.record == "1" and exc.field == "f" and exc.event == "ev"
    assert exc.instance == 2 and exc.content == "file" and exc.action == "export"
    if cls is not E.ProtocolError:
        assert exc.message == message


def test_html_page_is_a_protocol_error():
    exc = error_for(404, b"<!DOCTYPE html><html><title>Not here</title></html>", "text/html; charset=utf-8", CTX)
    assert isinstance(exc, E.ProtocolError)
    assert "does not answer like a REDCap API (HTTP 404, text/html)" in exc.message
