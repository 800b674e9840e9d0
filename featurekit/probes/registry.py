"""The probe registry: named classifiers on cached embeddings, as data; a probe added is one entry here.

`list_probes()` and `make_probe(name, **params)` are the ways in; `compare` is then one loop over
`{name: make_probe(name) for name in list_probes()}`. Every probe is a scikit-learn classifier with
`fit`, `predict` and `predict_proba` (column 1 = `classes_[1]`, the fake class for 0/1 labels).
For features larger than memory, `make_stream_probe(name)` returns an estimator with
`fit_stream(batches_factory, valid=...)` and `predict_proba_stream(batches_factory)`; probes that
need the whole matrix (knn, rbfsvm) refuse with a FeaturekitError. The names, in registry order, are
also `featurekit.parameters.PROBES`, which the options declare as the choices of `probe`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from featurekit.errors import FeaturekitError, given
from featurekit.probes.baselines import make_knn, make_linsvm, make_logreg, make_rbfsvm
from featurekit.probes.head import DenseHeadClassifier
from featurekit.probes.sgd import SGDLinearProbe


@dataclass(frozen=True)
class ProbeSpec:
    """Everything featurekit knows about one probe; the entry builds its own estimators.

    Attributes:
        name: Registry name (the value of `probe`).
        factory: `factory(**params)` -> an unfitted estimator for in-memory arrays.
        description: One line for listings.
        optional: True for probes left out of the default list (slow on large splits).
        stream_factory: `stream_factory(**params)` -> an estimator with `fit_stream`, or None if
            the probe needs the whole training matrix in memory.
        stream_fixed: Parameters of `stream_factory` the entry fixes (the loss that makes `SGDLinearProbe` the
            streamed stand-in of a linear pipeline); a caller cannot pass them.
    """

    name: str
    factory: Callable[..., Any]
    description: str
    optional: bool = False
    stream_factory: Callable[..., Any] | None = None
    stream_fixed: tuple[tuple[str, Any], ...] = ()

    def build(self, params: dict[str, Any], stream: bool = False) -> Any:
        """An unfitted estimator with `params`, every one checked now, not minutes later inside `fit`.

        Raises:
            FeaturekitError: A parameter the probe does not have, a value outside scikit-learn's constraints
                of the estimator or of the estimators nested in it, or streaming for an in-memory-only probe.
        """
        from sklearn.utils._param_validation import InvalidParameterError

        factory, fixed = (self.stream_factory, dict(self.stream_fixed)) if stream else (self.factory, {})
        if factory is None:
            raise FeaturekitError(f"Probe '{self.name}' needs the whole training matrix in memory; it cannot train "
                                  "from chunks.", received=f"probe {self.name} with streamed features",
                                  fix="Use the streaming probes (head, logreg, linsvm), or load the split into memory "
                                  "with reader.load('train') if it fits.")
        accepted = [name for name in inspect.signature(factory).parameters if name not in fixed]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise FeaturekitError(
                f"Probe '{self.name}' has no parameter {', '.join(map(repr, unknown))}.",
                received=", ".join(given(k, params[k]) for k in unknown),
                fix=f"Valid parameters of '{self.name}': {', '.join(accepted)}.")
        estimator = factory(**params, **fixed)
        nested = [v for v in estimator.get_params(deep=True).values() if hasattr(v, "_validate_params")]
        try:
            for part in [estimator, *nested]:
                part._validate_params()
        except InvalidParameterError as error:
            raise FeaturekitError(
                f"Probe '{self.name}' got an invalid parameter value: {error}",
                received=", ".join(given(k, v) for k, v in params.items()) or "its defaults",
                fix="Pass a value within the range the message names.") from None
        return estimator


_REGISTRY: dict[str, ProbeSpec] = {spec.name: spec for spec in (
    ProbeSpec("head", DenseHeadClassifier, "Keras Dense(512, relu) -> Dropout(0.5) -> Dense(1, sigmoid), the "
              "original study's head", stream_factory=DenseHeadClassifier),
    ProbeSpec("logreg", make_logreg, "StandardScaler + logistic regression", stream_factory=SGDLinearProbe,
              stream_fixed=(("loss", "log_loss"),)),
    ProbeSpec("linsvm", make_linsvm, "StandardScaler + linear SVM, sigmoid-calibrated on out-of-fold training "
              "margins", stream_factory=SGDLinearProbe, stream_fixed=(("loss", "hinge"),)),
    ProbeSpec("knn", make_knn, "cosine k-nearest neighbours (k=15, distance-weighted)"),
    ProbeSpec("rbfsvm", make_rbfsvm, "StandardScaler + RBF-kernel SVM, calibrated; fit time grows at least "
              "quadratically", optional=True),
)}


def list_probes(include_optional: bool = False) -> list[str]:
    """Registered probe names in registry order; opt-in probes (rbfsvm) only when asked."""
    return [n for n, s in _REGISTRY.items() if include_optional or not s.optional]


def get_probe_spec(name: str) -> ProbeSpec:
    """The spec of a probe; unknown names list the valid ones."""
    if name not in _REGISTRY:
        raise FeaturekitError(f"Unknown probe '{name}'.", received=name,
                              fix=f"Choose from: {', '.join(list_probes(include_optional=True))}.")
    return _REGISTRY[name]


def make_probe(name: str, **params: Any) -> Any:
    """A new, unfitted probe for in-memory arrays.

    Args:
        name: A registry name, see `list_probes(include_optional=True)`.
        **params: Constructor parameters of that probe, e.g. `make_probe("logreg", C=0.1)`.

    Returns:
        A scikit-learn classifier.
    """
    return get_probe_spec(name).build(params)


def make_stream_probe(name: str, **params: Any) -> Any:
    """A new, unfitted probe that trains from chunks (`fit_stream`) for larger-than-memory features.

    head is the same estimator as in memory; logreg and linsvm become `SGDLinearProbe` with loss
    "log_loss" and "hinge" (their parameters differ from the in-memory pipelines: alpha, epochs...).

    Raises:
        FeaturekitError: For probes that need the whole matrix in memory (knn, rbfsvm).
    """
    return get_probe_spec(name).build(params, stream=True)
