"""GPU extraction end to end vs the forward pass alone, in one run (issue 7, part 3).

On the GPU machine (see benchmarks/gpu/README.md: `bash benchmarks/gpu/run.sh`) this builds a folder of
~20,000 JPEG faces on local disk (copies of the shared faces under distinct names), then for each backbone
configuration and precision:

1. forward only: a fresh process builds the embedder and times `embedder(uint8 batch)` on one batch held
   in memory (host to device, forward, features back to the host: what extraction does per batch);
2. extract: featurekit's real command, `python cli.py extract ... --weights none` (random weights: the same
   speed; the device sees only the working tree, not ../shared/weights), timed as a whole, with its own
   batch-phase rate from its closing line;
3. and, in this process, what can bound the pipeline besides the model: decoding the images
   (`featurekit.pipeline.image_batches`, one thread per core) and writing batch files (`BatchSink`).

It prints and writes (JSON) images/s end to end, the ratio of extraction's batch phase to forward-only
(target >= 0.9: decode, transfer and HDF5 writes keep up), and the projected time for 140,000 faces:

    projected = startup + (140,000 / N) * (wall - startup)

where `startup` is the forward-only process's time from launch to its first compiled batch (imports, JAX
start, model build, compile: paid once, whatever N), and `wall - startup` is everything that grows with N
(scanning and hashing the files, the batch phase, merging the batch files into the cache).

On a CPU, try it small: `python benchmarks/bench_gpu.py --images 64 --configs test_tiny:avg:32 --precisions float32`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SOURCES = (REPO.parent / "shared" / "data" / "ffhq_stylegan_140k_sample",  # beside the checkout (dev machines)
           REPO / "benchmarks" / "gpu" / "data" / "ffhq_stylegan_140k_sample",  # carried by benchmarks/gpu/prepare.sh
           REPO / "data" / "faces_sample")  # the 200 faces in the repository
TARGET_IMAGES = 140_000
CLOSING_LINE = re.compile(r"(\d+) images, (\d+) skipped, (\d+) computed in ([\d.]+) s, ([\d.]+) img/s")
STARTED = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f} s] {message}", flush=True)


def build_folder(source: Path, n_images: int, destination: Path) -> Path:
    """`destination/{real,fake}/` with n_images/2 copies each of the source's faces, under distinct names."""
    if destination.exists():
        shutil.rmtree(destination)
    jobs = []
    for label in ("real", "fake"):
        faces = sorted((source / label).glob("*.jpg")) or sorted((source / label).glob("*.*"))
        if not faces:
            raise SystemExit(f"no faces in {source / label}")
        (destination / label).mkdir(parents=True)
        for i in range(n_images // 2):
            face = faces[i % len(faces)]
            jobs.append((face, destination / label / f"{i:06d}_{face.name}"))
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda job: shutil.copyfile(*job), jobs))
    return destination


def decode_rate(folder: Path, image_size: int, batch_size: int, limit: int) -> dict:
    """Images/s of decoding alone (one thread per core), over up to `limit` of the folder's files."""
    from featurekit.pipeline import default_workers, image_batches

    paths = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))[:limit]
    started = time.perf_counter()
    count = sum(len(ok) for _, ok, _ in image_batches(folder, paths, image_size, batch_size))
    seconds = time.perf_counter() - started
    return {"images": count, "img_per_s": round(count / seconds, 1), "threads": default_workers()}


