"""The ray engine's overhead: the same extraction with the local engine and with Ray Data workers, one run.

Same images (the first N shared faces, half real, half fake), same backbone and settings, fresh caches; each
engine's `extract` call is timed end to end (decode, forward passes, batch files, the merge), after one Ray
started for the whole run (its start is timed separately: a real job pays it once). The ratio ray/local is
what the engine's machinery costs here: per-actor process start and model build, Ray Data scheduling,
results shipped back to the driver.

On a machine with C CPUs Ray keeps one CPU free (ray-project/ray#44687), so the workers share C - 1 CPUs:
on 2 cores, one worker of 1 CPU, or two of 0.5 CPU each (they then time-share one core with each other,
while the other core reads, schedules and writes). Random weights (`none`): the same speed as ImageNet's.

    .venv/bin/python benchmarks/bench_ray.py [--images 256] [--backbone vgg16 --layer block2_pool --image-size 128]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FACES = REPO.parent / "shared" / "data" / "ffhq_stylegan_140k_sample"
BUNDLED = REPO / "data" / "faces_sample"


def subset_folder(source: Path, n_images: int, destination: Path) -> Path:
    """A class-folder copy of the first n/2 real and n/2 fake faces (by name)."""
    for label in ("real", "fake"):
        (destination / label).mkdir(parents=True)
        for path in sorted((source / label).glob("*.jpg"))[: n_images // 2]:
            shutil.copy2(path, destination / label / path.name)
    return destination


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--layer", default="block2_pool")
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray.json")
    args = parser.parse_args()
    source = FACES if FACES.exists() else BUNDLED

    import ray

    from featurekit.backend import cpu_info
    from featurekit.backbones.embedder import build_embedder
    from featurekit.engines import BatchSink
    from featurekit.extraction.extract import extract

    # Imports (Keras, its backend) are paid here, not by the first engine timed.
    build_embedder(args.backbone, weights="none", image_size=args.image_size, layer=args.layer, pooling=args.pooling)
    arrivals: list[tuple[float, int]] = []
    put = BatchSink.put

    def timed_put(self, batch_index, outputs, ok, reasons):  # when each batch reaches the writer, and its rows
        arrivals.append((time.perf_counter(), len(ok)))
        return put(self, batch_index, outputs, ok, reasons)

    BatchSink.put = timed_put

    load_at_start = round(os.getloadavg()[0], 2)  # other work on the machine skews every figure
    spare = args.cpus - 1
    runs = [("local", {}), ("ray", {"ray_workers": 1, "cpus_per_worker": float(spare)}),
            ("ray", {"ray_workers": 2, "cpus_per_worker": spare / 2})]
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    ray_start = time.perf_counter() - started
    rows = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            folder = subset_folder(source, args.images, Path(scratch) / "faces")
            for number, (engine, options) in enumerate(runs):
                cache = Path(scratch) / f"run{number}.h5"
                arrivals.clear()
                started = time.perf_counter()
                result = extract(folder, args.backbone, weights="none", image_size=args.image_size, layer=args.layer,
                                 pooling=args.pooling, batch_size=args.batch_size, cache=cache, engine=engine,
                                 engine_options=options, progress=False, log=lambda m: None)
                wall = time.perf_counter() - started
                row = {"engine": engine, **options, "images": result.n_images, "seconds": round(wall, 2),
                       "img_per_s": round(result.n_images / wall, 2),
                       "batches_img_per_s": round(result.images_per_second, 2),
                       "steady_img_per_s": round(sum(n for _, n in arrivals[1:]) / (arrivals[-1][0] - arrivals[0][0]), 2),
                       "first_batch_after_s": round(arrivals[0][0] - started, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        ray.shutdown()
    for row in rows:
        row["vs_local"] = round(row["img_per_s"] / rows[0]["img_per_s"], 3)
        row["steady_vs_local"] = round(row["steady_img_per_s"] / rows[0]["steady_img_per_s"], 3)
    payload = {"benchmark": "ray engine vs local engine, one run", "cpu_count": os.cpu_count(),
               "load_average_1min_at_start_and_end": [load_at_start, round(os.getloadavg()[0], 2)],
               "cpu": cpu_info()["model"], "ray_cpus": args.cpus, "ray_start_seconds": round(ray_start, 2),
               "data": f"{args.images} faces from {source.name}", "backbone": args.backbone, "layer": args.layer,
               "pooling": args.pooling, "image_size": args.image_size, "batch_size": args.batch_size,
               "weights": "none (random; the same speed)", "rows": rows,
               "note": "seconds: the whole extract call (scan, model build, decode, forward, batch files, merge). "
                       "batches_img_per_s: the batch phase only; for local after the forward pass is compiled, "
                       "for ray including the actors' start (process, imports, model build, compile). "
                       "steady_img_per_s: rows of batches 2..n over the time from the first batch's arrival at the "
                       "writer to the last's (the engine once running; for ray an upper bound, as results that "
                       "were computed while the first was in transit arrive together)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
