"""Market-1501 evaluation (deformgan.reid.evaluate_ranking): hand-worked case, loop reference, properties."""

from __future__ import annotations

import numpy as np
import pytest

from deformgan.errors import InputError
from deformgan.reid import evaluate_ranking, per_query_results

# Gallery of the hand-worked example: (identity, camera) per image.
GALLERY = [(1, 1), (2, 2), (1, 2), (-1, 3), (0, 2), (1, 3), (3, 1)]
QUERIES = [(1, 1), (2, 1), (4, 2)]
DISTANCES = [
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6],  # query A: identity 1, camera 1 (g5 and g6 tie)
    [0.3, 0.05, 0.2, 0.1, 0.4, 0.5, 0.6],  # query B: identity 2, camera 1
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],  # query C: identity 4, nowhere in the gallery
]


def _evaluate(**kwargs):
    q_ids, q_cams = zip(*QUERIES, strict=True)
    g_ids, g_cams = zip(*GALLERY, strict=True)
    return evaluate_ranking(DISTANCES, q_ids, q_cams, g_ids, g_cams, **kwargs)


def test_hand_worked_example():
    """Query A (identity 1, camera 1), gallery ranked by distance: g0 (1, c1) is junk (same identity, same
    camera), g1 (2) a negative, g2 (1, c2) good, g3 (-1) junk, g4 (0, a distractor) a negative, g5 (1, c3)
    good, g6 (3) a negative; g5 and g6 tie at 0.6 and the stable sort keeps g5 first. Without the junk the
    list is [neg, GOOD, neg, GOOD, neg]: good images at positions r = 2 and 4, G = 2.
      standard AP = (1/2) (1/2 + 2/4) = 0.5
      official AP = (1/2) [(p0 + 1/2)/2 + (p1 + 2/4)/2] with p0 = 0/1 (precision at position 1) and
                    p1 = 1/3 (at position 3) = (1/2) (1/4 + 5/12) = 1/3
      first match at position 2: a Rank-1 miss, a Rank-5 hit.
      (Ties broken the other way would put the second good image at r = 5: standard AP 0.45.)
    Query B (identity 2, camera 1): g1 (2, c2) is nearest, the only good image: AP 1 in both conventions
    (official: (1 + 1)/2 = 1), Rank-1 hit. The -1 box g3, second nearest, is junk and does not count.
    Query C (identity 4): no good image at all.
      no_match="zero": Rank-1 = 1/3, Rank-5 = 2/3, mAP = (0.5 + 1 + 0)/3 = 0.5, official (1/3 + 1 + 0)/3 = 4/9
      no_match="skip": Rank-1 = 1/2, Rank-5 = 1, mAP = (0.5 + 1)/2 = 0.75, official (1/3 + 1)/2 = 2/3
    """
    zero = _evaluate(ap="standard", no_match="zero")
    assert zero["rank1"] == pytest.approx(1 / 3)
    assert zero["rank5"] == pytest.approx(2 / 3)
    assert zero["rank10"] == pytest.approx(2 / 3)
    assert zero["mAP"] == pytest.approx(0.5)
    assert _evaluate(ap="official", no_match="zero")["mAP"] == pytest.approx(4 / 9)
    skip = _evaluate(ap="standard", no_match="skip")
    assert (skip["rank1"], skip["rank5"], skip["mAP"]) == pytest.approx((0.5, 1.0, 0.75))
    assert _evaluate(ap="official", no_match="skip")["mAP"] == pytest.approx(2 / 3)
    assert (zero["num_queries"], zero["num_evaluated"], zero["num_without_match"]) == (3, 3, 1)
    assert (skip["num_evaluated"], skip["num_without_match"]) == (2, 1)
    assert zero["cmc"][:2] == pytest.approx([1 / 3, 2 / 3])

    q_ids, q_cams = zip(*QUERIES, strict=True)
    g_ids, g_cams = zip(*GALLERY, strict=True)
    per_query = per_query_results(DISTANCES, q_ids, q_cams, g_ids, g_cams, ap="official")
    assert per_query.first_match.tolist() == [2, 1, 0]
    assert per_query.num_good.tolist() == [2, 1, 0]
    assert per_query.num_junk.tolist() == [2, 1, 1]  # A: g0 and g3; B, C: g3
    assert np.isnan(per_query.average_precision[2])


