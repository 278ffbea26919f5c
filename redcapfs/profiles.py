"""Named profiles in ``config.toml``: which server, where its token comes from, default options.

Several projects (often on one REDCap server, each with its own token) are
easier to mount by name: ``redcapfs mount study1 ~/redcap/study1``. The file
is ``$REDCAPFS_CONFIG``, else ``config.toml`` in the user's config folder
(platformdirs: ``~/.config/redcapfs`` on Linux, honouring ``XDG_CONFIG_HOME``)::

    default = "study1"            # used by `redcapfs mount MOUNTPOINT`

    [study1]
    url = "https://redcap.example.edu/api/"
    token_file = "~/.config/redcapfs/study1.token"   # mode 0600
    options = "ro,cache_size=1G"                      # or a list; -o on the command line comes after

    [study2]
    url = "https://redcap.example.edu/api/"
    token_command = ["pass", "show", "redcap/study2"] # run without a shell; its stdout is the token
    # keyring = true              # or this: the system keyring, service "redcapfs", user "study2"

The file is read, never written. It runs ``token_command``, so a file that
other users can change is refused; one holding a token itself (``token =``)
must also be unreadable to them. Tokens are fetched in ``tokensource.py``.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redcapfs.credentials import CredentialError

log = logging.getLogger(__name__)

URL_VAR = "REDCAP_API_URL"
CONFIG_VAR = "REDCAPFS_CONFIG"
_KEYS = {"url", "token_file", "token_command", "keyring", "token", "options"}


class ProfileError(CredentialError):
    """The config file is unsafe or wrong, or a profile does not exist; the message says what to fix."""


@dataclass
class Profile:
    """One ``[NAME]`` table of the config file."""

    name: str
    url: str
    token_file: str | None = None
    token_command: list[str] | None = None
    keyring: str | None = None  # the keyring user name (``keyring = true``: the profile's name)
    token: str | None = field(default=None, repr=False)
    options: list[str] = field(default_factory=list)

    def token_source(self) -> str:
        """Where the token comes from, in words (never the token)."""
        if self.token_file:
            return f"file {self.token_file}"
        if self.token_command:
            return f"command {self.token_command[0]}"
        if self.keyring:
            return f"keyring (service redcapfs, user {self.keyring})"
        if self.token:
            return "the config file"
        return "REDCAP_API_TOKEN or a prompt"

    def public(self, default: bool) -> dict[str, Any]:
        """The row of ``redcapfs profiles --json``: no token, ever."""
        return {"name": self.name, "url": self.url, "default": default, "token_source": self.token_source(),
                "token_file": self.token_file, "token_command": self.token_command, "keyring": self.keyring,
                "options": self.options}


@dataclass
class Config:
    """The parsed config file (empty when there is none)."""

    path: Path
    profiles: dict[str, Profile]
    default: str | None = None

    def get(self, name: str) -> Profile:
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ProfileError(f"no profile {name!r} in {self.path} (profiles: {known}; see `redcapfs profiles`)")
        return self.profiles[name]


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$REDCAPFS_CONFIG``, else ``<user config folder>/redcapfs/config.toml``."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_VAR, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("redcapfs", appauthor=False)) / "config.toml"


def load(path: Path | None = None) -> Config:
    """Read and check the config file; a missing file is an empty config."""
    path = config_path() if path is None else path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return Config(path, {})
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{path} is not valid TOML: {exc}") from None
    config = _parse(path, data)
    _check_mode(path, st, any(p.token for p in config.profiles.values()))
    return config


def _check_mode(path: Path, st: os.stat_result, holds_token: bool) -> None:
    """Others must not change a file whose commands we run, nor read one that holds a token."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (os.getuid(), 0):
        raise ProfileError(f"refusing {path}: it is owned by uid {st.st_uid}, not by you")
    if mode & 0o022:
        raise ProfileError(f"refusing {path}: other users can change it (mode {mode:04o}) and it says which "
                           f"commands give tokens; fix with: chmod go-w {path}")
    if holds_token and mode & 0o044:
        raise ProfileError(f"refusing {path}: it holds a token and other users can read it (mode {mode:04o}); "
                           f"fix with: chmod 600 {path}")


def _parse(path: Path, data: dict[str, Any]) -> Config:
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ProfileError(f"{path}: default must be a profile name in quotes")
    profiles = {name: _profile(path, name, table) for name, table in data.items() if name != "default"}
    config = Config(path, profiles, default)
    if default is not None:
        config.get(default)
    return config


