"""Distances between sets of classifier features: FID, KID and PRDC (numpy only).

Every function takes two float arrays (N, D) of features (e.g. `EvaluatorScorer.score`'s
second output) and refuses sets too small for its estimate with a ValueError that says
how many rows it needs, rather than returning a number that means nothing.
"""

from __future__ import annotations

import numpy as np

from models.manifold import knn_radii, pairwise_distances

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # the usual subset size (Binkowski et al. 2018, torch-fidelity)
PRDC_K = 5  # Naeem et al. 2020's recommended neighbourhood size


def _features(feats: np.ndarray, name: str, min_rows: int) -> np.ndarray:
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2:
        raise ValueError(f"{name} must be (N, D) features, got shape {feats.shape}")
    if len(feats) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {len(feats)}")
    return feats


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negatives -> 0)."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0, None))) @ eigvecs.T


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (0 = same mean and cov).

    Uses tr(sqrt(cov_a cov_b)) = tr(sqrt(S cov_b S)) with S = sqrt(cov_a): both factors are
    symmetric PSD, so eigen-decompositions suffice (no scipy) and no complex parts appear.
    Needs at least 2 rows per set; with fewer rows than dimensions the covariances are
    singular, which the formula handles but which makes the estimate biased upwards.
    """
    a = _features(feats_a, "feats_a", 2)
    b = _features(feats_b, "feats_b", 2)
    _check_pair(a, b)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))  # (D, D), also for D = 1
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    mean_term = float(np.sum((a.mean(0) - b.mean(0)) ** 2))
    return max(0.0, mean_term + float(np.trace(cov_a) + np.trace(cov_b) - 2 * cross))


def _scale_like(feats: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets divided by the reference's root-mean-square coordinate (x.x / D = 1 on it).

    One scalar, not centred: centring and per-dimension stds made KID explode against the
    tight clusters of per-class reference sets, and the kernel was designed for raw
    non-negative (post-ReLU) Inception features anyway.
    """
    scale = np.sqrt(np.mean(reference**2))
    scale = scale if scale > 0 else 1.0  # an all-zero reference: nothing to scale by
    return feats / scale, reference / scale


def _unbiased_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3."""
    m, dim = a.shape
    k_aa = (a @ a.T / dim + 1) ** 3
    k_bb = (b @ b.T / dim + 1) ** 3
    k_ab = (a @ b.T / dim + 1) ** 3
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2 * k_ab.mean())


def kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD² averaged over random subsets (0 = same law).

    Unlike FID it is unbiased for small sets, so it suits a few hundred images per class.
    feats_b is the reference (the real images): both sets are first divided by its
    root-mean-square coordinate, so KID does not depend on the features' scale and is
    comparable across candidates judged against the same reference.

    Args:
        subsets: number of random subset pairs.
        subset_size: rows per subset, lowered to the smaller set's size; at least 2.
        seed: seeds the subset draws, so equal inputs give equal results.

    Returns:
        (mean, std) of MMD² over the subsets; the mean may be slightly negative.
    """
    a = _features(feats_a, "feats_a", 2)
    b = _features(feats_b, "feats_b", 2)
    _check_pair(a, b)
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    a, b = _scale_like(a, b)  # the kernel's x.y / D must be ~1: feature scale s grows KID as s^6
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        rows_a = rng.choice(len(a), m, replace=False)
        rows_b = rng.choice(len(b), m, replace=False)
        values.append(_unbiased_mmd2(a[rows_a], b[rows_b]))
    return float(np.mean(values)), float(np.std(values))


def prdc(real: np.ndarray, fake: np.ndarray, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones.

    Naeem et al. 2020: each sample's k-NN ball (radius = distance to its k-th neighbour in
    its own set) approximates the manifold. Precision: fraction of fakes inside some real
    ball; recall: fraction of reals inside some fake ball; density: real balls around each
    fake / k, averaged (can exceed 1); coverage: fraction of real balls holding any fake.

    Raises ValueError unless both sets have at least k + 1 rows (a k-th neighbour must
    exist); pass a smaller k for tiny classes.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    real = _features(real, f"real (k={k})", k + 1)
    fake = _features(fake, f"fake (k={k})", k + 1)
    _check_pair(real, fake)
    real_radii = knn_radii(real, k)  # (R,)
    fake_radii = knn_radii(fake, k)  # (F,)
    distances = pairwise_distances(real, fake)  # (R, F)
    inside_real = distances < real_radii[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((distances < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((distances.min(axis=1) < real_radii).mean()),
    }
