"""The one reader of the policy file's tables: types, unknown keys, every problem at once.

Each feature parses its own tables with it (``tokens``, ``limits``, ``dial`` ...); the
reader collects each problem with where it was found, so that start-up and
``token-broker check-config`` list them all together.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import TypeGuard


class TableReader:
    """Reads values out of one parsed TOML document, collecting every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(f"{self.source}: {message}")

    def table(self, value: object, where: str) -> Mapping[str, object]:
        """``value`` as a table; an empty one (and a problem) when it is not."""
        if isinstance(value, dict):
            return value
        self.problem(f"{where} must be a table")
        return {}

    def known_keys(self, table: Mapping[str, object], allowed: Set[str], where: str) -> None:
        """A problem for each key of ``table`` that is not ``allowed``: nothing is ignored."""
        for key in sorted(set(table) - allowed):
            self.problem(f"unknown key {key!r} in {where}")

    def flag(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            self.problem(f"{where} must be true or false")
            return False
        return value

    def integer(self, value: object, where: str, *, low: int, high: int, default: int) -> int:
        # bool is an int in Python: true must not pass as 1.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(f"{where} must be an integer from {low} to {high}")
            return default
        return value

    def strings(self, value: object, where: str, *, what: str) -> tuple[str, ...]:
        """A non-empty list of non-empty strings; ``what`` says what they should be."""
        if not is_string_list(value):
            self.problem(f"{where} must be a non-empty list of {what}")
            return ()
        return tuple(value)


def is_string_list(value: object) -> TypeGuard[list[str]]:
    """True for a non-empty list of non-empty strings."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
