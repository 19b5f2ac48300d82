"""One-dimensional k-means and k-means++ seeding for the initialisation sample.

scikit-learn runs k-means on all rows; gpuvgm runs it on a seeded uniform sample of each column
(a few hundred thousand values at most), then assigns every row to its nearest center in one
full pass. In one dimension Lloyd's iterations reduce to sorting and prefix sums.
"""

from __future__ import annotations

import math

import numpy as np


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's variant with
    ``2 + log(k)`` local trials). Returns the indices of the chosen points, shape (k,)."""
    n = x.size
    n_trials = 2 + int(math.log(k))
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(n)
    closest = (x - x[idx[0]]) ** 2  # (n,)
    for c in range(1, k):
        pot = closest.sum()
        if pot <= 0:  # every point sits on a center: any choice is as good
            idx[c] = rng.integers(n)
            continue
        cand = np.searchsorted(np.cumsum(closest), rng.random(n_trials) * pot)
        cand = np.minimum(cand, n - 1)
        dist = np.minimum(closest, (x[None, :] - x[cand][:, None]) ** 2)  # (trials, n)
        best = int(np.argmin(dist.sum(axis=1)))
        idx[c] = cand[best]
        closest = dist[best]
    return idx


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 300, tol: float = 1e-4
) -> np.ndarray:
    """Lloyd's k-means on 1-D data from k-means++ seeds. Returns the centers, shape (k,).

    Empty clusters keep their center. ``tol`` is relative to the data variance, as in
    scikit-learn.
    """
    xs = np.sort(np.asarray(x, dtype=np.float64))
    centers = xs[kmeans_plusplus(xs, k, rng)]
    prefix = np.concatenate([[0.0], np.cumsum(xs)])
    tol_abs = tol * float(np.var(xs))
    for _ in range(max_iter):
        order = np.argsort(centers, kind="stable")
        sc = centers[order]
        bounds = np.searchsorted(xs, 0.5 * (sc[1:] + sc[:-1]), side="right")
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [xs.size]])
        counts = ends - starts
        sums = prefix[ends] - prefix[starts]
        new_sorted = np.where(counts > 0, sums / np.maximum(counts, 1), sc)
        new = np.empty_like(centers)
        new[order] = new_sorted
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= tol_abs:
            break
    return centers
