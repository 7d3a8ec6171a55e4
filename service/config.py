"""The service's one configuration: flags over environment over defaults, checked at start-up."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class ConfigError(ValueError):
    """A setting with a value the service cannot run with; the message names the setting."""


@dataclass(frozen=True)
class ServiceConfig:
    tracking_uri: str
    model_name: str = "mnist-3v7"
    alias: str = "champion"
    host: str = "[::]"
    port: int = 50051
    poll_seconds: float = 10.0
    metrics_port: int = 9090  # 0: no Prometheus endpoint
    max_batch: int = 1024
    max_message_bytes: int = 8 * 1024 * 1024
    grace_seconds: float = 10.0
    # Time between health turning NOT_SERVING and the port closing, so health checkers and load
    # balancers see the service leave before its connections are refused; counted inside the grace.
    drain_seconds: float = 1.0
    workers: int = 16


# setting name → (flag, environment variable, type)
_SETTINGS: dict[str, tuple[str, str, type]] = {
    "tracking_uri": ("--tracking-uri", "MLFLOW_TRACKING_URI", str),
    "model_name": ("--model-name", "MODEL_NAME", str),
    "alias": ("--alias", "MODEL_ALIAS", str),
    "host": ("--host", "GRPC_HOST", str),
    "port": ("--port", "GRPC_PORT", int),
    "poll_seconds": ("--poll-seconds", "POLL_SECONDS", float),
    "metrics_port": ("--metrics-port", "METRICS_PORT", int),
    "max_batch": ("--max-batch", "MAX_BATCH", int),
    "max_message_bytes": ("--max-message-bytes", "MAX_MESSAGE_BYTES", int),
    "grace_seconds": ("--grace-seconds", "GRACE_SECONDS", float),
    "drain_seconds": ("--drain-seconds", "DRAIN_SECONDS", float),
    "workers": ("--workers", "GRPC_WORKERS", int),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the MLflow registry's name@alias over gRPC, following the alias when it moves.",
    )
    for name, (flag, env, _) in _SETTINGS.items():
        default = DEFAULT_TRACKING_URI if name == "tracking_uri" else getattr(ServiceConfig, name)
        p.add_argument(flag, dest=name, help=f"${env} (default: {default})")
    return p


def _convert(name: str, raw: str, source: str) -> object:
    kind = _SETTINGS[name][2]
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{source}: expected {kind.__name__}, got {raw!r}") from None
    if isinstance(value, int | float) and value < 0:
        raise ConfigError(f"{source}: expected a non-negative number, got {raw}")
    return value


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Flags win over environment, environment over defaults."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values: dict[str, object] = {"tracking_uri": DEFAULT_TRACKING_URI}
    for name, (flag, env, _) in _SETTINGS.items():
        if args[name] is not None:
            values[name] = _convert(name, args[name], flag)
        elif environ.get(env):
            values[name] = _convert(name, environ[env], env)
    config = ServiceConfig(**values)  # type: ignore[arg-type]
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"--port/GRPC_PORT: expected 0..65535, got {config.port}")
    if config.poll_seconds <= 0 or config.max_batch < 1 or config.workers < 1:
        raise ConfigError("--poll-seconds, --max-batch and --workers must be positive")
    return config
