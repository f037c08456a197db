"""Distances for Re-ID features: Euclidean, and the learned Mahalanobis metrics XQDA and KISSME (numpy/scipy).

Both learned metrics model the difference ``x - z`` of two feature vectors as a zero-mean Gaussian, one for
pairs of the same identity (intra-class, covariance ``S_I``) and one for pairs of different identities
(extra-class, ``S_E``), and score a pair by the log-likelihood ratio, which gives the distance
``d(x, z) = (x - z)^T M (x - z)``:

- **KISSME** (Koestinger et al., "Large Scale Metric Learning from Equivalence Constraints", CVPR 2012,
  Eq. 10-12): ``M = S_I^-1 - S_E^-1``, re-projected onto the positive semi-definite cone (negative
  eigenvalues clipped to 0) so that it is a metric;
- **XQDA** (Liao et al., "Person Re-identification by Local Maximal Occurrence Representation and Metric
  Learning", CVPR 2015, §4): first a subspace ``W`` maximising ``w^T S_E w / w^T S_I w`` (the generalised
  eigenvectors of ``(S_E, S_I)`` with eigenvalue > 1, as the authors' ``XQDA.m`` keeps by default), then
  ``M = (W^T S_I W)^-1 - (W^T S_E W)^-1`` in that subspace; ``S_I`` is regularised by ``+ 0.001 I`` as in
  the authors' code. (The authors' code takes the singular vectors of ``S_I^-1 S_E``; the paper's
  generalised eigenproblem is solved here with ``scipy.linalg.eigh``, which keeps the basis S_I-orthogonal.)

The covariances are computed over **all** ordered pairs of distinct training images in closed form (no pair
sampling; exactly what XQDA.m computes when the two views are the same set, minus its zero-length
self-pairs): for classes with ``n_k`` images, sum ``S_k`` of ``x x^T`` and sum ``s_k`` of ``x``, the
intra-class scatter is ``sum_k 2 (n_k S_k - s_k s_k^T)`` and the all-pairs scatter ``2 (n S - s s^T)``.

Features are L2-normalised first by default (``normalize=True``), as the Market-1501 baseline does with
its CNN features; an optional PCA (``pca_dims``) fitted on the training features comes before the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse

from deformgan.errors import InputError

METRICS = ("euclidean", "xqda", "kissme")


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """(N, D) -> rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def euclidean_distances(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, D), (G, D) -> (Q, G) Euclidean distances (float64; clipped at 0 before the square root)."""
    query, gallery = np.asarray(query, dtype=np.float64), np.asarray(gallery, dtype=np.float64)
    squared = (
        np.sum(query**2, axis=1)[:, None] + np.sum(gallery**2, axis=1)[None, :] - 2.0 * query @ gallery.T
    )
    return np.sqrt(np.maximum(squared, 0.0))


def mahalanobis_distances(query: np.ndarray, gallery: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """(Q, D), (G, D), (D, D) symmetric M -> (Q, G) ``(x - z)^T M (x - z)`` (a squared distance)."""
    query, gallery = np.asarray(query, dtype=np.float64), np.asarray(gallery, dtype=np.float64)
    qm, gm = query @ metric, gallery @ metric
    return np.sum(qm * query, axis=1)[:, None] + np.sum(gm * gallery, axis=1)[None, :] - 2.0 * qm @ gallery.T


def pair_covariances(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Covariances of the differences of all ordered pairs of distinct images (module docstring).

    features (N, D), labels (N,) -> (S_I, S_E, number of intra-class pairs, number of extra-class pairs).
    Raises InputError when there is no same-identity pair or no different-identity pair.
    """
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise InputError(f"features / labels: expected (N, D) and (N,), got {x.shape} and {labels.shape}")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    onehot = scipy.sparse.csr_matrix(
        (np.ones(x.shape[0]), (inverse, np.arange(x.shape[0]))), shape=(len(classes), x.shape[0])
    )
    class_sums = np.asarray(onehot @ x)  # (C, D)
    second = x.T @ x
    # sum_k n_k S_k, with S_k the class's sum of x x^T: weight every row by its class size.
    weighted = (x * counts[inverse][:, None]).T @ x
    intra = 2.0 * (weighted - class_sums.T @ class_sums)
    total = 2.0 * (x.shape[0] * second - np.outer(x.sum(axis=0), x.sum(axis=0)))
    n_intra = int(np.sum(counts * (counts - 1)))
    n_extra = int(x.shape[0] * (x.shape[0] - 1) - n_intra)
    if n_intra == 0:
        raise InputError("metric learning: expected at least one identity with two or more training images")
    if n_extra == 0:
        raise InputError("metric learning: expected training images of at least two identities")
    intra_cov = intra / n_intra
    extra_cov = (total - intra) / n_extra
    return 0.5 * (intra_cov + intra_cov.T), 0.5 * (extra_cov + extra_cov.T), n_intra, n_extra


