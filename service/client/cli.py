"""The command line of `python -m service.client`: classify images with a running service and inspect it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client.images import load_image, load_npy
from service.client.mnist import load_test_split
from service.client.watch import watch
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc

Metadata = list[tuple[str, str]]


def _image(pixels: np.ndarray) -> pb.Image:
    if pixels.dtype == np.uint8:
        return pb.Image(uint8=pixels.tobytes())
    return pb.Image(floats=pixels.astype(np.float32).tolist())


def _inputs(args: argparse.Namespace) -> tuple[list[str], np.ndarray, list[int | None]]:
    """Names, (N, 784) pixels and, for MNIST samples, the true digits."""
    if args.command == "samples":
        images, digits = load_test_split(args.data_dir)
        if not 1 <= args.count <= len(images):
            raise ValueError(f"-n/--count: expected 1 to {len(images)} test images, got {args.count}")
        idx = np.random.default_rng(args.seed).choice(len(images), size=args.count, replace=False)
        truths: list[int | None] = [int(digits[i]) for i in idx]
        return [f"test[{i}]" for i in idx], images[idx], truths
    names: list[str] = []
    rows: list[np.ndarray] = []
    for path in map(Path, args.files):
        batch = load_npy(path) if path.suffix == ".npy" else load_image(path)[None, :]
        rows.extend(batch)
        names.extend([str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))])
    return names, np.stack(rows), [None] * len(names)


def classify(stub: pb_grpc.ClassifierStub, args: argparse.Namespace, metadata: Metadata) -> int:
    names, pixels, truths = _inputs(args)
    request = pb.ClassifyBatchRequest(images=[_image(p) for p in pixels])
    response = stub.ClassifyBatch(request, timeout=30, metadata=metadata)
    right = 0
    for name, prediction, truth in zip(names, response.predictions, truths, strict=True):
        neither = prediction.HasField("known") and not prediction.known
        answer = "neither 3 nor 7" if neither else str(prediction.digit)
        score = f"  ood score {prediction.ood_score:.3g}" if prediction.HasField("ood_score") else ""
        correct = truth == prediction.digit and not neither
        mark = "" if truth is None else ("  ✓" if correct else f"  ✗ (true {truth})")
        right += correct
        print(f"{name}: {answer}  p(3)={prediction.p_three:.4f}{score}  version {prediction.model_version}{mark}")
    if args.command == "samples":
        print(f"{right}/{len(names)} correct")
    return 0


def _health_status(channel: grpc.Channel) -> str:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def health(channel: grpc.Channel) -> int:
    """Exit 0 only when the server reports SERVING (for container health checks)."""
    status = _health_status(channel)
    print(status)
    return 0 if status == "SERVING" else 1


def info(channel: grpc.Channel, metadata: Metadata) -> int:
    print(f"health: {_health_status(channel)}")
    try:
        m = pb_grpc.ClassifierStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=5, metadata=metadata)
    except grpc.RpcError as err:
        print(f"model: none ({err.details()})")
        return 1
    loaded = m.loaded_at.ToDatetime().isoformat(timespec="seconds")
    print(f"model: {m.name}@{m.alias} version {m.version} ({m.recipe}, test accuracy {100 * m.test_accuracy:.2f}%)")
    print(f"run: {m.run_id}; loaded {loaded}Z")
    abstains = f"answers 'neither 3 nor 7' above an OOD score of {m.ood_threshold:.4g}"
    if m.can_abstain and m.expected_neither_share:
        abstains += f"; turned away {100 * m.expected_neither_share:.2f}% of genuine test 3s and 7s when trained"
    print(f"abstains: {abstains if m.can_abstain else 'no, this version cannot say neither 3 nor 7'}")
    if m.refused_version:
        print(f"refused: version {m.refused_version}: {m.refused_reason}")
    if m.HasField("shadow"):
        shadow = m.shadow
        held = f"version {shadow.version}" if shadow.version else "no version served yet"
        agreement = (
            f"agrees on {100 * shadow.agreement:.2f}% of {shadow.compared} images"
            if shadow.compared
            else "nothing compared yet"
        )
        print(f"shadow: @{shadow.alias} {held}; {agreement}; {shadow.dropped} images dropped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service.client", description="Classify images with a running mnist37 service and inspect it."
    )
    p.add_argument("--target", default="localhost:50051", help="service address (default: localhost:50051)")
    p.add_argument("--tls-ca", help="PEM CA that signed the server's certificate; turns TLS on (default: off)")
    p.add_argument("--tls-cert", help="PEM client certificate, for servers that ask for one (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--token-file", help="file holding the server's bearer token (default: $GRPC_TOKEN_FILE, else none)")
    sub = p.add_subparsers(dest="command", required=True)
    files = sub.add_parser("classify", help="classify PNG/JPEG files or .npy arrays")
    files.add_argument("files", nargs="+", help="images (any size, either polarity) or .npy of 784-pixel rows")
    samples = sub.add_parser("samples", help="classify N random images from the MNIST test split")
    samples.add_argument("-n", "--count", type=int, default=10, help="how many, 1 to 2038 (default: 10)")
    samples.add_argument("--seed", type=int, default=0, help="which ones (default: 0)")
    samples.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DATA_DIR, else ./data)")
    sub.add_parser("info", help="health and the model being served")
    sub.add_parser("health", help="print the health status; exit 0 only when SERVING")
    watching = sub.add_parser(
        "watch", help="each version's live answers, neither share and shadow agreement, from the metrics endpoints"
    )
    watching.add_argument(
        "--metrics",
        action="append",
        help="a replica's Prometheus endpoint, repeatable, summed (default: http://localhost:9090/metrics)",
    )
    watching.add_argument("--every", type=float, default=2.0, help="seconds per line (default: 2)")
    watching.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    watching.add_argument("--png", type=Path, help="on stopping, draw the window watched to this PNG")
    return p


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.tls_ca:
        return grpc.insecure_channel(args.target)
    key, chain = (Path(p).read_bytes() if p else None for p in (args.tls_key, args.tls_cert))
    credentials = grpc.ssl_channel_credentials(Path(args.tls_ca).read_bytes(), key, chain)
    return grpc.secure_channel(args.target, credentials)


def _metadata(args: argparse.Namespace) -> Metadata:
    token_file = args.token_file or os.environ.get("GRPC_TOKEN_FILE")
    return [("authorization", f"Bearer {Path(token_file).read_text().strip()}")] if token_file else []


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        channel, metadata = _channel(args), _metadata(args)
    except OSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with channel:
        try:
            if args.command == "info":
                return info(channel, metadata)
            if args.command == "health":
                return health(channel)
            if args.command == "watch":
                urls = args.metrics or ["http://localhost:9090/metrics"]
                return watch(urls, args.every, args.seconds, args.png)
            return classify(pb_grpc.ClassifierStub(channel), args, metadata)
        except grpc.RpcError as err:
            print(f"{args.target}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
