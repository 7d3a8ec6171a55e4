"""Entry point for `python -m service`."""

import logging
import os
import sys

from service.config import ConfigError, load_config

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
# The follower retries with its own backoff; MLflow's long built-in HTTP retries would stall a poll.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
try:
    config = load_config()
except ConfigError as err:
    print(f"python -m service: error: {err}", file=sys.stderr)
    sys.exit(2)

from service.server import serve  # noqa: E402  (after config: a bad setting fails before heavy imports)

sys.exit(serve(config))
