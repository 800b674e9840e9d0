"""How the command line spells what the library says: parameters become flags at the CLI's boundary.

This module belongs to the command line; the library never imports it. The library names parameters
(`batch_size=0`, "`weights`", see `featurekit.errors`); a command's user typed flags, set keys in a
config file, or left options at their defaults. `CommandSpelling` rewrites a message for the command
that runs: an option the user typed reads `--batch-size 0`, one the config file set reads
`batch_size = 0 (in x.toml)`, one left alone reads `the default --weights (imagenet)`. Names that are
not options of the command (a `[[sweep.backbone]]` entry's `weights`) keep the library's spelling.
"""

from __future__ import annotations

import ast
import contextlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from featurekit.errors import ConfigFileError, FeaturekitError, join_parts
from featurekit.options import Option, options_for, toml_literal

# `name` (a parameter alone), or name= followed by a Python literal (`given`).
_MENTION = re.compile(r"`([a-z][a-z0-9_]*)`|(?<![\w`'\"./\\-])([a-z][a-z0-9_]*)=(?=\S)")
_LITERAL_END = re.compile(r"(?=[\s,;)\]]|$)")  # where a literal may end
_PATH_REPR = re.compile(r"\w*Path\(('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\)")  # PosixPath('x') -> 'x'


@dataclass
class CommandSpelling:
    """The spelling of one command's messages.

    Attributes:
        command: The command (its table name).
        typed: The options the user typed on the command line (name -> value).
        from_file: The options the config file set (name -> value).
        config: The config file, for "(in x.toml)".
    """

    command: str
    typed: Mapping[str, Any] = field(default_factory=dict)
    from_file: Mapping[str, Any] = field(default_factory=dict)
    config: Any = None

    def __post_init__(self) -> None:
        self.options = options_for(self.command)

    def text(self, message: str, bare: tuple[str, ...] = ()) -> str:
        """A message with each option of the command spelt as a flag."""
        return respell(message, self._flag, bare)

    def error(self, error: FeaturekitError) -> str:
        """An error's message as the command line prints it; what it received says where each value came from.

        Errors about a config file's contents quote its keys and are printed as they are.
        """
        if isinstance(error, ConfigFileError):
            return str(error)
        received = respell(error.received, self._received, error.parameters) if error.received else None
        fix = self.text(error.fix, error.parameters) if error.fix else None
        return join_parts(self.text(error.problem, error.parameters), received, fix)

    def _flag(self, name: str, value: Any, has_value: bool) -> str | None:
        option = self.options.get(name)
        if option is None or has_value:
            return option and flag_text(option, value)
        return option.name.upper() if option.argument else option.flag

    def _received(self, name: str, value: Any, has_value: bool) -> str | None:
        option = self.options.get(name)
        if option is None or not has_value:
            return self._flag(name, value, has_value)
        if name in self.typed:
            typed = self.typed[name]
            if isinstance(typed, (list, tuple, bool)) or str(typed) == str(value):
                return flag_text(option, value)
            return f"{flag_text(option, typed)} ({_word(value)})"  # `--weights default (imagenet)`
        if name in self.from_file:
            return f"{name} = {toml_literal(value)} (in {self.config})"
        return f"the default {option.flag} ({_word(value)})"


def flag_text(option: Option, value: Any) -> str:
    """A value as the user would type it: `--batch-size 0`, `--no-overwrite`, `--cache a --cache b`, `x.h5`."""
    if isinstance(value, bool) and not option.argument:
        return option.flag if value else f"--no-{option.flag[2:]}"
    flag = "" if option.argument else f"{option.flag} "
    return " ".join(f"{flag}{_word(v)}" for v in (value if isinstance(value, (list, tuple)) and value else [value]))


def _word(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else shlex.quote(str(value))


def respell(text: str, spell: Callable[[str, object, bool], str | None], bare: Iterable[str] = ()) -> str:
    """Rewrite the parameter mentions of `text` with `spell`.

    Args:
        text: A message written with `given` and backticked parameter names.
        spell: Called as spell(name, value, has_value): `value` is the value of a `given` mention (its
            repr read back, or the repr's text where it is no literal); has_value is False for a
            backticked mention and for a bare name. Returns None to keep the mention as it is.
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
            end, value = _literal(text, match.end())
            if end == match.end():  # "name=" with no value after it is no mention
                continue
            spelt = spell(match.group(2), value, True)
        if spelt is not None:
            pieces += [text[position:match.start()], spelt]
            position = end
    return "".join(pieces) + text[position:]


def _literal(text: str, start: int) -> tuple[int, object]:
    """Where the Python literal (a repr) that starts at `start` ends, and its value (its text where it is none).

    The literal is the shortest text up to a space, a separator or a closing mark that reads back as one
    (`'a b'` and `['x', 'y']` span spaces); a path's repr reads back as its string.
    """
    ends = [match.start() for match in _LITERAL_END.finditer(text, start)]
    for end in ends:
        literal = text[start:end].rstrip(".")  # the full stop of the sentence, not the number's
        with contextlib.suppress(ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return start + len(literal), ast.literal_eval(_PATH_REPR.sub(r"\1", literal))
        if text[end:end + 1] == "\n":  # a repr holds no line break
            break
    end = start + len(text[start:ends[0]].rstrip(".") or text[start:ends[0]])
    return end, text[start:end]
