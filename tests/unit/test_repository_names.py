"""How File Repository listings and a record named ``.repository`` become path components (docs/names.md)."""

from __future__ import annotations

from redcapfs import names
from redcapfs.fs.repository import build_listing, duplicate_name


def test_later_documents_of_one_name_get_their_doc_id_before_the_extension() -> None:
    rows = [{"doc_id": 12, "name": "protocol.pdf"}, {"folder_id": 3, "name": "Protocols"},
            {"doc_id": 5, "name": "protocol.pdf"}, {"doc_id": 7, "name": "Protocols"}, {"doc_id": 9, "name": "README"}]
    listing = build_listing(rows)
    assert sorted(listing) == sorted(["Protocols", "protocol.pdf", "protocol [doc 12].pdf", "Protocols [doc 7]",
                                      "README"])
    assert listing["protocol.pdf"].doc_id == 5  # the oldest keeps the name
    assert listing["Protocols"].is_dir and listing["Protocols"].folder_id == 3
    assert duplicate_name(".bashrc", 4) == ".bashrc [doc 4]"


def test_repository_names_with_slashes_are_escaped_like_record_files() -> None:
    listing = build_listing([{"doc_id": 1, "name": "a/b.txt"}])
    assert list(listing) == ["a%2Fb.txt"] and listing["a%2Fb.txt"].name == "a/b.txt"


def test_a_record_named_like_the_repository_folder_round_trips_escaped() -> None:
    for record, component in ((".repository", "%2Erepository"), ("%2Erepository", "%252Erepository"),
                              ("1001", "1001"), (".x", ".x")):
        assert names.encode_record(record) == component
        assert names.decode_record(component) == record
