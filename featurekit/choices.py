"""The allowed values of featurekit's choice parameters and the bounds shared by several, declared once.

`featurekit.options` declares its options with these, and the library checks against the same tuples
(`from featurekit.choices import PRECISIONS`), so a choice added here reaches `--help`, config files and
every library check at once. This module imports nothing: anything may import it.
"""

from __future__ import annotations

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

