"""redcapfs: a REDCap project's file upload fields as a filesystem."""

__version__ = "0.1.0"
