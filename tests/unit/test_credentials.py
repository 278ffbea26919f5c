"""Reading the API token: private file, environment, prompt, pipe; never echoed in a message."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from redcapfs import credentials
from redcapfs.credentials import CredentialError, read_token, read_token_from_fd

TOKEN = "0123456789abcdef0123456789ABCDEF"
OTHER = "F" * 32


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_a_token_file_others_can_use_is_refused(tmp_path: Path, mode: int) -> None:
    path = token_file(tmp_path, TOKEN, mode)
    with pytest.raises(CredentialError) as info:
        read_token(str(path), environ={})
    message = str(info.value)
    assert f"{mode:04o}" in message and "chmod 600" in message and TOKEN not in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_token_file_is_read(tmp_path: Path, mode: int) -> None:
    path = token_file(tmp_path, f"\n  {TOKEN}  \nsecond line ignored\n", mode)
    assert read_token(str(path), environ={"REDCAP_API_TOKEN": OTHER}) == TOKEN  # the file wins over env


def test_a_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialError) as info:
        read_token(str(tmp_path / "nope"), environ={"REDCAP_API_TOKEN": TOKEN})
    assert "nope" in str(info.value) and "No such file" in str(info.value)


def test_an_empty_token_file_and_a_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="empty"):
        read_token(str(token_file(tmp_path, " \n")), environ={})
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(CredentialError):
        read_token(str(folder), environ={})


@pytest.mark.skipif(os.getuid() == 0, reason="root reads any file")
def test_an_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    path = token_file(tmp_path, TOKEN, 0o000)
    with pytest.raises(CredentialError, match="cannot read"):
        read_token(str(path), environ={})


def test_token_from_the_environment() -> None:
    assert read_token(None, environ={"REDCAP_API_TOKEN": f" {TOKEN}\n"}, interactive=False) == TOKEN


def test_no_token_and_no_terminal_says_how_to_give_one() -> None:
    with pytest.raises(CredentialError) as info:
        read_token(None, environ={}, stdin=io.StringIO())  # a StringIO is not a tty
    message = str(info.value)
    assert "--token-file" in message and "REDCAP_API_TOKEN" in message


def test_an_empty_environment_variable_counts_as_unset() -> None:
    with pytest.raises(CredentialError, match="--token-file"):
        read_token(None, environ={"REDCAP_API_TOKEN": "  "}, interactive=False)


def test_a_terminal_gets_a_hidden_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[str] = []
    monkeypatch.setattr(credentials.getpass, "getpass", lambda prompt: prompts.append(prompt) or TOKEN + "\n")
    assert read_token(None, environ={}, interactive=True) == TOKEN
    assert prompts == ["REDCap API token: "]


def test_end_of_input_at_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    def eof(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr(credentials.getpass, "getpass", eof)
    with pytest.raises(CredentialError, match="no REDCap API token"):
        read_token(None, environ={}, interactive=True)


@pytest.mark.parametrize("bad", [
    "not-a-token-but-secret-anyway-123", TOKEN[:-1], TOKEN + "0", "G" * 32, TOKEN[:16] + " " + TOKEN[16:],
])
def test_a_malformed_token_is_refused_without_being_echoed(tmp_path: Path, bad: str) -> None:
    for source in ({"environ": {"REDCAP_API_TOKEN": bad}, "token_file": None},
                   {"environ": {}, "token_file": str(token_file(tmp_path, bad))}):
        with pytest.raises(CredentialError) as info:
            read_token(source["token_file"], environ=source["environ"], interactive=False)
        assert str(info.value) == "the token is not 32 hexadecimal characters"
        assert bad.strip() not in repr(info.value)


def test_token_through_a_pipe_closes_it() -> None:
    r, w = os.pipe()
    os.write(w, (TOKEN + "\nrest\n").encode())
    os.close(w)
    assert read_token_from_fd(r) == TOKEN
    with pytest.raises(OSError):
        os.fstat(r)


def test_token_through_a_pipe_without_newline_and_empty() -> None:
    r, w = os.pipe()
    os.write(w, TOKEN.encode())
    os.close(w)
    assert read_token_from_fd(r) == TOKEN
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(CredentialError, match="no REDCap API token"):
        read_token_from_fd(r)


def test_a_bad_token_through_a_pipe_is_not_echoed() -> None:
    r, w = os.pipe()
    os.write(w, b"secret-but-wrong\n")
    os.close(w)
    with pytest.raises(CredentialError) as info:
        read_token_from_fd(r)
    assert "secret-but-wrong" not in str(info.value)


# ------------------------------------------------------------------ more (write-faults brief)


def test_a_pipe_is_read_up_to_the_newline_without_waiting_for_eof() -> None:
    import threading

    r, w = os.pipe()
    os.write(w, (TOKEN + "\n").encode())  # the writer stays open
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(read_token_from_fd(r)), daemon=True)
    reader.start()
    reader.join(5)
    try:
        assert not reader.is_alive(), "read_token_from_fd waited for EOF after the token line"
        assert result == [TOKEN]
    finally:
        os.close(w)


def test_an_endless_pipe_is_bounded_and_not_echoed() -> None:
    r, w = os.pipe()
    junk = b"ab" * 5000  # no newline, longer than any token
    os.write(w, junk)
    os.close(w)
    with pytest.raises(CredentialError) as info:
        read_token_from_fd(r)
    assert "abab" not in str(info.value)


def test_a_closed_descriptor_is_a_credential_error() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(CredentialError, match=str(r)):
        read_token_from_fd(r)


def test_no_terminal_variants() -> None:
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError on a closed stream
    for stdin in (None, io.StringIO(), closed):
        with pytest.raises(CredentialError) as info:
            read_token(None, environ={}, stdin=stdin)
        assert "REDCAP_API_TOKEN" in str(info.value)


def test_a_0644_file_message_never_holds_the_token(tmp_path: Path) -> None:
    path = token_file(tmp_path, TOKEN + "\n", 0o644)
    with pytest.raises(CredentialError) as info:
        read_token(str(path), environ={"REDCAP_API_TOKEN": OTHER})  # no fallback to the environment
    assert TOKEN not in repr(info.value) and OTHER not in repr(info.value) and str(path) in str(info.value)
    path.chmod(0o600)
    assert read_token(str(path), environ={}) == TOKEN


def test_a_malformed_token_file_message_never_holds_the_content(tmp_path: Path) -> None:
    secret = "my-password-is-hunter2-not-a-token"
    path = token_file(tmp_path, secret + "\n")
    with pytest.raises(CredentialError) as info:
        read_token(str(path), environ={})
    text = str(info.value) + repr(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    assert "hunter2" not in text
