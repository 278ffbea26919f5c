"""Run inside ``unshare -m`` by test_fstab.py: mount with mount(8) as root would, report what the kernel shows.

mount(8) runs its helpers with PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:...
whatever PATH the caller had, so ``redcapfs`` must be in one of those folders
(scripts/install-mount-helper puts a symlink in /usr/local/sbin). In this
private mount namespace /usr/local/sbin is a folder holding only that symlink,
so the machine's own /usr/local/sbin is left alone. Prints one JSON object:
mount(8)'s exit and stderr, the mountinfo fields, the first file's stat and
bytes (hex), whether a write was refused; then unmounts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def mountinfo(mountpoint: str) -> list[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mountpoint:
            sep = fields.index("-")
            return [fields[sep + 1], fields[sep + 2], fields[5]]
    return []


def first_file(root: str) -> Path:
    for folder, _dirs, files in sorted(os.walk(root)):
        if files:
            return Path(folder) / sorted(files)[0]
    raise SystemExit(f"no file under {root}")


def facts(mountpoint: str) -> dict[str, object]:
    path = first_file(mountpoint)
    st, dst = path.stat(), path.parent.stat()
    try:
        (path.parent / "probe-write.txt").write_bytes(b"x")
        write = "allowed"
    except OSError as exc:
        write = exc.strerror or "refused"
    return {"mountinfo": mountinfo(mountpoint), "path": path.relative_to(mountpoint).as_posix(),
            "uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o7777, "dir_mode": dst.st_mode & 0o7777,
            "bytes": path.read_bytes().hex(), "write": write}


def main() -> int:
    bin_dir, mountpoint, *mount_argv = sys.argv[1:]
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "--bind", bin_dir, "/usr/local/sbin"], check=True)
    out = subprocess.run(["mount", *mount_argv], capture_output=True, text=True, timeout=120)
    result: dict[str, object] = {"rc": out.returncode, "stderr": out.stderr}
    if out.returncode == 0:
        try:
            result.update(facts(mountpoint))
        finally:
            done = subprocess.run([sys.executable, "-m", "redcapfs", "unmount", mountpoint], capture_output=True,
                                  text=True, timeout=60)
            result["unmount_rc"] = done.returncode
            result["still_mounted"] = bool(mountinfo(mountpoint))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
