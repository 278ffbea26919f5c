"""``redcapfs demo [MOUNTPOINT]``: the sandbox with the demo project, mounted, until Ctrl-C.

The sandbox runs in this process on 127.0.0.1 with a fresh random token and a
private data folder; the mount is the real ``redcapfs mount`` in the
background. Ctrl-C (or SIGTERM) unmounts, stops the server and removes the
demo's data: nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redcapfs.sandbox.config import SandboxConfig, TokenGrant
from redcapfs.sandbox.loaders import load_project
from redcapfs.sandbox.server import SandboxServer

HINTS = """\
redcapfs demo: the demo project is mounted at {mp}
  (a local sandbox REDCap API at {url}; its data is thrown away when the demo ends)

Things to try in another terminal:
  ls {mp}                                            records (odd names are escaped: redcapfs docs names)
  find {mp}/1002                                     events, file fields, instances, files
  ls -l {mp}/1001/screening_arm_1/consent_form/      exact sizes, nothing downloaded yet
  md5sum {mp}/1001/baseline_arm_1/mri_upload/*       one download, then served from the cache
  ls {mp}/1002/week_12_arm_1/ae_photo/               instances of a repeating form
  cp /etc/hostname {mp}/1003/baseline_arm_1/radiology_report/notes.txt   uploads on close
  rm {mp}/1003/baseline_arm_1/radiology_report/notes.txt                 deletes in REDCap
  mkdir {mp}/3001                                    creates a record
  rsync -a {mp}/ /tmp/redcap-copy/                  a full copy; run it twice, the second copies nothing
  `redcapfs docs semantics` says what each operation does.

Press Ctrl-C to unmount and stop.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redcapfs demo", description=__doc__.splitlines()[0])
    parser.add_argument("mountpoint", nargs="?", default=str(Path.home() / "redcap-demo"))
    parser.add_argument("-o", dest="options", action="append", default=[], help="mount options")
    parser.add_argument("--port", type=int, default=0, help="sandbox port (default: any free one)")
    parser.add_argument("--webdav", nargs="?", const="127.0.0.1:8808", metavar="ADDR",
                        help="serve the demo as a WebDAV share instead of mounting it (redcapfs docs webdav)")
    args = parser.parse_args(argv)
    if args.webdav:
        return _webdav_demo(args)
    mountpoint = Path(args.mountpoint).expanduser()
    created = not mountpoint.exists()
    mountpoint.mkdir(parents=True, exist_ok=True)
    try:
        with _demo_sandbox(args.port) as (server, token, data_dir):
            if not _mount(server.url, token, mountpoint, args.options, data_dir):
                return 1
            print(HINTS.format(mp=mountpoint, url=server.url), flush=True)
            _wait_for_signal()
            print("\nredcapfs demo: unmounting and stopping", flush=True)
            return 0 if _unmount(mountpoint, _demo_env(token, data_dir)) else 1
    finally:
        if created and mountpoint.is_dir() and not os.path.ismount(mountpoint):
            try:
                mountpoint.rmdir()
            except OSError:
                pass


@contextmanager
def _demo_sandbox(port: int) -> Iterator[tuple[SandboxServer, str, Path]]:
    """The sandbox with the demo project, a fresh token and a private data folder, all gone at the end."""
    data_dir = Path(tempfile.mkdtemp(prefix="redcapfs-demo-"))
    token = secrets.token_hex(16).upper()
    server: SandboxServer | None = None
    try:
        project = load_project(None, str(data_dir / "load"))
        config = SandboxConfig(tokens=[TokenGrant(token)])
        server = SandboxServer.from_project(project, data_dir / "store", config=config, port=port).start()
        yield server, token, data_dir
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _webdav_demo(args: argparse.Namespace) -> int:
    """The sandbox with the demo project, served by ``redcapfs serve webdav`` until Ctrl-C."""
    with _demo_sandbox(args.port) as (server, token, data_dir):
        argv = [sys.executable, "-m", "redcapfs", "serve", "webdav", server.url, "--addr", args.webdav,
                "--log-file", str(data_dir / "webdav.log")]
        for opt in args.options:
            argv += ["-o", opt]
        share = subprocess.Popen(argv, env=_demo_env(token, data_dir))  # prints url=, user=, password=, ready
        print("redcapfs demo: the demo project as a WebDAV share (redcapfs docs webdav); Ctrl-C stops it", flush=True)
        _wait_for_signal(share)
        share.send_signal(signal.SIGTERM)
        return share.wait()


def _demo_env(token: str, data_dir: Path) -> dict[str, str]:
    """The mount and its unmount share the demo's own state folder, which the demo removes at the end."""
    return dict(os.environ, REDCAP_API_TOKEN=token, REDCAPFS_STATE_DIR=str(data_dir / "state"))


def _unmount(mountpoint: Path, env: dict[str, str]) -> bool:
    """Unmount (lazily if busy); a mount that stays is said, with what to do, and makes the demo fail."""
    for extra in ([], ["--lazy"]):
        subprocess.run([sys.executable, "-m", "redcapfs", "unmount", str(mountpoint), *extra], env=env)
        if not os.path.ismount(mountpoint):
            return True
    print(f"redcapfs demo: {mountpoint} is still mounted (see the message above); unmount it with "
          f"`fusermount3 -u {mountpoint}` (redcapfs docs troubleshooting)", file=sys.stderr, flush=True)
    return False


def _mount(url: str, token: str, mountpoint: Path, options: list[str], data_dir: Path) -> bool:
    env = _demo_env(token, data_dir)
    argv = [sys.executable, "-m", "redcapfs", "mount", url, str(mountpoint),
            "--log-file", str(data_dir / "mount.log")]
    for opt in options:
        argv += ["-o", opt]
    result = subprocess.run(argv, env=env)
    return result.returncode == 0


def _wait_for_signal(child: subprocess.Popen | None = None) -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        if child is not None and child.poll() is not None:
            return
