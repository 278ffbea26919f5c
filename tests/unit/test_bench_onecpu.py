"""The bench's one-CPU pinning (scripts/benchlib/onecpu.py) on a real process with threads.

The one-CPU `find` figures mean something only if every thread of the daemon runs on the CPU the `find`
runs on, including threads the daemon makes after it was pinned (libfuse starts workers on demand).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from benchlib import onecpu

CHILD = """
import sys, threading, time
stop = threading.Event()
def churn():  # keeps making short-lived threads, as a daemon starting workers would
    while not stop.is_set():
        t = threading.Thread(target=time.sleep, args=(0.001,)); t.start(); t.join()
for _ in range(4):
    threading.Thread(target=stop.wait, daemon=True).start()
threading.Thread(target=churn, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()  # pinned now: make one more thread and report where it may run
import os
out = []
t = threading.Thread(target=lambda: out.append(sorted(os.sched_getaffinity(0)))); t.start(); t.join()
print(out[0], flush=True)
stop.set()
"""

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: nothing to pin")


def threads_affinity(pid: int) -> list[set[int]]:
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.append(os.sched_getaffinity(int(tid)))
        except ProcessLookupError:
            continue
    return found


def test_pin_moves_every_thread_and_the_threads_made_after() -> None:
    where = onecpu.cpu()
    assert where is not None
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        assert len(threads_affinity(proc.pid)) >= 6
        onecpu.pin(proc.pid, where)
        time.sleep(0.05)  # the churning thread has made many threads since
        assert all(a == {where} for a in threads_affinity(proc.pid))
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == f"[{where}]"
    finally:
        proc.kill()
        proc.wait()


def test_a_child_started_on_one_cpu_runs_there() -> None:
    where = onecpu.cpu()
    out = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                         preexec_fn=onecpu.child_on(where), capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[{where}]"
    assert onecpu.child_on(None) is None


def test_pin_of_a_process_that_is_gone_says_so() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(FileNotFoundError):
        onecpu.pin(proc.pid, 0)
