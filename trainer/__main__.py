"""Entry point for `python -m trainer`."""

import gc
import sys

from trainer.cli import main

status = main()
# Leaving the interpreter collects every object torch, MLflow and matplotlib made, with nothing left
# to do; frozen, the final collection skips them (bench/README.md has the seconds it saves).
gc.freeze()
sys.exit(status)
