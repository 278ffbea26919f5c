"""The trash wired into the tree: every replace and delete through the mount keeps the version it removes.

Over the sandbox's API in-process (the model test's project); the server is
read back through the client, the kept bytes from the trash folder.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from treemodel_project import RecordsClock, make_client, make_tree, outcome, server_file

from redcapfs.spool import Spool
from redcapfs.trash import Left, Trash, TrashSettings
from redcapfs.tree import Tree

DOC = ("1", "doc", None)


@pytest.fixture
def mount(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Tree, Any, Spool, Trash]]:
    settings = getattr(request, "param", TrashSettings())
    clock = RecordsClock()
    client = make_client()
    trash = Trash(tmp_path / "trash", settings)
    tree, spool = make_tree(client, tmp_path, 1, trash=trash)
    try:
        yield tree, client, spool, trash
    finally:
        tree.shutdown()
        clock.restore()
        client.close()


def kept(trash: Trash) -> list[tuple[str, str, Left, bytes]]:
    return [(e.target.name, e.why, e.left, e.data_path.read_bytes()) for e in trash.entries()]


def overwrite(tree: Tree, path: str, data: bytes) -> int | None:
    fh = tree.open(path, os.O_WRONLY | os.O_TRUNC)
    tree.write(fh, data, 0)
    _, code = outcome(tree.flush, fh)
    tree.release(fh)
    return code


def test_an_overwrite_keeps_the_replaced_version(mount: tuple) -> None:
    tree, client, _, trash = mount
    assert overwrite(tree, "/1/doc/a.pdf", b"second version") is None
    assert server_file(client, DOC) == ("a.pdf", b"second version")
    assert kept(trash) == [("a.pdf", "replaced", Left("a.pdf", 14), b"original")]


def test_rm_keeps_the_deleted_version(mount: tuple) -> None:
    tree, client, _, trash = mount
    tree.unlink("/1/doc/a.pdf")
    assert server_file(client, DOC) is None
    assert kept(trash) == [("a.pdf", "deleted", Left(None), b"original")]


def test_an_editor_save_keeps_the_old_version_once(mount: tuple) -> None:
    tree, client, _, trash = mount
    tree.rename("/1/doc/a.pdf", "/1/doc/a.pdf~")  # vim's backup
    fh = tree.create("/1/doc/a.pdf", 0o100644)
    tree.write(fh, b"edited", 0)
    tree.flush(fh)
    tree.release(fh)
    tree.unlink("/1/doc/a.pdf~")
    assert server_file(client, DOC) == ("a.pdf", b"edited")
    assert kept(trash) == [("a.pdf", "replaced", Left("a.pdf", 6), b"original")]


def test_a_move_to_another_record_keeps_nothing(mount: tuple) -> None:
    tree, client, _, trash = mount
    tree.rename("/1/doc/a.pdf", "/2/doc/a.pdf")
    assert server_file(client, ("2", "doc", None)) == ("a.pdf", b"original")
    assert kept(trash) == []


@pytest.mark.parametrize("mount", [TrashSettings(size=4)], indirect=True)
def test_a_version_larger_than_the_trash_refuses_the_overwrite_and_keeps_the_bytes(mount: tuple) -> None:
    tree, client, spool, trash = mount
    assert overwrite(tree, "/1/doc/a.pdf", b"second version") == errno.ENOSPC
    assert server_file(client, DOC) == ("a.pdf", b"original")
    assert [e.data_path.read_bytes() for e in spool.unsent()] == [b"second version"]
    assert outcome(tree.unlink, "/1/doc/a.pdf")[1] == errno.ENOSPC
    assert server_file(client, DOC) == ("a.pdf", b"original")
    assert kept(trash) == []


@pytest.mark.parametrize("mount", [TrashSettings(enabled=False)], indirect=True)
def test_trash_off_keeps_nothing(mount: tuple) -> None:
    tree, client, _, trash = mount
    assert overwrite(tree, "/1/doc/a.pdf", b"second version") is None
    tree.unlink("/1/doc/a.pdf")
    assert server_file(client, DOC) is None
    assert kept(trash) == []
