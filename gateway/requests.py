"""Moved to gateway/commands/ (issue 26 item 3: commands by registration). Kept for imports
written before the move (other branches of this round); new code imports gateway.commands."""
from gateway.commands import *  # noqa: F401,F403
from gateway.commands import __all__  # noqa: F401
