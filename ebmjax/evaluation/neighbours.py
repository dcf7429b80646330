"""Nearest neighbours in pixel space: the overfitting check of the MDSM paper (appendix C, Fig. A2).

Each sample is shown beside its k nearest (L2) training images; a model that memorises shows
near-copies. As a number, the mean distance from samples to their nearest training image is
compared with the same distance from held-out test images: samples much closer to the training
set than test images are suggest memorisation. numpy only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ebmjax.errors import ConfigError

__all__ = ["Neighbours", "nearest_neighbours", "neighbour_grid"]


class Neighbours(NamedTuple):
    """indices (n, k) into the reference set, nearest first; distances (n, k) L2 in pixel units."""

    indices: np.ndarray
    distances: np.ndarray


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, k: int = 10, *,
                       chunk: int = 256) -> Neighbours:
    """The ``k`` nearest reference rows (L2) of every query; inputs (n, ...) and (N, ...) of one shape.

    Candidates come from |q|^2 - 2 q.r + |r|^2 in float32 (one matrix product per chunk of queries);
    the distances of the k kept are recomputed exactly in float64 and sorted, ties by index.
    """
    q = np.asarray(queries, np.float32).reshape(len(queries), -1)
    r = np.asarray(reference, np.float32).reshape(len(reference), -1)
    if q.shape[1] != r.shape[1]:
        raise ConfigError(f"queries and reference differ in size per example: {q.shape[1]} vs {r.shape[1]}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(r):
        raise ConfigError(f"k must be an integer in [1, {len(r)}] (the reference size), got {k!r}.")
    r_sq = np.einsum("ij,ij->i", r, r)
    # Keep a few spare candidates so float32 rounding cannot push a true neighbour out of the top k.
    m = min(len(r), k + 8)
    idx_out = np.empty((len(q), k), np.int64)
    dist_out = np.empty((len(q), k), np.float64)
    for s in range(0, len(q), chunk):
        qc = q[s:s + chunk]
        d2 = np.einsum("ij,ij->i", qc, qc)[:, None] - 2.0 * qc @ r.T + r_sq[None, :]
        cand = np.argpartition(d2, m - 1, axis=1)[:, :m] if m < len(r) else np.tile(np.arange(len(r)), (len(qc), 1))
        diff = qc[:, None, :].astype(np.float64) - r[cand].astype(np.float64)
        exact = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.lexsort((cand, exact), axis=1)[:, :k]
        idx_out[s:s + chunk] = np.take_along_axis(cand, order, axis=1)
        dist_out[s:s + chunk] = np.take_along_axis(exact, order, axis=1)
    return Neighbours(idx_out, dist_out)


def neighbour_grid(queries: np.ndarray, reference: np.ndarray, neighbours: Neighbours) -> np.ndarray:
    """Rows of [query, its k neighbours] as one NHWC batch (n * (k + 1), H, W, C) for an image grid
    with k + 1 columns."""
    q = np.asarray(queries, np.float32)
    ref = np.asarray(reference, np.float32)
    rows = [np.concatenate([q[i:i + 1], ref[neighbours.indices[i]]]) for i in range(len(q))]
    return np.concatenate(rows)
