"""Training a backbone (`train-backbone`): from scratch, or fine-tuned from its weights above a layer.

- `checks`: what a request must satisfy beyond each option's own declaration (the checked `TrainRequest`);
- `runner`: `train_backbone` itself (options -> request -> plan -> run), `train_from_options`, `finished_model`;
- `scratch`: InceptionV1 trained from scratch on images; `finetune`: a pretrained backbone's top trained on the
  cached maps of its frozen trunk (`layers_split`: the cut, the head; `trunk_maps`: the cached maps, batches);
- `state`: the run's folder, its lock (`fsutil.exclusive_lock`), fsynced atomic files, resume state;
- `batches`: shuffled, augmented, seeded training batches of images as a `keras.utils.PyDataset`;
- `callbacks`: history, best epoch and early stopping that survive a resume;
- `model`: InceptionV1 with its preprocessing and small top, parameter counts, atomic `.keras` saves;
- `schedule`: the learning rate of each epoch (constant, cosine, plateau), a pure function of the epoch and history;

Import the public names from `featurekit.training.runner`. This package imports nothing heavy on import.
"""
