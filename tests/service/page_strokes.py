"""Pen paths for the drawing page's tests: each drawing a list of strokes, each stroke (x, y) points in [0, 1]."""

from __future__ import annotations

import math

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, r: float, start: float, end: float, points: int = 14) -> Stroke:
    """Points along a circle from angle `start` to `end` (radians, y pointing down, as on screen)."""
    return [
        (
            cx + r * math.cos(start + (end - start) * i / (points - 1)),
            cy + r * math.sin(start + (end - start) * i / (points - 1)),
        )
        for i in range(points)
    ]


# Two bowls open to the left, drawn in one stroke as a hand does.
THREE: list[Stroke] = [
    _arc(0.48, 0.33, 0.15, -0.85 * math.pi, 0.5 * math.pi) + _arc(0.48, 0.66, 0.18, -0.5 * math.pi, 0.85 * math.pi)
]
# A bar, then the stem down and to the left, in one stroke.
SEVEN: list[Stroke] = [
    [(0.26, 0.2), (0.4, 0.2), (0.55, 0.2), (0.72, 0.2), (0.64, 0.36), (0.55, 0.55), (0.47, 0.72), (0.42, 0.84)]
]
# A cross-hatch: five lines each way across a square, like nothing MNIST's 3s and 7s hold.
HATCH: list[Stroke] = [[(0.2, y), (0.5, y), (0.8, y)] for y in (0.2, 0.35, 0.5, 0.65, 0.8)] + [
    [(x, 0.2), (x, 0.5), (x, 0.8)] for x in (0.2, 0.35, 0.5, 0.65, 0.8)
]
# Shapes that stress the resampling and centring: a thin upright bar (width rounds to a few pixels),
# a small dot off in a corner, and ink running off the pad's edge (so the border holds ink).
BAR: list[Stroke] = [[(0.5, 0.15), (0.5, 0.5), (0.5, 0.85)]]
DOT: list[Stroke] = [[(0.85, 0.12), (0.86, 0.13)]]
OFF_EDGE: list[Stroke] = [[(0.05, 0.4), (0.3, 0.45), (0.6, 0.6), (1.1, 0.7)]]