@dataclass
class LearnedMetric:
    """A fitted distance: optional L2 normalisation, optional PCA (mean, basis), projection W, metric M.

    ``distances(query, gallery)`` -> (Q, G), smaller = more similar. ``info`` records what was fitted.
    """

    kind: str
    normalize: bool
    mean: np.ndarray | None = None
    basis: np.ndarray | None = None  # (D, P) PCA basis, applied after subtracting mean
    projection: np.ndarray | None = None  # (P, r) XQDA subspace
    metric: np.ndarray | None = None  # (r, r), None for Euclidean
    info: dict = field(default_factory=dict)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(N, D) raw features -> (N, r) in the space where ``metric`` applies."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise InputError(f"features: expected an (N, D) array, got shape {x.shape}")
        if self.normalize:
            x = l2_normalize(x)
        if self.basis is not None:
            if x.shape[1] != self.basis.shape[0]:
                raise InputError(f"features: expected dimension {self.basis.shape[0]}, got {x.shape[1]}")
            x = (x - self.mean) @ self.basis
        if self.projection is not None:
            x = x @ self.projection
        return x

    def distances(self, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        q, g = self.transform(query), self.transform(gallery)
        if self.metric is None:
            return euclidean_distances(q, g)
        return mahalanobis_distances(q, g, self.metric)


def _pca(x: np.ndarray, dims: int | None) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    if dims is None:
        return None, None, x
    if not isinstance(dims, int) or dims < 1:
        raise InputError(f"pca_dims: expected a positive integer or None, got {dims!r}")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = vt[: min(dims, vt.shape[0])].T
    return mean, basis, (x - mean) @ basis


def fit_euclidean(normalize: bool = True) -> LearnedMetric:
    """Plain Euclidean distance (after L2 normalisation by default): nothing is learned."""
    return LearnedMetric(kind="euclidean", normalize=normalize, info={"normalize": normalize})


def fit_kissme(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    normalize: bool = True,
    pca_dims: int | None = None,
    regularization: float = 1e-3,
) -> LearnedMetric:
    """KISSME on training features (N, D) with identity labels (N,) -> :class:`LearnedMetric`.

    ``M = (S_I + r I)^-1 - (S_E + r I)^-1`` projected onto the PSD cone, with ``r = regularization``
    times the mean eigenvalue of S_E (keeps the inverses finite when D approaches the number of images).
    """
    x = np.asarray(features, dtype=np.float64)
    if normalize:
        x = l2_normalize(x)
    mean, basis, x = _pca(x, pca_dims)
    s_i, s_e, n_i, n_e = pair_covariances(x, labels)
    ridge = regularization * float(np.trace(s_e)) / s_e.shape[0] * np.eye(s_e.shape[0])
    metric = np.linalg.inv(s_i + ridge) - np.linalg.inv(s_e + ridge)
    eigenvalues, vectors = np.linalg.eigh(0.5 * (metric + metric.T))
    clipped = int(np.sum(eigenvalues < 0))
    metric = (vectors * np.maximum(eigenvalues, 0.0)) @ vectors.T
    return LearnedMetric(
        kind="kissme",
        normalize=normalize,
        mean=mean,
        basis=basis,
        metric=metric,
        info={
            "normalize": normalize,
            "pca_dims": None if basis is None else int(basis.shape[1]),
            "intra_pairs": n_i,
            "extra_pairs": n_e,
            "negative_eigenvalues_clipped": clipped,
            "regularization": regularization,
        },
    )


def fit_xqda(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    normalize: bool = True,
    pca_dims: int | None = None,
    dims: int | None = None,
    regularization: float = 1e-3,
) -> LearnedMetric:
    """XQDA on training features (N, D) with identity labels (N,) -> :class:`LearnedMetric`.

    dims: subspace size; None keeps every direction with eigenvalue > 1 (at least one), as XQDA.m's
    default; larger values are capped at that count, as in XQDA.m. regularization: the ``lambda`` added
    to the diagonal of S_I (XQDA.m: 0.001).
    """
    x = np.asarray(features, dtype=np.float64)
    if normalize:
        x = l2_normalize(x)
    mean, basis, x = _pca(x, pca_dims)
    s_i, s_e, n_i, n_e = pair_covariances(x, labels)
    s_i = s_i + regularization * np.eye(s_i.shape[0])
    eigenvalues, vectors = scipy.linalg.eigh(s_e, s_i)  # ascending; vectors^T S_I vectors = I
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    above = int(np.sum(eigenvalues > 1.0))
    keep = max(1, above) if dims is None or dims <= 0 else max(1, min(int(dims), above))
    w = vectors[:, :keep]
    metric = np.linalg.inv(w.T @ s_i @ w) - np.linalg.inv(w.T @ s_e @ w)
    metric = 0.5 * (metric + metric.T)
    return LearnedMetric(
        kind="xqda",
        normalize=normalize,
        mean=mean,
        basis=basis,
        projection=w,
        metric=metric,
        info={
            "normalize": normalize,
            "pca_dims": None if basis is None else int(basis.shape[1]),
            "subspace_dims": keep,
            "eigenvalues_above_1": above,
            "intra_pairs": n_i,
            "extra_pairs": n_e,
            "regularization": regularization,
        },
    )


def fit_metric(
    kind: str,
    features: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    *,
    normalize: bool = True,
    pca_dims: int | None = None,
) -> LearnedMetric:
    """``kind`` in ("euclidean", "xqda", "kissme"); the learned ones need training features and labels."""
    if kind not in METRICS:
        raise InputError(f"metric: expected one of {', '.join(METRICS)}, got {kind!r}")
    if kind == "euclidean":
        return fit_euclidean(normalize=normalize)
    if features is None or labels is None:
        raise InputError(f"metric {kind}: needs training features and identity labels")
    fit = fit_xqda if kind == "xqda" else fit_kissme
    return fit(features, labels, normalize=normalize, pca_dims=pca_dims)
