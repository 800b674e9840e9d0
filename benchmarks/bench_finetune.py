"""A fine-tuned backbone against its frozen parent on the shared faces: test, JPEG/blur views, another generator.

1. `train_backbone(..., unfreeze_from=LAYER)` fine-tunes the backbone's layers above LAYER up to `--top-layer`
   on the train split (early stopping on valid; augmented copies if asked), timed;
2. the frozen parent and the fine-tuned backbone are each tapped at `--top-layer` (mean+std pooling) on every
   split; a scaled logistic regression is fitted on train, its C (0.01, 0.1, 1) and its threshold chosen on
   valid;
3. each is scored once on the test split, on its JPEG 50 and blur 1 views, and on the other generator's fakes
   paired with the real faces of the test split (never used to choose anything): accuracy at the valid
   threshold and ROC AUC, with 95% bootstrap intervals (1000 stratified resamples).

    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py [--backbone mobilenet] [--weights default]
        [--unfreeze-from conv_pw_5_relu] [--top-layer conv_pw_11_relu] [--image-size 256] [--epochs 8]
        [--learning-rate 1e-4] [--patience 3] [--augment-copies 1] [--augment-views jpeg:30-95 blur:0-2]
        [--out benchmarks/results/finetune]

Writes OUT.json and OUT.md. The fine-tuning run lives in runs/bench-finetune-<backbone>-<layer>-<size>/ and
resumes if the script is interrupted and started again with the same options.
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
OTHER_FAKES = REPO.parent / "shared" / "data" / "other_generator" / "fake"
VIEWS = ("jpeg:50", "blur:1")
C_GRID = (0.01, 0.1, 1.0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="mobilenet")
    parser.add_argument("--weights", default="default")
    parser.add_argument("--unfreeze-from", default="conv_pw_5_relu")
    parser.add_argument("--top-layer", default="conv_pw_11_relu")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--augment-copies", type=int, default=1)
    parser.add_argument("--augment-views", nargs="*", default=["jpeg:30-95", "blur:0-2"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=FACES)
    parser.add_argument("--other-fakes", type=Path, default=OTHER_FAKES)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune")
    return parser.parse_args()


def features(weights: str, args: argparse.Namespace, sets: dict[str, tuple[Path, list[str]]]) -> tuple[dict, str]:
    """Mean+std features at the top layer of every image set ({name: (root, paths)}), and the weights label."""
    import numpy as np

    from featurekit.backbones.embedder import build_embedder
    from featurekit.pipeline import image_batches
    from featurekit.views import ViewDecoder, parse_view

    embedder = build_embedder(args.backbone, weights=weights, image_size=args.image_size, layer=args.top_layer,
                              pooling="meanstd")
    out = {}
    for name, (root, paths) in sets.items():
        view = parse_view(name.split("@")[1]) if "@" in name else None
        decoder = ViewDecoder(view, str(root))
        out[name] = np.concatenate([np.asarray(embedder(images)) for images, _, _ in
                                    image_batches(root, paths, args.image_size, args.batch_size, decode=decoder)])
    return out, embedder.describe()["weights_label"]


def probe_rows(feats: dict, labels: dict) -> dict:
    """Logistic regression fitted on train, C and threshold chosen on valid, scored once on every other set."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from featurekit.metrics import choose_threshold, evaluate, roc_auc

    fitted = {}
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        model.fit(feats["train"], labels["train"])
        fitted[c] = (roc_auc(labels["valid"], model.predict_proba(feats["valid"])[:, 1]), model)
    best_c = max(fitted, key=lambda c: fitted[c][0])
    model = fitted[best_c][1]
    threshold = choose_threshold(labels["valid"], model.predict_proba(feats["valid"])[:, 1])
    rows = {"C": best_c, "valid_roc_auc": fitted[best_c][0], "threshold": threshold}
    for name in feats:
        if name in ("train", "valid"):
            continue
        score = model.predict_proba(feats[name])[:, 1]
        metrics = evaluate(np.asarray(labels[name]), score, threshold, n_boot=1000)
        rows[name] = {key: metrics[key] for key in ("n", "n_fake", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                                                    "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high",
                                                    "accuracy_real", "accuracy_fake")}
    return rows


