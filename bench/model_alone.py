"""The model alone, in-process: a registered version loaded exactly as the service loads it, timed on arrays.

Run: `python -m bench.model_alone TRACKING_URI VERSION IMAGES.npy [--calls 2000] [--seconds 2]`

Prints one JSON object: p50 and p99 of predict() on one image (over --calls calls), and images/s
with 1024 images per call (over --seconds). bench.serve runs it as its own process, so that the
model meets the machine as it does in `python -m service`, with torch's default threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from service.loading import load_predictor
from trainer.config import DEFAULT_MODEL_NAME as MODEL


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tracking_uri", help="MLflow tracking and registry store")
    p.add_argument("version", help=f"registered version of {MODEL} to load")
    p.add_argument("images", type=Path, help=".npy file of (N, 784) float32 images, N >= 1024")
    p.add_argument("--calls", type=int, default=2000, help="single-image calls timed (default: 2000)")
    p.add_argument("--seconds", type=float, default=2.0, help="duration of the 1024-image phase (default: 2)")
    args = p.parse_args()
    images = np.load(args.images)
    location = MlflowClient(args.tracking_uri).get_model_version_download_uri(MODEL, args.version)
    predict, _ = load_predictor(location, args.tracking_uri)
    singles = [images[i % len(images) : i % len(images) + 1] for i in range(args.calls)]
    for one in singles[:50]:  # warm-up
        predict(one)
    latencies = []
    for one in singles:
        start = time.perf_counter()
        predict(one)
        latencies.append(time.perf_counter() - start)
    batch = np.ascontiguousarray(images[:1024])
    predict(batch)
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        predict(batch)
        done += len(batch)
    ms = sorted(1000 * x for x in latencies)
    figures = {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[int(0.99 * len(ms))],
        "images_per_s": done / (time.perf_counter() - start),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
