"""The service's one configuration: flags over environment over defaults, checked at start-up."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from service.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass(frozen=True)
class ServiceConfig:
    tracking_uri: str = DEFAULT_TRACKING_URI
    model_name: str = "mnist-3v7"
    alias: str = "champion"
    host: str = "127.0.0.1"
    port: int = 50051
    poll_seconds: float = 10.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9090  # 0: no Prometheus endpoint
    max_batch: int = 1024
    max_message_bytes: int = 8 * 1024 * 1024
    grace_seconds: float = 10.0
    # Time between health turning NOT_SERVING and the port closing, so health checkers and load
    # balancers see the service leave before its connections are refused; counted inside the grace.
    drain_seconds: float = 1.0
    http_host: str = "127.0.0.1"
    http_port: int = 8080  # 0: no HTTP side
    # Origins whose pages may call the HTTP API (CORS), comma-separated, or *; empty: none.
    cors_origins: str = ""
    http_idle_seconds: float = 60.0  # a connection that sends no request for this long is closed
    http_read_seconds: float = 10.0  # a request body must arrive within this
    # Clients are told to reconnect after this long (and given the grace to finish), so that long-lived
    # channels behind an L4 path spread over replicas started since; 0: never.
    max_connection_age_seconds: float = 300.0
    max_connection_age_grace_seconds: float = 30.0
    replica_name: str = ""  # names this server in GetModelInfo and the metrics; empty: the host name
    max_streams: int = 8
    stream_idle_seconds: float = 60.0  # a stream that sends no message for this long is ended
    max_in_flight: int = 64
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    token_file: str = ""
    # A second alias whose version answers the same images after the champion, only into the metrics.
    shadow_alias: str = ""
    shadow_share: float = 1.0  # of calls the shadow answers too
    shadow_queue_images: int = 1024  # images waiting for the shadow; past it, a call's are dropped (and counted)


# setting → (flag, environment variable, type, what it does)
_SETTINGS: dict[str, tuple[str, str, type, str]] = {
    "tracking_uri": ("--tracking-uri", "MLFLOW_TRACKING_URI", str, "MLflow tracking and registry store"),
    "model_name": ("--model-name", "MODEL_NAME", str, "registered model to serve"),
    "alias": ("--alias", "MODEL_ALIAS", str, "registry alias to follow"),
    "host": ("--host", "GRPC_HOST", str, "address to bind gRPC on; 0.0.0.0 or [::] for every interface"),
    "port": ("--port", "GRPC_PORT", int, "gRPC port; 0 picks a free one"),
    "poll_seconds": ("--poll-seconds", "POLL_SECONDS", float, "seconds between looks at the alias"),
    "metrics_host": ("--metrics-host", "METRICS_HOST", str, "address to bind the Prometheus endpoint on"),
    "metrics_port": ("--metrics-port", "METRICS_PORT", int, "Prometheus port; 0 turns the endpoint off"),
    "max_batch": ("--max-batch", "MAX_BATCH", int, "most images in one request, and in one forward pass"),
    "max_message_bytes": ("--max-message-bytes", "MAX_MESSAGE_BYTES", int, "largest gRPC message or HTTP body"),
    "grace_seconds": ("--grace-seconds", "GRACE_SECONDS", float, "time in-flight calls get to finish on SIGTERM"),
    "drain_seconds": ("--drain-seconds", "DRAIN_SECONDS", float, "time NOT_SERVING is shown before the port closes"),
    "http_host": ("--http-host", "HTTP_HOST", str, "address to bind HTTP (REST and the page) on"),
    "http_port": ("--http-port", "HTTP_PORT", int, "HTTP port for the REST API and the page; 0 turns HTTP off"),
    "cors_origins": (
        "--cors-origins",
        "CORS_ORIGINS",
        str,
        "origins allowed to call HTTP from a browser, comma-separated, or *",
    ),
    "http_idle_seconds": (
        "--http-idle-seconds",
        "HTTP_IDLE_SECONDS",
        float,
        "an HTTP connection idle this long is closed",
    ),
    "http_read_seconds": (
        "--http-read-seconds",
        "HTTP_READ_SECONDS",
        float,
        "time an HTTP request body gets to arrive",
    ),
    "max_connection_age_seconds": (
        "--max-connection-age-seconds",
        "MAX_CONNECTION_AGE_SECONDS",
        float,
        "a client connection is asked to reconnect after this long, so new replicas get calls; 0: never",
    ),
    "max_connection_age_grace_seconds": (
        "--max-connection-age-grace-seconds",
        "MAX_CONNECTION_AGE_GRACE_SECONDS",
        float,
        "time a connection past its age gets to finish its calls",
    ),
    "replica_name": ("--replica-name", "REPLICA_NAME", str, "this server's name in answers and metrics (a pod's name)"),
    "max_streams": ("--max-streams", "MAX_STREAMS", int, "open streams but health Watch; more get RESOURCE_EXHAUSTED"),
    "stream_idle_seconds": (
        "--stream-idle-seconds",
        "STREAM_IDLE_SECONDS",
        float,
        "a stream that sends no message this long ends with DEADLINE_EXCEEDED, freeing its slot",
    ),
    "max_in_flight": ("--max-in-flight", "MAX_IN_FLIGHT", int, "calls running or queued; more get RESOURCE_EXHAUSTED"),
    "tls_cert": ("--tls-cert", "GRPC_TLS_CERT", str, "PEM server certificate chain; with --tls-key turns TLS on"),
    "tls_key": ("--tls-key", "GRPC_TLS_KEY", str, "PEM private key of --tls-cert"),
    "tls_client_ca": ("--tls-client-ca", "GRPC_TLS_CLIENT_CA", str, "PEM CA; when set, clients need a certificate"),
    "token_file": ("--token-file", "GRPC_TOKEN_FILE", str, "file holding a bearer token every call must send"),
    "shadow_alias": (
        "--shadow-alias",
        "SHADOW_ALIAS",
        str,
        "a second alias (challenger) whose version answers calls' images after the served one, into the metrics only",
    ),
    "shadow_share": ("--shadow-share", "SHADOW_SHARE", float, "share of calls the shadow answers too, 0..1"),
    "shadow_queue_images": (
        "--shadow-queue-images",
        "SHADOW_QUEUE_IMAGES",
        int,
        "images that may wait for the shadow; a call's that do not fit are dropped and counted",
    ),
}
_DEFAULTS = {f.name: f.default for f in fields(ServiceConfig)}
_SHOWN_DEFAULTS = {"replica_name": "the host name"}  # empty settings that mean something other than off


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the MLflow registry's name@alias over gRPC and HTTP, following the alias when it moves.",
        epilog="Each setting can also come from the environment variable shown; a flag wins over it.",
    )
    for name, (flag, env, _, what) in _SETTINGS.items():
        default = _SHOWN_DEFAULTS.get(name, _DEFAULTS[name])
        p.add_argument(flag, dest=name, metavar=env, help=f"{what} (default: {default if default != '' else 'off'})")
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


def _check(config: ServiceConfig, source: dict[str, str]) -> None:
    """Relations between settings and files they name; each message names one setting."""
    for name in ("port", "http_port"):
        if not 0 <= getattr(config, name) <= 65535:
            raise ConfigError(f"{source[name]}: expected 0..65535, got {getattr(config, name)}")
    positive = (
        "poll_seconds",
        "max_batch",
        "max_streams",
        "stream_idle_seconds",
        "max_in_flight",
        "http_idle_seconds",
        "http_read_seconds",
    )
    for name in (*positive, "shadow_queue_images"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{source[name]}: expected a positive number, got {getattr(config, name)}")
    if config.shadow_share > 1:
        raise ConfigError(f"{source['shadow_share']}: expected a share from 0 to 1, got {config.shadow_share}")
    if config.shadow_alias and config.shadow_alias == config.alias:
        raise ConfigError(f"{source['shadow_alias']}: expected an alias other than the served one, {config.alias}")
    if bool(config.tls_cert) != bool(config.tls_key):
        missing = "tls_key" if config.tls_cert else "tls_cert"
        raise ConfigError(f"{source[missing]}: TLS needs both a certificate and its key")
    if config.tls_client_ca and not config.tls_cert:
        raise ConfigError(f"{source['tls_client_ca']}: client certificates need TLS (--tls-cert and --tls-key)")
    for name in ("tls_cert", "tls_key", "tls_client_ca", "token_file"):
        path = getattr(config, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{source[name]}: no such file: {path}")
    if config.token_file and not Path(config.token_file).read_text().strip():
        raise ConfigError(f"{source['token_file']}: the token file {config.token_file} is empty")


def check_store(config: ServiceConfig) -> None:
    """A SQLite store must exist: MLflow would create an empty one, and the service would wait on it forever."""
    if config.tracking_uri.startswith("sqlite:") and not config.tracking_uri.startswith("sqlite:///"):
        raise ConfigError(
            f"--tracking-uri/MLFLOW_TRACKING_URI: expected sqlite:///relative.db or sqlite:////absolute.db, "
            f"got {config.tracking_uri}"
        )
    if config.tracking_uri.startswith("sqlite:///"):
        database = Path(config.tracking_uri.removeprefix("sqlite:///"))
        if not database.is_file():
            raise ConfigError(
                f"--tracking-uri/MLFLOW_TRACKING_URI: no SQLite store at {database.resolve()}; "
                "train a model into it first (python -m trainer) or correct the path"
            )


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """Flags win over environment, environment over defaults."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values: dict[str, object] = {}
    source: dict[str, str] = {}
    for name, (flag, env, _, _) in _SETTINGS.items():
        source[name] = f"{flag}/{env}"
        if args[name] is not None:
            values[name], source[name] = _convert(name, args[name], flag), flag
        elif environ.get(env):
            values[name], source[name] = _convert(name, environ[env], env), env
    config = ServiceConfig(**values)  # type: ignore[arg-type]
    _check(config, source)
    return config
