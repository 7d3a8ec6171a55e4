"""Versions that can say "neither 3 nor 7": the threshold travels with the version, over both APIs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from service.client.cli import main
from service.generated.inference import grpc_predict_v2_pb2 as v2
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from tests.conftest import DefaultRun, wait_until
from tests.service.conftest import Registry, config_for, health_status, running, set_alias
from tests.service.hostile import model_files, register_folder

pytestmark = pytest.mark.slow
BLANK = np.zeros(784, np.uint8)
WHITE = np.full(784, 255, np.uint8)  # a "mean ink" score of 1: over the stand-in's threshold
THRESHOLD = 0.5


class MeanInkScore(torch.nn.Module):
    """A stand-in for an abstaining model: the trained network's p(three), and the mean pixel as its score."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.net(x), x.mean(dim=1)], dim=1)  # (N, 2)


@pytest.fixture(scope="module")
def abstaining(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = model_files(registry.uri, registry.good, tmp_path_factory.mktemp("abstain") / "model")
    net = torch.export.load(folder / "data" / "model.pt2").module()
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(MeanInkScore(net), (torch.zeros(2, 784),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, folder / "data" / "model.pt2")
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    spec["metadata"] = {"ood_threshold": THRESHOLD, "ood_score": "mean pixel (a test stand-in)"}
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))
    return register_folder(registry.uri, folder, "abstains")


def _classify(stub: pb_grpc.ClassifierStub, image: np.ndarray) -> pb.Prediction:
    return stub.Classify(pb.ClassifyRequest(image=pb.Image(uint8=image.tobytes())), timeout=5).prediction


def answers_while_switching(
    uri: str, channel: grpc.Channel, images: dict[str, np.ndarray], versions: tuple[str, ...]
) -> tuple[list[tuple[str, str, bool, bool]], list[str]]:
    """Four clients classify each of `images` in turn while the alias moves through `versions`, each
    time until 20 answers in a row come from it. Returns (image, version, has `known`, known) per
    answer, and the failed calls."""
    stub = pb_grpc.ClassifierStub(channel)
    stop, failures = threading.Event(), []
    seen: list[tuple[str, str, bool, bool]] = []

    def caller() -> None:
        while not stop.is_set():
            for name, image in images.items():
                try:
                    p = _classify(stub, image)
                    seen.append((name, p.model_version, p.HasField("known"), p.known))
                except grpc.RpcError as err:
                    failures.append(f"{err.code()}: {err.details()}")

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for version in versions:
            set_alias(uri, version)
            answering = f"version {version} answering"
            wait_until(lambda: sum(s[1] == version for s in seen[-20:]) == 20, 60, answering)  # noqa: B023
    finally:
        stop.set()
        for t in threads:
            t.join()
    return seen, failures


