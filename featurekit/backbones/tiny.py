"""`test_tiny`: a two-conv backbone for tests, registered beside the real ones (as timm registers `test_*` models):
its spec is in `featurekit/backbones/catalog.py`.

It has the same shape of API as the real backbones (named conv/pool layers to tap, a native size, a
preprocessing mode) but builds and runs in milliseconds, so tests can sweep the registry, every pooling
and every weights option without touching a large network.
"""

from __future__ import annotations

import keras


def build_test_tiny(input_shape: tuple[int, int, int], weights: None = None) -> keras.Model:
    # 32x32x3 -> conv1 (8) -> pool1 16x16 -> conv2 (16) -> pool2 8x8x16; 1,392 parameters.
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    return keras.Model(inputs, x, name="test_tiny")
