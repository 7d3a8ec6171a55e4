"""`make run`: train the default recipe if the alias is empty, then run the gRPC service and the MLflow UI."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from service.config import ServiceConfig, load_config
from service.errors import ConfigError


def alias_holder(config: ServiceConfig) -> str | None:
    uri = config.tracking_uri
    try:
        version = MlflowClient(uri, uri).get_registered_model(config.model_name).aliases.get(config.alias)
    except MlflowException:
        return None  # no such registered model yet
    return None if version is None else str(version)


def _train(config: ServiceConfig, recipe: str | None) -> int:
    print(f"== {config.model_name}@{config.alias} holds no model yet: training {recipe or 'the default recipe'}")
    sys.stdout.flush()
    flags = ["--model-name", config.model_name, "--alias", config.alias, *(["--recipe", recipe] if recipe else [])]
    return subprocess.run([sys.executable, "-m", "trainer", *flags]).returncode


def _wait_then_stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Until Ctrl-C or a child exits; then SIGTERM the others and give each its grace."""
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.launcher",
        description="Train if the alias holds no model, then serve it over gRPC and run the MLflow UI. "
        "The service's environment variables apply (MLFLOW_TRACKING_URI, MODEL_NAME, MODEL_ALIAS, GRPC_PORT, ...); "
        "MLFLOW_UI_PORT sets the UI's port (default: 5000).",
    )
    parser.add_argument("--recipe", help="recipe to train when the alias is empty (default: the trainer's)")
    args = parser.parse_args(argv)
    # Ctrl-C must stop everything even when started from a shell that ignores SIGINT (a background job
    # of a non-interactive shell does), which the children would inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        config = load_config([], os.environ)
    except ConfigError as err:
        parser.error(str(err))
    os.environ["MLFLOW_TRACKING_URI"] = config.tracking_uri  # the trainer writes where the service reads
    held = alias_holder(config)
    if held is None and (code := _train(config, args.recipe)) != 0:
        return code
    if held is not None:
        print(f"== {config.model_name}@{config.alias} is version {held}: serving it", flush=True)
    ui_port = os.environ.get("MLFLOW_UI_PORT", "5000")
    ui = ["mlflow", "server", "--backend-store-uri", config.tracking_uri, "--host", "127.0.0.1", "--port", ui_port]
    children = [subprocess.Popen([sys.executable, "-m", *ui]), subprocess.Popen([sys.executable, "-m", "service"])]
    page = f"   draw a digit on http://localhost:{config.http_port}/  (the REST API is under /v2)\n"
    print(
        f"\n== gRPC service on {config.host}:{config.port}, MLflow UI on http://localhost:{ui_port}\n"
        f"{page if config.http_port else ''}"
        "   try:  .venv/bin/python -m service.client samples -n 10\n"
        "         .venv/bin/python -m service.client info\n"
        "         .venv/bin/python -m trainer --recipe mlp --force-promote   # the service switches version\n"
        "   Ctrl-C stops both.\n",
        flush=True,
    )
    _wait_then_stop(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
