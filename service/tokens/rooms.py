"""Which rooms a rule's patterns allow: literal text, ``*`` wildcards and placeholders
(``{identity}``, ``{claims.NAME}``), checked at load time and split once."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.base.tables import TableReader
from service.callers.claims import CLAIM_NAME, claim_value

Claims = Mapping[str, object]

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
MAX_PATTERN_LENGTH = 256


Piece = tuple[
    str, str
]  # ("literal", text) | ("wildcard", characters it may not hold) | ("placeholder", name)


@dataclass(frozen=True)
class RoomPattern:
    """A room pattern: literal text, ``*`` wildcards and ``{identity}``/``{claims.X}``.

    A filled-in value is literal text (a ``*`` in a claim is never a wildcard), and it
    ends where the pattern says it ends: a wildcard after a placeholder may not hold the
    character that follows the placeholder, nor one before a placeholder the character
    that precedes it. With ``{identity}-*``, ``alice`` gets ``alice-1on1`` but never
    ``alice-smith-1on1``: that room parses only as ``alice-smith`` + ``1on1``, the room
    of ``alice-smith``. The source is split once, at load time.
    """

    source: str
    _pieces: tuple[Piece, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pieces", _split(self.source))

    def matches(self, room: str, identity: str, claims: Claims) -> bool:
        """Whether ``room`` fits, in time linear in the room's length (no backtracking)."""
        tokens: list[tuple[str, str]] = []
        for kind, text in self._pieces:
            if kind == "placeholder":
                value = (
                    identity if text == "identity" else claim_value(claims, text[len("claims.") :])
                )
                if not isinstance(value, str) or not value:
                    return False
                tokens += [("literal", character) for character in value]
            elif kind == "literal":
                tokens += [("literal", character) for character in text]
            else:
                tokens.append(("wildcard", text))
        return _fits(tokens, room)


def _fits(tokens: list[tuple[str, str]], room: str) -> bool:
    """Run the pattern as a nondeterministic automaton, all its states at once, one bit
    each: bit ``i`` is "the first ``i`` tokens matched". A literal moves its state on by
    one; a wildcard keeps its state for any character it may hold, and may be skipped.
    Each character of ``room`` costs a few integer operations, whatever the pattern."""
    literals: dict[str, int] = {}
    wildcards = 0
    forbidden: dict[str, int] = {}
    for index, (kind, text) in enumerate(tokens):
        bit = 1 << index
        if kind == "literal":
            literals[text] = literals.get(text, 0) | bit
        else:
            wildcards |= bit
            for character in text:
                forbidden[character] = forbidden.get(character, 0) | bit
    states = _skip_wildcards(1, wildcards)
    for character in room:
        moved = (states & literals.get(character, 0)) << 1
        kept = states & wildcards & ~forbidden.get(character, 0)
        states = _skip_wildcards(moved | kept, wildcards)
        if not states:
            return False
    return bool(states >> len(tokens) & 1)


def _skip_wildcards(states: int, wildcards: int) -> int:
    """Add the states reached by letting wildcards hold nothing (a run of them at once)."""
    while True:
        reached = states | (states & wildcards) << 1
        if reached == states:
            return states
        states = reached


def _split(source: str) -> tuple[Piece, ...]:
    """Literal runs, wildcards and placeholders, each wildcard with what it may not hold."""
    pieces: list[list[str]] = []
    position = 0
    for found in PLACEHOLDER.finditer(source):
        pieces += _literal_and_wildcards(source[position : found.start()])
        pieces.append(["placeholder", found.group(1)])
        position = found.end()
    pieces += _literal_and_wildcards(source[position:])
    for index, (kind, _) in enumerate(pieces):
        if kind != "placeholder":
            continue
        after = pieces[index + 1][1][:1] if index + 1 < len(pieces) else ""
        before = pieces[index - 1][1][-1:] if index > 0 else ""
        for piece in _run(pieces, index, step=1):
            piece[1] += after
        for piece in _run(pieces, index, step=-1):
            piece[1] += before
    return tuple(
        (kind, "".join(sorted(set(text))) if kind == "wildcard" else text) for kind, text in pieces
    )


def _literal_and_wildcards(text: str) -> list[list[str]]:
    pieces: list[list[str]] = []
    for number, literal in enumerate(text.split("*")):
        if number:
            pieces.append(["wildcard", ""])
        if literal:
            pieces.append(["literal", literal])
    return pieces


def _run(pieces: list[list[str]], index: int, *, step: int) -> list[list[str]]:
    """The wildcards from a placeholder to the next one (or the end), one way."""
    found = []
    position = index + step
    while 0 <= position < len(pieces) and pieces[position][0] != "placeholder":
        if pieces[position][0] == "wildcard":
            found.append(pieces[position])
        position += step
    return found


def parse_rooms(
    reader: TableReader, table: Mapping[str, object], where: str
) -> tuple[RoomPattern, ...] | None:
    if "video" not in table:
        return None
    video = reader.table(table["video"], f"{where}.video")
    reader.known_keys(video, {"rooms", "provision"}, f"{where}.video")
    value = video.get("rooms")
    if not isinstance(value, list) or not value:
        reader.problem(f"{where}.video.rooms must be a non-empty list of room patterns")
        return ()
    patterns = []
    for pattern in value:
        problem = _pattern_problem(pattern)
        if problem:
            reader.problem(f"{where}.video.rooms: {pattern!r} {problem}")
        else:
            patterns.append(RoomPattern(str(pattern)))
    return tuple(patterns)


def _pattern_problem(pattern: object) -> str | None:
    """Why a room pattern is malformed, or None when it is usable."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty string"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return "is too long"
    depth_free = PLACEHOLDER.sub("", pattern)
    if "{" in depth_free or "}" in depth_free:
        return "has an unbalanced or nested brace"
    for found in PLACEHOLDER.finditer(pattern):
        name = found.group(1)
        if name != "identity" and not (
            name.startswith("claims.") and CLAIM_NAME.fullmatch(name.removeprefix("claims."))
        ):
            return f"uses unknown placeholder {{{name}}} (use {{identity}} or {{claims.NAME}})"
        before, after = pattern[: found.start()][-1:], pattern[found.end() :][:1]
        if "*" in (before, after) or after == "{" or before == "}":
            return (
                "puts a placeholder right next to a wildcard or another placeholder: "
                "separate them, as in {identity}-*, so that a value ends where it should"
            )
    if any(unicodedata.category(c).startswith("C") for c in pattern):
        return "contains control or invisible characters"
    return None
