"""``python -m sdworker.builder ARGS``: the same as ``sdworker bake ARGS``."""

import sys

from sdworker.builder.cli import bake_command

raise SystemExit(bake_command(sys.argv[1:]))