def _reference(distances, q_ids, q_cams, g_ids, g_cams, ap):
    """A literal per-query loop over the ranked list in the manner of the dataset's compute_AP.m (skip junk,
    accumulate recall steps times precision: the trapezoid for "official", the right endpoint for
    "standard"), with Python's stable sort."""
    aps, firsts = [], []
    for row, q_id, q_cam in zip(distances, q_ids, q_cams, strict=True):
        order = sorted(range(len(row)), key=lambda g: row[g])
        ngood = sum(1 for g in range(len(row)) if g_ids[g] == q_id and g_cams[g] != q_cam)
        old_recall, old_precision, ap_value, hits, j, first = 0.0, 1.0, 0.0, 0, 0, 0
        for g in order:
            if g_ids[g] == -1 or (g_ids[g] == q_id and g_cams[g] == q_cam):
                continue
            j += 1
            if g_ids[g] == q_id:
                hits += 1
                first = first or j
            if ngood == 0:
                continue
            recall, precision = hits / ngood, hits / j
            height = (old_precision + precision) / 2 if ap == "official" else precision
            ap_value += (recall - old_recall) * height
            old_recall, old_precision = recall, precision
        aps.append(ap_value if ngood else np.nan)
        firsts.append(first)
    return np.array(aps), np.array(firsts)


@pytest.mark.parametrize("ap", ["standard", "official"])
def test_matches_a_literal_loop_on_random_data(ap):
    """Random identities (with -1 junk and 0 distractors), cameras and integer distances (many ties)."""
    rng = np.random.default_rng(3)
    num_q, num_g = 40, 120
    g_ids = rng.integers(-1, 12, num_g)
    g_cams = rng.integers(1, 7, num_g)
    q_ids = rng.integers(1, 14, num_q)  # identities 12, 13 never appear in the gallery
    q_cams = rng.integers(1, 7, num_q)
    distances = rng.integers(0, 25, (num_q, num_g)).astype(float)
    expected_ap, expected_first = _reference(distances, q_ids, q_cams, g_ids, g_cams, ap)
    result = per_query_results(distances, q_ids, q_cams, g_ids, g_cams, ap=ap, chunk_size=7)
    np.testing.assert_array_equal(result.first_match, expected_first)
    np.testing.assert_allclose(result.average_precision, expected_ap, rtol=1e-12, equal_nan=True)
    summary = evaluate_ranking(distances, q_ids, q_cams, g_ids, g_cams, ap=ap, no_match="skip")
    matched = ~np.isnan(expected_ap)
    assert summary["mAP"] == pytest.approx(np.mean(expected_ap[matched]))
    assert summary["rank5"] == pytest.approx(
        np.mean((expected_first[matched] >= 1) & (expected_first[matched] <= 5))
    )


def _random_protocol(seed, num_q=30, num_g=200, num_ids=10):
    rng = np.random.default_rng(seed)
    g_ids = rng.integers(0, num_ids + 1, num_g)
    g_cams = rng.integers(1, 4, num_g)
    q_ids = rng.integers(1, num_ids + 1, num_q)
    q_cams = rng.integers(1, 4, num_q)
    return rng, q_ids, q_cams, g_ids, g_cams


@pytest.mark.parametrize("ap", ["standard", "official"])
def test_perfect_ranking_scores_one(ap):
    """Every gallery image of the query's identity (good or junk) nearer than every other: AP = 1 and a
    Rank-1 hit for every query that has a match."""
    rng, q_ids, q_cams, g_ids, g_cams = _random_protocol(0)
    distances = (g_ids[None, :] != q_ids[:, None]).astype(float) + 0.01 * rng.random((len(q_ids), len(g_ids)))
    result = evaluate_ranking(distances, q_ids, q_cams, g_ids, g_cams, ap=ap, no_match="skip")
    assert result["num_evaluated"] > 20
    assert result["rank1"] == 1.0 and result["mAP"] == pytest.approx(1.0)


