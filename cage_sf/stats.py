"""The statistics every score in cage-sf is reported with: mean and SEM, paired differences on matched seeds,
and groups of episodes pooled from their summaries (CybORG's evaluation.py writes a mean and stdev per process)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean, stdev


def mean_and_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    values = [float(v) for v in values]
    return mean(values), (stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and SE of a - b over matched episodes (same seeds): what both episodes share (the network drawn at the
    start, red's first moves) cancels, so the SE is smaller than that of the difference of two independent means."""
    return mean_and_sem([x - y for x, y in zip(a, b, strict=True)])


@dataclass(frozen=True)
class Group:
    """Mean, sample stdev and size of some episodes' returns (e.g. one evaluation.py process)."""

    mean: float
    stdev: float
    n: int

    @classmethod
    def of(cls, returns: list[float]) -> Group:
        return cls(mean(returns), stdev(returns) if len(returns) > 1 else 0.0, len(returns))


def pooled(groups: list[Group]) -> tuple[float, float, int]:
    """Mean, SEM and count of all episodes of several groups from each group's mean, stdev and size alone:
    the exact sample variance of the union is (sum of within-group squares + sum of n_i (m_i - m)^2) / (N - 1)."""
    n = sum(g.n for g in groups)
    if n == 0:
        raise ValueError("no episodes to pool")
    m = sum(g.n * g.mean for g in groups) / n
    if n == 1:
        return m, 0.0, 1
    squares = sum((g.n - 1) * g.stdev**2 + g.n * (g.mean - m) ** 2 for g in groups)
    return m, math.sqrt(squares / (n - 1) / n), n
