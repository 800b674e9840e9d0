"""The tf.data input pipeline: parallel decode and resize, batching, prefetch.

Extraction, backbone training and prediction all read images through `image_dataset`, so they decode
and resize the same way (Pillow, in parallel worker threads) and keep the CPU busy while the model runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from featurekit.data import ImageDecodeError, load_image


def _decode_or_flag(path: bytes, image_size: int) -> tuple[np.ndarray, bool, bytes]:
    try:
        return load_image(os.fsdecode(path), int(image_size)), True, b""
    except ImageDecodeError as error:
        # A bad file becomes a black image flagged not-ok: batches keep their shape and the row is dropped.
        return np.zeros((int(image_size), int(image_size), 3), np.uint8), False, str(error).encode()


def image_dataset(
    root: str | Path,
    paths: list[str],
    image_size: int,
    batch_size: int,
    labels: np.ndarray | None = None,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
    repeat: bool = False,
):
    """A tf.data.Dataset of batches of decoded images.

    Args:
        root: Folder the relative `paths` live in.
        paths: Relative paths, in the order batches should come (unless `shuffle`).
        image_size: Square size every image is resized to.
        batch_size: Images per batch; only the last batch may be smaller.
        labels: Optional labels; when given, elements are ``(images, labels)`` and undecodable files are
            dropped; without them, elements are ``(images uint8, ok bool, reason string)`` so a caller can
            record what was skipped.
        shuffle: Shuffle file order each epoch (seeded).
        augment: Random horizontal flips and small random crops (for training only).
        seed: Seed for shuffling and augmentation.
        repeat: Repeat forever (training loops that count steps).
    """
    import tensorflow as tf

    root = Path(root)
    full_paths = [os.fsencode(root / p) for p in paths]  # bytes: a name that is not UTF-8 is refused per file
    size = int(image_size)
    autotune = tf.data.AUTOTUNE

    def decode(path):
        image, ok, reason = tf.numpy_function(_decode_or_flag, [path, size], [tf.uint8, tf.bool, tf.string],
                                              stateful=False)
        image.set_shape((size, size, 3))
        ok.set_shape(())
        reason.set_shape(())
        return image, ok, reason

    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(full_paths)
        dataset = dataset.map(decode, num_parallel_calls=autotune, deterministic=True)
        return dataset.batch(batch_size).prefetch(autotune)

    dataset = tf.data.Dataset.from_tensor_slices((full_paths, np.asarray(labels, dtype=np.float32)))
    if shuffle:
        dataset = dataset.shuffle(len(full_paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    def decode_labelled(path, label):
        return (*decode(path), label)

    def decoded(image, ok, reason, label):
        return ok

    def image_and_label(image, ok, reason, label):
        return image, label

    dataset = dataset.map(decode_labelled, num_parallel_calls=autotune, deterministic=not shuffle)
    dataset = dataset.filter(decoded).map(image_and_label)
    if augment:
        dataset = dataset.map(lambda image, y: (_augment(image, size, seed), y), num_parallel_calls=autotune)
    return dataset.batch(batch_size).prefetch(autotune)


def _augment(image, size: int, seed: int):
    """Light augmentation for training: flip, and a random crop of up to 1/8 of the side, resized back."""
    import tensorflow as tf

    image = tf.image.random_flip_left_right(image, seed=seed)
    crop = tf.random.uniform((), minval=int(size * 7 / 8), maxval=size + 1, dtype=tf.int32, seed=seed)
    image = tf.image.random_crop(image, tf.stack([crop, crop, 3]), seed=seed)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
