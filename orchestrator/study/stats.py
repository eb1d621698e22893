"""The statistics over seeds that tables, the report, findings and halving share.

A group of trials that differ only in their seed gives a sample of a metric; its mean comes
with a two-sided 95% interval from Student's t (``scipy.stats``), and halving compares arms
by their standard errors. One seed has no spread: the interval and the error are None.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats

CONFIDENCE = 0.95


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (``values`` must not be empty)."""
    return float(statistics.mean(values))


def standard_error(values: Sequence[float]) -> float | None:
    """Sample standard deviation over ``sqrt(n)``; None for fewer than two values."""
    n = len(values)
    return statistics.stdev(values) / math.sqrt(n) if n > 1 else None


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided ``confidence`` quantile of Student's t with ``df`` degrees of freedom."""
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_interval(values: Sequence[float],
                  confidence: float = CONFIDENCE) -> tuple[float, float | None]:
    """Mean and half-width of its ``confidence`` t-interval (None for a single value)."""
    error = standard_error(values)
    middle = mean(values)
    return middle, None if error is None else t_quantile(len(values) - 1, confidence) * error
