"""Classical probes on cached embeddings: named scikit-learn pipelines, for features in memory.

    logreg   StandardScaler -> LogisticRegression (lbfgs).
    linsvm   StandardScaler -> LinearSVC, wrapped in CalibratedClassifierCV(method="sigmoid",
             ensemble=False): Platt's sigmoid is fitted on 3-fold out-of-fold SVM margins of the
             TRAINING split, then the SVM is refitted on all of it. So `predict_proba` exists
             without touching the valid split, and ranks exactly like the SVM margin.
    knn      Cosine k-nearest neighbours (brute force); distance-weighted votes give finer scores.
    rbfsvm   StandardScaler -> SVC(kernel="rbf"), calibrated like linsvm (5 folds). Opt-in: its fit
             time grows at least quadratically with the number of samples.

Larger than memory, logreg and linsvm become `SGDLinearProbe` (featurekit.probes.sgd); kNN and kernel
SVMs need every training row at once and refuse streaming.
"""

from __future__ import annotations

from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC


def make_logreg(C: float = 1.0, max_iter: int = 2000, class_weight: Any = None) -> Pipeline:
    """StandardScaler -> LogisticRegression(lbfgs); deterministic, so no seed."""
    return Pipeline([("scale", StandardScaler()),
                     ("clf", LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight))])


def make_linsvm(
    C: float = 1.0, max_iter: int = 10_000, calibration_cv: int = 3, random_state: int | None = 0
) -> Pipeline:
    """StandardScaler -> LinearSVC with sigmoid (Platt) calibration on out-of-fold training margins."""
    return _scaled_and_calibrated(LinearSVC(C=C, max_iter=max_iter, random_state=random_state), calibration_cv)


def make_knn(n_neighbors: int = 15, weights: str = "distance") -> Pipeline:
    """Cosine nearest neighbours: the probe that assumes least about the embedding's geometry."""
    # Cosine ignores embedding norms, which vary with image content more than with real/fake;
    # sklearn supports the cosine metric with brute-force search only.
    knn = KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights, metric="cosine", algorithm="brute")
    return Pipeline([("clf", knn)])


def make_rbfsvm(
    C: float = 1.0, gamma: str | float = "scale", calibration_cv: int = 5, random_state: int | None = 0
) -> Pipeline:
    """StandardScaler -> RBF SVC with sigmoid calibration on out-of-fold training margins.

    `SVC(probability=True)` is deprecated since scikit-learn 1.9; this is its documented replacement.
    """
    return _scaled_and_calibrated(SVC(kernel="rbf", C=C, gamma=gamma, random_state=random_state), calibration_cv)


def _scaled_and_calibrated(svm: Any, calibration_cv: int) -> Pipeline:
    """StandardScaler -> `svm`, wrapped in Platt's sigmoid fitted on out-of-fold training margins (no ensemble)."""
    return Pipeline([("scale", StandardScaler()),
                     ("clf", CalibratedClassifierCV(svm, method="sigmoid", cv=calibration_cv, ensemble=False))])
