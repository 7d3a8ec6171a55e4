"""The trainer's one configuration, filled once from flags over environment over defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass

from trainer.recipes import DEFAULT_RECIPE, RECIPES, Recipe

DEFAULT_MODEL_NAME = "mnist-3v7"
DEFAULT_ALIAS = "champion"
DEFAULT_EXPERIMENT = "mnist37"


class ConfigError(ValueError):
    """A setting that cannot work on this machine, found after the flags parsed."""


@dataclass(frozen=True)
class TrainConfig:
    recipe: Recipe
    seed: int
    data_dir: str | None
    device: str  # "auto", "cpu" or "cuda"
    model_name: str
    alias: str
    register: bool
    force_promote: bool
    experiment: str
    limit: int | None  # train on the first N training images only
    quiet: bool


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int | float:
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
        epilog="Environment: MLFLOW_TRACKING_URI (default sqlite:///mlflow.db), MNIST_DATA_DIR, "
        "MLFLOW_EXPERIMENT_NAME.",
    )
    p.add_argument(
        "--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE, help=f"what to train (default: {DEFAULT_RECIPE})"
    )
    p.add_argument("--epochs", type=_positive(int), help="override the recipe's epochs")
    p.add_argument("--lr", type=_positive(float), help="override the recipe's learning rate")
    p.add_argument("--batch-size", type=_positive(int), help="override the recipe's batch size")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, init and shuffling (default: 0)")
    p.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR, else ./data with download)")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to train (default: auto, CUDA when available)",
    )
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help=f"registered model (default: {DEFAULT_MODEL_NAME})")
    p.add_argument(
        "--alias", default=DEFAULT_ALIAS, help=f"alias to move to the new version (default: {DEFAULT_ALIAS})"
    )
    p.add_argument("--no-register", action="store_true", help="log the run but register nothing")
    p.add_argument("--force-promote", action="store_true", help="move the alias even if validation accuracy is worse")
    p.add_argument(
        "--experiment",
        default=os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT),
        help=f"MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT})",
    )
    p.add_argument("--limit", type=_positive(int), help="train on the first N training images only (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    recipe = RECIPES[args.recipe].with_overrides(args.epochs, args.lr, args.batch_size)
    return TrainConfig(
        recipe=recipe,
        seed=args.seed,
        data_dir=args.data_dir,
        device=args.device,
        model_name=args.model_name,
        alias=args.alias,
        register=not args.no_register,
        force_promote=args.force_promote,
        experiment=args.experiment,
        limit=args.limit,
        quiet=args.quiet,
    )
