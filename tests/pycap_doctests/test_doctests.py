"""PyCap 2.7's own doctests (recorded answers of a real REDCap) run against the sandbox over HTTP.

One sandbox process for the whole module, loaded with ``project.doctest_project``;
the doctests run in the order pytest's ``--doctest-modules`` runs them in PyCap's
own suite (modules by file name, then ``DocTestFinder``'s sorted order), with
PyCap's option flags (ELLIPSIS, NORMALIZE_WHITESPACE) and its namespace
(``proj``, ``TOKEN``). Surveys and the PDF export are not emulated: skipped.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
import redcap
import redcap.methods

from tests.conftest import SandboxProc, start_sandbox
from tests.pycap_doctests.project import doctest_project
from tests.sandbox_projects import seed

SKIPPED = {
    "redcap.methods.surveys": "surveys are not emulated by the sandbox",
    "redcap.methods.instruments.Instruments.export_pdf": "PDF export is not emulated by the sandbox",
}
TOKEN = "DC0FFEE0DC0FFEE0DC0FFEE0DC0FFEE0"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doctests() -> Iterator[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    names = sorted(m.name for m in pkgutil.iter_modules(redcap.methods.__path__))
    for name in names:
        module = importlib.import_module(f"redcap.methods.{name}")
        for test in finder.find(module, module.__name__):
            if test.examples:
                yield test


TESTS = list(_doctests())


def _skip_reason(test: doctest.DocTest) -> str | None:
    for prefix, reason in SKIPPED.items():
        if test.name == prefix or test.name.startswith(prefix + "."):
            return reason
    return None


@pytest.fixture(scope="module")
def doctest_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProc]:
    tmp = tmp_path_factory.mktemp("pycap-doctests")
    data_dir = seed(tmp / "data", doctest_project(tmp / "source"))
    sb = start_sandbox(["--token", f"{TOKEN}:full:sandbox_api"], data_dir, tmp / "requests.jsonl")
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def namespace(doctest_sandbox: SandboxProc) -> dict[str, Any]:
    return {"proj": redcap.Project(doctest_sandbox.url, TOKEN), "TOKEN": TOKEN}


def test_doctests_were_found() -> None:
    assert len(TESTS) >= 40, [t.name for t in TESTS]


@pytest.mark.parametrize("test", TESTS, ids=[t.name.removeprefix("redcap.methods.") for t in TESTS])
def test_pycap_doctest(test: doctest.DocTest, namespace: dict[str, Any]) -> None:
    reason = _skip_reason(test)
    if reason:
        pytest.skip(reason)
    test.globs = {**test.globs, **namespace}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)
