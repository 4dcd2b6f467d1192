"""Statistics over seeds, from scipy.stats: the percentile-bootstrap CI of a mean (over the
seeds, every step sharing the same resamples), of a difference of two means (each side
resampled on its own), and a two-sided permutation test of that difference (exact over
every relabelling when there are few enough). Fixed random seeds: the same runs always give
the same figures."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
# permutation_p enumerates every split of the pooled seeds up to this many (8 + 8 seeds: 12,870).
MAX_EXACT_SPLITS = 200_000


def _mean(x: np.ndarray, axis: int) -> np.ndarray:
    return x.mean(axis=axis)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


def bootstrap_ci(
    samples: np.ndarray,
    n_boot: int = N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 (the seeds) and its percentile-bootstrap CI at ``level``.

    ``samples`` has shape (n_seeds,) or (n_seeds, n_steps); all steps share the same resamples
    of the seeds. With fewer than two seeds the bounds are NaN: there is no spread to resample.
    """
    x = np.asarray(samples, dtype=np.float64)
    mean = x.mean(axis=0)
    if x.shape[0] < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy()
    ci = stats.bootstrap(
        (x,), _mean, n_resamples=n_boot, confidence_level=level, method="percentile",
        axis=0, vectorized=True, random_state=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    return mean, np.asarray(ci.low), np.asarray(ci.high)


def bootstrap_difference_ci(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = N_BOOTSTRAP,
    level: float = CI_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its percentile-bootstrap CI at ``level``, the seeds of each side
    resampled on their own (the two sides are independent runs). NaN bounds where a side has
    fewer than two seeds."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, math.nan, math.nan
    ci = stats.bootstrap(
        (a, b), _mean_difference, n_resamples=n_boot, confidence_level=level,
        method="percentile", vectorized=True, paired=False,
        random_state=np.random.default_rng(seed),
    ).confidence_interval  # fmt: skip
    return diff, float(ci.low), float(ci.high)


def permutation_p(
    a: np.ndarray, b: np.ndarray, max_splits: int = MAX_EXACT_SPLITS, seed: int = BOOTSTRAP_SEED
) -> tuple[float, int]:
    """Two-sided p-value of mean(a) - mean(b) under the null that the labels are exchangeable.
    Exact (every split of the pooled values) when there are at most ``max_splits``; else that
    many random relabellings, with the observed one counted in. Returns (p, relabellings)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if min(a.size, b.size) < 2:
        return _single_value_side_p(a, b)
    exact = math.comb(a.size + b.size, a.size) <= max_splits
    result = stats.permutation_test(
        (a, b), _mean_difference, permutation_type="independent", vectorized=True,
        n_resamples=max_splits, alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )  # fmt: skip
    used = result.null_distribution.size + (0 if exact else 1)
    return float(result.pvalue), used


def _single_value_side_p(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """permutation_p where a side holds one value (scipy.stats.permutation_test needs two):
    the n relabellings give that side each pooled value in turn; exact."""
    single, other = (a, b) if a.size == 1 else (b, a)
    pooled = np.concatenate([single, other])
    n = pooled.size
    diffs = np.abs(pooled - (pooled.sum() - pooled) / (n - 1))
    # Relabellings equal to the observed one up to rounding count as at least as extreme.
    extreme = np.count_nonzero(diffs >= diffs[0] - 1e-9 * max(1.0, diffs[0]))
    return float(extreme / n), n