def write_rate(workdir: Path, feature_dim: int, batch_size: int, n_batches: int, dtype: str = "float32") -> dict:
    """Images/s of writing crash-safe batch files alone (`BatchSink` -> `PartialCache.write_batch`)."""
    import numpy as np

    from featurekit.cache import PartialCache
    from featurekit.engines import BatchSink

    class Target:
        index, done = 0, set()
        partial = PartialCache(workdir / "write-test.h5")

    Target.partial.remove()
    Target.partial.start({"batch_size": batch_size, "n_samples": batch_size * n_batches, "n_batches": n_batches})
    features = np.random.default_rng(0).random((batch_size, feature_dim), dtype=np.float32)
    ok = np.ones(batch_size, bool)
    started = time.perf_counter()
    with BatchSink([Target], batch_size, dtype) as sink:
        for index in range(n_batches):
            sink.put(index, [features], ok, [""] * batch_size)
    seconds = time.perf_counter() - started
    Target.partial.remove()
    return {"img_per_s": round(batch_size * n_batches / seconds, 1),
            "mb_per_s": round(batch_size * feature_dim * np.dtype(dtype).itemsize * n_batches / seconds / 1e6, 1)}


def forward_only(backbone: str, pooling: str, image_size: int, precision: str, batch_size: int,
                 min_seconds: float) -> dict:
    """In a fresh process: time to the first compiled batch, then images/s of `embedder(batch)` in memory."""
    import numpy as np

    from featurekit.backbones.embedder import build_multi_embedder

    embedder = build_multi_embedder(backbone, [(None, pooling)], weights="none", image_size=image_size,
                                    precision=precision, batch_size=batch_size)
    images = np.random.default_rng(0).integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    embedder(images)  # compile
    startup = time.perf_counter() - STARTED
    embedder(images)
    count, started = 0, time.perf_counter()
    while count < 5 * batch_size or time.perf_counter() - started < min_seconds:
        embedder(images)
        count += batch_size
    seconds = time.perf_counter() - started
    from featurekit.backend import active_backend

    return {"img_per_s": round(count / seconds, 1), "startup_s": round(startup, 2), "backend": active_backend(),
            "feature_dim": int(embedder.embedders[0].describe()["feature_dim"])}


def run_forward_only(args, backbone: str, pooling: str, size: int, precision: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--forward-only", f"{backbone}:{pooling}:{size}",
               "--precision-only", precision, "--batch-size", str(args.batch_size),
               "--min-seconds", str(args.min_seconds)]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError(f"forward-only failed: {completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_extract(args, folder: Path, backbone: str, pooling: str, size: int, precision: str, cache: Path) -> dict:
    """featurekit's real `extract` command on the folder, timed as a whole; its batch phase from its closing line."""
    command = [sys.executable, str(REPO / "cli.py"), "extract", "--backbone", backbone, "--data", str(folder),
               "--weights", "none", "--pooling", pooling, "--image-size", str(size), "--precision", precision,
               "--batch-size", str(args.batch_size), "--prefetch-batches", str(args.prefetch_batches),
               "--dtype", args.dtype, "--cache", str(cache), "--overwrite", "--no-progress"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                               env={**os.environ, "COLUMNS": "400"})
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"extract failed ({completed.returncode}): {completed.stdout[-1500:]} {completed.stderr[-1500:]}")
    match = CLOSING_LINE.search(completed.stdout.replace("\n", " "))
    if not match:
        raise RuntimeError(f"no closing line in extract's output: {completed.stdout[-1500:]}")
    images, skipped, computed, batch_seconds, batch_rate = match.groups()
    return {"images": int(images), "skipped": int(skipped), "wall_s": round(wall, 2),
            "batch_phase_s": float(batch_seconds), "batch_img_per_s": float(batch_rate),
            "end_to_end_img_per_s": round(int(images) / wall, 1),
            "cache_mb": round(cache.stat().st_size / 1e6, 1)}


