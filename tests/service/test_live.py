"""The live metrics count the same, call by call, whether a call has a few images (plain Python) or many
(numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service.live import CHAMPION, FEW, OOD_BUCKETS, P_THREE_BUCKETS, LiveMetrics
from service.predictor import Predictions


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith(("mnist37_answers", "mnist37_p_three", "mnist37_ood_score"))
    }


@pytest.mark.parametrize("abstains", [True, False])
def test_few_images_a_call_are_counted_as_many_at_once_are(abstains: bool) -> None:
    rng = np.random.default_rng(0)
    n = 300
    # Values on every bucket's bound, and NaN, besides random ones: the edges where two ways could differ.
    p_three = np.concatenate([np.array((*P_THREE_BUCKETS, np.nan, 0.0, 1.0)), rng.random(n)]).astype(np.float32)
    ood = np.concatenate([np.array((*OOD_BUCKETS, np.nan, 0.0, 1.0)), rng.random(n) ** 4]).astype(np.float32)
    p_three, ood = p_three[: len(ood)], ood[: len(p_three)]
    size = len(p_three)
    digits = np.where(rng.random(size) < 0.5, 3, 7).astype(np.int32)
    known = rng.random(size) < 0.8 if abstains else None
    whole = Predictions(digits, p_three, "1", known, ood if abstains else None)

    at_once, one_by_few = CollectorRegistry(), CollectorRegistry()
    LiveMetrics(at_once).answered(CHAMPION, whole)
    live = LiveMetrics(one_by_few)
    start = 0
    while start < size:
        end = min(size, start + 1 + start % FEW)  # calls of 1 to FEW images
        part = slice(start, end)
        live.answered(
            CHAMPION,
            Predictions(
                digits[part],
                p_three[part],
                "1",
                None if known is None else known[part],
                ood[part] if abstains else None,
            ),
        )
        start = end

    many, few = _samples(at_once), _samples(one_by_few)
    assert many.keys() == few.keys() and len(many) > 10
    for key, value in many.items():
        if key[0].endswith("_sum"):  # float sums in another order; NaN makes both NaN
            assert few[key] == pytest.approx(value, rel=1e-5, nan_ok=True), key
        else:
            assert few[key] == value, key
    answers = {dict(k[1])["answer"]: v for k, v in many.items() if k[0] == "mnist37_answers_total"}
    recognised = size if known is None else int(known.sum())
    assert answers["neither"] == size - recognised and answers["3"] + answers["7"] == recognised
