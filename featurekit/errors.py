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


# Library errors name parameters (`batch_size=0`); the command line names flags (`--batch-size 0`).
# The CLI switches the spelling on for the duration of a command; library callers never see flags.
_cli_spelling = False


def option_name(parameter: str) -> str:
    """How the caller spells an option: `--batch-size` on the command line, `batch_size` from Python."""
    return "--" + parameter.replace("_", "-") if _cli_spelling else parameter


def given(parameter: str, value: object) -> str:
    """What the caller passed, in the caller's spelling: `--batch-size 0` or `batch_size=0`."""
    if _cli_spelling:
        return f"{option_name(parameter)} {value}"
    return f"{parameter}={value!r}"


class cli_spelling:
    """Context manager the CLI wraps each command in, so errors quote flags instead of parameters."""

    def __enter__(self) -> "cli_spelling":
        global _cli_spelling
        self._previous, _cli_spelling = _cli_spelling, True
        return self

    def __exit__(self, *exc: object) -> None:
        global _cli_spelling
        _cli_spelling = self._previous
