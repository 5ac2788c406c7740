"""``python -m journal.cli``: the ``journal`` command (the same one as ``journal`` and ``python -m journal``)."""

import sys

from journal.cli.app import main

sys.exit(main())
