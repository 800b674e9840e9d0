"""Training InceptionV1 from scratch on the shared faces: images/s, time to the best validation accuracy.

Trains with featurekit.train_backbone (train split, early stopping on valid), saves the backbone to
runs/inceptionv1-ffhq_stylegan_140k_sample-<size>/ for extraction, then measures the trained network's
own accuracy on the test split once (end to end, with its top: a reference for the frozen-embedding
probes). An interrupted run resumes when started again with the same options.

    .venv/bin/python benchmarks/bench_train_backbone.py [--image-size 128] [--epochs 9] [--batch-size 32]
        [--patience 4] [--overwrite] [--out benchmarks/results/train_backbone.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACES = REPO.parent / "shared" / "data" / "ffhq_stylegan_140k_sample"


def end_to_end_test_accuracy(run_dir: Path, image_size: int, split_fractions: tuple[float, float, float]) -> dict:
    """Accuracy and loss of the saved classifier (backbone + top) on the test split, inference mode."""
    import keras
    import numpy as np

    from featurekit.data import scan_image_folder
    from featurekit.pipeline import decodable
    from featurekit.training.batches import ImageBatches

    classifier = keras.saving.load_model(run_dir / "classifier.keras", safe_mode=True)
    test = [s for s in scan_image_folder(FACES, split_fractions).samples if s.split == "test"]
    good, _ = decodable(FACES, [s.path for s in test], image_size)
    test = [test[i] for i in good]
    dataset = ImageBatches(FACES, [s.path for s in test], np.array([s.label for s in test], np.float32), image_size,
                           32, train=False)
    try:
        loss, accuracy = classifier.evaluate(dataset, verbose=0)
    finally:
        dataset.close()
    return {"test_images": len(test), "test_accuracy": float(accuracy), "test_loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=128, help="128 keeps a CPU run near 20 minutes")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="train again over a finished run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_backbone.json")
    args = parser.parse_args()
    if not FACES.exists():
        sys.exit(f"bench_train_backbone needs the shared faces at {FACES} (real/ and fake/ folders); not found.")

    from featurekit.cache import library_versions
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS
    from featurekit.train_backbone import default_out_dir, train_backbone

    run_dir = default_out_dir(FACES, "inceptionv1", args.image_size, runs_dir=REPO / "runs")
    started = time.perf_counter()
    result = train_backbone(FACES, epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, patience=args.patience, seed=args.seed, out=run_dir,
                            overwrite=args.overwrite, log=lambda line: print(line, flush=True))
    wall = time.perf_counter() - started
    test = end_to_end_test_accuracy(run_dir, args.image_size, DEFAULT_SPLIT_FRACTIONS)
    record = json.loads((run_dir / "training.json").read_text())
    report = {
        "benchmark": "train_backbone",
        "when_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "accelerator": "none (CPU)", "note": "2 cores shared with other work: rates vary with load"},
        "data": {"folder": str(FACES), "split_counts": record["data"]["split_counts"]},
        "config": record["config"],
        "params": result.params,
        "train_images_per_second": round(result.train_images_per_second, 2),
        "seconds_to_best": round(result.seconds_to_best, 1),
        "best_epoch": result.best_epoch,
        "best_valid_accuracy": round(result.best_valid_accuracy, 4),
        "best_valid_loss": round(result.best_valid_loss, 4),
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "this_call_seconds": round(wall, 1),
        "end_to_end_test": test,
        "history": {key: [round(v, 4) for v in values] for key, values in result.history.items()},
        "model_path": str(result.model_path.relative_to(REPO)),
        "versions": library_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