def device_description() -> str:
    try:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return names or "no NVIDIA GPU"
    except (OSError, subprocess.SubprocessError):
        return "no NVIDIA GPU (nvidia-smi not found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--configs", default="vgg16:flatten:224,inceptionv3:avg:299",
                        help="backbone:pooling:size, comma-separated")
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--prefetch-batches", type=int, default=4)
    parser.add_argument("--workers", type=int, default=None, help="decode threads (default: one per core)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="stored feature type")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="forward-only timing length")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/featurekit-gpu"))
    parser.add_argument("--source", type=Path, default=None, help="faces to copy (default: the first found of "
                                                                    + ", ".join(str(s) for s in SOURCES) + ")")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip what would start after this")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", REPO / "benchmarks" / "results"))
                        / "gpu.json")
    parser.add_argument("--forward-only", help=argparse.SUPPRESS)
    parser.add_argument("--precision-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.forward_only:  # the child process of run_forward_only
        backbone, pooling, size = args.forward_only.split(":")
        print(json.dumps(forward_only(backbone, pooling, int(size), args.precision_only, args.batch_size,
                                      args.min_seconds)))
        return

    source = args.source or next((s for s in SOURCES if s.exists()), SOURCES[-1])
    configs = [(b, p, int(s)) for b, p, s in (c.split(":") for c in args.configs.split(","))]
    precisions = args.precisions.split(",")
    result = {"benchmark": "GPU extraction end to end vs forward only", "device": device_description(),
              "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
              "python": sys.version.split()[0],
              "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "images": args.images,
              "source": str(source), "batch_size": args.batch_size, "prefetch_batches": args.prefetch_batches,
              "dtype": args.dtype,
              "weights": "none (random; the same speed as ImageNet's)", "rows": [], "decode": {}, "write": {},
              "skipped": []}
    say(f"device: {result['device']}; {os.cpu_count()} CPUs; backend {result['keras_backend']}; faces from {source}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = build_folder(source, args.images, args.workdir / "faces")
    say(f"built {args.images} files in {folder}")
    for size in sorted({s for _, _, s in configs}):
        result["decode"][str(size)] = decode_rate(folder, size, args.batch_size, limit=min(args.images, 10_000))
        say(f"decode only at {size} px: {result['decode'][str(size)]}")

    for backbone, pooling, size in configs:
        for precision in precisions:
            label = f"{backbone} {pooling} {size} {precision}"
            if time.perf_counter() - STARTED > args.budget_s:
                result["skipped"].append(label)
                say(f"SKIPPED {label}: over the time budget")
                continue
            forward = run_forward_only(args, backbone, pooling, size, precision)
            say(f"{label}: forward only {forward['img_per_s']} img/s (startup {forward['startup_s']} s)")
            dim = forward["feature_dim"]
            if str(dim) not in result["write"]:
                n_batches = max(4, min(60, (1 << 30) // (dim * 4 * args.batch_size)))  # about 1 GiB at most
                result["write"][str(dim)] = write_rate(args.workdir, dim, args.batch_size, n_batches, args.dtype)
                say(f"write only, {dim} features: {result['write'][str(dim)]}")
            cache = args.workdir / f"{backbone}-{pooling}-{size}-{precision}.h5"
            extracted = run_extract(args, folder, backbone, pooling, size, precision, cache)
            cache.unlink(missing_ok=True)
            grows = max(extracted["wall_s"] - forward["startup_s"], 0.0)
            row = {"backbone": backbone, "pooling": pooling, "image_size": size, "precision": precision,
                   "feature_dim": dim, "forward_only_img_per_s": forward["img_per_s"],
                   "startup_s": forward["startup_s"], **extracted,
                   "batch_vs_forward_only": round(extracted["batch_img_per_s"] / forward["img_per_s"], 3),
                   "projected_140k_s": round(forward["startup_s"] + TARGET_IMAGES / extracted["images"] * grows, 1)}
            result["rows"].append(row)
            say(f"{label}: extract {extracted['end_to_end_img_per_s']} img/s end to end ({extracted['wall_s']} s), "
                f"batch phase {extracted['batch_img_per_s']} img/s = {row['batch_vs_forward_only']:.2f} x forward "
                f"only; 140,000 faces: ~{row['projected_140k_s']} s")
    shutil.rmtree(args.workdir / "faces", ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - STARTED, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
