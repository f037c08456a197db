"""Euclidean, XQDA and KISSME distances (deformgan.reid.metric_learning)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from deformgan.errors import InputError
from deformgan.reid import evaluate_ranking
from deformgan.reid.metric_learning import (
    euclidean_distances,
    fit_kissme,
    fit_metric,
    fit_xqda,
    mahalanobis_distances,
    pair_covariances,
)


def test_pair_covariances_match_brute_force():
    """The closed form equals the mean of d d^T over all ordered pairs of distinct images."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 5))
    labels = rng.integers(0, 6, 23)
    s_i, s_e, n_i, n_e = pair_covariances(x, labels)
    intra, extra = [], []
    for a in range(len(x)):
        for b in range(len(x)):
            if a != b:
                d = np.outer(x[a] - x[b], x[a] - x[b])
                (intra if labels[a] == labels[b] else extra).append(d)
    assert (n_i, n_e) == (len(intra), len(extra))
    np.testing.assert_allclose(s_i, np.mean(intra, axis=0), atol=1e-12)
    np.testing.assert_allclose(s_e, np.mean(extra, axis=0), atol=1e-12)


def test_distances_match_scipy():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(7, 4)), rng.normal(size=(9, 4))
    np.testing.assert_allclose(euclidean_distances(q, g), cdist(q, g), atol=1e-12)
    a = rng.normal(size=(4, 4))
    m = a @ a.T
    np.testing.assert_allclose(
        mahalanobis_distances(q, g, m), cdist(q, g, "mahalanobis", VI=m) ** 2, atol=1e-10
    )


def _gaussian_people(
    rng, identities, per_identity, informative=8, nuisance=8, spread=10.0, noise=0.3, clutter=20.0
):
    """Identity lives in ``informative`` dimensions (class means ~ N(0, spread^2), within-class noise
    ``noise``); ``nuisance`` more dimensions are identity-independent clutter of std ``clutter``."""
    means = rng.normal(0.0, spread, (identities, informative))
    labels = np.repeat(np.arange(identities), per_identity)
    signal = means[labels] + rng.normal(0.0, noise, (len(labels), informative))
    return np.hstack([signal, rng.normal(0.0, clutter, (len(labels), nuisance))]), labels


def _query_gallery(features, labels):
    """First image of each identity is the query (camera 1), the others the gallery (camera 2)."""
    first = np.r_[True, labels[1:] != labels[:-1]]
    return (
        features[first],
        labels[first] + 1,
        np.ones(first.sum(), int),
        features[~first],
        labels[~first] + 1,
        np.full((~first).sum(), 2),
    )


@pytest.mark.parametrize("fit", [fit_xqda, fit_kissme])
def test_learned_metrics_rank_separated_gaussians_perfectly(fit):
    """Test identities are new people drawn like the training ones. The learned metric discounts the
    clutter dimensions, so every query's own images come first (Rank-1 = mAP = 1), whereas the Euclidean
    distance, dominated by the clutter, does not."""
    rng = np.random.default_rng(0)
    train_x, train_y = _gaussian_people(rng, 40, 6)
    test_x, test_y = _gaussian_people(rng, 30, 5)
    q, q_ids, q_cams, g, g_ids, g_cams = _query_gallery(test_x, test_y)
    metric = fit(train_x, train_y, normalize=False)
    result = evaluate_ranking(metric.distances(q, g), q_ids, q_cams, g_ids, g_cams)
    assert result["rank1"] == 1.0 and result["mAP"] == pytest.approx(1.0)
    euclidean = evaluate_ranking(euclidean_distances(q, g), q_ids, q_cams, g_ids, g_cams)
    assert euclidean["mAP"] < 0.8
    if fit is fit_xqda:
        assert metric.info["subspace_dims"] >= 8  # the informative dimensions (clutter ratios are ~1)


@pytest.mark.parametrize("kind", ["xqda", "kissme", "euclidean"])
def test_identical_distributions_give_chance(kind):
    """When every identity has the same feature distribution nothing can be learned: the metric's mAP
    lies within 4 standard deviations of the mAP of random rankings (estimated from 200 of them)."""
    rng = np.random.default_rng(5)
    train_x, train_y = rng.normal(size=(200, 12)), np.repeat(np.arange(40), 5)
    test_y = np.repeat(np.arange(40), 5)
    q, q_ids, q_cams, g, g_ids, g_cams = _query_gallery(rng.normal(size=(200, 12)), test_y)
    metric = fit_metric(kind, train_x, train_y)
    learned = evaluate_ranking(metric.distances(q, g), q_ids, q_cams, g_ids, g_cams)["mAP"]
    chance = [
        evaluate_ranking(rng.random((len(q), len(g))), q_ids, q_cams, g_ids, g_cams)["mAP"]
        for _ in range(200)
    ]
    assert abs(learned - np.mean(chance)) < 4 * np.std(chance)


def test_kissme_metric_is_positive_semidefinite_and_xqda_subspace_is_capped():
    rng = np.random.default_rng(2)
    x, y = _gaussian_people(rng, 20, 4, informative=3, nuisance=3)
    kissme = fit_kissme(x, y, normalize=False)
    assert np.linalg.eigvalsh(kissme.metric).min() >= -1e-9
    xqda = fit_xqda(x, y, normalize=False, dims=100)
    assert xqda.info["subspace_dims"] == xqda.info["eigenvalues_above_1"] <= 6
    assert fit_xqda(x, y, normalize=False, dims=2).projection.shape == (6, 2)


def test_pca_and_normalisation():
    rng = np.random.default_rng(3)
    x, y = _gaussian_people(rng, 20, 4)
    metric = fit_kissme(x, y, pca_dims=5)
    assert metric.transform(x).shape == (len(x), 5)
    # L2 normalisation first: scaling a feature vector does not change its distances.
    d1 = metric.distances(x[:3], x[3:10])
    d2 = metric.distances(7.0 * x[:3], x[3:10])
    np.testing.assert_allclose(d1, d2, atol=1e-9)


def test_errors():
    x = np.zeros((4, 3))
    with pytest.raises(InputError, match="at least one identity with two or more"):
        pair_covariances(x, [0, 1, 2, 3])
    with pytest.raises(InputError, match="at least two identities"):
        pair_covariances(x, [0, 0, 0, 0])
    with pytest.raises(InputError, match="metric: expected one of euclidean, xqda, kissme"):
        fit_metric("lmnn", x, [0, 0, 1, 1])
    with pytest.raises(InputError, match="needs training features"):
        fit_metric("xqda")
    with pytest.raises(InputError, match="pca_dims"):
        fit_kissme(np.random.default_rng(0).normal(size=(4, 3)), [0, 0, 1, 1], pca_dims=0)
