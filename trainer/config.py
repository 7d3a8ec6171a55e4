"""The trainer's one configuration, filled once from flags over environment over defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from trainer.recipes import DEFAULT_RECIPE, RECIPES, Recipe

# The service serves DEFAULT_MODEL_NAME@DEFAULT_ALIAS by default too (tests/test_contracts.py).
DEFAULT_MODEL_NAME = "mnist-3v7"
DEFAULT_ALIAS = "champion"
DEFAULT_EXPERIMENT = "mnist37"
DEFAULT_DATA_DIR = Path("data")  # downloaded into when neither --data-dir nor MNIST_DATA_DIR is set


class ConfigError(ValueError):
    """A setting that cannot work on this machine, found after the flags parsed."""


@dataclass(frozen=True)
class TrainConfig:
    recipe: Recipe
    seed: int
    data_dir: Path
    download: bool  # fetch MNIST into data_dir if it is missing (only for the default folder)
    device: str  # "auto", "cpu" or "cuda"
    model_name: str
    alias: str
    register: bool
    force_promote: bool
    experiment: str
    limit: int | None  # train on the first N training images only
    quiet: bool


Number = TypeVar("Number", int, float)


def _positive(kind: type[Number]) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainer",
        description="Train a 3-versus-7 classifier, log it to MLflow and register it.",
        epilog="MLFLOW_TRACKING_URI names the MLflow store (default: sqlite:///mlflow.db in this folder).",
    )
    add = p.add_argument
    add("--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE, help=f"what to train (default: {DEFAULT_RECIPE})")
    add("--epochs", type=_positive(int), help="train for this many epochs (default: the recipe's)")
    add("--lr", type=_positive(float), help="learning rate (default: the recipe's)")
    add("--batch-size", type=_positive(int), help="images per step (default: the recipe's)")
    add("--seed", type=int, default=0, help="seed for the validation split, the weights and shuffling (default: 0)")
    add(
        "--data-dir",
        help=f"folder holding MNIST/raw (default: $MNIST_DATA_DIR, else ./{DEFAULT_DATA_DIR}, downloading into it)",
    )
    add("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train (default: auto, CUDA if any)")
    add(
        "--model-name",
        default=DEFAULT_MODEL_NAME,
        help=f"registered model to add a version to (default: {DEFAULT_MODEL_NAME})",
    )
    add("--alias", default=DEFAULT_ALIAS, help=f"alias to move to the new version (default: {DEFAULT_ALIAS})")
    add("--no-register", action="store_true", help="log the run but register nothing (default: register)")
    add(
        "--force-promote",
        action="store_true",
        help="move the alias even if validation accuracy is worse (default: only if not worse)",
    )
    add(
        "--experiment",
        help=f"MLflow experiment to log into (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT})",
    )
    add(
        "--limit",
        type=_positive(int),
        help="train on the first N training images only, for quick checks (default: all)",
    )
    add("--quiet", action="store_true", help="no progress bar (default: a bar when stderr is a terminal)")
    return p


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> TrainConfig:
    """Flags (argv, default sys.argv) over environment (default os.environ) over defaults; exits 2
    with a one-line error on a bad flag."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or env.get("MNIST_DATA_DIR")
    return TrainConfig(
        recipe=RECIPES[args.recipe].with_overrides(args.epochs, args.lr, args.batch_size),
        seed=args.seed,
        data_dir=Path(data_dir) if data_dir else DEFAULT_DATA_DIR,
        download=not data_dir,
        device=args.device,
        model_name=args.model_name,
        alias=args.alias,
        register=not args.no_register,
        force_promote=args.force_promote,
        experiment=args.experiment or env.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT,
        limit=args.limit,
        quiet=args.quiet,
    )
