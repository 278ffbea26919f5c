"""Output of the small commands (``unsent``, ``retry``, ``trash``, ``restore``) that survives a closed pipe.

``redcapfs unsent --json | head`` closes the pipe early; Python would then print
a BrokenPipeError traceback (at the write, or at the final flush). Here a closed
pipe silently sends the rest of the output nowhere, and the command still
finishes its work: ``retry | head -1`` must not stop between an upload and the
removal of its spool entry.
"""

from __future__ import annotations

import os
import sys


def say(text: str = "", err: bool = False) -> None:
    """Print a line to stdout (or stderr); a reader that went away is not an error."""
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        _silence(stream)


def finish(code: int) -> int:
    """Flush stdout before the interpreter does (where a closed pipe would print a traceback)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)
    return code


def quiet_pipe() -> None:
    """After a BrokenPipeError escaped a command: stdout to /dev/null, so the exit flush prints nothing."""
    _silence(sys.stdout)


def _silence(stream: object) -> None:
    """Point the stream's descriptor at /dev/null so later writes and the exit flush succeed."""
    try:
        fileno = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)
