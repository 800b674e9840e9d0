"""How the command line spells what the library says: parameters become flags at the CLI's boundary.

The library names parameters (`batch_size=0`, "`weights`"); a command's user typed flags, set keys in a
config file, or left options at their defaults. `CommandSpelling` rewrites a message for the command
that runs: an option the user typed reads `--batch-size 0`, one the config file set reads
`batch_size = 0 (in x.toml)`, one left alone reads `the default --weights (imagenet)`. Names that are
not options of the command (a `[[sweep.backbone]]` entry's `weights`) keep the library's spelling.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from featurekit.errors import ConfigFileError, FeaturekitError, join_parts, respell
from featurekit.options import Option, options_for, toml_literal


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
        if option is None:
            return None
        if not has_value:
            return option.name.upper() if option.argument else option.flag
        return flag_text(option, value)

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
    if option.argument:
        return " ".join(_word(v) for v in value) if isinstance(value, (list, tuple)) else _word(value)
    if isinstance(value, bool):
        return option.flag if value else f"--no-{option.flag[2:]}"
    if isinstance(value, (list, tuple)) and value:
        return " ".join(f"{option.flag} {_word(v)}" for v in value)
    return f"{option.flag} {_word(value)}"


def _word(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return shlex.quote(str(value))
