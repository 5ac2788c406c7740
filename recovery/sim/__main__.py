"""``python -m recovery.sim``: serve the simulator (see :func:`recovery.sim.server.main`)."""

import sys

from recovery.sim.server import main

sys.exit(main())
