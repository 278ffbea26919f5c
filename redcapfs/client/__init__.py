"""REDCap API clients. See ``base`` for the interface."""

from .base import FileInfo, RedcapClient

__all__ = ["FileInfo", "RedcapClient"]
