"""REDCap API clients. See ``base`` for the interface.

``HttpClient`` talks to a real server (or the sandbox); ``MemoryClient`` keeps a
project in memory for fast unit tests of the filesystem model.
"""

from .base import FileInfo, RedcapClient
from .http import HttpClient
from .memory import MemoryClient

__all__ = ["FileInfo", "HttpClient", "MemoryClient", "RedcapClient"]
