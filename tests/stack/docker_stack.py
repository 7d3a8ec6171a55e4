"""A compose project on a real Docker engine, for tests/stack/test_docker.py: the engine check, the base
images (official, else local stand-ins built from Debian's packages) and `docker compose` with timeouts."""

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


def official_images() -> tuple[str, str]:
    """The defaults users get: BASE_IMAGE from the Dockerfile, POSTGRES_IMAGE from docker-compose.yml."""
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    postgres = re.search(r"\$\{POSTGRES_IMAGE:-([^}]+)\}", (REPO / "docker-compose.yml").read_text())
    assert base and postgres, "the Dockerfile's BASE_IMAGE or the compose file's POSTGRES_IMAGE default is gone"
    return base.group(1), postgres.group(1)


def _available(image: str) -> bool:
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=60).returncode == 0:
        return True
    try:
        return subprocess.run(["docker", "pull", "-q", image], capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_images() -> dict[str, str]:
    """BASE_IMAGE and POSTGRES_IMAGE for the build: as set in the environment, else the official images,
    else stand-ins (no registry reachable), built once and kept under names of their own."""
    chosen = {}
    for variable, official in zip(("BASE_IMAGE", "POSTGRES_IMAGE"), official_images(), strict=True):
        chosen[variable] = os.environ.get(variable) or (official if _available(official) else "")
    if not all(chosen.values()):
        build = subprocess.run(
            ["bash", str(HERE / "standin" / "build.sh"), STANDIN_BASE, STANDIN_POSTGRES],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert build.returncode == 0, f"building the stand-in images failed:\n{build.stdout}\n{build.stderr}"
        chosen = {"BASE_IMAGE": chosen["BASE_IMAGE"] or STANDIN_BASE, "POSTGRES_IMAGE": chosen["POSTGRES_IMAGE"]}
        chosen["POSTGRES_IMAGE"] = chosen["POSTGRES_IMAGE"] or STANDIN_POSTGRES
    return chosen


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

    def container(self, service: str) -> dict[str, Any]:
        found = [c for c in self.containers() if c["Service"] == service]
        assert found, f"no container for service {service}"
        return found[0]

    def wait_healthy(self, services: list[str], timeout: float) -> None:
        """Until each service's container is healthy; fails early when one exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {c["Service"]: c for c in self.containers()}
            for name in services:
                if name in states and states[name]["State"] == "exited":
                    raise AssertionError(f"{name} exited: {states[name]['Status']}")
            if all(states.get(name, {}).get("Health") == "healthy" for name in services):
                return
            time.sleep(2)
        health = {name: (states.get(name) or {}).get("Status") for name in services}
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
