"""``python -m gateway.cli`` (tests, the systemd unit of a source checkout): the casegate CLI."""
import sys

from gateway.cli import main

sys.exit(main())
