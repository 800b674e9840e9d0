"""The one error type that reaches users: what was wrong, what was received, how to fix it.

This module belongs to the library. Its messages name parameters, never flags: a parameter with the
value received is `given("batch_size", 0)` = "batch_size=0", a parameter alone is written in backticks,
"`batch_size`", and an error may list the parameters it names bare (`parameters=`). Spelling any of
these as a command's flags (`--batch-size 0`) is the command line's job, done at its boundary by
`featurekit.flags`; nothing here knows about flags.
"""

from __future__ import annotations

from typing import Iterable


class FeaturekitError(Exception):
    """A user-facing error. The CLI prints it without a traceback and exits with code 2.

    Args:
        problem: What was wrong, as one sentence.
        received: What the user gave (a path, a name, a value).
        fix: How to fix it, ideally a command to run.
        parameters: Parameters the text names bare (not through `given`), so the
            command line can spell them as flags.
    """

    def __init__(self, problem: str, received: str | None = None, fix: str | None = None,
                 parameters: Iterable[str] = ()):
        self.problem = problem
        self.received = received
        self.fix = fix
        self.parameters = tuple(parameters)
        super().__init__(str(self))

    def __str__(self) -> str:
        return join_parts(self.problem, self.received, self.fix)


class ConfigFileError(FeaturekitError):
    """An error about a config file's contents: it quotes keys as the file writes them, never as flags."""


class WeightsUnavailableError(FeaturekitError):
    """Pretrained weights could not be had (offline `weights="imagenet"`, missing file).

    A separate type so a job may choose to continue with random-init weights, labelled as such.
    """


def join_parts(problem: str, received: str | None, fix: str | None) -> str:
    """The message of an error: problem, "Received: ...", fix (the parts that are given)."""
    return " ".join(filter(None, (problem, received and f"Received: {received}.", fix)))


def given(parameter: str, value: object) -> str:
    """A parameter with the value the caller passed: "batch_size=0" (the command line shows `--batch-size 0`)."""
    return f"{parameter}={value!r}"


def refuse_unknown(parameter: str, value: object, choices, hint: str = "") -> None:
    """Refuse a value that is not one of `choices`, naming the parameter, the value and every choice."""
    if value not in choices:
        raise FeaturekitError(f"Unknown {parameter.replace('_', ' ')} {value!r}.", received=given(parameter, value),
                              fix=f"Choose one of: {', '.join(choices)}{hint}.")
