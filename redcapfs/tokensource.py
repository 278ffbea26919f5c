"""A profile's token: from its 0600 file, its ``token_command``, the system keyring, or the usual sources.

Order: a ``--token-file`` (or ``-o token_file``) given on the command line,
else the profile's own source, else ``credentials.read_token`` (the
environment, then a prompt). ``token_command`` is run like rclone's
``--password-command``: no shell, stdin and stderr those of the user (so it
can ask for a passphrase), stdout the token. What it printed is never
repeated in a message, a log line or an exception, even when it is wrong.
The keyring is the optional ``keyring`` package (``pip install
'redcapfs[keyring]'``), service ``redcapfs``, user the profile's name.
"""

from __future__ import annotations

import logging
import subprocess

from redcapfs.credentials import CredentialError, check_token, read_token
from redcapfs.profiles import Profile

log = logging.getLogger(__name__)

KEYRING_SERVICE = "redcapfs"
COMMAND_TIMEOUT = 120.0  # seconds: a passphrase prompt may take a while, a hung command must not hang us
MAX_OUTPUT = 4096


def token_for(profile: Profile | None, token_file: str | None = None) -> str:
    """The API token for a mount, retry or serve (see the module docstring for the order)."""
    if token_file or profile is None:
        return read_token(token_file)
    if profile.token_file:
        return _checked(profile, read_token(profile.token_file))
    if profile.token_command:
        return _checked(profile, _run_command(profile))
    if profile.keyring:
        return _checked(profile, _from_keyring(profile))
    if profile.token:
        return _checked(profile, profile.token.strip())
    return read_token(None)


def _checked(profile: Profile, token: str) -> str:
    try:
        return check_token(token)
    except CredentialError:
        raise CredentialError(f"profile {profile.name}: the token from {profile.token_source()} is not 32 "
                              "hexadecimal characters") from None


def _run_command(profile: Profile) -> str:
    argv = profile.token_command or []
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, timeout=COMMAND_TIMEOUT, check=False,
                              shell=False)
    except FileNotFoundError:
        raise CredentialError(f"profile {profile.name}: token_command {argv[0]!r} was not found") from None
    except PermissionError:
        raise CredentialError(f"profile {profile.name}: token_command {argv[0]!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise CredentialError(f"profile {profile.name}: token_command {argv[0]!r} gave no token within "
                              f"{COMMAND_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        raise CredentialError(f"profile {profile.name}: token_command {argv[0]!r} failed (exit "
                              f"{done.returncode}); its own message, if any, is above")
    text = done.stdout[:MAX_OUTPUT].decode("utf-8", "replace").strip()
    if not text:
        raise CredentialError(f"profile {profile.name}: token_command {argv[0]!r} printed nothing")
    log.debug("API token read from the token_command of profile %s", profile.name)
    return text.splitlines()[0].strip()


def _from_keyring(profile: Profile) -> str:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise CredentialError(
            f"profile {profile.name} takes its token from the system keyring, but the keyring package is not "
            "installed: pipx inject redcapfs keyring (or pip install 'redcapfs[keyring]')") from None
    try:
        token = keyring.get_password(KEYRING_SERVICE, profile.keyring or profile.name)
    except KeyringError as exc:
        raise CredentialError(f"profile {profile.name}: the keyring could not be read: "
                              f"{type(exc).__name__}") from None
    if not token:
        raise CredentialError(
            f"profile {profile.name}: no token in the keyring for service {KEYRING_SERVICE}, user "
            f"{profile.keyring}; store it with: keyring set {KEYRING_SERVICE} {profile.keyring}")
    log.debug("API token read from the keyring for profile %s", profile.name)
    return token.strip()
