"""The learning-rate schedule of a training run: constant, cosine or plateau, one rate per epoch.

The rate of epoch e is a pure function of the schedule, of e, and (plateau only) of the monitored validation
values of the epochs before e. Keras' `LearningRateScheduler` sets it on the optimizer at the start of each
epoch. A run resumed at epoch e (BackupAndRestore gives back the epoch number, progress.json the history of
finished epochs) therefore trains every epoch at the rate an uninterrupted run would, and nothing about the
schedule needs saving besides the history that is saved anyway. Why per epoch rather than per step: plateau
can only act between epochs, so one mechanism serves all three schedules; each epoch's rate is recorded in
training.json; and the JAX trainer reads the optimizer's variables afresh at the start of each epoch, so a
rate set there takes effect on every backend without a state sync per step. With 20-40 steps an epoch the
epoch-wise cosine is a fine enough staircase.

- constant: the learning rate throughout (featurekit's behaviour before schedules).
- cosine: Keras' `CosineDecay`, evaluated at the epoch number: from the learning rate at the first epoch after
  the warmup down to `min_learning_rate` at the last epoch (`epochs` is part of the schedule), after a linear
  warmup of `warmup_epochs` epochs from learning_rate / (warmup_epochs + 1).
- plateau: Keras' `ReduceLROnPlateau` on the monitored value (factor, patience, min_learning_rate), replayed
  over the recorded values, so its counters survive an interruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from featurekit.errors import FeaturekitError, given


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule over epochs; making one refuses settings the named schedule cannot use.

    Attributes:
        name: "constant", "cosine" or "plateau".
        learning_rate: The rate the schedule starts from (after any warmup).
        epochs: The run's epochs (cosine reaches `min_learning_rate` at the last one).
        min_learning_rate: The lowest rate (cosine's end, plateau's floor).
        warmup_epochs: Epochs of linear warmup before the cosine decay (cosine only).
        plateau_factor: What plateau multiplies the rate by after `plateau_patience` epochs without improvement.
        plateau_patience: Epochs without improvement of `monitor` before plateau lowers the rate.
        monitor: "val_loss" (lower is better) or "val_accuracy" (higher is better).
    """

    name: str
    learning_rate: float
    epochs: int
    min_learning_rate: float = 0.0
    warmup_epochs: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    monitor: str = "val_loss"

    def __post_init__(self) -> None:
        """Refuse settings the named schedule cannot use.

        Each setting on its own is validated against its declaration (`featurekit.options`: the schedule's name
        among the choices, the bounds of the others); refused here is what depends on several of them.

        Raises:
            FeaturekitError: naming the parameters, what was received and a value that works.
        """
        if self.warmup_epochs and self.name != "cosine":
            raise FeaturekitError(
                f"A warmup belongs to the cosine schedule; the {self.name} schedule starts at the learning "
                "rate.",
                received=f"{given('warmup_epochs', self.warmup_epochs)} with {given('schedule', self.name)}",
                fix="Use `schedule` cosine, or leave `warmup_epochs` at 0.")
        if self.name == "cosine" and self.warmup_epochs >= self.epochs:
            raise FeaturekitError(
                "The warmup must leave at least one epoch of the run for the cosine decay.",
                received=f"{given('warmup_epochs', self.warmup_epochs)} with {given('epochs', self.epochs)}",
                fix=f"Use fewer `warmup_epochs` (e.g. {max(0, min(2, self.epochs - 1))}) or more `epochs`.")
        if self.name != "constant" and not self.min_learning_rate < self.learning_rate:
            raise FeaturekitError(
                f"The minimum learning rate of the {self.name} schedule must be at least 0 and below the "
                f"learning rate ({self.learning_rate:g}).",
                received=f"{given('min_learning_rate', self.min_learning_rate)} with "
                f"{given('learning_rate', self.learning_rate)}",
                fix=f"Use e.g. `min_learning_rate` {self.learning_rate / 100:g} (1% of the learning rate).")

    def identity(self) -> dict[str, Any]:
        """What shapes the rates, beyond the base learning rate: a resumed run must have the same.

        Only the settings the named schedule reads are included, so a constant run does not depend on, say,
        `plateau_factor`; and a cosine run depends on `epochs` (its length), which other runs may change.
        """
        return {"name": self.name, **{
            "cosine": {"epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                       "min_learning_rate": self.min_learning_rate},
            "plateau": {"factor": self.plateau_factor, "patience": self.plateau_patience,
                        "min_learning_rate": self.min_learning_rate},
        }.get(self.name, {})}

    def describe(self) -> str:
        """One phrase for the log: 'cosine from 0.001 to 1e-05 over 40 epochs (2 warmup)'."""
        if self.name == "cosine":
            warmup = f" after {self.warmup_epochs} warmup epochs" if self.warmup_epochs else ""
            return (f"cosine schedule from {self.learning_rate:g} to {self.min_learning_rate:g} at epoch "
                    f"{self.epochs}{warmup}")
        if self.name == "plateau":
            return (f"plateau schedule from {self.learning_rate:g}: x{self.plateau_factor:g} after "
                    f"{self.plateau_patience} epochs without a better {self.monitor}, down to "
                    f"{self.min_learning_rate:g}")
        return f"constant learning rate {self.learning_rate:g}"

    def rate(self, epoch: int, monitored: Sequence[float] = ()) -> float:
        """The learning rate of `epoch` (0-based).

        Args:
            epoch: The epoch about to run.
            monitored: The monitored value of each epoch before it (plateau reads them; others ignore them).
        """
        import keras

        if self.name == "cosine":
            # Decaying over epochs - 1 - warmup steps puts the minimum exactly on the last epoch (one epoch: the
            # rate). With no warmup (warmup_steps 0) this is the plain decay from the learning rate, to the same bits.
            cosine = keras.optimizers.schedules.CosineDecay(
                self.learning_rate / (self.warmup_epochs + 1), max(1, self.epochs - 1 - self.warmup_epochs),
                alpha=self.min_learning_rate / self.learning_rate, warmup_target=self.learning_rate,
                warmup_steps=self.warmup_epochs)
            return float(keras.ops.convert_to_numpy(cosine(epoch)))
        if self.name == "plateau":
            # Keras' own callback, fed the recorded values of the epochs before: its rule (min_delta, ties, NaN, the
            # floor) exactly, and its counters rebuilt from the history instead of held in memory, which a resumed
            # run would have lost.
            stand_in = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=float(self.learning_rate)))
            plateau = keras.callbacks.ReduceLROnPlateau(
                monitor=self.monitor, factor=self.plateau_factor, patience=self.plateau_patience,
                mode="min" if self.monitor == "val_loss" else "max", min_lr=self.min_learning_rate)
            plateau.set_model(stand_in)
            plateau.on_train_begin()
            for before, value in enumerate(monitored[:epoch]):
                plateau.on_epoch_end(before, {self.monitor: float(value)})
            return float(stand_in.optimizer.learning_rate)
        return float(self.learning_rate)
