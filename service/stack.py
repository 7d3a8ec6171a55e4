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

from service.config import DEFAULT_TRACKING_URI


def alias_holder(uri: str, name: str, alias: str) -> str | None:
    try:
        version = MlflowClient(uri, uri).get_registered_model(name).aliases.get(alias)
    except MlflowException:
        return None  # no such registered model yet
    return None if version is None else str(version)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.stack",
        description="Train if the alias holds no model, then serve it over gRPC and run the MLflow UI. "
        "Environment: MLFLOW_TRACKING_URI, MODEL_NAME, MODEL_ALIAS, GRPC_PORT, MLFLOW_UI_PORT.",
    )
    parser.add_argument("--recipe", help="recipe to train when the alias is empty (default: the trainer's)")
    args = parser.parse_args(argv)
    uri = os.environ.setdefault("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    name, alias = os.environ.get("MODEL_NAME", "mnist-3v7"), os.environ.get("MODEL_ALIAS", "champion")
    ui_port, grpc_port = os.environ.get("MLFLOW_UI_PORT", "5000"), os.environ.get("GRPC_PORT", "50051")
    held = alias_holder(uri, name, alias)
    if held is None:
        recipe = ["--recipe", args.recipe] if args.recipe else []
        print(f"== {name}@{alias} holds no model yet: training {args.recipe or 'the default recipe'} into {uri}")
        sys.stdout.flush()
        trained = subprocess.run([sys.executable, "-m", "trainer", "--model-name", name, "--alias", alias, *recipe])
        if trained.returncode != 0:
            return trained.returncode
    else:
        print(f"== {name}@{alias} is version {held}: serving it", flush=True)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                ui_port,
            ]
        ),
        subprocess.Popen([sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", grpc_port]),
    ]
    print(
        f"\n== gRPC service on localhost:{grpc_port}, MLflow UI on http://localhost:{ui_port}\n"
        f"   try:  .venv/bin/python -m service.client samples -n 10\n"
        f"         .venv/bin/python -m service.client info\n"
        f"         .venv/bin/python -m trainer --recipe mlp --force-promote   # the service switches version\n"
        f"   Ctrl-C stops both.\n",
        flush=True,
    )
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
