"""Market-1501 single-query evaluation: CMC (Rank-k) and mean average precision, vectorised.

The protocol is the dataset's own (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV
2015; its evaluation code ``market_evaluation.m`` / ``compute_AP.m``). For each query (identity q, camera c):

- **good** gallery images: identity q seen by a camera other than c;
- **junk** gallery images, removed from the ranked list before anything is counted: identity -1 boxes
  (bad detections) and identity q seen by camera c itself (trivially easy matches);
- everything else is a **negative**, including identity 0 (the "0000" distractor boxes).

The gallery is ranked by ascending distance with a *stable* sort, so ties keep the gallery order (MATLAB's
``sort`` is stable; ``np.argsort``'s default quicksort is not). With ``r_k`` the 1-based position of the
k-th good image among the non-junk images and ``G`` the number of good images:

- CMC: ``cmc[n] = 1`` when the first good image is at position <= n; Rank-n is its mean over queries;
- ``ap="standard"``: the non-interpolated AP of torchreid / fast-reid, ``AP = (1/G) sum_k k / r_k``;
- ``ap="official"``: the trapezoid rule of ``compute_AP.m``, ``AP = (1/G) sum_k (p_{k-1} + k / r_k) / 2``
  with ``p_{k-1} = (k - 1) / (r_k - 1)`` the precision one position earlier (1 when ``r_k = 1``).
  It is never larger than the standard AP, and equals it when all good images come first.

A query without any good image cannot be scored. The official code keeps it in the averages: its CMC row
stays all zeros (a miss at every rank) and its AP is ``0 / 0`` (NaN in MATLAB; Market-1501 has no such
query). torchreid and fast-reid skip it (``if not np.any(raw_cmc): continue``). Here ``no_match="zero"``
(default) counts it as a miss with AP 0 and ``no_match="skip"`` drops it from every average; either way the
result reports how many queries had no match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deformgan.errors import InputError

AP_CONVENTIONS = ("standard", "official")
NO_MATCH_POLICIES = ("zero", "skip")
#: Junk identity of Market-1501 (bad boxes) and the distractor identity ("0000", always a negative).
JUNK_IDENTITY, DISTRACTOR_IDENTITY = -1, 0


@dataclass(frozen=True)
class PerQueryResult:
    """Per-query outcome of the protocol, arrays of shape (Q,).

    first_match: 1-based position of the first good image among the non-junk gallery images (0 when the
    query has no good image); num_good: number of good images; average_precision: AP in the requested
    convention (NaN for a query without a good image); num_junk: junk images removed for that query.
    """

    first_match: np.ndarray
    num_good: np.ndarray
    average_precision: np.ndarray
    num_junk: np.ndarray


def _as_int_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise InputError(f"{name}: expected a 1-D sequence of integers, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise InputError(f"{name}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_inputs(distances, query_ids, query_cameras, gallery_ids, gallery_cameras):
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2:
        raise InputError(
            f"distances: expected a (num_query, num_gallery) matrix, got shape {distances.shape}"
        )
    num_query, num_gallery = distances.shape
    if num_query == 0 or num_gallery == 0:
        raise InputError(
            f"distances: expected at least one query and one gallery image, got {distances.shape}"
        )
    if not np.all(np.isfinite(distances)):
        bad = np.argwhere(~np.isfinite(distances))[0]
        raise InputError(f"distances: expected finite values, got {distances[tuple(bad)]} at {tuple(bad)}")
    q_ids = _as_int_vector(query_ids, "query_ids")
    q_cams = _as_int_vector(query_cameras, "query_cameras")
    g_ids = _as_int_vector(gallery_ids, "gallery_ids")
    g_cams = _as_int_vector(gallery_cameras, "gallery_cameras")
    for name, array, expected in (
        ("query_ids", q_ids, num_query),
        ("query_cameras", q_cams, num_query),
        ("gallery_ids", g_ids, num_gallery),
        ("gallery_cameras", g_cams, num_gallery),
    ):
        if array.shape[0] != expected:
            raise InputError(
                f"{name}: expected {expected} entries (distances is {distances.shape}), got {len(array)}"
            )
    if np.any(q_ids <= 0):
        index = int(np.argmax(q_ids <= 0))
        raise InputError(
            f"query_ids: expected positive identities (-1 junk and 0 distractors cannot be queries), "
            f"got {q_ids[index]} at query {index}"
        )
    if np.any(g_ids < JUNK_IDENTITY):
        index = int(np.argmax(g_ids < JUNK_IDENTITY))
        raise InputError(
            f"gallery_ids: expected identities >= -1, got {g_ids[index]} at gallery image {index}"
        )
    return distances, q_ids, q_cams, g_ids, g_cams


def per_query_results(
    distances,
    query_ids,
    query_cameras,
    gallery_ids,
    gallery_cameras,
    ap: str = "standard",
    chunk_size: int = 256,
) -> PerQueryResult:
    """Apply the Market-1501 protocol (module docstring) to each query.

    distances: (Q, G), smaller = more similar; ids/cameras: integer vectors of length Q and G.
    ``chunk_size`` queries are processed at a time (memory ~ 20 bytes x chunk_size x G).
    """
    if ap not in AP_CONVENTIONS:
        raise InputError(f"ap: expected one of {', '.join(AP_CONVENTIONS)}, got {ap!r}")
    distances, q_ids, q_cams, g_ids, g_cams = _check_inputs(
        distances, query_ids, query_cameras, gallery_ids, gallery_cameras
    )
    num_query = distances.shape[0]
    first_match = np.zeros(num_query, dtype=np.int64)
    num_good = np.zeros(num_query, dtype=np.int64)
    num_junk = np.zeros(num_query, dtype=np.int64)
    average_precision = np.full(num_query, np.nan)
    for start in range(0, num_query, chunk_size):
        rows = slice(start, min(start + chunk_size, num_query))
        order = np.argsort(distances[rows], axis=1, kind="stable")
        ids, cams = g_ids[order], g_cams[order]
        same_id = ids == q_ids[rows, None]
        same_cam = cams == q_cams[rows, None]
        junk = (ids == JUNK_IDENTITY) | (same_id & same_cam)
        good = same_id & ~same_cam & ~junk
        # 1-based position of each ranked image among the non-junk ones (meaningful where not junk).
        position = np.cumsum(~junk, axis=1, dtype=np.int64)
        hits = np.cumsum(good, axis=1, dtype=np.int64)  # k for the k-th good image, at its position
        count = hits[:, -1]
        num_good[rows] = count
        num_junk[rows] = junk.sum(axis=1)
        has_good = count > 0
        first = np.argmax(good, axis=1)
        first_match[rows] = np.where(has_good, position[np.arange(len(first)), first], 0)
        k = hits.astype(np.float64)
        r = position.astype(np.float64)  # 0 only at junk images before the first valid one (masked below)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = k / r
            if ap == "standard":
                terms = np.where(good, precision, 0.0)
            else:
                previous = np.where(r > 1, (k - 1.0) / (r - 1.0), 1.0)
                terms = np.where(good, 0.5 * (previous + precision), 0.0)
            average_precision[rows] = np.where(has_good, terms.sum(axis=1) / count, np.nan)
    return PerQueryResult(
        first_match=first_match, num_good=num_good, average_precision=average_precision, num_junk=num_junk
    )


def evaluate_ranking(
    distances,
    query_ids,
    query_cameras,
    gallery_ids,
    gallery_cameras,
    ap: str = "standard",
    no_match: str = "zero",
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
) -> dict:
    """Market-1501 CMC and mAP of a distance matrix (module docstring for the protocol and conventions).

    distances: (Q, G) array, smaller = more similar (any scale); query/gallery ids and cameras: integer
    vectors (-1 = junk box, 0 = distractor; queries must have identities > 0). ap: "standard"
    (non-interpolated, torchreid / fast-reid) or "official" (trapezoid, ``compute_AP.m``). no_match:
    "zero" (a query without a good gallery image is a miss with AP 0, as the official CMC counts it) or
    "skip" (dropped from the averages, as torchreid does).

    Returns a dict of plain Python values: ``rank1``, ``rank5``, ``rank10`` (one ``rank<n>`` per entry
    of ``ranks``) and ``mAP`` as fractions in [0, 1]; ``cmc`` (the CMC curve at ranks 1..max_rank);
    ``num_queries``, ``num_evaluated`` (queries in the averages), ``num_without_match``, ``num_gallery``,
    ``ap`` and ``no_match``.
    """
    if no_match not in NO_MATCH_POLICIES:
        raise InputError(f"no_match: expected one of {', '.join(NO_MATCH_POLICIES)}, got {no_match!r}")
    ranks = [int(n) for n in ranks]
    if any(n < 1 for n in ranks) or not isinstance(max_rank, int) or max_rank < 1:
        raise InputError(f"ranks / max_rank: expected positive integers, got {ranks} / {max_rank!r}")
    result = per_query_results(distances, query_ids, query_cameras, gallery_ids, gallery_cameras, ap=ap)
    matched = result.num_good > 0
    num_without = int((~matched).sum())
    if no_match == "skip":
        if not matched.any():
            raise InputError(
                "no query has a good gallery image (same identity, other camera): nothing to score"
            )
        first, aps = result.first_match[matched], result.average_precision[matched]
    else:
        first, aps = result.first_match, np.where(matched, result.average_precision, 0.0)
    found = first > 0

    def rank_rate(n: int) -> float:
        return float(np.mean(found & (first <= n)))

    summary: dict = {f"rank{n}": rank_rate(n) for n in ranks}
    summary["mAP"] = float(np.mean(aps))
    summary["cmc"] = [rank_rate(n) for n in range(1, max_rank + 1)]
    summary.update(
        num_queries=int(len(result.first_match)),
        num_evaluated=int(len(first)),
        num_without_match=num_without,
        num_gallery=int(np.asarray(distances).shape[1]),
        ap=ap,
        no_match=no_match,
    )
    return summary