def _profile(path: Path, name: str, table: Any) -> Profile:
    where = f"{path}, profile [{name}]"
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: {name} = … is not a [{name}] table of a profile")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    url = table.get("url")
    if not isinstance(url, str) or "://" not in url:
        raise ProfileError(f"{where}: needs url = \"https://…/api/\"")
    sources = [key for key in ("token_file", "token_command", "keyring", "token") if table.get(key)]
    if len(sources) > 1:
        raise ProfileError(f"{where}: give one token source, not {' and '.join(sources)}")
    return Profile(name, url, token_file=_text(where, table, "token_file"), token_command=_command(where, table),
                   keyring=_keyring(where, name, table.get("keyring")), token=_text(where, table, "token"),
                   options=_options(where, table.get("options")))


def _text(where: str, table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProfileError(f"{where}: {key} must be a string")
    return str(Path(value).expanduser()) if key == "token_file" else value


def _command(where: str, table: dict[str, Any]) -> list[str] | None:
    value = table.get("token_command")
    if value is None:
        return None
    argv = shlex.split(value) if isinstance(value, str) else value
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ProfileError(f"{where}: token_command must be a command line or a list of strings")
    return [os.path.expanduser(argv[0]), *argv[1:]]


def _keyring(where: str, name: str, value: Any) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return name
    if isinstance(value, str) and value:
        return value
    raise ProfileError(f"{where}: keyring must be true or the keyring user name")


def _options(where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [",".join(value)] if value else []
    raise ProfileError(f"{where}: options must be \"a,b=c\" or a list of strings")


@dataclass
class Choice:
    """What a mount (or retry, unsent, status) runs against: a URL, and the profile it came from if any."""

    url: str
    profile: Profile | None = None


def no_url_message(path: Path) -> str:
    return (f"no REDCap API URL: give it (redcapfs mount URL MOUNTPOINT), or name a profile of {path} "
            f"(redcapfs mount NAME MOUNTPOINT), or set default = \"NAME\" in that file, or set {URL_VAR} "
            "(the token then comes from --token-file, REDCAP_API_TOKEN or a prompt)")


def choose(source: str | None, environ: Mapping[str, str] | None = None, config: Config | None = None) -> Choice:
    """A URL as given, a profile by name, else the default profile, else ``$REDCAP_API_URL``."""
    env = os.environ if environ is None else environ
    if source is not None and "://" in source:
        return Choice(source)
    config = load(config_path(env)) if config is None else config
    if source is not None and source not in config.profiles and ("/" in source or ":" in source):
        return Choice(source)  # a URL without its scheme: the URL check says what is wrong with it
    if source is not None:
        return Choice(config.get(source).url, config.get(source))
    if config.default:
        profile = config.get(config.default)
        return Choice(profile.url, profile)
    if env.get(URL_VAR, "").strip():
        return Choice(env[URL_VAR].strip())
    raise ProfileError(no_url_message(config.path))


def is_profile(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``name`` names a profile (a broken config counts as no: the caller then says what it needs)."""
    try:
        return name in load(config_path(environ)).profiles
    except ProfileError:
        return False


# ------------------------------------------------------------------ which project a profile opened


def _seen_path() -> Path:
    from redcapfs.locations import state_root_path

    return state_root_path() / "profiles.json"


def remember(name: str, url: str, project_id: str) -> None:
    """Note which project a profile's token opened (``STATE/profiles.json``, 0600), for ``unsent --profile``.

    Two profiles often share one server; only the project id tells their
    spooled files apart without asking REDCap.
    """
    from redcapfs.status import read_private_json, write_private_json

    path = _seen_path()
    seen = read_private_json(path) or {}
    if seen.get(name) == {"url": url, "project_id": str(project_id)}:
        return
    seen[name] = {"url": url, "project_id": str(project_id)}
    try:
        write_private_json(path, seen)
    except (OSError, TypeError, ValueError) as exc:
        log.warning("could not note the project of profile %s: %s", name, exc)


def known_project(name: str) -> str | None:
    """The project id a mount or retry with this profile opened last, if any did."""
    from redcapfs.status import read_private_json

    entry = (read_private_json(_seen_path()) or {}).get(name)
    return str(entry["project_id"]) if isinstance(entry, dict) and "project_id" in entry else None
