"""Fixtures for the WebDAV share tests (helpers in davhelp.py, named so it never shadows tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from davhelp import Share, ensure_tools, start_share


@pytest.fixture(scope="session")
def tools() -> dict[str, str | None]:
    return ensure_tools()


@pytest.fixture
def share(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: ``share(sb, "records_ttl=0", args=("--cert", c, "--key", k), verify=ca)``."""
    started: list[Share] = []
    count = [0]

    def factory(sb: Any, *options: str, args: tuple[str, ...] = (), verify: str | bool = True,
                expect_fail: bool = False, source: str | None = None, env: dict[str, str] | None = None) -> Any:
        count[0] += 1
        result = start_share(sb, tmp_path / "state", tmp_path / f"webdav-{count[0]}.log", *options, args=args,
                             verify=verify, expect_fail=expect_fail, source=source, env=env)
        if isinstance(result, Share):
            started.append(result)
        return result

    yield factory
    for sh in started:
        sh.stop()
        assert "Traceback" not in sh.log, sh.log[-4000:]


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str, str]:
    """(cert, key, ca) for 127.0.0.1 from trustme, the project's test CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


