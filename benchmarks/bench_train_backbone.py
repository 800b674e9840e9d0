"""Training InceptionV1 from scratch on the shared faces: images/s, time to the best validation accuracy.

Trains with featurekit.training.runner.train_backbone (train split, a learning-rate schedule, early stopping on valid), saves
the backbone to runs/inceptionv1-<data>-<size>-<schedule>/ for extraction, then measures the trained network's
own accuracy on the test split once (end to end, with its top: a reference for the frozen-embedding
probes). An interrupted run resumes when started again with the same options.

    .venv/bin/python benchmarks/bench_train_backbone.py [--image-size 128] [--epochs 9] [--batch-size 32]
        [--patience 4] [--schedule cosine] [--min-learning-rate 1e-5] [--warmup-epochs 0] [--overwrite]
        [--data ../shared/data/ffhq_stylegan_140k_sample] [--out benchmarks/results/train_backbone-<schedule>.json]
    .venv/bin/python benchmarks/bench_train_backbone.py --evaluate-run RUN_DIR --data DIR --image-size N --out F.json

`--evaluate-run` only measures the end-to-end test accuracy of a finished run (benchmarks/gpu/train_inceptionv1.sh
uses it after `python cli.py train-backbone`).
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


def end_to_end_test_accuracy(run_dir: Path, image_size: int, split_fractions: tuple[float, float, float],
                             faces: Path = FACES) -> dict:
    """Accuracy and loss of the saved classifier (backbone + top) on the test split, inference mode."""
    import keras
    import numpy as np

    import featurekit.backbones.inception_v1  # noqa: F401  (registers InceptionV1 for load_model)
    from featurekit.data import scan_image_folder
    from featurekit.pipeline import decodable
    from featurekit.training.batches import ImageBatches

    classifier = keras.saving.load_model(run_dir / "classifier.keras", safe_mode=True)
    test = [s for s in scan_image_folder(faces, split_fractions).samples if s.split == "test"]
    good, _ = decodable(faces, [s.path for s in test], image_size)
    test = [test[i] for i in good]
    dataset = ImageBatches(faces, [s.path for s in test], np.array([s.label for s in test], np.float32), image_size,
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
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine", "plateau"))
    parser.add_argument("--min-learning-rate", type=float, default=1e-5)
    parser.add_argument("--warmup-epochs", type=int, default=0)
    parser.add_argument("--data", type=Path, default=FACES, help="a data folder (default: the shared faces)")
    parser.add_argument("--overwrite", action="store_true", help="train again over a finished run")
    parser.add_argument("--evaluate-run", type=Path, default=None,
                        help="only measure the end-to-end test accuracy of this finished run's classifier.keras")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: benchmarks/results/train_backbone-<schedule>.json")
    args = parser.parse_args()
    faces = args.data.resolve()
    if not faces.exists():
        sys.exit(f"bench_train_backbone needs the faces at {faces} (real/ and fake/ folders); not found.")

    from featurekit.cache import library_versions
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS
    from featurekit.training.runner import default_out_dir, train_backbone

    if args.evaluate_run is not None:
        test = end_to_end_test_accuracy(args.evaluate_run, args.image_size, DEFAULT_SPLIT_FRACTIONS, faces)
        report = {"benchmark": "train_backbone end-to-end test", "run": str(args.evaluate_run), **test}
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return

    out = args.out or REPO / "benchmarks" / "results" / f"train_backbone-{args.schedule}.json"
    run_dir = default_out_dir(faces, "inceptionv1", args.image_size, runs_dir=REPO / "runs")
    run_dir = run_dir.with_name(f"{run_dir.name}-{args.schedule}")  # one folder per schedule: runs side by side
    started = time.perf_counter()
    result = train_backbone(faces, epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size,
                            learning_rate=args.learning_rate, patience=args.patience, seed=args.seed, out=run_dir,
                            overwrite=args.overwrite, schedule=args.schedule,
                            min_learning_rate=args.min_learning_rate, warmup_epochs=args.warmup_epochs,
                            log=lambda line: print(line, flush=True))
    wall = time.perf_counter() - started
    test = end_to_end_test_accuracy(run_dir, args.image_size, DEFAULT_SPLIT_FRACTIONS, faces)
    record = json.loads((run_dir / "training.json").read_text())
    report = {
        "benchmark": "train_backbone",
        "when_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "accelerator": "none (CPU)", "note": "2 cores shared with other work: rates vary with load"},
        "data": {"folder": str(faces), "split_counts": record["data"]["split_counts"]},
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
        "history": {key: [float(f"{v:.4g}") for v in values] for key, values in result.history.items()},
        "model_path": str(result.model_path.relative_to(REPO)),
        "versions": library_versions(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
