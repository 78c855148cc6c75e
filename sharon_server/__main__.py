"""``python -m sharon_server`` runs the server (same as ``sharon-server``)."""

import sys

from sharon_server.main import main

sys.exit(main())
