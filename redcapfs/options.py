"""The ``redcapfs mount`` command line: ``-o`` options parsed and checked before anything is contacted.

Every value is checked here, so a typo or a nonsense number is refused with a
message naming the option, instead of a traceback (``cache_size=inf``) or a
silently odd mount (``records_ttl=nan``, ``batch=-3``). Ranges are wide: they
keep out values that cannot be meant (a negative time, a one-year timeout),
not unusual ones.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redcapfs import mount8
from redcapfs.client.ratelimit import max_burst
from redcapfs.tempnames import TempNames
from redcapfs.trash import TrashSettings

DAY = 86400.0


class MountError(Exception):
    """A refusal, with the message the user sees."""


@dataclass
class MountOptions:
    """The ``-o`` options (mount(8) style)."""

    read_only: bool = False
    allow_other: bool = False
    # mount(8)/fstab and other FUSE filesystems' options (redcapfs/mount8.py)
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    fsname: str | None = None
    token_file: str | None = None
    debug: bool = False
    kernel_flags: list[str] = field(default_factory=list)
    cache_size: int = 2 << 30
    records_ttl: float = 15.0
    content_ttl: float = 300.0
    poll: float = 30.0  # seconds between change-feed polls while in use; 0 = no change feed (TTLs)
    poll_idle: float = 600.0  # seconds between polls once the mount is idle
    slot_check: str = "recent"  # before a replace/delete: a log poll begun within 2 s, else one now (recent);
    # or ask REDCap each time (always); or trust the feed's last regular poll (feed)
    metadata_ttl: float = 0.0  # without the change feed: reload the design this often (0 = never)
    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    rate: float | None = 5.0  # requests per second; None is ``rate=off``
    burst: int | None = None  # calls that may go at once within rate × 60 a minute; None: client/ratelimit.py's
    timeout: float = 120.0
    batch: int = 0
    arm: int | None = None
    keep_cache: bool = False
    temp_names: str | None = None
    ca: str | None = None  # CA bundle to trust (client.trust: else REQUESTS_CA_BUNDLE, the system's)
    insecure_http: bool = False  # allow plain http beyond loopback (the token crosses unencrypted)
    trash: TrashSettings = field(default_factory=TrashSettings)
    stream_upload: int = 8 << 20  # bytes of a new file after which its upload overlaps the writes; 0 = off
    direct_writes: bool = True  # a lone write-only handle bypasses the page cache (fs/kernelpages.py)
    extra: dict[str, str] = field(default_factory=dict)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_CACHE = 64 << 40  # 64 TiB: more than any disk the cache could sit on


def parse_size(text: str) -> int:
    """``512M``, ``2G``, ``1048576``: a finite, non-negative number of bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = text[-1:] if text[-1:] in _SIZE_UNITS and not text[-1:].isdigit() else ""
    number = float(text[: len(text) - len(unit)])
    if not math.isfinite(number):
        raise ValueError("a size must be a finite number such as 512M or 2G")
    if number < 0:
        raise ValueError("a size cannot be negative")
    return int(number * _SIZE_UNITS[unit])


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A parser for a finite number in [low, high] (or (low, high] with ``low_open``)."""

    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if value < low or (low_open and value == low) or value > high:
            left = "(" if low_open else "["
            raise ValueError(f"must be in {left}{low:g}, {high:g}]")
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    """A parser for a whole number in [low, high]."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _rate(text: str) -> float | None:
    """Requests per second, or ``off`` for no limit (0 is refused: it would mean no requests at all)."""
    if text.strip().lower() == "off":
        return None
    value = float(text)
    if not math.isfinite(value) or value <= 0 or value > 10000:
        raise ValueError("must be a number of requests per second in (0, 10000], or off for no limit")
    return value


def _cache_size(text: str) -> int:
    value = parse_size(text)
    if value > MAX_CACHE:
        raise ValueError("more than 64T")
    return value


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError("use on or off")
    return value == "on"


