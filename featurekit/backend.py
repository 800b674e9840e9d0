"""The compute side of Keras: which backend runs, seeding without TensorFlow, and the backbone's precision.

Keras 3 runs on TensorFlow (the default), JAX or PyTorch, chosen by `KERAS_BACKEND` before Keras is first
imported. featurekit's compute code speaks only Keras (`keras.ops`, `keras.Model`, `keras.utils.PyDataset`),
so extraction, training and prediction run on whichever backend is active, and nothing here imports
TensorFlow unless TensorFlow is that backend.

Precision is the compute dtype of the backbone: "float32", "bfloat16" or "float16", through Keras' mixed
dtype policies (variables stay float32, layers compute in the lower precision); pooling and stored features
stay float32. "auto" picks bfloat16 where the hardware computes it natively (a GPU; a CPU with AVX512-BF16 or
AMX-BF16 units), float32 elsewhere (emulated bfloat16 is slower than float32). The resolved value is what a
cache records, because features computed in another precision are other numbers.
"""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import lru_cache

import numpy as np

from featurekit.parameters import PRECISIONS
from featurekit.errors import refuse_unknown

# Keras dtype policy of each resolved precision: "mixed_*" keeps variables float32 and computes lower.
DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 arithmetic: AVX512-BF16 dot products, AMX tiles.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def active_backend() -> str:
    """The Keras backend this process computes with ("tensorflow", "jax", "torch", ...)."""
    import keras

    return keras.backend.backend()


def backend_versions() -> dict[str, str]:
    """Keras, its backend's name and that backend library's version; {} when Keras was never imported.

    Only modules already loaded are asked, so recording versions never imports TensorFlow (or Keras).
    """
    keras = sys.modules.get("keras")
    if keras is None:
        return {}
    backend = keras.backend.backend()  # also the name of its Python module ("tensorflow", "jax", "torch", ...)
    module = sys.modules.get(backend)
    return {"keras": keras.__version__, "keras_backend": backend,
            **({backend: module.__version__} if hasattr(module, "__version__") else {})}


@contextmanager
def tensorflow_kept_out() -> Iterator[None]:
    """Keep Keras from importing TensorFlow inside the block when TensorFlow is not the backend.

    Keras asks whether TensorFlow is installed in a few places that run under every backend (seeding, and
    the serialisation of `model.save`) and so imports it, seconds and hundreds of MB, whenever it is
    installed. While TensorFlow is neither the backend nor loaded, no object can be a TensorFlow object, so
    answering "not installed" for the duration of the block changes nothing but the import.
    """
    import keras

    with ExitStack() as restore:
        if keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules:
            with suppress(ImportError, AttributeError):  # a Keras laid out otherwise: accept the import
                from keras.src.utils.module_utils import tensorflow as lazy_tensorflow

                restore.callback(setattr, lazy_tensorflow, "_available", lazy_tensorflow._available)
                lazy_tensorflow._available = False
        yield


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Keras (initialisers, dropout) for the block, leaving Python's and NumPy's global states as they were.

    `keras.utils.set_random_seed` reseeds Python's `random` (where Keras draws its initialisers' seeds) and NumPy's
    global generator as well: both are put back when the block ends, so a caller's own draws are neither replayed
    nor shifted. TensorFlow is not imported under another backend (Keras' own seeding imports it whenever it is
    installed). Keras' global seed (and TensorFlow's graph seed) has no public getter to restore it from: it stays
    set to `seed`. featurekit's own draws never use the global generators (`np.random.default_rng(seed)`).
    """
    import keras

    with ExitStack() as restore:
        restore.callback(random.setstate, random.getstate())
        restore.callback(np.random.set_state, np.random.get_state())
        with tensorflow_kept_out():
            keras.utils.set_random_seed(int(seed))
        yield


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, object]:
    """The CPU's model name and flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    fields: list[tuple[str, str]] = []
    with suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
        fields = [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in handle)]
    model = next((value for key, value in fields if key == "model name" and value), "")
    flags = next((value.split() for key, value in fields if key in ("flags", "Features") and value), [])
    return {"model": model, "flags": frozenset(flags)}


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bfloat16 arithmetic units (AVX512-BF16 or AMX-BF16)."""
    return any(flag in cpu_info()["flags"] for flag in BF16_CPU_FLAGS)


# How each backend says whether it computes on a GPU (only the active backend's module is imported).
GPU_COUNTS = {
    "jax": lambda: sum(d.platform in ("gpu", "cuda", "rocm") for d in importlib.import_module("jax").devices()),
    "tensorflow": lambda: len(importlib.import_module("tensorflow").config.list_physical_devices("GPU")),
    "torch": lambda: int(importlib.import_module("torch").cuda.device_count()),
}


def gpu_count() -> int:
    """GPUs the active backend computes on (asked of that backend only: no other is imported)."""
    count = GPU_COUNTS.get(active_backend(), lambda: 0)
    with suppress(Exception):  # a backend that cannot say has none we know of
        return count()
    return 0


def has_accelerator() -> bool:
    """Whether the active backend computes on a GPU."""
    return gpu_count() > 0


def resolve_precision(precision: str) -> str:
    """The precision to compute in: `precision` itself, or for "auto" bfloat16 where the hardware has it.

    Args:
        precision: One of PRECISIONS.

    Returns:
        "float32", "bfloat16" or "float16".
    """
    refuse_unknown("precision", precision, PRECISIONS, " (auto: bfloat16 on a GPU or a CPU with bfloat16 units, "
                   "else float32)")
    if precision != "auto":
        return precision
    return "bfloat16" if has_accelerator() or cpu_has_native_bf16() else "float32"


@contextmanager
def dtype_policy(precision: str) -> Iterator[str]:
    """Build layers in `precision` (a resolved one: see `resolve_precision`) inside the block; the global policy
    is restored after.

    Yields:
        The Keras dtype policy name in force.
    """
    import keras

    with ExitStack() as restore:
        restore.callback(keras.config.set_dtype_policy, keras.config.dtype_policy())
        keras.config.set_dtype_policy(DTYPE_POLICIES[precision])
        yield DTYPE_POLICIES[precision]

