"""A parsed API call: form parameters as sent, plus the spooled upload of a file import."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("json", "csv", "xml")


@dataclass
class Upload:
    """The multipart ``file`` part, already spooled to disk (or discarded when too large).

    ``filename`` is the part's ``filename`` parameter as PHP reads it (see
    ``redcapfs.redcapnames.php_filename_param``), not yet cleaned by REDCap.
    """

    filename: str
    content_type: str
    path: Path | None
    size: int
    too_large: bool = False


@dataclass
class ApiRequest:
    """Form parameters (every value as sent) plus the spooled upload, if any."""

    params: dict[str, list[str]] = field(default_factory=dict)
    upload: Upload | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return name in self.params

    def array(self, name: str) -> list[str]:
        """PHP-style arrays: ``name[0]=a&name[1]=b``, ``name[]=a``, or ``name=a,b``."""
        indexed: list[tuple[int, str]] = []
        out: list[str] = []
        pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
        for key, values in self.params.items():
            match = pattern.match(key)
            if match:
                pos = int(match.group(1)) if match.group(1) else 1 << 30
                indexed.extend((pos, v) for v in values)
            elif key == name:
                for value in values:
                    out.extend(v.strip() for v in value.split(",") if v.strip())
        indexed.sort(key=lambda p: p[0])
        return [v for _, v in indexed] + out

    @property
    def return_format(self) -> str:
        """``returnFormat``, else ``format``, else xml (REDCap's documented fallback)."""
        fmt = (self.get("returnFormat") or self.get("format") or "xml").lower()
        return fmt if fmt in FORMATS else "xml"

    @property
    def format(self) -> str:
        """``format`` (json, csv or xml), xml when absent or unknown: the data format of exports."""
        fmt = (self.get("format") or "xml").lower()
        return fmt if fmt in FORMATS else "xml"
