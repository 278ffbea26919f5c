"""litmus, the WebDAV compliance suite, against the share's ``.repository/``: each result as docs/webdav.md says.

litmus makes its own collection ``litmus/`` under the URL it is given and
works inside it. It runs in the File Repository, the one place with free names
and folders; the tests that fail need what REDCap's API lacks (folder delete,
rename and move; dead properties), and docs/webdav.md names the reason for
each. The exact set is asserted, both ways, so a regression (or a fix) shows.
Each suite gets a fresh sandbox, since folders litmus makes cannot be deleted.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from davhelp import REPO, need

SUITES = ("basic", "copymove", "locks", "http")
LITMUS = Path("/usr/libexec/litmus")
HTDOCS = Path("/usr/share/litmus")  # litmus reads htdocs/foo from its working directory
_LINE = re.compile(r"^\s*(\d+)\.\s+([A-Za-z0-9_]+?)\.*\s+(pass|FAIL|SKIPPED|WARNING)\b")


def parse(output: str) -> dict[str, str]:
    """``"N name"`` -> pass / fail / skipped / warning, from litmus's own output (names repeat, numbers not)."""
    results = {}
    for line in output.splitlines():  # litmus redraws each line after a \r: splitlines() parts them
        match = _LINE.match(line)
        if match:
            results[f"{match.group(1)} {match.group(2)}"] = match.group(3).lower()
    return results


def documented() -> dict[tuple[str, str], str]:
    """(suite, "N name") -> result, from the table in docs/webdav.md; tests not in it must pass."""
    rows = {}
    text = (REPO / "docs" / "webdav.md").read_text()
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in SUITES:
            rows[(cells[0], cells[1])] = cells[2].lower()
    return rows


@pytest.mark.parametrize("suite", SUITES)
def test_litmus_suite_matches_the_documented_results(suite: str, sandbox, share, tools, tmp_path) -> None:
    need(tools, "litmus")
    sb = sandbox(name=f"litmus-{suite}")
    sh = share(sb, "records_ttl=0", "rate=off")
    # litmus reads htdocs/ from its working directory and writes debug.log there: a folder of the test's own
    work = tmp_path / "litmus"
    work.mkdir()
    (work / "htdocs").symlink_to(HTDOCS / "htdocs")
    run = subprocess.run([str(LITMUS / suite), sh.url + ".repository/", sh.user, sh.password], capture_output=True,
                         text=True, errors="replace", cwd=str(work), timeout=300)
    results = parse(run.stdout)
    assert "0 init" in results and "1 begin" in results, run.stdout + run.stderr
    listed = {test: result for (s, test), result in documented().items() if s == suite}
    expected = {test: listed.get(test, "pass") for test in results}
    assert results == expected, f"litmus {suite} differs from docs/webdav.md:\n{run.stdout}"
    assert set(listed) <= set(results), f"docs/webdav.md lists tests litmus {suite} did not run"
