"""``python -m redcapfs.sandbox``: see :mod:`redcapfs.sandbox.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
