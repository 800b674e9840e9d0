"""The one error type that reaches users: what was wrong, what was received, how to fix it."""

from __future__ import annotations


class FeaturekitError(Exception):
    """A user-facing error. The CLI prints it without a traceback and exits with code 2.

    Args:
        problem: What was wrong, as one sentence.
        received: What the user gave (a path, a name, a value).
        fix: How to fix it, ideally a command to run.
    """

    def __init__(self, problem: str, received: str | None = None, fix: str | None = None):
        self.problem = problem
        self.received = received
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.problem]
        if self.received:
            parts.append(f"Received: {self.received}.")
        if self.fix:
            parts.append(self.fix)
        return " ".join(parts)


class WeightsUnavailableError(FeaturekitError):
    """Pretrained weights could not be had (offline `weights="imagenet"`, missing file).

    A separate type so a job may choose to continue with random-init weights, labelled as such.
    """
