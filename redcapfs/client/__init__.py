"""REDCap API clients. See ``base`` for the interface.

``HttpClient`` talks to a real server (or the sandbox). Tests that want the
REDCap emulator without HTTP use ``redcapfs.sandbox.inprocess.InProcessClient``,
which calls the sandbox's API directly and reads answers as ``HttpClient`` does.
"""

from .base import FileInfo, RedcapClient
from .http import HttpClient

__all__ = ["FileInfo", "HttpClient", "RedcapClient"]
