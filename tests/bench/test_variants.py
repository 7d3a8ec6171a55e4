"""bench.variants' own arithmetic; its whole run is in test_scripts.py."""

from __future__ import annotations

import numpy as np

from bench.variants import rejected_at_made_share


def test_the_frontier_threshold_rejects_exactly_the_made_share() -> None:
    made = np.arange(100.0)  # scores 0..99: rejecting 99% of them accepts the lowest, 0
    scores = np.array([0.0, 0.5, 1.0, 50.0])
    assert rejected_at_made_share(scores, made, 0.99) == 0.75  # all but the one at 0
    assert rejected_at_made_share(scores, made, 0.98) == 0.25  # accepts 0 and 1: only 50 is above
    assert rejected_at_made_share(scores, made, 1.0) == 1.0  # every made image rejected, so all of these
    assert rejected_at_made_share(scores, np.arange(2000.0), 0.99) == 0.25  # 20 accepted, 0..19
