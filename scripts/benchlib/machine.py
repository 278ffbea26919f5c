"""What machine the figures were taken on: cores, CPU, memory, kernel, Python, the FUSE bindings, tools.

Load average is recorded at the start and the end: the machine may be shared, and a figure taken while
other work ran is worth less; the min-max ranges show it too.
"""

from __future__ import annotations

import ctypes.util
import os
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any

from .tools import fio_version


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1 << 20), 1)
    return float("nan")


def page_reporting() -> bool:
    """Whether this machine hands its free memory back to a host (virtio-balloon's free page reporting).

    Feature bit 5 (VIRTIO_BALLOON_F_REPORTING) of a virtio device bound to ``virtio_balloon``: on such a
    machine a page freed a couple of seconds ago costs a host fault when it is next written
    (``tools.prefault`` says what the bench does about it).
    """
    root = "/sys/bus/virtio/devices"
    try:
        names = os.listdir(root)
    except OSError:
        return False
    for name in names:
        try:
            driver = os.path.basename(os.readlink(f"{root}/{name}/driver"))
            with open(f"{root}/{name}/features") as fh:
                bits = fh.read().strip()
        except OSError:
            continue
        if driver == "virtio_balloon" and len(bits) > 5 and bits[5] == "1":
            return True
    return False


def halt_polling() -> str | None:
    """How an idle CPU of this VM waits, when it runs the ``haltpoll`` idle driver (None otherwise).

    With the driver's polling turned off (``guest_halt_poll_ns=0``) an idle virtual CPU halts at once,
    and waking it costs a trip through the host: what every FUSE round trip between two CPUs pays twice
    (``onecpu.py``).
    """
    try:
        with open("/sys/devices/system/cpu/cpuidle/current_driver") as fh:
            driver = fh.read().strip()
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as fh:
            poll_ns = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    if driver != "haltpoll":
        return None
    return "off" if poll_ns == 0 else f"{poll_ns} ns"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def mount_binding() -> str:
    """The FUSE binding redcapfs's mount loads, seen in a fresh interpreter (so nothing here can mask it)."""
    probe = ("import sys, redcapfs.fuse_ops; "
             "print(' '.join(m for m in ('mfusepy', 'fuse') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split()
    for module, dist in (("mfusepy", "mfusepy"), ("fuse", "fusepy")):
        if module in loaded:
            return f"{module} ({dist} {_version(dist)})"
    return "?"


def passthrough_binding() -> str:
    try:
        import passthrough  # scripts/ is on sys.path: the script's one binding import
    except (ImportError, OSError) as exc:  # the binding or libfuse missing: say so, the mounts will fail too
        return f"unavailable ({exc})"
    return str(passthrough.BINDING)


def _tool(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
    except OSError:
        return None
    return out.splitlines()[0].strip() if out else None


def describe() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _mem_gib(),
        "page_reporting": page_reporting(),
        "halt_polling": halt_polling(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "mount_binding": mount_binding(),
        "passthrough_binding": passthrough_binding(),
        "libfuse2": ctypes.util.find_library("fuse"),
        "libfuse3": ctypes.util.find_library("fuse3"),
        "curl": _tool(["curl", "--version"]),
        "fio": fio_version(),
        "loadavg_start": list(os.getloadavg()),
    }


def header(info: dict[str, Any]) -> str:
    """The lines printed above the table."""
    load = " ".join(f"{x:.2f}" for x in info["loadavg_start"])
    end = info.get("loadavg_end")
    return "\n".join([
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, kernel {info['kernel']}"
        + ("; free memory reported to the host (virtio-balloon)" if info.get("page_reporting") else "")
        + (f"; guest halt polling {info['halt_polling']}" if info.get("halt_polling") else ""),
        f"python {info['python']}; mount binding {info['mount_binding']}, passthrough binding "
        f"{info['passthrough_binding']}; libfuse2 {info['libfuse2']}, libfuse3 {info['libfuse3']}",
        f"{info['curl']}; {info['fio'] or 'fio missing'}",
        f"load average at start {load}" + (f", at end {' '.join(f'{x:.2f}' for x in end)}" if end else ""),
    ])
