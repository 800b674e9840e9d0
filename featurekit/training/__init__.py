"""Training a backbone (`train-backbone`): from scratch, or fine-tuned from its weights above a layer.

- `checks`: what a request must satisfy beyond each option's own declaration (the checked `TrainRequest`);
- `runner`: `train_backbone` itself (options -> request -> plan -> run, under the folder's lock),
  `train_from_options`, `finished_model`;
- `model`: InceptionV1 with its preprocessing and small top trained from scratch on images (`ScratchTraining`),
  parameter counts; `finetune`: a pretrained backbone's top trained on the cached maps of its frozen trunk
  (`layers_split`: the cut, the head; `trunk_maps`: the cached maps, batches);
- `state`: the run's folder, its files (fsynced, atomic) and the state an interrupted run resumes from;
- `batches`: seeded training batches (shuffled, wrapped; images augmented) as a `keras.utils.PyDataset`;
- `callbacks`: history, best epoch and early stopping that survive a resume;
- `schedule`: the learning rate of each epoch (constant, cosine, plateau), a pure function of the epoch and history;

Import the public names from `featurekit.training.runner`. This package imports nothing heavy on import.
"""