def test_the_threshold_switches_with_the_version_under_load(registry: Registry, abstaining: str) -> None:
    set_alias(registry.uri, registry.good)
    with running(config_for(registry.uri)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        versions = (abstaining, registry.good, abstaining)
        seen, failures = answers_while_switching(registry.uri, channel, {"white": WHITE}, versions)
    assert failures == []
    assert {(v, has, known) for _, v, has, known in seen} == {(registry.good, False, False), (abstaining, True, False)}


def test_both_apis_and_the_cli_say_neither(
    registry: Registry, abstaining: str, test_images: tuple, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    set_alias(registry.uri, abstaining)
    with running(config_for(registry.uri)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        digit = _classify(stub, test_images[0][0])
        assert digit.known and digit.ood_score == pytest.approx(test_images[0][0].mean() / 255, abs=1e-5)
        white = _classify(stub, WHITE)
        assert not white.known and white.ood_score == pytest.approx(1.0)
        info = stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.can_abstain and info.ood_threshold == pytest.approx(THRESHOLD)

        infer = v2_grpc.GRPCInferenceServiceStub(channel)
        images = np.stack([test_images[0][0], WHITE, BLANK])
        tensor = v2.ModelInferRequest.InferInputTensor(name="image", datatype="UINT8", shape=[3, 784])
        request = v2.ModelInferRequest(model_name="mnist-3v7", inputs=[tensor], raw_input_contents=[images.tobytes()])
        response = infer.ModelInfer(request, timeout=5)
        outputs = {o.name: (o.datatype, list(o.shape)) for o in response.outputs}
        assert outputs == {
            "digit": ("INT32", [3]),
            "p_three": ("FP32", [3]),
            "known": ("BOOL", [3]),
            "ood_score": ("FP32", [3]),
        }
        known = np.frombuffer(response.raw_output_contents[list(outputs).index("known")], np.bool_)
        assert known.tolist() == [True, False, True]
        metadata = infer.ModelMetadata(v2.ModelMetadataRequest(name="mnist-3v7"), timeout=5)
        assert [(o.name, o.datatype) for o in metadata.outputs] == [
            ("digit", "INT32"),
            ("p_three", "FP32"),
            ("known", "BOOL"),
            ("ood_score", "FP32"),
        ]

        np.save(tmp_path / "two.npy", np.stack([test_images[0][0], WHITE]))
        assert main(["--target", f"127.0.0.1:{service.port}", "classify", str(tmp_path / "two.npy")]) == 0
        first, second = capsys.readouterr().out.splitlines()
        assert "neither" not in first and second.startswith(f"{tmp_path / 'two.npy'}[1]: neither 3 nor 7")

        probe = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("triton_probe.py")),
                f"127.0.0.1:{service.port}",
                "mnist-3v7",
            ],
            input=_npy(images[:2]),
            capture_output=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr.decode()[-2000:]
        report = json.loads(probe.stdout)
        assert report["UINT8_all"]["known"] == [True, False]
        assert report["UINT8"]["digit"] == report["UINT8_all"]["digit"]  # asking for two outputs changes nothing

    set_alias(registry.uri, registry.good)  # a version that cannot abstain says so
    with running(config_for(registry.uri)) as (_, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 20)
        stub = pb_grpc.ClassifierStub(channel)
        assert not _classify(stub, WHITE).HasField("known")
        assert not stub.GetModelInfo(pb.GetModelInfoRequest()).can_abstain
        request.outputs.add(name="known")
        with pytest.raises(grpc.RpcError) as err:
            v2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "cannot abstain" in err.value.details()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_trained_version_that_abstains_and_one_that_cannot_switch_under_load(
    default_run: DefaultRun, test_images: tuple
) -> None:
    """The default recipe's own version (it abstains) and a quick MLP one (it cannot), in one registry:
    every answer says neither or not as the version that gave it does, over both APIs and tritonclient."""
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    env = {**os.environ, "MLFLOW_TRACKING_URI": default_run.uri}
    quick = subprocess.run(
        [sys.executable, "-m", "trainer", "--quiet", "--recipe", "mlp", "--epochs", "2"],  # the alias stays
        cwd=default_run.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quick.returncode == 0, quick.stderr[-2000:]
    client = MlflowClient(default_run.uri, default_run.uri)
    cnn = str(client.get_model_version_by_alias("mnist-3v7", "champion").version)
    mlp = max((str(v.version) for v in client.search_model_versions("name='mnist-3v7'")), key=int)  # str: stores differ
    assert cnn != mlp
    three = test_images[0][test_images[1] == 3][0]
    with running(config_for(default_run.uri)) as (service, channel):
        wait_until(lambda: health_status(channel) == "SERVING", 30)
        images = {"three": three, "white": WHITE}
        seen, failures = answers_while_switching(default_run.uri, channel, images, (mlp, cnn, mlp, cnn))
        assert failures == []
        # Only the version that abstains says whether an image is known, and it never takes a white square.
        assert {(v, has) for _, v, has, _ in seen} == {(mlp, False), (cnn, True)}
        assert not any(known for name, v, _, known in seen if name == "white")
        info = pb_grpc.ClassifierStub(channel).GetModelInfo(pb.GetModelInfoRequest())
        run_metrics = client.get_run(str(client.get_model_version("mnist-3v7", cnn).run_id)).data.metrics
        assert info.can_abstain and info.ood_threshold == pytest.approx(run_metrics["ood_threshold"], rel=1e-6)
        probe = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("triton_probe.py")),
                f"127.0.0.1:{service.port}",
                "mnist-3v7",
            ],
            input=_npy(np.concatenate([test_images[0][test_images[1] == 3][:50], WHITE[None]])),
            capture_output=True,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr.decode()[-2000:]
        report = json.loads(probe.stdout)
        known = report["UINT8_all"]["known"]
        assert sum(known[:50]) >= 48 and known[50] is False  # test 3s: ~1% are turned away
