"""``python -m journal``: the ``journal`` command (see :mod:`journal.cli`)."""

import sys

from journal.cli import main

sys.exit(main())
