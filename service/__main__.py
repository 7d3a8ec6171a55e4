"""Entry point for `python -m service`."""

import gc
import logging
import os
import sys

from service.config import check_store, load_config
from service.errors import ConfigError

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# The follower retries with its own backoff; MLflow's long built-in HTTP retries would stall a poll.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
# A service's log is read in files and container logs, where progress bars are noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Models are checked and loaded by service.loading without MLflow's loader; should anything reach
# that loader, it refuses pickles too.
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
try:
    config = load_config()
    check_store(config)
except ConfigError as err:
    print(f"python -m service: error: {err}", file=sys.stderr)
    sys.exit(2)

from service.server import serve  # noqa: E402  (after config: a bad setting fails before heavy imports)

try:
    code = serve(config)
except OSError as err:  # a port that cannot be bound
    print(f"python -m service: error: {err}", file=sys.stderr)
    code = 1
# Stopped and drained by now. Orchestrators wait for the exit itself, and the interpreter's last
# collection over torch's and MLflow's objects would take seconds of their grace period; frozen
# objects are left out of it (bench/README.md, "exit after stopped").
gc.freeze()
sys.exit(code)
