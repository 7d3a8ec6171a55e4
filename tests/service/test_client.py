"""The CLI client against a real server: PNG files as people draw them, .npy arrays, MNIST samples."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from service.client.cli import main
from service.client.images import mnist_style
from tests.service.conftest import BackgroundService

Served = tuple[BackgroundService, grpc.Channel]


def _as_photo(pixels: np.ndarray, path: Path) -> None:
    """An MNIST digit as a person might scan it: dark ink on white paper, bigger, off centre."""
    digit = Image.fromarray(255 - pixels.reshape(28, 28)).resize((112, 112), Image.Resampling.BICUBIC)
    paper = Image.new("L", (200, 160), 255)
    paper.paste(digit, (70, 10))
    paper.save(path)


def test_preprocessing_recovers_mnist_style_input(test_images: tuple, tmp_path: Path) -> None:
    images, _ = test_images
    _as_photo(images[0], tmp_path / "d.png")
    out = mnist_style(np.asarray(Image.open(tmp_path / "d.png").convert("L")))
    assert out.shape == (784,) and out.dtype == np.uint8
    grid = out.reshape(28, 28).astype(float)
    ys, xs = np.indices(grid.shape)
    assert abs((ys * grid).sum() / grid.sum() - 13.5) < 1 and abs((xs * grid).sum() / grid.sum() - 13.5) < 1
    assert grid[:2].sum() == 0 and grid[:, :2].sum() == 0  # MNIST's empty border
    rows, cols = np.nonzero(grid > 0.15 * 255)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)  # fitted to a 20×20 box


def test_client_classifies_files_npy_and_samples(
    served: Served, test_images: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, _ = served
    images, digits = test_images
    target = ["--target", f"127.0.0.1:{service.port}"]
    paths = []
    for i in range(6):
        path = tmp_path / (f"{i}.png" if i % 2 else f"{i}.jpg")  # both formats people send
        _as_photo(images[i], path)
        paths.append(str(path))
    np.save(tmp_path / "batch.npy", images[10:14])
    assert main([*target, "classify", *paths, str(tmp_path / "batch.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert np.mean(np.array(predicted) == np.concatenate([digits[:6], digits[10:14]])) >= 0.8
    assert all("version" in line and "p(3)=" in line for line in lines)

    assert main([*target, "samples", "-n", "20"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("/20 correct")
    assert main([*target, "info"]) == 0
    out = capsys.readouterr().out
    assert "health: SERVING" in out and "mnist-3v7@champion version" in out


def test_client_reports_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "bad.npy", np.zeros(100))
    assert main(["--target", "127.0.0.1:1", "classify", str(tmp_path / "bad.npy")]) == 2
    assert "expected a multiple of 784" in capsys.readouterr().err


def test_samples_without_mnist_says_where_it_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "127.0.0.1:1", "samples", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"MNIST's test split is not at {tmp_path}/MNIST/raw" in err and len(err.splitlines()) == 1
    assert main(["--target", "127.0.0.1:1", "samples", "-n", "0"]) == 2
    assert "-n/--count: expected 1 to 2038 test images, got 0" in capsys.readouterr().err
