"""Exact duplicates (sha256), near-duplicate embeddings across splits, and class balance per split."""

from __future__ import annotations

import heapq
from typing import Any, Iterator, Sequence

import numpy as np

from featurekit.audit.report import DuplicateGroup, Member
from featurekit.cache.reader import read_rows
from featurekit.data import SPLITS
from featurekit.parameters import AUDIT_MEMORY_BUDGET_MB, MAX_LISTED, NEAR_DUPLICATE_THRESHOLD



def split_rank(split: str) -> tuple[int, str]:
    """Sort key: train, valid, test, then any other split name alphabetically."""
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split)


def find_exact_duplicates(paths: Sequence[str], splits: Sequence[str], labels: Sequence[str],
                          sha256: Sequence[str]) -> tuple[list[DuplicateGroup], list[DuplicateGroup]]:
    """Groups of files sharing a sha256: (groups spanning several splits, groups inside one split)."""
    by_hash: dict[str, list[Member]] = {}
    for path, split, label, digest in zip(paths, splits, labels, sha256):
        by_hash.setdefault(digest, []).append(Member(path, split, label))
    groups = [DuplicateGroup(digest, sorted({m.split for m in members}, key=split_rank),
                             len({m.label for m in members}) > 1,
                             sorted(members, key=lambda m: (split_rank(m.split), m.path)))
              for digest, members in sorted(by_hash.items(), key=lambda item: item[1][0].path) if len(members) > 1]
    return [g for g in groups if len(g.splits) > 1], [g for g in groups if len(g.splits) == 1]


def class_balance(labels: np.ndarray, splits: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Counts and fractions of each class per split (and over all images)."""
    out = {}
    for split in sorted(set(splits.tolist()), key=split_rank) + ["all"]:
        rows = labels if split == "all" else labels[splits == split]
        counts = {name: int((rows == index).sum()) for index, name in enumerate(class_names)}
        out[split] = {"total": len(rows), "counts": counts,
                      "fractions": {name: count / max(len(rows), 1) for name, count in counts.items()}}
    return out


def balance_warnings(balance: dict[str, dict[str, Any]], class_names: Sequence[str], tolerance: float) -> list[str]:
    """A split missing a class, or whose class mix differs from the whole set's by more than `tolerance`."""
    warnings = []
    overall = balance["all"]["fractions"]
    for split, row in balance.items():
        missing = [name for name in class_names if row["counts"][name] == 0]
        off = [name for name in class_names if abs(row["fractions"][name] - overall[name]) > tolerance]
        if split == "all" or row["total"] == 0:
            continue
        if missing:
            warnings.append(f"IMBALANCE: the {split} split has no {', '.join(missing)} images; "
                            "metrics on it are undefined or meaningless.")
        elif off:
            warnings.append(f"IMBALANCE: the {split} split is {row['fractions'][off[0]]:.1%} {off[0]} against "
                            f"{overall[off[0]]:.1%} over all images (tolerance {tolerance:.0%}); accuracy there "
                            "is not comparable with the other splits.")
    return warnings


def _mean_row(features: Any, block_rows: int) -> np.ndarray:
    """Mean embedding over all rows, read in contiguous blocks (float64 sums, float32 result)."""
    sums = (np.asarray(features[start: start + block_rows], dtype=np.float64).sum(axis=0)
            for start in range(0, features.shape[0], block_rows))
    return (sum(sums, np.zeros(features.shape[1])) / max(features.shape[0], 1)).astype(np.float32)


def _normalised_blocks(features: Any, rows: np.ndarray, block_rows: int,
                       mean: np.ndarray | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(rows), block_rows):
        chunk = rows[start: start + block_rows]
        block = read_rows(features, chunk, span_rows=4 * block_rows)
        if mean is not None:
            block = block - mean
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        # Zero rows stay zero (similarity 0 with everything) instead of dividing by zero.
        yield chunk, np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)


