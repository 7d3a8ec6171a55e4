"""Named training recipes: the tutorial as it was, the tutorial fixed, and better networks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from trainer.augment import Augmentation
from trainer.models import CNN, MLP, Network, SingleLayer
from trainer.outliers import MAKERS

Loss = Literal["mse", "bce"]
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["constant", "onecycle"]


@dataclass(frozen=True)
class Recipe:
    name: str
    network: Literal["single", "mlp", "cnn"]
    loss: Loss
    optimizer: Optimizer
    lr: float
    epochs: int
    batch_size: int | None  # None: the whole train split in one step (full-batch gradient descent)
    schedule: Schedule = "constant"
    init_std: float = 1.0  # only the single-layer network draws its weights from N(0, init_std²)
    weight_decay: float = 0.0
    augmentation: Augmentation | None = None
    log_every: int = 1  # epochs between logged points; ≥ 100 points for long full-batch runs
    # Learn "neither 3 nor 7" too, from `outliers` × batch_size other digits and made images a step.
    abstains: bool = False
    outliers: float = 0.0
    made_share: float = 1 / 3  # of the outliers, made images; the rest other MNIST digits
    made_weights: tuple[tuple[str, float], ...] = ()  # (kind, weight): how often each made kind is drawn
    # Of the made images drawn, the share drawn by how readily the network takes each for a digit
    # (trainer/mining.py); 0: all uniformly.
    made_mined: float = 0.0
    channels: tuple[int, ...] = (16, 32)  # the CNN's conv blocks
    hidden: int = 64  # the CNN head's hidden units

    def __post_init__(self) -> None:
        if self.abstains and (
            self.network != "cnn" or self.loss != "bce" or self.batch_size is None or self.outliers <= 0
        ):
            raise ValueError(f"recipe {self.name}: only mini-batch BCE CNN recipes with outliers can abstain")
        if not 0 <= self.made_share <= 1:
            raise ValueError(
                f"recipe {self.name}: made_share is a share of the outliers, 0 to 1, not {self.made_share}"
            )
        if not 0 <= self.made_mined <= 1 or (self.made_mined and not self.abstains):
            raise ValueError(
                f"recipe {self.name}: made_mined is a share of the made images drawn, 0 to 1, "
                f"for a recipe that abstains, not {self.made_mined}"
            )
        unknown = sorted({kind for kind, _ in self.made_weights} - set(MAKERS))
        if unknown or any(weight < 0 for _, weight in self.made_weights):
            raise ValueError(
                f"recipe {self.name}: made_weights takes weights ≥ 0 for kinds among {list(MAKERS)}, "
                f"not {self.made_weights}"
            )

    def build(self) -> Network:
        if self.network == "single":
            return SingleLayer(init_std=self.init_std)
        if self.network == "mlp":
            return MLP()
        return CNN(self.channels, self.hidden, abstains=self.abstains)

    def with_overrides(self, epochs: int | None, lr: float | None, batch_size: int | None) -> Recipe:
        changed = replace(
            self,
            epochs=epochs if epochs is not None else self.epochs,
            lr=lr if lr is not None else self.lr,
            batch_size=batch_size if batch_size is not None else self.batch_size,
        )
        # Keep ≥ 100 logged points (or every epoch for short runs).
        return replace(changed, log_every=max(1, min(self.log_every, changed.epochs // 100)))


RECIPES: dict[str, Recipe] = {
    # The tutorial exactly: N(0, 1) init saturates the sigmoid over 784 inputs, MSE's gradient
    # through a saturated sigmoid vanishes, and lr 0.001 cannot climb out.
    "article": Recipe(
        name="article",
        network="single",
        loss="mse",
        optimizer="sgd",
        lr=0.001,
        epochs=2000,
        batch_size=None,
        init_std=1.0,
        log_every=10,
    ),
    # Same network, loss and full-batch descent; small weights keep the sigmoid in its linear
    # range and a step of 1.0 suits MSE's small gradients.
    "article-fixed": Recipe(
        name="article-fixed",
        network="single",
        loss="mse",
        optimizer="sgd",
        lr=1.0,
        epochs=2000,
        batch_size=None,
        init_std=0.01,
        log_every=10,
    ),
    "mlp": Recipe(
        name="mlp",
        network="mlp",
        loss="bce",
        optimizer="adamw",
        lr=1e-3,
        epochs=8,
        batch_size=128,
    ),
    "cnn": Recipe(
        name="cnn",
        network="cnn",
        loss="bce",
        optimizer="adamw",
        lr=3e-3,
        epochs=30,  # what the spread over seeds, threads and kernels measured (bench/README.md)
        batch_size=128,
        schedule="onecycle",
        weight_decay=1e-4,
        # Wide enough that shifted, thick-penned, mouse-drawn and bent digits are still recognised;
        # elastic no stronger, since the more freely digits bend, the more scribbles pass for one.
        augmentation=Augmentation(shift_px=3.0, scale=0.18, rotate_deg=15.0, thicker=1.5, elastic_px=15.0),
        abstains=True,
        outliers=1.0,
        # Scribbles are the made kind a widely varied 3 or 7 is most often confused with.
        made_share=0.4,
        made_weights=(("scribbles", 5.0),),
    ),
}
DEFAULT_RECIPE = "cnn"
