"""Entry point for `python -m trainer`. Flags are checked before MLflow, torchvision and matplotlib are
imported, so a mistyped flag is reported in a couple of seconds rather than after all of them load."""

import atexit
import os
import sys

from trainer.config import parse_config

config = parse_config(sys.argv[1:])  # exits 2 with a one-line error on bad flags

from trainer.cli import main  # noqa: E402

code = main(config=config)
# By now the run is ended and every write flushed. Tearing down torch, MLflow and the rest of the
# interpreter would take another ~2 s (measured) and do nothing for the run, so run the exit
# handlers, flush, and leave.
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
