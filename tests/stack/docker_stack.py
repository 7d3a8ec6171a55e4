"""A compose project on a real Docker engine, for tests/stack/test_docker.py: the engine check, the base
images (official, else local stand-ins built from Debian's packages and PyPI) and `docker compose` with timeouts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO

HERE = Path(__file__).resolve().parent
STANDIN_BASE = "mnist37-standin/debian-python:bookworm"
STANDIN_POSTGRES = "mnist37-standin/postgres:15"
STANDIN_ENVOY = "mnist37-standin/envoy:1.40.0"
STANDIN_PROMETHEUS = "mnist37-standin/prometheus:2.42"


def engine_problem() -> str | None:
    """Why no compose stack can run here, or None when an engine and `docker compose` v2 answer."""
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=30)
    except FileNotFoundError:
        return "no docker CLI on the PATH"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.decode().strip()[:300]}"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    if compose.returncode != 0:
        return "`docker compose` (Compose v2) is not installed"
    return None


IMAGE_VARIABLES = ("BASE_IMAGE", "POSTGRES_IMAGE", "ENVOY_IMAGE", "PROMETHEUS_IMAGE")
STANDINS = dict(zip(IMAGE_VARIABLES, (STANDIN_BASE, STANDIN_POSTGRES, STANDIN_ENVOY, STANDIN_PROMETHEUS), strict=True))


def official_images() -> dict[str, str]:
    """The defaults users get: BASE_IMAGE from the Dockerfile, the others from docker-compose.yml."""
    compose = (REPO / "docker-compose.yml").read_text()
    found = {"BASE_IMAGE": re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)}
    for variable in IMAGE_VARIABLES[1:]:
        found[variable] = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", compose)
    missing = [variable for variable, match in found.items() if not match]
    assert not missing, f"the default of {missing} is gone from the Dockerfile or docker-compose.yml"
    return {variable: match.group(1) for variable, match in found.items() if match}


def _available(image: str) -> bool:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode == 0:
        return True
    try:
        return subprocess.run(["docker", "pull", "-q", image], capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_images() -> dict[str, str]:
    """Each of IMAGE_VARIABLES: as set in the environment, else the official image, else stand-ins
    (no registry reachable), built once and kept under names of their own."""
    chosen = {
        variable: os.environ.get(variable) or (official if _available(official) else "")
        for variable, official in official_images().items()
    }
    if not all(chosen.values()):
        build = subprocess.run(
            ["bash", str(HERE / "standin" / "build.sh"), *STANDINS.values()],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert build.returncode == 0, f"building the stand-in images failed:\n{build.stdout}\n{build.stderr}"
        chosen = {variable: image or STANDINS[variable] for variable, image in chosen.items()}
    return chosen


def _replica_number(container: dict[str, Any]) -> int:
    labels = dict(label.split("=", 1) for label in container.get("Labels", "").split(",") if "=" in label)
    return int(labels.get("com.docker.compose.container-number", 0))


class Stack:
    """`docker compose -p PROJECT -f docker-compose.yml -f tests/stack/compose.test.yml ...`."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.base = ["docker", "compose", "-p", project, "-f", str(REPO / "docker-compose.yml")]
        self.base += ["-f", str(HERE / "compose.test.yml"), "--project-directory", str(REPO)]

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise AssertionError(f"`docker compose {' '.join(args)}` took longer than {timeout:.0f} s") from err
        if check:
            assert done.returncode == 0, f"`docker compose {' '.join(args)}` exited {done.returncode}:\n{done.stderr}"
        return done

    def containers(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "--all", "--format", "json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def replicas(self, service: str) -> list[dict[str, Any]]:
        """The service's containers, in the order of their replica number (`docker compose run`'s one-off
        containers have one too)."""
        found = [c for c in self.containers() if c["Service"] == service]
        assert found, f"no container for service {service}"
        return sorted(found, key=_replica_number)

    def container(self, service: str) -> dict[str, Any]:
        return self.replicas(service)[0]

    def exit_code(self, container: dict[str, Any]) -> int:
        """The exit code of a container that has exited, read afresh."""
        (now,) = [c for c in self.containers() if c["ID"] == container["ID"]]
        assert now["State"] == "exited", f"{now['Name']} is {now['State']}"
        return int(now["ExitCode"])

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        """Until every container of each service is healthy; fails early when one exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states: dict[str, list[dict[str, Any]]] = {}
            for container in self.containers():
                states.setdefault(container["Service"], []).append(container)
            for name in services:
                for container in states.get(name, []):
                    if container["State"] == "exited":
                        raise AssertionError(f"{container['Name']} exited: {container['Status']}")
            if all(states.get(name) and all(c.get("Health") == "healthy" for c in states[name]) for name in services):
                return
            time.sleep(2)
        health = {name: [c.get("Status") for c in states.get(name, [])] for name in services}
        raise AssertionError(f"not healthy within {timeout:.0f} s: {health}")

    def wait_exited(self, service: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container = self.container(service)
            if container["State"] == "exited":
                return int(container["ExitCode"])
            time.sleep(2)
        raise AssertionError(f"{service} still running after {timeout:.0f} s")

    def logs(self) -> str:
        done = self.compose("logs", "--no-color", "--timestamps", "--tail", "150", timeout=60, check=False)
        return done.stdout + done.stderr

    def leftovers(self) -> list[str]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
            listed = subprocess.run(
                ["docker", *kind, "-q", "--filter", label], capture_output=True, text=True, timeout=60
            )
            found += [f"{kind[0]} {name}" for name in listed.stdout.split()]
        return found
