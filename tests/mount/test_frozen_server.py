"""A frozen server costs a metadata operation one bounded wait (``-o timeout``), retries included.

The sandbox hangs every file-info call for ``HANG`` seconds, longer than the
mount's ``timeout`` but shorter than the mount's old total (one timeout per
attempt, three attempts). The first ``stat`` of a file asks for its size with
that call. It must come back (with an error: the size is not known) while the
first hanging call is still hanging: the sandbox writes a faulted call's
request-log line only when the hang ends, so "no line with ``fault: hang``"
is that fact, with no timed assertion. File transfers are not bounded in total
(only by the pause allowed between bytes), so a large download still succeeds
behind a slow link: that is tested in tests/unit/test_call_budget.py.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

TIMEOUT = 3  # -o timeout: the bound of one metadata operation
HANG = 8  # longer than TIMEOUT, shorter than three attempts of it
FILE = "1003/baseline_arm_1/mri_upload/mri_02.png"


def test_stat_returns_within_the_bound_while_the_server_still_hangs(sandbox: Any, mount: Any, load: Any) -> None:
    sb = sandbox("--log-level", "INFO", "--hang-seconds", str(HANG), "--fault", "content=file,action=export,do=hang")
    m = mount(sb, f"timeout={TIMEOUT}")
    try:
        os.stat(m.path / FILE)
        raise AssertionError("stat succeeded although every file call hangs")
    except OSError as exc:
        assert exc.errno == errno.EIO, exc
    assert any("fault: hanging" in line for line in sb.output), "the size was asked for, and the call hung"
    assert not sb.calls(fault="hang"), "stat returned before the first hanging call ended"
    assert "no answer within the call's bound of 3 s (-o timeout)" in m.log or "no answer in time" in m.log, m.log

    # The hangs end by themselves; the mount is still usable for what needs no file call.
    assert "1003" in os.listdir(m.path)
    deadline = time.monotonic() + 60
    while not sb.calls(fault="hang") and time.monotonic() < deadline:
        time.sleep(0.2)

