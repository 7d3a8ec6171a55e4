"""The generated stubs match protos/ and the installed protobuf and grpcio runtimes."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from google.protobuf import __version__ as protobuf_version

from service.protogen import REPO, generate


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generate(tmp_path)}
    committed = {
        p.relative_to(REPO): p.read_bytes()
        for p in (REPO / "service" / "generated").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh == committed, "service/generated is stale: run `make protos`"


def test_stub_versions_match_the_installed_runtimes() -> None:
    pb2 = (REPO / "service/generated/inference/grpc_predict_v2_pb2.py").read_text()
    made_with = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", pb2)
    assert made_with, "no protobuf version in the generated code"
    gencode = tuple(map(int, made_with.groups()))
    runtime = tuple(map(int, protobuf_version.split(".")[:3]))
    # protobuf refuses gencode newer than its runtime, and a different major version altogether.
    assert runtime[0] == gencode[0] and runtime >= gencode, f"protobuf {protobuf_version} vs gencode {gencode}"
    grpc_stub = (REPO / "service/generated/inference/grpc_predict_v2_pb2_grpc.py").read_text()
    made_for = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", grpc_stub)
    assert made_for and made_for.group(1) == grpc.__version__
