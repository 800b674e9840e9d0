"""The one error type that reaches users: what was wrong, what was received, how to fix it.

Library messages name parameters, never flags: `given("batch_size", 0)` is "batch_size=0" and
`option_name("batch_size")` is "`batch_size`". The command line rewrites these mentions into its own
spelling (`--batch-size 0`, `--batch-size`) at its boundary, with `respell`; an error may also list the
parameters it names bare (`parameters=`), and those are rewritten too.
"""

from __future__ import annotations

import ast
import re
from typing import Callable, Iterable

# `name` (option_name), or name= followed by a Python literal (given).
_MENTION = re.compile(r"`([a-z][a-z0-9_]*)`|(?<![\w`'\"./\\-])([a-z][a-z0-9_]*)=(?=\S)")
_BARE_END = re.compile(r"[^\s,;)\]]+")
_PATH_REPR = re.compile(r"\w*Path\((.*)\)", re.S)


class FeaturekitError(Exception):
    """A user-facing error. The CLI prints it without a traceback and exits with code 2.

    Args:
        problem: What was wrong, as one sentence.
        received: What the user gave (a path, a name, a value).
        fix: How to fix it, ideally a command to run.
        parameters: Parameters the text names bare (not through `given`/`option_name`), so the
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
    """The message of an error: problem, "Received: ...", fix."""
    parts = [problem]
    if received:
        parts.append(f"Received: {received}.")
    if fix:
        parts.append(fix)
    return " ".join(parts)


def option_name(parameter: str) -> str:
    """A parameter mentioned in a message: "`batch_size`" (the command line shows `--batch-size`)."""
    return f"`{parameter}`"


def given(parameter: str, value: object) -> str:
    """A parameter with the value the caller passed: "batch_size=0" (the command line shows `--batch-size 0`)."""
    return f"{parameter}={value!r}"


# spell(name, value, has_value) -> the text that replaces the mention, or None to keep it.
Spelling = Callable[[str, object, bool], "str | None"]


def respell(text: str, spell: Spelling, bare: Iterable[str] = ()) -> str:
    """Rewrite the parameter mentions of `text` with `spell`.

    Args:
        text: A message written with `given` and `option_name`.
        spell: Called as spell(name, value, has_value): `value` is the value of a `given` mention (its
            repr read back, or the repr's text where it is no literal); has_value is False for an
            `option_name` mention and for a bare name. Returns None to keep the mention as it is.
        bare: Names to rewrite where they stand alone as words (an error's `parameters`).
    """
    for name in bare:
        text = re.sub(rf"(?<![\w`'\"=-]){re.escape(name)}(?![\w`'\"=-])(?!\s*=)",
                      lambda m: spell(m.group(0), None, False) or m.group(0), text)
    pieces, position = [], 0
    for match in _MENTION.finditer(text):
        if match.start() < position:
            continue
        if match.group(1):
            end, spelt = match.end(), spell(match.group(1), None, False)
        else:
            end = _literal_end(text, match.end())
            if end == match.end():  # "name=" with no value after it is no mention
                continue
            spelt = spell(match.group(2), _read_literal(text[match.end():end]), True)
        if spelt is not None:
            pieces += [text[position:match.start()], spelt]
            position = end
    return "".join(pieces) + text[position:]


def _literal_end(text: str, start: int) -> int:
    """Where the Python literal (a repr) that starts at `start` ends."""
    path = re.match(r"\w*Path\(", text[start:])
    if path:
        return _bracket_end(text, start + path.end() - 1)
    if text[start] in "'\"":
        return _quote_end(text, start)
    if text[start] in "[(":
        return _bracket_end(text, start)
    bare = _BARE_END.match(text, start)
    end = bare.end() if bare else start
    while end > start + 1 and text[end - 1] == ".":  # the full stop of the sentence, not the number's
        end -= 1
    return end


def _quote_end(text: str, start: int) -> int:
    quote, index = text[start], start + 1
    while index < len(text) and text[index] != quote:
        index += 2 if text[index] == "\\" else 1
    return min(index + 1, len(text))


def _bracket_end(text: str, start: int) -> int:
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char in "'\"":
            index = _quote_end(text, index)
            continue
        depth += char in "[("
        depth -= char in "])"
        index += 1
        if depth == 0:
            return index
    return len(text)


def _read_literal(literal: str) -> object:
    path = _PATH_REPR.fullmatch(literal)
    try:
        return ast.literal_eval(path.group(1) if path else literal)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return literal


def refuse_unknown(parameter: str, value: object, choices, hint: str = "") -> None:
    """Refuse a value that is not one of `choices`, naming the parameter, the value and every choice."""
    if value not in choices:
        raise FeaturekitError(f"Unknown {parameter.replace('_', ' ')} {value!r}.", received=given(parameter, value),
                              fix=f"Choose one of: {', '.join(choices)}{hint}.")
