"""Drift of a deployment's inputs: Frouros' MMD detector with a permutation test, window against reference.

Why MMD: one multivariate test over all the image statistics at once, so one p-value a window (no correction
over 19 per-feature tests, as KS would need) and it sees shifts in how features vary together (a colour cast
with a contrast change), not only in each feature's own distribution. The permutation test makes its p-value
valid for the window size used, whatever the features' distribution.

Frouros' MMD gives the statistic. Its permutation callback is not used: it forks a multiprocessing Pool at every
evaluation (with a process-wide `np.random.seed`), which can deadlock a threaded server such as Jupyter's and
costs a fork each time. Here the null distribution comes from the same unbiased MMD² estimate computed for
every permutation at once from the (reference + window)² kernel matrix, with a generator of our own; the
p-value is (1 + #{permuted >= observed}) / (1 + permutations) (Phipson & Smyth). Its cost is measured in
bench/monitoring.py.

Features are standardized with the reference's mean and spread, and the RBF kernel's width is the median
distance between reference points (the usual heuristic), so no feature dominates by its units.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from frouros.detectors.data_drift import MMD
from frouros.utils.kernels import rbf_kernel
from scipy.spatial.distance import pdist

MIN_REFERENCE = 20  # reference images needed at least


@dataclass(frozen=True)
class Evaluation:
    statistic: float
    p_value: float
    size: int


class DriftDetector:
    """A reference's features, fitted once; `evaluate` tests one window of inputs' features against it."""

    def __init__(self, reference: np.ndarray, permutations: int = 500, seed: int = 0):
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or len(reference) < MIN_REFERENCE:
            raise ValueError(f"a reference needs at least {MIN_REFERENCE} images")
        self.mean = reference.mean(axis=0)
        spread = reference.std(axis=0)
        self.scale = np.where(spread > 1e-9, spread, 1.0)
        self.reference = self._standardize(reference)
        sigma = float(np.median(pdist(self.reference))) or 1.0
        self.kernel = functools.partial(rbf_kernel, sigma=sigma)
        self.permutations, self.seed = permutations, seed
        self.detector = MMD(kernel=self.kernel)
        self.detector.fit(X=self.reference)

    def _standardize(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, dtype=np.float64) - self.mean) / self.scale

    def evaluate(self, window: np.ndarray) -> Evaluation:
        window = self._standardize(window)
        result, _ = self.detector.compare(X=window)
        observed = float(result.distance)
        permuted = self.null_distribution(window)
        p_value = (1 + int(np.sum(permuted >= observed))) / (1 + len(permuted))
        return Evaluation(observed, p_value, len(window))

    def null_distribution(self, window: np.ndarray) -> np.ndarray:
        """The unbiased MMD² of `permutations` random splits of reference + window into their two sizes."""
        n, m = len(self.reference), len(window)
        data = np.concatenate([self.reference, window])
        kernel = self.kernel(data, data)
        rng = np.random.default_rng(self.seed)
        in_x = np.zeros((self.permutations, n + m))
        for row in in_x:
            row[rng.permutation(n + m)[:n]] = 1.0
        in_y = 1.0 - in_x
        kx, ky = in_x @ kernel, in_y @ kernel
        xx = np.einsum("ij,ij->i", kx, in_x) - n  # the diagonal (k(x, x) = 1) left out
        yy = np.einsum("ij,ij->i", ky, in_y) - m
        xy = np.einsum("ij,ij->i", kx, in_y)
        return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)
