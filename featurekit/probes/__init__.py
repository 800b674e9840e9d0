"""Probes: scikit-learn classifiers on cached embeddings, in memory or streamed from chunks.

- `registry`: the named probes as data (`list_probes`, `get_probe_spec`, `make_probe`, `make_stream_probe`);
- `baselines`: the in-memory scikit-learn pipelines (logreg, linsvm, knn, rbfsvm);
- `epochs`: `EpochProbe`, the one template of probes trained in epochs over chunks; `head` (the Keras head)
  and `sgd` (the streamed linear probe) build on it; `chunks`: checks of streamed input;
- `persistence`: `save_probe` and `load_probe`, in formats that cannot run code when loaded;
- `fake_scores`, P(fake) of a fitted probe, is `featurekit.metrics.fake_scores`, re-exported here.

Importing this package imports no Keras backend; the head imports Keras when it trains or loads.
"""

from featurekit.metrics import fake_scores
from featurekit.probes.epochs import EpochProbe
from featurekit.probes.head import DenseHeadClassifier
from featurekit.probes.persistence import UnloadableProbeError, load_probe, save_probe
from featurekit.probes.registry import ProbeSpec, get_probe_spec, list_probes, make_probe, make_stream_probe
from featurekit.probes.sgd import SGDLinearProbe

__all__ = ["DenseHeadClassifier", "EpochProbe", "ProbeSpec", "SGDLinearProbe", "UnloadableProbeError", "fake_scores",
           "get_probe_spec", "list_probes", "load_probe", "make_probe", "make_stream_probe", "save_probe"]