def find_near_duplicates(features: Any, splits: np.ndarray, threshold: float = NEAR_DUPLICATE_THRESHOLD,
                         max_listed: int = MAX_LISTED, memory_budget_bytes: int = AUDIT_MEMORY_BUDGET_MB * 2**20,
                         same_bytes: np.ndarray | None = None, center: bool = True
                         ) -> tuple[list[tuple[float, int, int]], int]:
    """Pairs of rows in different splits whose cosine similarity is at least `threshold`.

    Embeddings are centred first (the mean embedding of all rows subtracted), by default. Pooled ReLU
    features are all non-negative, so their raw cosine similarities crowd near 1: on the shared faces'
    VGG16 `block2_pool` mean+std cache the median raw cosine of two different faces is 0.970 and 6,076
    pairs across splits exceed 0.99, while centred the median is 0.01 and the most similar pair of
    different faces is 0.98. A true copy stays at 1 either way.

    Every split is compared with every later split (train with valid and test, valid with test), one
    block pair at a time: memory holds two blocks of L2-normalised rows and their similarity matrix,
    sized from `memory_budget_bytes`, whatever the number of rows. When all normalised rows fit in
    half the budget they are read once; otherwise blocks are re-read from the dataset as needed.
    The work is quadratic: 140,000 rows of 1,024 features take minutes on 2 cores.

    Args:
        features: (N, D) array or h5py dataset of embeddings.
        splits: (N,) split of every row.
        threshold: Cosine similarity from which a pair counts as a near-duplicate.
        max_listed: Pairs kept (the most similar); all are counted.
        memory_budget_bytes: Bound on the arrays this function holds at once.
        same_bytes: Optional (N,) content ids (e.g. sha256); pairs with equal ids are exact duplicates,
            listed elsewhere, and are neither counted nor listed here.
        center: Subtract the mean embedding before the cosine (see above); False gives raw cosine.

    Returns:
        ([(similarity, row_a, row_b), ...] most similar first, total pairs found).
    """
    n_rows, dim = features.shape
    bytes_per_row = 4 * max(dim, 1)
    if n_rows * bytes_per_row <= memory_budget_bytes // 2:
        features = np.asarray(features[:], dtype=np.float32)
        memory_budget_bytes //= 2
    # Held at once: two normalised blocks and a read span of four blocks (about 8 blocks of rows), and a
    # block x block similarity matrix with its boolean mask (5 bytes per entry, at most 4,096 rows).
    block_rows = int(np.clip(memory_budget_bytes // (8 * bytes_per_row + 5 * 4096), 64, 4096))
    mean = _mean_row(features, 4 * block_rows) if center else None
    kept: list[tuple[float, int, int]] = []  # a min-heap of the most similar pairs
    count = 0
    names = sorted(set(splits.tolist()), key=split_rank)
    for index, first in enumerate(names):
        rows_first = np.flatnonzero(splits == first)
        rows_later = np.flatnonzero(np.isin(splits, names[index + 1:]))  # empty for the last split
        for rows_a, block_a in _normalised_blocks(features, rows_first, block_rows, mean):
            for rows_b, block_b in _normalised_blocks(features, rows_later, block_rows, mean):
                hits_a, hits_b = np.nonzero(block_a @ block_b.T >= np.float32(threshold))
                a, b = rows_a[hits_a], rows_b[hits_b]
                if same_bytes is not None:
                    keep = same_bytes[a] != same_bytes[b]
                    a, b, hits_a, hits_b = a[keep], b[keep], hits_a[keep], hits_b[keep]
                similarity = np.einsum("ij,ij->i", block_a[hits_a], block_b[hits_b])
                count += len(a)
                for s, i, j in zip(similarity.tolist(), a.tolist(), b.tolist()):
                    if len(kept) < max_listed:
                        heapq.heappush(kept, (s, i, j))
                    elif max_listed and s > kept[0][0]:
                        heapq.heapreplace(kept, (s, i, j))
    return sorted(kept, reverse=True), count