def _slot_check(value: str) -> str:
    """``recent`` (the change feed's index, from a log poll begun at most 2 s ago, or made now: one call covers
    every upload of those 2 s), ``always`` (ask REDCap before each replace/delete: one file-info call each) or
    ``feed`` (trust the change feed's last regular poll: no call, a window of one poll interval);
    docs/SEMANTICS.md, "What the slot holds before an upload or delete"."""
    if value not in ("recent", "always", "feed"):
        raise ValueError("slot_check is recent, always or feed")
    return value


STREAM_MIN = 1 << 20  # smaller thresholds are refused: small files are sent whole at close, in one call


def _stream_upload(text: str) -> int:
    """``off``, or a size of at least 1M: from it on a new file's upload runs while it is still written."""
    if text.strip().lower() == "off":
        return 0
    value = parse_size(text)
    if not STREAM_MIN <= value <= MAX_CACHE:
        raise ValueError("must be off or a size from 1M (such as 8M or 64M)")
    return value


def _checked_temp_names(value: str) -> str:
    """Parse now, so a bad list is refused before anything is mounted."""
    TempNames.from_option(value)
    return value


# name -> (parser, attribute)
_VALUES: dict[str, Callable[[str], object]] = {
    "cache_size": _cache_size,
    "records_ttl": _number(0, DAY),
    "content_ttl": _number(0, 30 * DAY),
    "poll": _number(0, DAY),
    "poll_idle": _number(0, DAY),
    "metadata_ttl": _number(0, 30 * DAY),
    "attr_timeout": _number(0, 3600),
    "entry_timeout": _number(0, 3600),
    "rate": _rate,
    "burst": _whole(1, 300_000),
    "timeout": _number(0, 3600, low_open=True),
    "batch": _whole(0, 1_000_000),
    "arm": _whole(1, 1_000_000),
    "temp_names": _checked_temp_names,
    "ca": str,
    "slot_check": _slot_check,
    "stream_upload": _stream_upload,
    "direct_writes": _on_off,
}
_TRASH = ("trash", "trash_days", "trash_size")  # parsed together by TrashSettings.from_options
_FLAGS = {"ro": "read_only", "allow_other": "allow_other", "keep_cache": "keep_cache",
          "insecure_http": "insecure_http"}


def parse_options(values: list[str]) -> MountOptions:
    """Parse ``-o a,b=c`` strings; unknown options are an error (a typo must not be ignored)."""
    opts = MountOptions()
    trash: dict[str, str] = {}
    for value in values:
        for item in filter(None, value.split(",")):
            key, _, arg = item.partition("=")
            if key in _FLAGS and not arg:
                setattr(opts, _FLAGS[key], True)
            elif key == "rw" and not arg:
                opts.read_only = False
            elif key in _TRASH and arg:
                trash[key] = arg
            elif key in _VALUES and arg:
                try:
                    setattr(opts, key, _VALUES[key](arg))
                except ValueError as exc:
                    raise MountError(f"bad value for -o {key}={arg}: {_why(exc)}") from None
            elif _mount8(opts, key, arg):
                pass
            else:
                raise MountError(f"unknown mount option {item!r} (see `redcapfs mount --help`)")
    _check_burst(opts)
    try:
        opts.trash = TrashSettings.from_options(**trash)
    except ValueError as exc:
        raise MountError(f"bad value: {exc}") from None
    return opts


def _check_burst(opts: MountOptions) -> None:
    """A burst borrows from its minute (rate × 60 calls), so it needs a rate and at most half that minute."""
    if opts.burst is None:
        return
    if opts.rate is None:
        raise MountError(f"bad value for -o burst={opts.burst}: a burst needs a rate limit (rate=off has none)")
    most = max_burst(opts.rate)
    if opts.burst > most:
        raise MountError(f"bad value for -o burst={opts.burst}: at most {most:g} with rate={opts.rate:g} (half of "
                         f"the {opts.rate * 60:g} calls a minute the rate allows; REDCap bans an IP above its "
                         "page-hit limit per minute)")


def _mount8(opts: MountOptions, key: str, arg: str) -> bool:
    try:
        return mount8.apply(opts, key, arg)
    except ValueError as exc:
        raise MountError(f"bad value for -o {key}={arg}: {_why(exc)}") from None


