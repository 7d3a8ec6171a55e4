"""Recipes: what they build and how flags override them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trainer.models import Network
from trainer.recipes import DEFAULT_RECIPE, RECIPES


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_builds_a_network(name: str) -> None:
    assert isinstance(RECIPES[name].build(), Network)


def test_flags_override_recipe_and_keep_enough_logged_points() -> None:
    article = RECIPES["article"]
    assert article.with_overrides(None, None, None).log_every == 10  # 2000 epochs → 200 points
    short = article.with_overrides(300, 0.5, None)
    assert (short.epochs, short.lr, short.log_every) == (300, 0.5, 3)
    assert RECIPES["cnn"].with_overrides(2, None, 64).batch_size == 64


def test_the_default_recipe_abstains_and_only_cnn_recipes_can() -> None:
    assert RECIPES[DEFAULT_RECIPE].abstains and RECIPES[DEFAULT_RECIPE].build().abstains
    assert not any(RECIPES[name].build().abstains for name in ("article", "article-fixed", "mlp"))
    for name in ("article-fixed", "mlp"):
        with pytest.raises(ValueError, match="can abstain"):
            replace(RECIPES[name], abstains=True, outliers=0.5)
    with pytest.raises(ValueError, match="can abstain"):
        replace(RECIPES["cnn"], outliers=0.0)


def test_made_outliers_are_checked_when_a_recipe_is_written() -> None:
    cnn = RECIPES["cnn"]
    with pytest.raises(ValueError, match="made_share"):
        replace(cnn, made_share=1.5)
    with pytest.raises(ValueError, match="made_weights"):
        replace(cnn, made_weights=(("squiggles", 2.0),))
    with pytest.raises(ValueError, match="made_weights"):
        replace(cnn, made_weights=(("scribbles", -1.0),))
    with pytest.raises(ValueError, match="made_mined"):
        replace(cnn, made_mined=1.5)
    with pytest.raises(ValueError, match="made_mined"):
        replace(RECIPES["mlp"], made_mined=0.5)
