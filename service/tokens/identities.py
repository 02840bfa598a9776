"""From a verified subject to the Twilio identity of every token: one injective mapping.

Twilio Voice accepts only letters, digits and ``_`` (``client:IDENTITY``); identity
providers hand out UUIDs (``6f1c-...``), ``auth0|...`` and e-mail addresses. A subject
Voice would refuse, or one that holds ``_x`` already, is written with every byte that is
not a letter or a digit as ``_xHH_`` (its hexadecimal value):

    auth0|123      -> auth0_x7c_123
    a-b            -> a_x2d_b
    a_b            -> a_b            (Voice accepts it, and it holds no "_x")
    a_x2d_b        -> a_x5f_x2d_x5f_b

The encoding is deterministic and reversible (``subject_of``), and two subjects never
share an identity: a subject left as it is never holds ``_x``, an encoded one always
does, and the escapes decode one way only. Every token of an app user carries it,
whatever its grants (Voice, Video, Conversations, Sync): an identity is one person's in
every Twilio product, never one person's in Voice and another's in a room. The audit
record keeps the original subject.
"""

from __future__ import annotations

import re
from dataclasses import replace

from service.callers import Caller, Identity
from service.tokens.format import VOICE_IDENTITY

_KEEP = re.compile(r"[A-Za-z0-9]")
_ESCAPE = re.compile(r"_x([0-9a-f]{2})_")


def voice_identity(subject: str) -> str:
    """``subject`` as Voice accepts it: as it is when it can be, else escaped."""
    if VOICE_IDENTITY.fullmatch(subject) and "_x" not in subject:
        return subject
    return "".join(
        character if _KEEP.fullmatch(character) else _escape(character) for character in subject
    )


def subject_of(identity: str) -> str:
    """The subject a Voice identity was made from (the inverse of ``voice_identity``)."""
    if "_x" not in identity:
        return identity
    raw = bytearray()
    position = 0
    for found in _ESCAPE.finditer(identity):
        raw += identity[position : found.start()].encode()
        raw.append(int(found.group(1), 16))
        position = found.end()
    raw += identity[position:].encode()
    return raw.decode("utf-8", errors="replace")


def _escape(character: str) -> str:
    return "".join(f"_x{byte:02x}_" for byte in character.encode("utf-8"))


def for_tokens(caller: Caller) -> Caller:
    """``caller`` with the identity its tokens name: an app user's subject, encoded, after
    its provider's prefix. A client key names its identity itself (policy checks it)."""
    if caller.kind != "app_user" or caller.subject is None:
        return caller
    identity = caller.identity_prefix + voice_identity(caller.subject)
    return replace(caller, identity=Identity(identity))


def base_identity(identity: str, prefixes: tuple[str, ...] = ()) -> str:
    """The identity a Voice identity stands for (the provider's prefix, then the subject)."""
    prefix = next((p for p in prefixes if p and identity.startswith(p)), "")
    return prefix + subject_of(identity[len(prefix) :])
