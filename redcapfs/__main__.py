"""``python -m redcapfs`` is the ``redcapfs`` command."""

import sys

from redcapfs.cli import main

sys.exit(main())