def image_sets(args: argparse.Namespace) -> tuple[dict, dict]:
    """{set name: (root, paths)} and {set name: labels}: the splits, the test views, the other generator."""
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS, scan_image_folder

    folder = scan_image_folder(args.data, DEFAULT_SPLIT_FRACTIONS)
    sets, labels = {}, {}
    for split in ("train", "valid", "test"):
        samples = [s for s in folder.samples if s.split == split]
        sets[split], labels[split] = (folder.root, [s.path for s in samples]), [s.label for s in samples]
    for view in VIEWS:
        sets[f"test@{view}"], labels[f"test@{view}"] = sets["test"], labels["test"]
    real_test = [s.path for s in folder.samples if s.split == "test" and s.label == 0]
    fakes = sorted(p.name for p in args.other_fakes.iterdir() if p.is_file())
    # One root for both: the real faces by their path from the data folder, the other fakes by absolute path.
    other_paths = [str(folder.root.resolve() / p) for p in real_test] + [str(args.other_fakes.resolve() / p)
                                                                         for p in fakes]
    sets["other_generator"] = (Path("/"), [p.lstrip("/") for p in other_paths])
    labels["other_generator"] = [0] * len(real_test) + [1] * len(fakes)
    return sets, labels


def fine_tune(args: argparse.Namespace):
    from featurekit.training.runner import train_backbone

    out = REPO / "runs" / f"bench-finetune-{args.backbone}-{args.unfreeze_from}-{args.image_size}-seed{args.seed}"
    return train_backbone(args.data, backbone=args.backbone, weights=args.weights, unfreeze_from=args.unfreeze_from,
                          top_layer=args.top_layer, image_size=args.image_size, epochs=args.epochs,
                          batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
                          seed=args.seed, augment_copies=args.augment_copies, augment_views=args.augment_views,
                          out=out, progress=False)


def markdown(report: dict) -> str:
    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.3f} [{row[key + '_ci_low']:.3f}, {row[key + '_ci_high']:.3f}]"

    s = report["settings"]
    lines = [f"# Fine-tuned {s['backbone']} vs its frozen parent on {report['data']}", "",
             f"Fine-tuned above `{s['unfreeze_from']}` up to `{s['top_layer']}` at {s['image_size']} px "
             f"(lr {s['learning_rate']:g}, cosine, up to {s['epochs']} epochs, early stop on valid loss, "
             f"{s['augment_copies']} augmented copies: flip + one of {', '.join(s['augment_views']) or 'none'}); "
             f"best epoch {report['training']['best_epoch']} of {report['training']['epochs_run']}, "
             f"{report['training']['seconds']:.0f} s of training on {report['machine']}. Both tapped at "
             f"`{s['top_layer']}` (mean+std), logistic regression on train, C and threshold chosen on valid; "
             "accuracy at that threshold, ROC AUC, 95% bootstrap intervals. Other generator: its fakes with the "
             "real faces of the test split, never used to choose.", "",
             "| weights | set | n | accuracy | ROC AUC |", "| --- | --- | --- | --- | --- |"]
    for name, result in report["results"].items():
        for key, row in result["rows"].items():
            if isinstance(row, dict):
                lines.append(f"| {name} | {key} | {row['n']} | {cell(row, 'accuracy')} | {cell(row, 'roc_auc')} |")
    lines += ["", f"Labels: " + "; ".join(f"{k}: {v['weights_label']}" for k, v in report["results"].items()),
              "", f"Command: `{report['command']}`; wall time {report['seconds_total']:.0f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    sets, labels = image_sets(args)
    trained = fine_tune(args)
    results = {}
    for name, weights in (("frozen parent", args.weights), ("fine-tuned", str(trained.model_path))):
        t = time.perf_counter()
        feats, label = features(weights, args, sets)
        results[name] = {"weights_label": label, "rows": probe_rows(feats, labels),
                         "seconds_features_and_probe": time.perf_counter() - t}
        print(name, json.dumps(results[name]["rows"]["test"]), flush=True)
    report = {
        "benchmark": "fine-tuned backbone vs its frozen parent", "data": str(os.path.relpath(args.data, REPO)),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "training": {"best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run, "seconds": trained.seconds,
                     "best_valid_accuracy": trained.best_valid_accuracy, "best_valid_loss": trained.best_valid_loss,
                     "stopped_early": trained.stopped_early, "params": trained.params, "history": trained.history},
        "results": results, "seconds_total": time.perf_counter() - started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        "command": ".venv/bin/python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    report["settings"]["data"] = report["data"]
    report["settings"]["other_fakes"] = os.path.relpath(args.other_fakes, REPO)
    report["settings"]["out"] = os.path.relpath(args.out, REPO)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
