"""cage-sf: train CAGE Challenge 4 blue agents with Sample Factory's asynchronous APPO + V-trace."""

import sys

__version__ = "0.1.0"

# With CybORG installed, Sample Factory imports `gym`, whose import prints a 4-line deprecation banner that
# `gym_notices` supplies; gym skips it when that import fails. Keep cage-sf's output to our own lines.
sys.modules.setdefault("gym_notices", None)
