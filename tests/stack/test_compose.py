"""docker-compose.yml read without an engine: it validates, publishes on the host's loopback only, keeps
passwords off command lines and environment values, lets the service drain before Docker kills it, and puts
Envoy alone, on deploy/'s bootstrap, in front of the replicas."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def test_compose_file_validates() -> None:
    env = {**os.environ, "MNIST37_DB_PASSWORD": "x", "MNIST37_MLFLOW_PASSWORD": "y"}
    try:
        result = subprocess.run(
            ["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    except FileNotFoundError:
        pytest.skip("no docker CLI (.ci/run installs one)")
    if "is not a docker command" in result.stderr or "unknown command" in result.stderr:
        pytest.skip("`docker compose` (Compose v2) is not installed (.ci/run installs it)")
    assert result.returncode == 0, result.stderr


def test_ports_are_published_on_loopback_only() -> None:
    published = {name: spec.get("ports", []) for name, spec in _services().items()}
    assert any(published.values())
    for name, ports in published.items():
        assert all(port.startswith("127.0.0.1:") for port in ports), f"{name} publishes {ports}"


def test_no_password_on_a_command_line_or_in_the_environment() -> None:
    for name, spec in _services().items():
        argv = [*(spec.get("entrypoint") or []), *(spec.get("command") or [])]
        argv += (spec.get("healthcheck") or {}).get("test", [])
        for arg in argv:
            assert not re.search(r"://[^/@:\s]+:[^/@\s]+@", arg), f"{name}: a password in {arg!r}"
        for key in spec.get("environment") or {}:
            if "PASSWORD" in key:
                assert key.endswith("_FILE"), f"{name}: {key} holds a password itself; give it a secret file"


def test_docker_waits_longer_than_the_service_drains() -> None:
    """`docker stop` must not SIGKILL the service before its grace period for in-flight calls ends."""
    from service.config import ServiceConfig

    inference = _services()["inference"]
    grace = float(inference["environment"].get("GRACE_SECONDS", ServiceConfig.grace_seconds))
    assert float(inference["stop_grace_period"].removesuffix("s")) > grace


def test_envoy_alone_publishes_grpc_and_http_over_two_replicas() -> None:
    """Envoy, running the bootstrap deploy/ makes its ConfigMap from, publishes the service's ports; the
    replicas answer the name that bootstrap balances over, and publish only their metrics."""
    from service.config import ServiceConfig

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    inference, envoy = services["inference"], services["envoy"]
    assert inference["deploy"]["replicas"] >= 2
    assert [p.rsplit(":", 1)[1] for p in inference["ports"]] == [str(ServiceConfig.metrics_port)]
    low, high = inference["ports"][0].split(":")[1].split("-")
    assert int(high) - int(low) + 1 == inference["deploy"]["replicas"], "a metrics port per replica"
    envoy_ports = {p.rsplit(":", 1)[1] for p in envoy["ports"]}
    assert envoy_ports == {str(ServiceConfig.port), str(ServiceConfig.http_port)}
    for name, spec in services.items():
        if name != "envoy":
            assert not envoy_ports & {p.rsplit(":", 1)[1] for p in spec.get("ports", [])}, name
    (config,) = envoy["configs"]
    assert compose["configs"][config["source"]]["file"] == "./deploy/base/envoy/envoy.yaml"
    assert config["target"] == envoy["command"][envoy["command"].index("--config-path") + 1]
    bootstrap = yaml.safe_load((REPO / "deploy" / "base" / "envoy" / "envoy.yaml").read_text())
    addresses = {
        endpoint["endpoint"]["address"]["socket_address"]["address"]
        for cluster in bootstrap["static_resources"]["clusters"]
        for group in cluster["load_assignment"]["endpoints"]
        for endpoint in group["lb_endpoints"]
    }
    assert addresses <= set(inference["networks"]["default"]["aliases"]), addresses
    assert envoy["user"].split(":")[0] not in ("", "0", "root")
    # A stopping replica shows NOT_SERVING for longer than Envoy can take to check it again.
    checks = [check for cluster in bootstrap["static_resources"]["clusters"] for check in cluster["health_checks"]]
    longest = max(float(c["interval"].removesuffix("s")) + float(c["timeout"].removesuffix("s")) for c in checks)
    assert float(inference["environment"]["DRAIN_SECONDS"]) > longest
