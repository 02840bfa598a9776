"""Reading the declared variables from one mapping (``VariableReader``), each problem
collected, secrets read from their ``_FILE`` and never put into a message."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from service.base.errors import ConfigurationError
from service.config import variables as parse
from service.config.declared import API_KEY_SECRET, API_KEY_SID, FAKE_API_KEY_SECRET, Variable

T = TypeVar("T")


class VariableReader:
    """Reads variables of the table from one mapping, collecting every problem."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []
        #: variables whose ``_FILE`` was given but not read (said once, not also "required")
        self._unreadable: set[str] = set()

    def __call__(self, variable: Variable[T]) -> T:
        """The variable's value; its default (and a problem) when missing or malformed."""
        value = self.text(variable)
        if value is None:
            if variable.required and variable.name not in self._unreadable:
                alternative = f" (or {variable.name}_FILE)" if variable.secret else ""
                self.problems.append(f"{variable.name} is required{alternative}")
            return variable.default
        if (variable.secret or variable.from_file) and parse.looks_like_placeholder(value):
            self.problems.append(f"{variable.name} is a placeholder copied from .env.example")
            return variable.default
        try:
            return variable.parse(value)
        except ValueError as error:
            separator = "" if str(error).startswith(":") else " "
            self.problems.append(f"{variable.name}{separator}{error}")
            return variable.default

    def text(self, variable: Variable[object]) -> str | None:
        """The stripped text of ``NAME``, or of the file ``NAME_FILE`` names; None if unset."""
        name = variable.name
        direct = self._environ.get(name, "").strip()
        file_name = (
            self._environ.get(name + "_FILE", "").strip()
            if variable.secret or variable.from_file
            else ""
        )
        if direct and file_name:
            self.problems.append(f"{name} and {name}_FILE are both set; set only one")
            return None
        if not file_name:
            return direct or None
        try:
            found = Path(file_name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            self._unreadable.add(name)
            self.problems.append(f"{name}_FILE names a file that cannot be read: {_why(error)}")
            return None
        if not found:
            self._unreadable.add(name)
            self.problems.append(f"{name}_FILE names an empty file")
        return found or None


def _why(error: OSError | UnicodeDecodeError) -> str:
    """Why a secret's file was not read, and what to do; never its content."""
    if isinstance(error, PermissionError):
        return (
            f"permission denied to this process (uid {os.getuid()}, gid {os.getgid()}): make "
            "the file readable by it (in the image: owned by 10001, mode 0400)"
        )
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    return error.strerror or type(error).__name__


def read_api_key(sid_file: Path, secret_file: Path, *, production: bool) -> tuple[str, str]:
    """Read a rotated API key from its two files; raise ``ConfigurationError`` if unusable."""
    read = VariableReader(
        {API_KEY_SID.name + "_FILE": str(sid_file), API_KEY_SECRET.name + "_FILE": str(secret_file)}
    )
    sid, secret = read(API_KEY_SID), read(API_KEY_SECRET)
    problems = list(read.problems)
    if production and (sid.endswith(parse.FAKE_SID_BODY) or secret == FAKE_API_KEY_SECRET):
        problems.append("the rotated API key is the generated development placeholder")
    if problems:
        raise ConfigurationError(problems)
    return sid, secret
