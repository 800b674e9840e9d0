"""Keras 3 on any backend: the same features on TensorFlow and JAX, and no TensorFlow under JAX.

The other backend runs in a subprocess (a Keras backend is fixed when Keras is first imported). Under
TensorFlow they compare with JAX (skipped where JAX is not installed), under JAX with TensorFlow (always
installed: it stays the default backend). All are marked slow: `pytest -m slow` runs them here, and CI's
JAX leg (`KERAS_BACKEND=jax pytest -m backend`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import REPO, make_image_folder
from featurekit.backbones import create_backbone
from featurekit.parameters import POOLINGS
from featurekit.backbones.embedder import build_multi_embedder

# Each test starts Python with the other backend: seconds of imports and compiling.
pytestmark = [pytest.mark.backend, pytest.mark.slow]

TAPS = [(None, pooling) for pooling in POOLINGS] + [("conv1", "meanstd"), ("pool1", "flatten")]
SUBPROCESS_TIMEOUT_S = 600


def _run_python(script: str, backend: str, *args: str) -> dict:
    """Run `script` with KERAS_BACKEND=backend and this checkout first on the path; returns its last JSON line."""
    environment = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO, env=environment,
                               capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[{'jax' if module == 'jax' else 'test'}]')")


def test_features_of_the_same_weights_agree_across_backends(tmp_path: Path):
    other = "tensorflow" if keras.backend.backend() == "jax" else "jax"
    _require(other)
    weights = tmp_path / "tiny.weights.h5"
    create_backbone("test_tiny", weights="none", seed=0).save_weights(weights)
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    here = build_multi_embedder("test_tiny", TAPS, weights=str(weights), batch_size=4)(images)

    there = _run_python("""
        import json, sys
        import numpy as np
        from featurekit.backbones.embedder import build_multi_embedder
        weights, images, out, taps = sys.argv[1], np.load(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
        embedder = build_multi_embedder("test_tiny", [tuple(t) for t in taps], weights=weights, batch_size=4)
        np.savez(out, *embedder(images))
        print(json.dumps({"backend": embedder.embedders[0].describe()["backend"], "tensorflow": "tensorflow" in sys.modules}))
        """, other, str(weights), str(tmp_path / "images.npy"), str(tmp_path / "there.npz"), json.dumps(TAPS))
    assert there["backend"] == other
    with np.load(tmp_path / "there.npz") as arrays:
        theirs = [arrays[f"arr_{i}"] for i in range(len(TAPS))]
    for (layer, pooling), mine, other_features in zip(TAPS, here, theirs, strict=True):
        assert mine.shape == other_features.shape
        np.testing.assert_allclose(mine, other_features, rtol=1e-4, atol=1e-4, err_msg=f"{layer} {pooling}")
        assert np.abs(mine).max() > 0.01  # not trivially equal zeros


NO_TENSORFLOW_SCRIPT = """
    import json, sys
    from pathlib import Path
    root = Path(sys.argv[1])
    from featurekit.evaluation.compare import compare
    from featurekit.extraction.extract import extract
    from featurekit.evaluation.fitting import fit_probe
    from featurekit.predict import predict
    from featurekit.cache.describe import describe_cache
    from featurekit.report import render_cache
    from rich.console import Console

    quiet = lambda message: None
    result = extract(root / "faces", "test_tiny", pooling="meanstd", cache=root / "c.h5", progress=False, log=quiet)
    fitted = fit_probe(result.cache_path, "logreg", runs_dir=root / "runs", log=quiet)
    rows = compare([result.cache_path], ["logreg"], runs_dir=root / "runs", n_boot=20, log=quiet)
    predictions = predict(fitted.directory, [root / "faces" / "fake"])
    console = Console(width=200, record=True)
    console.print(render_cache(describe_cache(result.cache_path), "table"))
    import keras
    print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "backend": keras.backend.backend(),
                      "rows": len(rows), "predictions": len(predictions), "info": console.export_text()}))
"""


def test_extract_fit_compare_predict_never_import_tensorflow_under_jax(tmp_path: Path):
    _require("jax")
    make_image_folder(tmp_path / "faces", per_class=20)
    outcome = _run_python(NO_TENSORFLOW_SCRIPT, "jax", str(tmp_path))
    assert outcome["backend"] == "jax"
    assert outcome["rows"] == 1 and outcome["predictions"] == 20
    assert outcome["tensorflow"] is False
    info = outcome["info"]
    assert "backend" in info and "jax" in info and "precision" in info  # `info` shows what computed the cache


def test_the_head_probe_never_imports_tensorflow_under_jax(tmp_path: Path):
    _require("jax")
    make_image_folder(tmp_path / "faces", per_class=20)
    outcome = _run_python("""
        import json, sys
        from pathlib import Path
        root = Path(sys.argv[1])
        from featurekit.extraction.extract import extract
        from featurekit.evaluation.fitting import fit_probe
        result = extract(root / "faces", "test_tiny", pooling="avg", cache=root / "c.h5", progress=False,
                         log=lambda m: None)
        fit_probe(result.cache_path, "head", {"epochs": 2}, runs_dir=root / "runs", log=lambda m: None)
        print(json.dumps({"tensorflow": "tensorflow" in sys.modules}))
        """, "jax", str(tmp_path))
    assert outcome["tensorflow"] is False


TRAIN_SCRIPT = """
    import json, sys
    from pathlib import Path
    import keras
    root, network = Path(sys.argv[1]), sys.argv[2]
    import featurekit.training.model as model

    def tiny_classifier(image_size):
        # test_tiny with a one-unit top: the training machinery (data, callbacks, backup, saving, provenance)
        # runs as for InceptionV1, without minutes of compiling InceptionV1's training step.
        from featurekit.backbones import create_backbone
        backbone = create_backbone("test_tiny", weights="none", image_size=image_size)
        backbone.trainable = True
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = keras.layers.GlobalAveragePooling2D()(backbone(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)))
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)), backbone

    if network == "tiny":
        model.build_classifier = tiny_classifier
    from featurekit.extraction.extract import extract
    from featurekit.training.runner import train_backbone
    result = train_backbone(root / "faces", epochs=2, image_size=32, batch_size=4, out=root / "run",
                            progress=False, log=lambda m: None)
    extracted = extract(root / "faces", "test_tiny" if network == "tiny" else "inceptionv1",
                        weights=str(result.model_path), image_size=32, pooling="avg", cache=root / "c.h5",
                        progress=False, log=lambda m: None)
    print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "model": str(result.model_path),
                      "epochs": result.epochs_run, "label": extracted.weights_label}))
"""


def _train_without_tensorflow(tmp_path: Path, network: str) -> None:
    _require("jax")
    make_image_folder(tmp_path / "faces" / "train", per_class=8, size=32)
    make_image_folder(tmp_path / "faces" / "valid", per_class=2, size=36)  # other content than train's images
    outcome = _run_python(TRAIN_SCRIPT, "jax", str(tmp_path), network)
    assert outcome["epochs"] == 2 and Path(outcome["model"]).is_file()
    assert outcome["label"].endswith("trained on faces (train split, 16 images, epoch "
                                     f"{json.loads((tmp_path / 'run' / 'training.json').read_text())['best_epoch']})")
    assert outcome["tensorflow"] is False


def test_train_backbone_machinery_runs_without_tensorflow_under_jax(tmp_path: Path):
    _train_without_tensorflow(tmp_path, "tiny")


def test_train_backbone_inceptionv1_runs_without_tensorflow_under_jax(tmp_path: Path):
    _train_without_tensorflow(tmp_path, "inceptionv1")  # ~3 minutes on 2 CPU cores: compiling the training step
