"""Train a recipe on a given device with the trainer's own data, recipe and loop (no MLflow), and report
test accuracy: `python -m bench.device_check --device cuda --seeds 0,1,2`."""

from __future__ import annotations

import argparse
import time

import torch

from trainer.config import parse_config
from trainer.data import load_dataset
from trainer.loop import evaluate, train
from trainer.recipes import DEFAULT_RECIPE, RECIPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    p.add_argument(
        "--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE, help=f"recipe (default: {DEFAULT_RECIPE})"
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--data-dir", help="MNIST folder (default: $MNIST_DATA_DIR, else ./data)")
    p.add_argument("--epochs", help="train for this many epochs, to test the script quickly (default: the recipe's)")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}")
    # The recipe and data folder as `python -m trainer` resolves them.
    argv = ["--recipe", args.recipe]
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["--epochs", args.epochs] if args.epochs else []
    config = parse_config(argv)
    recipe = config.recipe
    for seed in map(int, args.seeds.split(",")):
        data = load_dataset(config.data_dir, seed, download=config.download)
        start = time.perf_counter()
        net = train(recipe, data, device, seed)
        test = evaluate(net, data.test, recipe.loss, device)
        wall = time.perf_counter() - start
        print(
            f"{args.recipe} seed {seed} on {device.type}: test accuracy {100 * test.accuracy:.2f}% "
            f"({test.errors} errors), {wall:.1f}s"
        )


if __name__ == "__main__":
    main()
