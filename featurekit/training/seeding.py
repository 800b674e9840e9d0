"""Seeding a training run without leaving the caller's random state changed.

Keras' initialisers and dropout draw from Keras' global seed, so a reproducible run needs
`keras.utils.set_random_seed`, which also reseeds Python's `random` and NumPy's global generator (and
TensorFlow's, where it is installed). `seeded` puts Python's and NumPy's global states back as they were when
the block ends, so a caller's own draws are not replayed or shifted by training. Keras' global seed itself (and
TensorFlow's graph seed) has no public getter to restore it from: it stays set to the run's seed. featurekit's
own draws never use the global generators (they use `np.random.default_rng(seed)`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Keras (initialisers, dropout) for the block; Python's and NumPy's global states are restored after."""
    from featurekit.backend import set_random_seed

    python_state, numpy_state = random.getstate(), np.random.get_state()
    set_random_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
