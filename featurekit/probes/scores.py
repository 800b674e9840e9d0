"""The score every metric ranks: P(fake) of a fitted probe, one definition for every probe."""

from __future__ import annotations

from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError


def fake_scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(fake) for every row: column 1 of `predict_proba`.

    Requires the probe to be fitted on labels 0 (real) / 1 (fake), so column 1 is fake.
    """
    classes = np.asarray(estimator.classes_)
    if classes.tolist() != [0, 1]:
        raise FeaturekitError(
            "Scores are defined for probes trained on labels 0 (real) and 1 (fake).",
            received=f"classes_ {classes.tolist()}",
            fix="Train on the cache's integer labels, not on class names.",
        )
    return estimator.predict_proba(X)[:, 1]