def _why(exc: ValueError) -> str:
    """float()/int()'s own wording is for programmers; say what a value must look like."""
    text = str(exc)
    if text.startswith(("could not convert", "invalid literal")):
        return "not a number"
    return text


def check_url(url: str) -> str:
    """An http(s) URL with a host, checked before any token is read or any process started."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = url.split("@")[-1] if "@" in url else url  # never echo a user:password part
        raise MountError(f"the REDCap API URL must start with https:// (or http://) and name a host, "
                         f"e.g. https://redcap.example.edu/api/; got {shown!r}")
    return url


def build_parser() -> argparse.ArgumentParser:
    """``redcapfs mount``'s arguments (the token is never one of them)."""
    parser = argparse.ArgumentParser(
        prog="redcapfs mount",
        description="Mount a REDCap project's files. URL|PROFILE is the API URL or a profile of "
                    "~/.config/redcapfs/config.toml (`redcapfs profiles`; without it: the default profile, else "
                    "REDCAP_API_URL). The token comes from --token-file or -o token_file (mode 0600), else the "
                    "profile (its token_file, token_command or keyring), else REDCAP_API_TOKEN, else a hidden "
                    "prompt; never from an argument.",
        epilog="-o options: ro, allow_other, cache_size=2G, records_ttl=15, content_ttl=300, poll=30 (s between "
               "change-feed polls of REDCap's log; 0 = off), poll_idle=600, metadata_ttl=0, "
               "slot_check=recent|always|feed (what a slot holds before a replace or delete: from a log poll "
               "begun within 2 s, else made now; or one file-info call each time; or the last regular poll: a "
               "version a colleague uploaded within that window is not kept in the trash), attr_timeout=1, "
               "entry_timeout=1, rate=5 (requests/s; off = no limit), burst=N (calls that may go at once; "
               "any minute still holds at most rate×60), timeout=120 (s), batch=N (records per "
               "export; 0 = one export), arm=N (arm of records made by mkdir), keep_cache, temp_names=SPEC "
               "(redcapfs docs temp-names), ca=PATH (CA bundle to trust; default REQUESTS_CA_BUNDLE, "
               "CURL_CA_BUNDLE, else "
               "the system trust store), insecure_http (allow http:// beyond this machine; the token crosses "
               "unencrypted), trash=on|off, trash_days=7, trash_size=2G (the local trash of replaced and deleted "
               "versions), stream_upload=8M|off (a new file written in order starts its upload once this much is "
               "written, so the upload overlaps the writes; the close still waits for REDCap's answer), "
               "direct_writes=on|off (a file opened write-only while nothing else has it open bypasses the "
               "kernel's page cache, and so does every open of it meanwhile: mmap(MAP_SHARED) of it is ENODEV "
               "until the writer closes). "
               "HTTPS_PROXY/NO_PROXY are honoured (redcapfs docs troubleshooting). "
               "REDCAPFS_FUSE=2|3 picks libfuse2 or libfuse3 "
               "(default: libfuse3 if installed). `redcapfs docs semantics` says what each operation does "
               "(`redcapfs docs` lists the installed documentation). Also: " + mount8.MOUNT8_HELP + ".")
    parser.add_argument("source", nargs="?", metavar="URL|PROFILE",
                        help="the API URL (e.g. https://redcap.example.edu/api/) or a profile of "
                             "`redcapfs profiles`; without it: the default profile, else REDCAP_API_URL")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[], metavar="OPTIONS")
    parser.add_argument("--token-file", help="file holding the token (must not be group/world readable)")
    parser.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    parser.add_argument("--debug", action="store_true", help="log debug detail (never the token)")
    parser.add_argument("--log-file", help="log here (default: stderr in the foreground, "
                                           "the journal under systemd, else STATE/mount.log)")
    parser.add_argument("--read-only", action="store_true", help="the same as -o ro")
    parser.add_argument("--allow-other", action="store_true",
                        help="the same as -o allow_other: other local users may enter (modes default to umask=077)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="how much the log says (default info; --debug or -o debug = debug)")
    parser.add_argument("--token-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    return parser
