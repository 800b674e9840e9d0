"""Training a backbone from scratch (`train-backbone`), one job per module.

- `checks`: what a request must satisfy before anything is built or written;
- `state`: the run's folder, its lock (`fsutil.exclusive_lock`), fsynced atomic files, resume state;
- `batches`: shuffled, augmented, seeded training batches as a `keras.utils.PyDataset`;
- `callbacks`: history, best epoch and early stopping that survive a resume;
- `model`: InceptionV1 with its preprocessing and small top, parameter counts, atomic `.keras` saves;
- `provenance`: which images a backbone was trained on, its weights label, overlap with an extraction;
- `schedule`: the learning rate of each epoch (constant, cosine, plateau), a pure function of the epoch and history;
- `runner`: `train_backbone` itself.

`featurekit.train_backbone` re-exports the public names. This package imports nothing heavy on import.
"""
