"""config.toml parsing and the token sources of a profile, over real files and real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redcapfs.credentials import CredentialError
from redcapfs.profiles import ProfileError, choose, config_path, load
from redcapfs.tokensource import token_for

TOKEN = "0123456789ABCDEF0123456789ABCDEF"
URL = "https://redcap.example.edu/api/"


def cfg(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_profiles_default_and_options(tmp_path: Path) -> None:
    path = cfg(tmp_path, f'default = "b"\n[a]\nurl = "{URL}"\noptions = ["ro", "cache_size=1G"]\n'
                         f'[b]\nurl = "{URL}x"\ntoken_command = "printf \'%s\' {TOKEN}"\nkeyring = false\n')
    config = load(path)
    assert config.get("a").options == ["ro,cache_size=1G"] and config.get("b").token_command == [
        "printf", "%s", TOKEN]
    assert choose(None, {}, config).profile.name == "b"  # type: ignore[union-attr]
    assert choose("a", {}, config).url == URL
    assert choose("https://other/api/", {}, config).profile is None
    assert token_for(config.get("b")) == TOKEN


@pytest.mark.parametrize("text, words", [
    ('[a]\nurl = "x"\n', "needs url"),
    (f'[a]\nurl = "{URL}"\ntoken_file = "/t"\nkeyring = true\n', "one token source"),
    (f'[a]\nurl = "{URL}"\ntokn = "x"\n', "unknown key(s) tokn"),
    (f'default = "zz"\n[a]\nurl = "{URL}"\n', "no profile 'zz'"),
    ('[a\n', "not valid TOML"),
])
def test_bad_configs_say_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ProfileError) as err:
        load(cfg(tmp_path, text))
    assert words in str(err.value)


def test_no_url_anywhere_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as err:
        choose(None, {"REDCAPFS_CONFIG": str(tmp_path / "missing.toml")})
    assert "REDCAP_API_URL" in str(err.value) and "missing.toml" in str(err.value)
    assert choose(None, {"REDCAPFS_CONFIG": str(tmp_path / "m.toml"), "REDCAP_API_URL": URL}).url == URL


def test_config_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert config_path({}) == tmp_path / "redcapfs" / "config.toml"


def test_modes_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="chmod 600"):
        load(cfg(tmp_path, f'[a]\nurl = "{URL}"\ntoken = "{TOKEN}"\n', mode=0o640))
    with pytest.raises(ProfileError, match="chmod go-w"):
        load(cfg(tmp_path, f'[a]\nurl = "{URL}"\n', mode=0o620))
    assert load(cfg(tmp_path, f'[a]\nurl = "{URL}"\n', mode=0o644)).get("a").url == URL  # no token: readable is fine
    link = tmp_path / "link.toml"
    link.symlink_to(cfg(tmp_path, f'[a]\nurl = "{URL}"\n'))
    with pytest.raises(ProfileError, match="cannot read"):
        load(link)


def test_token_command_output_never_in_messages(tmp_path: Path) -> None:
    secret = "s3cr3t-" + TOKEN
    path = cfg(tmp_path, f'[a]\nurl = "{URL}"\ntoken_command = ["sh", "-c", "echo {secret}; exit 4"]\n')
    with pytest.raises(CredentialError) as err:
        token_for(load(path).get("a"))
    assert "exit 4" in str(err.value) and secret not in repr(err.value) and TOKEN not in str(err.value)
    path = cfg(tmp_path, f'[a]\nurl = "{URL}"\ntoken_command = ["sh", "-c", "echo {secret}"]\n')
    with pytest.raises(CredentialError) as err:
        token_for(load(path).get("a"))
    assert "not 32 hexadecimal" in str(err.value) and secret not in str(err.value)
    path = cfg(tmp_path, f'[a]\nurl = "{URL}"\ntoken_command = ["{tmp_path}/nope"]\n')
    with pytest.raises(CredentialError, match="not found"):
        token_for(load(path).get("a"))


def test_keyring_missing_package_says_how_to_install(tmp_path: Path) -> None:
    """Run where ``import keyring`` fails (a module of that name that raises ImportError, first on the path)."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "keyring.py").write_text("raise ImportError('no keyring here')\n")
    path = cfg(tmp_path, f'[a]\nurl = "{URL}"\nkeyring = true\n')
    code = ("import sys; from redcapfs.profiles import load; from redcapfs.tokensource import token_for\n"
            f"try:\n    token_for(load(__import__('pathlib').Path({str(path)!r})).get('a'))\n"
            "except Exception as e:\n    print(e)\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{Path(__file__).resolve().parents[2]}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout
    assert "keyring package is not installed" in out and "pipx inject redcapfs keyring" in out


def test_profiles_command_never_prints_a_token(tmp_path: Path) -> None:
    path = cfg(tmp_path, f'[a]\nurl = "{URL}"\ntoken = "{TOKEN}"\n[b]\nurl = "{URL}"\ntoken_file = "~/t"\n')
    env = {**os.environ, "REDCAPFS_CONFIG": str(path), "REDCAPFS_STATE_DIR": str(tmp_path / "s")}
    for args in (["profiles"], ["profiles", "--json"]):
        done = subprocess.run([sys.executable, "-m", "redcapfs", *args], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0 and TOKEN not in done.stdout + done.stderr
    rows = json.loads(done.stdout)
    assert [(r["name"], r["token_source"]) for r in rows] == [("a", "the config file"),
                                                              ("b", f"file {Path.home()}/t")]
