"""The allowed values and the defaults of featurekit's parameters, declared once.

The library takes its defaults and checks its choices from here (`from featurekit.parameters import
BATCH_SIZE, PRECISIONS`), and `featurekit.options` declares the command-line and config options with the
same names, so a default or a choice changed here reaches the library, `--help` and config files at once.
The library therefore depends on nothing of the command line's. This module imports nothing: anything may
import it.
"""

from __future__ import annotations

# Choices
PRECISIONS = ("float32", "bfloat16", "float16", "auto")  # compute precision of a backbone
DTYPES = ("float32", "float16")  # how a cache stores its features
ENGINES = ("local", "ray")  # where extraction batches are computed
POOLINGS = ("flatten", "avg", "max", "meanstd")  # how a CNN's feature map becomes a vector
HANDMADE_POOLING = "none"  # hand-made features are vectors already
EXTRACT_POOLINGS = POOLINGS + (HANDMADE_POOLING,)  # what `extract` accepts
PREPROCESSING_MODES = ("caffe", "tf", "torch", "rescale")
PROBES = ("head", "logreg", "linsvm", "knn", "rbfsvm")  # the probe registry's names, in its order
FORMATS = ("table", "csv", "json", "md")  # output formats of compare, backbones, info, predict
AUDIT_FORMATS = ("table", "json", "md")
ON_MISSING_WEIGHTS = ("error", "random")
VIEWS_SPLITS = ("all", "train", "valid", "test")
MONITORS = ("val_loss", "val_accuracy")
SCHEDULES = ("constant", "cosine", "plateau")
WEIGHTS_KEYWORDS = ("default", "imagenet", "none")  # any other weights value is a file path

SEED_MIN, SEED_MAX = 0, 2**32 - 1  # what numpy's and Keras' seeding accept

# Defaults: extraction
POOLING = "flatten"  # what the study fed its head
WEIGHTS = "default"  # the backbone's pretrained weights
PRECISION = "auto"
DTYPE = "float32"
BATCH_SIZE = 32  # images per forward pass
SEED = 0
CACHE_DIR = "cache"
MAX_PIXELS = 64_000_000  # largest image decoded (a guard against decompression bombs)
# The largest square input a backbone or hand-made feature takes. Memory sets it: at 2048 px one image is 12 MiB of
# uint8 and 48 MiB of float32 input, and VGG16's first block alone holds 64 channels x 2048^2 x 4 B = 1 GiB of
# activations per image (SPAM's bin codes for a batch already take hundreds of MB); far beyond that a batch cannot
# fit any machine's memory and ends in MemoryError after work was done.
MAX_IMAGE_SIZE = 2048
ENGINE = "local"
# Batches decoded ahead of the one the model is working on. Two keep the workers busy across the hand-over
# without holding more than a few batches of pixels in memory (VGG16 at 224, batch 32: 4.8 MB each).
PREFETCH_BATCHES = 2
CPUS_PER_WORKER = 1.0
GPUS_PER_WORKER = 0.0
RAY_TIMEOUT = 30.0  # seconds

# Defaults: probes, compare and sweep
RUNS_DIR = "runs"
HEAD_EPOCHS = 30
N_BOOT = 1000  # bootstrap resamples of the 95% intervals
MEMORY_BUDGET_GB = 4.0  # train and valid features larger than this stream from disk
TOP_K = 3
REPEATS = 3

# Defaults: audit
NEAR_DUPLICATE_THRESHOLD = 0.99  # cosine similarity from which two images in different splits are near-duplicates
MAX_LISTED = 1000  # near-duplicate pairs listed (all are counted)
AUDIT_MEMORY_BUDGET_MB = 512  # what the near-duplicate search may hold at once
SHORTCUT_AUC = 0.65  # ROC AUC above which a shortcut probe is called a shortcut
SHORTCUT_N_BOOT = 500  # bootstrap resamples of the shortcut probes' intervals
BALANCE_TOLERANCE = 0.10  # largest allowed difference of a split's class fraction from the whole set's
