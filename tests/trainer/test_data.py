"""The real MNIST selection: counts, labels, shapes and the seeded split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.data import DataUnavailableError, load_dataset


def test_selects_threes_and_sevens_with_the_documented_counts(mnist_dir: str) -> None:
    data = load_dataset(mnist_dir, seed=0)
    train_labels = torch.cat([data.train.labels, data.val.labels])
    assert int((train_labels == 1).sum()) == 6131  # threes in the official train split
    assert int((train_labels == 0).sum()) == 6265  # sevens
    assert int((data.test.labels == 1).sum()) == 1010
    assert int((data.test.labels == 0).sum()) == 1028
    assert data.train.images.shape[1:] == (784,) and data.train.images.dtype == torch.uint8
    assert len(data.val) == round(12396 * 0.1)


def test_labels_three_as_one_and_seven_as_zero(mnist_dir: str) -> None:
    from torchvision.datasets import MNIST

    raw = MNIST(mnist_dir, train=False)
    data = load_dataset(mnist_dir, seed=0)
    keep = (raw.targets == 3) | (raw.targets == 7)
    expected = (raw.targets[keep] == 3).float()
    assert torch.equal(data.test.labels, expected)
    assert torch.equal(data.test.images[0], raw.data[keep][0].reshape(784))


def test_split_is_seeded_and_disjoint(mnist_dir: str) -> None:
    a, b, c = load_dataset(mnist_dir, seed=1), load_dataset(mnist_dir, seed=1), load_dataset(mnist_dir, seed=2)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    train_rows = {bytes(r.numpy()) for r in a.train.images[:2000]}
    assert not train_rows & {bytes(r.numpy()) for r in a.val.images}


def test_missing_data_names_both_settings(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError) as err:
        load_dataset(str(tmp_path), seed=0)
    message = str(err.value)
    assert "--data-dir" in message and "MNIST_DATA_DIR" in message and "\n" not in message


def test_a_truncated_file_says_what_it_read(mnist_dir: str, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for file in Path(mnist_dir, "MNIST", "raw").iterdir():
        (raw / file.name).write_bytes(
            file.read_bytes()[:1000] if file.name.startswith("train-images") else file.read_bytes()
        )
    with pytest.raises(DataUnavailableError, match=r"cannot reshape array of size 984 into shape \(60000,28,28\)"):
        load_dataset(str(tmp_path), seed=0)