def test_reversed_ranking_puts_matches_last():
    """Negating a perfect ranking puts the G good images at the last positions N - G + 1 .. N of the N
    non-junk ones, so AP_standard = (1/G) sum_k k / (N - G + k) and AP_official = (1/G) sum_k
    ((k - 1) / (N - G + k - 1) + k / (N - G + k)) / 2; no first-rank hit; every random permutation lies
    between the reversed and the perfect AP."""
    rng, q_ids, q_cams, g_ids, g_cams = _random_protocol(1)
    perfect = (g_ids[None, :] != q_ids[:, None]).astype(float) + 0.01 * rng.random((len(q_ids), len(g_ids)))
    for ap in ("standard", "official"):
        reverse = per_query_results(-perfect, q_ids, q_cams, g_ids, g_cams, ap=ap)
        for q in range(len(q_ids)):
            junk = (g_ids == -1) | ((g_ids == q_ids[q]) & (g_cams == q_cams[q]))
            good = (g_ids == q_ids[q]) & (g_cams != q_cams[q])
            n, g = int((~junk).sum()), int(good.sum())
            if g == 0:
                continue
            k = np.arange(1, g + 1)
            r = n - g + k
            if ap == "standard":
                expected = np.mean(k / r)
            else:
                previous = np.where(r > 1, (k - 1) / np.maximum(r - 1, 1), 1.0)
                expected = np.mean((previous + k / r) / 2)
            assert reverse.average_precision[q] == pytest.approx(expected)
            assert reverse.first_match[q] == n - g + 1
        shuffled = per_query_results(rng.random(perfect.shape), q_ids, q_cams, g_ids, g_cams, ap=ap)
        valid = ~np.isnan(reverse.average_precision)
        assert np.all(shuffled.average_precision[valid] >= reverse.average_precision[valid] - 1e-12)
        assert np.all(shuffled.average_precision[valid] <= 1.0)


def test_official_ap_never_exceeds_standard():
    """The trapezoid's left height (k-1)/(r-1) is at most k/r, so official <= standard, with equality
    only when every good image precedes every other (r_k = k)."""
    rng, q_ids, q_cams, g_ids, g_cams = _random_protocol(2)
    distances = rng.random((len(q_ids), len(g_ids)))
    standard = per_query_results(distances, q_ids, q_cams, g_ids, g_cams, ap="standard").average_precision
    official = per_query_results(distances, q_ids, q_cams, g_ids, g_cams, ap="official").average_precision
    valid = ~np.isnan(standard)
    assert np.all(official[valid] <= standard[valid] + 1e-12)
    assert np.mean(official[valid] < standard[valid] - 1e-6) > 0.9  # random rankings: good images not first


def test_scale_and_shift_invariant():
    """Only the order of the distances matters."""
    rng, q_ids, q_cams, g_ids, g_cams = _random_protocol(4)
    distances = rng.random((len(q_ids), len(g_ids)))
    a = evaluate_ranking(distances, q_ids, q_cams, g_ids, g_cams)
    b = evaluate_ranking(3.0 * distances + 7.0, q_ids, q_cams, g_ids, g_cams)
    assert a == b


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "distances": a["distances"][:, :3]}, "gallery_ids: expected 3 entries"),
        (lambda a: {**a, "query_ids": [1, 0, 4]}, "query_ids: expected positive identities"),
        (lambda a: {**a, "distances": np.full((3, 7), np.nan)}, "distances: expected finite"),
        (lambda a: {**a, "gallery_ids": [1, 2, 1, -2, 0, 1, 3]}, "gallery_ids: expected identities >= -1"),
        (lambda a: {**a, "ap": "interpolated"}, "ap: expected one of standard, official"),
        (lambda a: {**a, "no_match": "nan"}, "no_match: expected one of zero, skip"),
        (lambda a: {**a, "query_cameras": [1.5, 1, 2]}, "query_cameras: expected integers"),
    ],
)
def test_bad_input_is_a_one_line_error(change, message):
    q_ids, q_cams = zip(*QUERIES, strict=True)
    g_ids, g_cams = zip(*GALLERY, strict=True)
    arguments = {
        "distances": np.array(DISTANCES),
        "query_ids": q_ids,
        "query_cameras": q_cams,
        "gallery_ids": g_ids,
        "gallery_cameras": g_cams,
    }
    with pytest.raises(InputError, match=message) as error:
        evaluate_ranking(**change(arguments))
    assert "\n" not in str(error.value)


def test_skip_with_no_matched_query_is_an_error():
    with pytest.raises(InputError, match="no query has a good gallery image"):
        evaluate_ranking([[0.1, 0.2]], [5], [1], [1, 2], [1, 2], no_match="skip")
