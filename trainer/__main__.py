"""Entry point for `python -m trainer`."""

import gc
import sys

from trainer.cli import main

code = main()
# The run is ended and flushed by now. Freezing the heap spares the interpreter's exit a collection
# over every torch and MLflow object, which is slow and does nothing for the run (bench/README.md).
gc.freeze()
sys.exit(code)
