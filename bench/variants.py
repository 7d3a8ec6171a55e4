"""What a change to the default recipe buys: named variants of it, each trained with the trainer's own
core (no MLflow) and measured on the figures a run logs, the 20 drawn non-digits beside them.

Run: `python -m bench.variants [--variants default,24-epochs] [--seeds 0,1]` from the checkout; MNIST
comes from $MNIST_DATA_DIR, else ./data. `--list` names the variants. See bench/README.md for the
figures measured so far, and for why the variants that are not the default were not kept.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from trainer import robustness
from trainer.augment import Augmentation
from trainer.cli import final_metrics, pick_device
from trainer.config import parse_config
from trainer.data import load_dataset
from trainer.loop import logits_of, train
from trainer.models import Network
from trainer.recipes import DEFAULT_RECIPE, RECIPES, Recipe


@dataclass(frozen=True)
class Variant:
    about: str
    change: Callable[[Recipe], Recipe]
    # How the trained network answers: as it is, or wrapped (measured, calibrated and scored so).
    answer: Callable[[Network], Network] = lambda net: net


class ShiftedViews(Network):
    """A trained network answering from its input and the input's eight one-pixel shifts (empty pixels
    come in at the edge), its logits averaged: nine forwards for one answer."""

    SHIFTS = tuple((dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1))

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net
        self.abstains = net.abstains

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.reshape(-1, 1, 28, 28), (1, 1, 1, 1))
        views = [padded[:, :, 1 + dy : 29 + dy, 1 + dx : 29 + dx].reshape(-1, 784) for dx, dy in self.SHIFTS]
        return torch.stack([self.net(view) for view in views]).mean(0)


def _augmented(**settings: float) -> Callable[[Recipe], Recipe]:
    def change(recipe: Recipe) -> Recipe:
        assert recipe.augmentation is not None
        return replace(recipe, augmentation=replace(recipe.augmentation, **settings))

    return change


def _keep(recipe: Recipe) -> Recipe:
    return recipe


def _previous(recipe: Recipe) -> Recipe:
    """The default recipe until 2026-12-06."""
    return replace(recipe, epochs=24, augmentation=Augmentation(), outliers=0.5, made_share=1 / 3, made_weights=())


VARIANTS: dict[str, Variant] = {
    "previous": Variant(
        "the default until 2026-12-06: 24 epochs; shift ±2 px, zoom ±12%, rotation ±10°, up to half a dilation "
        "thicker, no elastic; 64 outliers a step, a third made, made kinds alike",
        _previous,
    ),
    "24-epochs": Variant("default, 24 epochs", lambda r: replace(r, epochs=24)),
    "40-epochs": Variant("default, 40 epochs", lambda r: replace(r, epochs=40)),
    "50-epochs": Variant("default, 50 epochs", lambda r: replace(r, epochs=50)),
    "default": Variant(
        "the default: 30 epochs; shift ±3 px, zoom ±18%, rotation ±15°, up to 1.5 dilations thicker, "
        "elastic α 15; 128 outliers a step, 40% made, scribbles 5× as often as each other made kind",
        _keep,
    ),
    "batch-256": Variant(
        "default, 256 3s and 7s a step (and as many outliers) at a peak learning rate of 4e-3",
        lambda r: replace(r, batch_size=256, lr=4e-3),
    ),
    "elastic-24": Variant("default, elastic α 24", _augmented(elastic_px=24.0)),
    "elastic-34": Variant("default, Simard's elastic α 34", _augmented(elastic_px=34.0)),
    "wider-elastic-34": Variant(
        "default, conv blocks of 24 and 48 channels, Simard's elastic α 34",
        lambda r: _augmented(elastic_px=34.0)(replace(r, channels=(24, 48))),
    ),
    "made-alike": Variant(
        "default, a third of the outliers made, every made kind alike",
        lambda r: replace(r, made_share=1 / 3, made_weights=()),
    ),
    "scribbles-10": Variant(
        "default, scribbles 10× as often as each other made kind",
        lambda r: replace(r, made_weights=(("scribbles", 10.0),)),
    ),
    "wider": Variant("default, conv blocks of 32 and 64 channels", lambda r: replace(r, channels=(32, 64))),
    "mined-15": Variant(
        "default, half the made images drawn by how readily the network takes each for a 3 or a 7",
        lambda r: replace(r, made_mined=0.5),
    ),
    "mined-24": Variant(
        "default, elastic α 24, half the made images drawn by how readily the network takes each for a 3 or a 7",
        lambda r: _augmented(elastic_px=24.0)(replace(r, made_mined=0.5)),
    ),
    "mined-34": Variant(
        "default, Simard's elastic α 34, half the made images drawn by how readily the network takes each "
        "for a 3 or a 7",
        lambda r: _augmented(elastic_px=34.0)(replace(r, made_mined=0.5)),
    ),
    "views-9": Variant(
        "default, answering from each image and its eight one-pixel shifts, logits averaged", _keep, ShiftedViews
    ),
}


def measure(variant: Variant, seed: int, epochs: int | None = None) -> dict[str, float]:
    """One variant trained on one seed (for `epochs`, if given): the run's metrics, the drawn
    non-digits taken for a 3 or a 7, and the training time."""
    from tests.trainer.unseen import non_digits

    config = parse_config(["--seed", str(seed)])
    recipe = variant.change(RECIPES[DEFAULT_RECIPE])
    recipe = recipe if epochs is None else replace(recipe, epochs=epochs)
    device = pick_device(config.device)
    data = load_dataset(config.data_dir, seed, download=config.download)
    start = time.perf_counter()
    net = variant.answer(train(recipe, data, device, seed))
    seconds = time.perf_counter() - start
    _, report, metrics = final_metrics(net, data, recipe, device)
    assert report is not None, f"{recipe.name} does not abstain"
    threshold = report.threshold
    drawn = torch.from_numpy(np.stack(list(non_digits().values())))
    scores = torch.sigmoid(logits_of(net, drawn, device)[:, 1]).numpy()
    elastic = robustness.distorted(data.test.images, "elastic")
    frontier = rejected_at_made_share(
        torch.sigmoid(logits_of(net, elastic, device)[:, 1]).numpy(),
        np.concatenate(list(report.scores.made.values())),
        FRONTIER_MADE_REJECTED,
    )
    return metrics | {
        "non_digits_taken": float(np.sum(scores <= threshold)),
        "elastic_rejected_at_frontier": frontier,
        "train_seconds": seconds,
    }


# The made non-digits' target: the threshold that rejects exactly this share of them, whatever the
# calibration says, shows how well a network tells bent digits from made shapes.
FRONTIER_MADE_REJECTED = 0.99


def rejected_at_made_share(scores: np.ndarray, made: np.ndarray, share: float) -> float:
    """The share of `scores` above the threshold that rejects `share` of the `made` scores (the rest,
    the lowest, accepted)."""
    accepted = math.floor(len(made) * (1 - share) + 1e-9)  # a whole product can land a hair under in floats
    if accepted == 0:
        return float(np.mean(scores >= made.min()))  # every made image rejected: below the lowest
    return float(np.mean(scores > np.sort(made)[accepted - 1]))


COLUMNS = ["shift_3x2", "thick", "elastic", "mouse"]  # the distortions turned away most; the rest in one column


def row(name: str, seeds: list[int], runs: list[dict[str, float]]) -> str:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    rest = [name for name in robustness.DISTORTIONS if name not in COLUMNS]
    worst_rest = max(rest, key=lambda d: median(f"robust_rejected_{d}"))
    cells = [
        name,
        ", ".join(map(str, seeds)),
        ", ".join(str(int(run["test_errors"])) for run in runs),
        f"{100 * min(run['test_accepted_accuracy'] for run in runs):.2f}%",
        f"{100 * median('test_rejected_share'):.2f}%",
        *(f"{100 * median(f'robust_rejected_{d}'):.2f}%" for d in COLUMNS),
        f"{100 * median(f'robust_rejected_{worst_rest}'):.2f}% ({worst_rest})",
        f"{100 * median('test_others_accepted_share'):.2f}%",
        f"{100 * median('made_rejected_share'):.2f}%",
        f"{100 * median('elastic_rejected_at_frontier'):.2f}%",
        ", ".join(str(int(run["non_digits_taken"])) for run in runs),
        f"{median('train_seconds'):.1f} s",
    ]
    return f"| {' | '.join(cells)} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; medians across them (default: 0)")
    p.add_argument("--epochs", type=int, help="train every variant this many epochs, to check the script quickly")
    p.add_argument("--list", action="store_true", help="name each variant and what it changes, then stop")
    args = p.parse_args()
    if args.list:
        for name, variant in VARIANTS.items():
            print(f"{name}: {variant.about}")
        return
    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; expected some of {list(VARIANTS)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    print(
        "| variant | seeds | errors | right of accepted (min) | 3s/7s rejected | shifted rejected | thickened "
        "| elastic | mouse-drawn | worst other distortion | other digits accepted | made rejected "
        "| elastic, 99% of made rejected | drawn non-digits taken | training |"
    )
    print(f"|{' --- |' * 15}")
    for name in names:
        print(row(name, seeds, [measure(VARIANTS[name], seed, args.epochs) for seed in seeds]), flush=True)


if __name__ == "__main__":
    main()
